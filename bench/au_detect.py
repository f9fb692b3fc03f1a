"""Landmark AU estimation throughput, end to end (decode + FaceMesh landmarks + hand check + AUs), on a
640×360 H.264 clip of a real face, in ONE process pinned to ONE core. Target: ≥ 150 frames/s per core.

The clip is tests/data/faces/smile.mp4 (a real face, 640×360, 72 frames) played forwards and backwards
until it is ``--frames`` long, re-encoded here. Besides the end-to-end figure it times each stage alone so
the cost is attributed: decode, FaceMesh (tracking), the periodic hand check, and the numpy estimator.
There is no peer baseline (OpenFace is a C++ build that does not install here); the issue's target is
printed instead. The machine is shared: the load average is printed beside the figures.

    python bench/au_detect.py [--frames 720] [--repeats 2] [--hand-every 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emoreason.au.analysis import AUConfig, analyse_media  # noqa: E402
from emoreason.au.geometry import estimate  # noqa: E402
from emoreason.au.landmarks import FaceLandmarker, LandmarkerConfig  # noqa: E402
from emoreason.au.media import open_media  # noqa: E402
from emoreason.video import write_video  # noqa: E402

TARGET_FPS = 150.0


def _clip(path: Path, frames: int) -> Path:
    base = list(open_media(ROOT / "tests" / "data" / "faces" / "smile.mp4").frames)
    loop = base + base[::-1]
    seq = [loop[i % len(loop)] for i in range(frames)]
    return write_video(np.stack(seq), path, fps=30, crf=23)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hand-every", type=int, default=10)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core: the figure is per core
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp) / "clip.mp4", args.frames)
        n = args.frames
        frames = list(open_media(clip).frames)
        decode = _best(lambda: sum(1 for _ in open_media(clip).frames), args.repeats)

        def landmarks(hand_every: int):
            with FaceLandmarker(LandmarkerConfig(hand_every=hand_every)) as marker:
                return marker.track(frames, 30.0)

        mesh = _best(lambda: landmarks(0), args.repeats)
        with_hands = _best(lambda: landmarks(args.hand_every), args.repeats)
        track = landmarks(args.hand_every)
        aus = _best(lambda: estimate(track.points, occluded=track.occluded), args.repeats)
        config = AUConfig(hand_every=args.hand_every)
        end_to_end = _best(lambda: analyse_media(clip, config), args.repeats)
        no_hands = _best(lambda: analyse_media(clip, AUConfig(hand_every=0)), args.repeats)
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to 1; "
          f"load average {load[0]:.1f} / {load[1]:.1f} (shared machine: figures are not final)")
    print(f"clip: 640x360 H.264, {n} frames of a real face (tests/data/faces/smile.mp4 looped)")
    print(f"  decode (PyAV → RGB)        {n / decode:8.1f} frames/s  ({1000 * decode / n:.2f} ms/frame)")
    print(f"  FaceMesh tracking          {n / mesh:8.1f} frames/s  ({1000 * mesh / n:.2f} ms/frame)")
    print(f"  + hand check every {args.hand_every:<3d}    {n / with_hands:8.1f} frames/s  "
          f"({1000 * (with_hands - mesh) / n:.2f} ms/frame for hands)")
    print(f"  AU estimator (numpy)       {n / aus:8.1f} frames/s  ({1000 * aus / n:.2f} ms/frame)")
    print(f"end to end (analyse_media)   {n / end_to_end:8.1f} frames/s per core  (target {TARGET_FPS:.0f})")
    print(f"end to end, hand check off   {n / no_hands:8.1f} frames/s per core")


if __name__ == "__main__":
    main()
