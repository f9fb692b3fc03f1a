"""emoreason demo: run the pipeline end to end on the embedded defaults (what `make demo` runs).

Stages so far: build the tiny model → write a real H.264 clip and an image → generate from each.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("emoreason.demo")


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run every stage on the embedded defaults (tiny model, synthetic clips)",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="working directory for the demo's artefacts")
    p.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen2_5_vl")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def demo_face_frames(n: int = 16, size: int = 224):
    """A cartoon face whose lip corners rise over the clip (placeholder media for the first stages)."""
    import numpy as np
    from PIL import Image, ImageDraw

    frames = []
    for i in range(n):
        smile = i / max(1, n - 1)
        im = Image.new("RGB", (size, size), (200, 220, 235))
        d = ImageDraw.Draw(im)
        c, r = size // 2, int(size * 0.38)
        d.ellipse((c - r, c - int(r * 1.15), c + r, c + int(r * 1.15)), fill=(224, 182, 150), outline=(90, 60, 40))
        for dx in (-0.38, 0.38):
            ex, ey = c + int(dx * r), c - int(0.25 * r)
            d.ellipse((ex - 10, ey - 6, ex + 10, ey + 6), fill=(255, 255, 255), outline=(40, 30, 30))
            d.ellipse((ex - 4, ey - 4, ex + 4, ey + 4), fill=(40, 30, 30))
        mouth_y, half = c + int(0.45 * r), int(0.35 * r)
        lift = int(12 * smile)
        d.line([(c - half, mouth_y - lift), (c, mouth_y + 4), (c + half, mouth_y - lift)], fill=(150, 40, 50),
               width=4)
        frames.append(np.asarray(im))
    return np.stack(frames)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from emoreason.inference import generate
    from emoreason.models import build_tiny_model, frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import load_frames, write_video

    start = time.time()
    out = Path(args.out)
    model_dir = out / f"tiny-{args.family}"

    _banner(f"1. tiny {args.family} model")
    build_tiny_model(args.family, model_dir, seed=args.seed)
    print(f"model: {model_dir}")

    _banner("2. media: an H.264 clip and an image")
    frames = demo_face_frames()
    clip = write_video(frames, out / "media" / "demo_clip.mp4", fps=8)
    image = out / "media" / "demo_apex.png"
    Image.fromarray(frames[-1]).save(image)
    print(f"video: {clip}\nimage: {image}")

    _banner("3. generate (untrained model, so the text is noise; the point is the real video path)")
    model, processor = load_model_and_processor(model_dir, device="cpu")
    policy = frame_policy_for(processor)
    for kind, path in (("video", clip), ("image", image)):
        loaded = load_frames(path, policy)
        messages = build_messages(str(path), media_type=kind)
        text = generate(model, processor, [messages], [loaded], max_new_tokens=32)[0]
        print(f"[{kind}] {loaded.frames.shape[0]} frame(s) {loaded.frames.shape[1]}x{loaded.frames.shape[2]} → "
              f"{text!r}")

    print(f"\ndemo finished in {time.time() - start:.1f}s; artefacts in {out}")
    return 0
