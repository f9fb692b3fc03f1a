"""Landmark AU estimation throughput, end to end (decode + FaceMesh landmarks + hand check + AUs), on a
640×360 H.264 clip of a real face, in ONE process pinned to ONE core. Target: ≥ 150 frames/s per core.

The clip is tests/data/faces/smile.mp4 (a real face, 640×360, 72 frames) played forwards and backwards
until it is ``--frames`` long, re-encoded here. Besides the end-to-end figure it times each stage alone so
the cost is attributed: decode, FaceMesh (tracking), the periodic hand check, and the numpy estimator.
OpenFace (the peer tool) is a C++ build that does not install here, so the baseline measured in the same run is
the floor every FaceMesh-based AU tool pays: decode + FaceMesh alone, read from the same file, no hand check and
no AU work. The end-to-end figure is printed beside it and beside the issue's target. The machine is shared:
the load average is printed beside the figures.

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


CPU: dict[str, float] = {}


def _best(fn, repeats: int, name: str = "") -> float:
    """Best wall time; the process CPU time of that run is kept in CPU[name]. On a shared, oversubscribed
    machine wall time counts the time other processes hold the core, CPU time does not: frames per
    CPU-second is the per-core figure that survives the load (cache contention still inflates it)."""
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
    CPU[name] = best[1]
    return best[0]


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
        decode = _best(lambda: sum(1 for _ in open_media(clip).frames), args.repeats, "decode")

        def landmarks(hand_every: int):
            with FaceLandmarker(LandmarkerConfig(hand_every=hand_every)) as marker:
                return marker.track(frames, 30.0)

        mesh = _best(lambda: landmarks(0), args.repeats, "mesh")
        with_hands = _best(lambda: landmarks(args.hand_every), args.repeats, "hands")
        track = landmarks(args.hand_every)
        aus = _best(lambda: estimate(track.points, occluded=track.occluded), args.repeats, "aus")
        config = AUConfig(hand_every=args.hand_every)

        def baseline():  # decode + FaceMesh tracking from the file, nothing else (timed next to end to end)
            stream = open_media(clip)
            with FaceLandmarker(LandmarkerConfig(hand_every=0)) as marker:
                return marker.track(stream.frames, stream.fps)

        floor = _best(baseline, args.repeats, "baseline")
        end_to_end = _best(lambda: analyse_media(clip, config), args.repeats, "e2e")
        no_hands = _best(lambda: analyse_media(clip, AUConfig(hand_every=0)), args.repeats, "e2e_nohands")
        no_refine = _best(lambda: analyse_media(clip, AUConfig(hand_every=args.hand_every, refine=False)),
                          args.repeats, "e2e_norefine")
        stride2 = _best(lambda: analyse_media(clip, AUConfig(hand_every=args.hand_every // 2, stride=2)),
                        args.repeats, "e2e_stride2")
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to 1; "
          f"load average {load[0]:.1f} / {load[1]:.1f} (shared machine: figures are not final)")
    print(f"clip: 640x360 H.264, {n} frames of a real face (tests/data/faces/smile.mp4 looped)")
    rows = [("BASELINE decode + FaceMesh only", floor, "baseline"),
            ("decode (PyAV → RGB)", decode, "decode"), ("FaceMesh tracking", mesh, "mesh"),
            (f"FaceMesh + hand check /{args.hand_every}", with_hands, "hands"),
            ("AU estimator (numpy)", aus, "aus"), ("END TO END (analyse_media)", end_to_end, "e2e"),
            ("end to end, hand check off", no_hands, "e2e_nohands"),
            ("end to end, --no-refine", no_refine, "e2e_norefine"),
            ("end to end, --stride 2 (video frames/s)", stride2, "e2e_stride2")]
    print(f"{'stage':34s} {'frames/s wall':>14s} {'frames/CPU-s':>13s} {'ms/frame CPU':>13s}")
    for label, wall, key in rows:
        print(f"{label:34s} {n / wall:14.1f} {n / CPU[key]:13.1f} {1000 * CPU[key] / n:13.2f}")
    e2e, base = n / CPU["e2e"], n / CPU["baseline"]
    print(f"end to end {e2e:.1f} frames/CPU-s vs baseline (decode + FaceMesh alone) {base:.1f}: the AU estimator "
          f"and hand check cost {100 * (CPU['e2e'] / CPU['baseline'] - 1):+.0f} %; target ≥ {TARGET_FPS:.0f} "
          f"frames/s per core ({'met' if e2e >= TARGET_FPS else 'NOT met'} on this machine)")

if __name__ == "__main__":
    main()
