"""emoreason eval: score a model on a benchmark (recognition + rationale quality) and write a report.

  emoreason eval --benchmark synthfacs --model runs/demo/sft/final --out runs/eval/sft
  emoreason eval --benchmark dfew --model 'runs/sft/dfew_fold{fold}/final' --out runs/eval/dfew   # 5 folds
  emoreason eval --benchmark dfew --model runs/sft/dfew_fold2/final --fold 2 --out runs/eval/dfew  # one fold
  emoreason eval --benchmark dfew --model folds.yaml --out runs/eval/dfew       # {1: runs/…, 2: runs/…, …}
  emoreason eval --benchmark dfew --endpoint http://127.0.0.1:8000/v1 --fold 1 --out runs/eval/dfew
  emoreason eval compare runs/eval/sft runs/eval/grpo

Cross-validation benchmarks (DFEW, MAFW: 5 folds; BP4D, DISFA: 3) take one model per fold: a template with
{fold}, a YAML/JSON file mapping folds to models, or one model with --fold K. Each fold is written to
OUT/fold<k>/, and OUT/summary.md gathers the folds scored so far (mean ± std once all are). One model on every
fold is refused unless --zero-shot (a model trained on none of the benchmark's data).
"""

from __future__ import annotations

import argparse
import json
import sys

from emoreason.commands.exit_codes import EPILOG, batch_exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model on a benchmark, or compare runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=EPILOG + "\n     (eval also exits 2 when --out holds another protocol's or "
                                              "model's predictions,\n     or the endpoint refuses what evaluation "
                                              "needs)\nAn item is a sample of the benchmark; it fails when no answer "
                                              "was generated for it\n(generation or media error) or it could not be "
                                              "loaded.")
    p.add_argument("args", nargs="*", help="`compare RUN …`, or key=value overrides of the benchmark file")
    p.add_argument("--benchmark", help="name in eval/benchmarks/ or a YAML file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="local model directory; on multi-fold benchmarks a template with {fold} "
                                        "or a YAML/JSON file mapping folds to model directories")
    source.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 ({fold} "
                                           "allowed, one server per fold)")
    p.add_argument("--served-model", help="model name on the endpoint (default: the first it lists; {fold} "
                                          "allowed, e.g. one LoRA per fold)")
    p.add_argument("--media-dir", help="with --endpoint: video files under this folder (the server's "
                                       "--media-dir) go as file:// URLs and the server samples their frames; "
                                       "everything else is decoded here and sent inline, losslessly")
    p.add_argument("--out", help="run directory (predictions are cached there; re-runs resume)")
    p.add_argument("--root", help="dataset root (overrides the benchmark's)")
    p.add_argument("--media-root", help="where the clips are, when not under the dataset root (or the folder of "
                                        "one media layout, e.g. /data/DFEW/Clip/jpg_256)")
    p.add_argument("--fold", type=int, help="one fold of a multi-fold protocol (default: all folds)")
    p.add_argument("--zero-shot", action="store_true",
                   help="score one model on every fold: only for a model trained on none of this benchmark's data")
    p.add_argument("--overwrite", action="store_true",
                   help="if --out holds predictions of another model/protocol/prompt, move them aside and start over")
    p.add_argument("--allow-protocol-mismatch", action="store_true",
                   help="with `compare`: compare runs scored under different protocols anyway (marked as such)")
    p.add_argument("--modalities", choices=("audio+video", "video", "audio"),
                   help="what an audio-visual model (Qwen2.5-Omni) is shown — the ablation switch: video (no audio), "
                        "audio (the frames blanked), audio+video (default for a model that takes audio; video "
                        "otherwise). Recorded in the protocol; runs under different modalities never share a cache")
    p.add_argument("--limit", type=int, help="evaluate the first N samples only (recorded in the protocol)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=16, help="endpoint requests in flight")
    p.add_argument("--judge-endpoint", help="OpenAI-compatible URL of an LLM judge for EMER-style clue/label "
                                           "overlap against reference rationales (optional)")
    p.add_argument("--judge-model", help="model name on the judge endpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.evaluation.backends import EndpointSetupError
    from emoreason.evaluation.benchmarks import FoldProtocolError
    from emoreason.evaluation.report import ProtocolMismatchError
    from emoreason.evaluation.runner import CacheMismatchError

    try:
        return _run(args)
    except (FoldProtocolError, CacheMismatchError, ProtocolMismatchError, EndpointSetupError) as exc:
        print(f"emoreason eval: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.args and args.args[0] == "compare":
        from emoreason.evaluation.report import compare

        if len(args.args) < 2:
            raise ValueError("usage: emoreason eval compare RUN_DIR [RUN_DIR …]")
        print(compare(args.args[1:], allow_protocol_mismatch=args.allow_protocol_mismatch))
        return 0
    if not args.benchmark or not args.out or not (args.model or args.endpoint):
        raise ValueError("--benchmark, --out and one of --model / --endpoint are required")
    from emoreason.evaluation.backends import EndpointBackend, LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.runner import evaluate_folds, fold_models, prompt_focus, prompt_labels

    spec = load_benchmark(args.benchmark, args.args)
    labels, focus = prompt_labels(spec), prompt_focus(spec)
    if args.model:
        models = fold_models(spec, args.model, args.fold, args.zero_shot)

        def backend_for(fold):
            return LocalBackend(models[fold], spec.frames, labels, spec.style, args.batch_size, spec.max_new_tokens,
                                focus, args.modalities, spec.task)
    else:
        template = args.endpoint + "|" + (args.served_model or "")
        endpoints = fold_models(spec, template, args.fold, args.zero_shot)

        def backend_for(fold):
            url, served = endpoints[fold].split("|", 1)
            return EndpointBackend({"base_url": url, "model": served or None, "concurrency": args.concurrency},
                                   spec.frames, labels, spec.style, spec.max_new_tokens,
                                   batch_size=max(args.batch_size, args.concurrency), media_dir=args.media_dir,
                                   focus=focus, modalities=args.modalities, task=spec.task)
    judge = {"base_url": args.judge_endpoint, "model": args.judge_model} if args.judge_endpoint else None
    folds = list(models if args.model else endpoints)
    metrics = evaluate_folds(spec, backend_for, args.out, folds, args.root, args.limit, args.batch_size, judge=judge,
                             on_mismatch="restart" if args.overwrite else "refuse", media_root=args.media_root,
                             zero_shot=args.zero_shot)
    print(json.dumps(_headline(metrics), indent=2))
    print(f"report: {args.out}/summary.md")
    return _exit_code(metrics, args.out, folds)


def _exit_code(metrics: dict, out: str, folds: list) -> int:
    """Items of this run (the folds just evaluated): samples plus records that could not be loaded."""
    from pathlib import Path

    if "per_fold" in metrics:
        runs = [json.loads((Path(out) / f"fold{fold}" / "metrics.json").read_text()) for fold in folds]
    else:
        runs = [metrics]
    unloaded = sum(len(m.get("load_problems") or []) for m in runs)
    return batch_exit_code(sum(m["n"] for m in runs) + unloaded,
                           sum(m["generation_errors"] for m in runs) + unloaded)


def _headline(metrics: dict) -> dict:
    if "per_fold" in metrics:
        return {"benchmark": metrics["benchmark"], "folds_present": metrics["folds_present"],
                "complete": metrics["complete"], "mean_std": metrics["mean_std"]}
    headline = {k: metrics.get(k) for k in ("benchmark", "fold", "n", "generation_errors")}
    if metrics.get("recognition"):
        headline.update(war=metrics["recognition"]["war"], uar=metrics["recognition"]["uar"])
    if metrics.get("au"):
        headline.update(au_mean_f1=metrics["au"]["mean_f1"])
    if metrics.get("rationale"):
        headline.update({k: metrics["rationale"][k] for k in ("format_valid", "au_f1", "hallucination_rate")})
    return headline
