"""emoreason demo: run the pipeline end to end on the embedded defaults (what `make demo` runs).

Stages so far: build the tiny model → SynthFACS clips (real H.264 mp4) → AU-grounded CoT data (verified) →
generate from a clip and from an apex frame.
"""

from __future__ import annotations

import argparse
import json
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


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from emoreason.inference import generate
    from emoreason.models import build_tiny_model, frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import FramePolicy, load_frames

    start = time.time()
    out = Path(args.out)
    model_dir = out / f"tiny-{args.family}"

    _banner(f"1. tiny {args.family} model")
    build_tiny_model(args.family, model_dir, seed=args.seed)
    print(f"model: {model_dir}")

    _banner("2. SynthFACS: AU-controlled clips with exact ground truth")
    from emoreason.synth import SynthConfig, build_dataset

    manifest = build_dataset(SynthConfig(out=str(out / "synthfacs"), clips=48, seed=args.seed, difficulty="easy"))
    record = json.loads(manifest.read_text().splitlines()[0])
    clip = manifest.parent / record["media"]["path"]
    image = out / "media" / "apex.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    apex = load_frames(clip, FramePolicy(nframes=record["media"]["frames"]), resize=False)
    Image.fromarray(apex.frames[record["apex_frame"]]).save(image)
    print(f"manifest: {manifest}\nclip: {clip} (emotion {record['emotion']}, AUs {record['aus']})\n"
          f"apex image: {image}")

    _banner("3. AU-grounded chain-of-thought data (emoreason synth-cot)")
    from emoreason.config import load_config
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline

    cot_config = Path(__file__).resolve().parents[2] / "data_pipelines" / "configs" / "synthfacs.yaml"
    cot_cfg = load_config(CoTConfig, cot_config if cot_config.is_file() else None,
                          [f"dataset_root={manifest.parent}", f"output_dir={out / 'cot'}"])
    cot_dir = CoTPipeline(cot_cfg).run()
    summary = json.loads((cot_dir / "summary.json").read_text())
    first = json.loads((cot_dir / "data.jsonl").read_text().splitlines()[0])
    print(f"accepted {summary['accepted']} of {summary['records']} records; rejected "
          f"{summary['rejected_by_reason'] or 'none'}\nexample ({first['id']}):\n"
          f"{first['completion'][0]['content'][0]['text']}")

    _banner("4. generate (untrained model, so the text is noise; the point is the real video path)")
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
