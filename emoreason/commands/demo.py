"""emoreason demo: run the pipeline end to end on the embedded defaults (what `make demo` runs).

Stages: build the tiny model → SynthFACS clips (real H.264 mp4) → AU-grounded CoT data (verified) → SFT →
evaluation of the untrained and the fine-tuned model on the identity-disjoint test split → the image path.
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
    p.add_argument("--clips", type=int, default=320, help="SynthFACS clips to generate")
    p.add_argument("--sft-epochs", type=float, default=8.0)
    p.set_defaults(func=run)


def _banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from emoreason.config import load_config
    from emoreason.inference import generate
    from emoreason.models import build_tiny_model, frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import FramePolicy, load_frames

    start = time.time()
    out = Path(args.out)
    model_dir = out / f"tiny-{args.family}"

    _banner(f"1. tiny {args.family} model")
    if not (model_dir / "config.json").exists():
        build_tiny_model(args.family, model_dir, seed=args.seed)
    print(f"model: {model_dir}")

    _banner("2. SynthFACS: AU-controlled clips with exact ground truth")
    from emoreason.synth import SynthConfig, build_dataset

    manifest = build_dataset(SynthConfig(out=str(out / "synthfacs"), clips=args.clips, seed=args.seed,
                                         difficulty="easy"))
    record = json.loads(manifest.read_text().splitlines()[0])
    clip = manifest.parent / record["media"]["path"]
    image = out / "media" / "apex.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    apex = load_frames(clip, FramePolicy(nframes=record["media"]["frames"]), resize=False)
    Image.fromarray(apex.frames[record["apex_frame"]]).save(image)
    print(f"manifest: {manifest}\nclip: {clip} (emotion {record['emotion']}, AUs {record['aus']})\n"
          f"apex image: {image}")

    _banner("3. AU-grounded chain-of-thought data (emoreason synth-cot)")
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

    _banner("4. SFT (emoreason sft --config recipes/tiny/sft/...)")
    from emoreason.sft.train import SFTRecipe, run_sft

    recipes = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "sft"
    recipe_file = recipes / ("synthfacs.yaml" if args.family == "qwen2_5_vl" else "synthfacs_qwen3.yaml")
    recipe = load_config(SFTRecipe, recipe_file if recipe_file.is_file() else None, [
        f"model_name_or_path={model_dir}", f"dataset_path={cot_dir / 'hf'}", f"output_dir={out / 'sft'}",
        f"num_train_epochs={args.sft_epochs}", "logging_steps=20", "save_steps=100000"],
        **({} if recipe_file.is_file() else {"model_name_or_path": str(model_dir), "dataset_path": "",
                                              "output_dir": ""}))
    sft_final = out / "sft" / "final"
    if not (sft_final / "config.json").exists():
        run_sft(recipe)
    history = json.loads((out / "sft" / "train_summary.json").read_text())["loss_history"]
    print(f"SFT loss {history[0]['loss']:.3f} → {history[-1]['loss']:.3f} over {history[-1]['step']} steps; "
          f"model: {sft_final}")

    _banner("5. evaluate on the SynthFACS test split (emoreason eval --benchmark synthfacs)")
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.report import compare
    from emoreason.evaluation.runner import evaluate, prompt_labels

    spec = load_benchmark("synthfacs")
    runs = []
    for name, directory in (("untrained", model_dir), ("sft", sft_final)):
        backend = LocalBackend(str(directory), spec.frames, prompt_labels(spec), spec.style, 8, spec.max_new_tokens)
        run_dir = out / "eval" / name
        evaluate(spec, backend, run_dir, root=str(manifest.parent))
        runs.append(str(run_dir))
        first = json.loads((run_dir / "predictions.jsonl").read_text().splitlines()[0])
        shown = (first["text"] or "").strip()[:600] or repr((first["text"] or "")[:40])
        print(f"[{name}] first test prediction ({first['id']}):\n{shown}\n")
    print(compare(runs))
    print(f"reports: {', '.join(r + '/summary.md' for r in runs)}")

    _banner("6. the image path: an apex frame through the fine-tuned model")
    from dataclasses import replace

    model, processor = load_model_and_processor(sft_final, device="cpu")
    policy = replace(frame_policy_for(processor), min_pixels=3136, max_pixels=12544)
    text = generate(model, processor, [build_messages(str(image), "image", prompt_labels(spec))],
                    [load_frames(image, policy)], max_new_tokens=120)[0]
    print(f"[image {image.name}] {text[:300]!r}")

    print(f"\ndemo finished in {time.time() - start:.1f}s; artefacts in {out}")
    return 0
