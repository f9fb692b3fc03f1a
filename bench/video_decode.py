"""Decode-and-sample throughput: decord vs PyAV on a 10 s 720p H.264 clip, and the frame-folder path.

Samples 16 frames (FramePolicy nframes=16, resized by the qwen-vl-utils rule to ≤ 448×448 pixels) as every
training/eval/serving call does. The clip and the frame folder are written by the benchmark.

    python bench/video_decode.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from emoreason.video import FramePolicy, load_frames, write_video


def _clip(path: Path, seconds: int = 10, fps: int = 25, h: int = 720, w: int = 1280) -> Path:
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((seconds * fps, h, w, 3), np.uint8)
    for t in range(seconds * fps):  # moving gradients: compressible like real footage, not static
        frames[t, ..., 0] = (xx + 4 * t) % 256
        frames[t, ..., 1] = (yy + 2 * t) % 256
        frames[t, ..., 2] = ((xx + yy) // 4 + t) % 256
    return write_video(frames, path, fps=fps, crf=23)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (page cache, codec init)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    policy = FramePolicy(nframes=16, min_pixels=56 * 56, max_pixels=448 * 448)
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp) / "clip720p.mp4")
        folder = Path(tmp) / "frames"
        folder.mkdir()
        full = load_frames(clip, FramePolicy(nframes=250, min_pixels=1, max_pixels=10**8), resize=False)
        for i, frame in enumerate(full.frames):
            Image.fromarray(frame).save(folder / f"{i + 1:05d}.jpg", quality=90)
        results = {
            "decord": _time(lambda: load_frames(clip, policy, backend="decord"), args.repeats),
            "pyav": _time(lambda: load_frames(clip, policy, backend="pyav"), args.repeats),
            "frame folder (250 jpg)": _time(lambda: load_frames(folder, policy), args.repeats),
        }
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("16 sampled frames from a 10 s 1280x720 25 fps H.264 clip, resized to ≤ 448x448:")
    for name, seconds in results.items():
        print(f"  {name:24s} {seconds * 1000:8.1f} ms/clip  {16 / seconds:8.1f} sampled frames/s")
    print(f"  decord / PyAV speed-up: {results['pyav'] / results['decord']:.2f}x")


if __name__ == "__main__":
    main()
