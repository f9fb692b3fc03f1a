"""SynthFACS throughput: clips/s per core for 16-frame 224×224 clips (render + H.264 encode).

Target (issue: SynthFACS) ≥ 5 clips/s per core. There is no peer generator to run beside it (no public
AU-controlled video generator exists offline), so the figure is printed beside the target.

    python bench/synth_throughput.py [--clips 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from emoreason.synth import SynthConfig, build_dataset
from emoreason.synth.clips import generate_clip
from emoreason.synth.dataset import plan
from emoreason.video import write_video

TARGET_PER_CORE = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        specs = plan(SynthConfig(out=tmp, clips=args.clips, frames=16, size=224, difficulty="medium"))
        start = time.perf_counter()
        for spec in specs:
            frames, _ = generate_clip(spec)
            write_video(frames, Path(tmp) / "one.mp4", fps=spec.fps)
        single = args.clips / (time.perf_counter() - start)
        start = time.perf_counter()
        build_dataset(SynthConfig(out=str(Path(tmp) / "all"), clips=args.clips * cores), workers=cores,
                      progress=False)
        parallel = args.clips * cores / (time.perf_counter() - start)
    print(f"machine: {platform.machine()} {cores} cores, {platform.python_version()}")
    print(f"synthfacs 16x224x224 clips, one core : {single:6.2f} clips/s   (target ≥ {TARGET_PER_CORE})")
    print(f"synthfacs dataset build, {cores} workers: {parallel:6.2f} clips/s = {parallel / cores:.2f} per core")


if __name__ == "__main__":
    main()
