"""emoreason eval: score a model on a benchmark (recognition + rationale quality) and write a report.

  emoreason eval --benchmark synthfacs --model runs/demo/sft/final --out runs/eval/sft
  emoreason eval --benchmark dfew --endpoint http://127.0.0.1:8000/v1 --fold 1 --out runs/eval/dfew1
  emoreason eval compare runs/eval/sft runs/eval/grpo
"""

from __future__ import annotations

import argparse
import json

from emoreason.commands.exit_codes import EPILOG, batch_exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model on a benchmark, or compare runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=EPILOG + "\nAn item is a sample of the benchmark; it fails when no answer was "
                                              "generated for it\n(generation or media error) or it could not be "
                                              "loaded.")
    p.add_argument("args", nargs="*", help="`compare RUN …`, or key=value overrides of the benchmark file")
    p.add_argument("--benchmark", help="name in eval/benchmarks/ or a YAML file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="local model directory (transformers)")
    source.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--served-model", help="model name on the endpoint (default: the first it lists)")
    p.add_argument("--out", help="run directory (predictions are cached there; re-runs resume)")
    p.add_argument("--root", help="dataset root (overrides the benchmark's)")
    p.add_argument("--fold", type=int, help="one fold of a multi-fold protocol (default: all folds)")
    p.add_argument("--limit", type=int, help="evaluate the first N samples only")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=16, help="endpoint requests in flight")
    p.add_argument("--judge-endpoint", help="OpenAI-compatible URL of an LLM judge for EMER-style clue/label "
                                           "overlap against reference rationales (optional)")
    p.add_argument("--judge-model", help="model name on the judge endpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.args and args.args[0] == "compare":
        from emoreason.evaluation.report import compare

        if len(args.args) < 2:
            raise ValueError("usage: emoreason eval compare RUN_DIR [RUN_DIR …]")
        print(compare(args.args[1:]))
        return 0
    if not args.benchmark or not args.out or not (args.model or args.endpoint):
        raise ValueError("--benchmark, --out and one of --model / --endpoint are required")
    from emoreason.evaluation.backends import EndpointBackend, LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.runner import evaluate, evaluate_folds, prompt_labels

    spec = load_benchmark(args.benchmark, args.args)
    labels = prompt_labels(spec)
    if args.model:
        backend = LocalBackend(args.model, spec.frames, labels, spec.style, args.batch_size, spec.max_new_tokens)
    else:
        backend = EndpointBackend({"base_url": args.endpoint, "model": args.served_model,
                                   "concurrency": args.concurrency}, spec.frames, labels, spec.style,
                                  spec.max_new_tokens, batch_size=max(args.batch_size, args.concurrency))
    judge = {"base_url": args.judge_endpoint, "model": args.judge_model} if args.judge_endpoint else None
    if args.fold is not None or not spec.folds:
        metrics = evaluate(spec, backend, args.out, args.root, args.fold, args.limit, args.batch_size, judge=judge)
    else:
        metrics = evaluate_folds(spec, backend, args.out, args.root, args.limit, args.batch_size, judge=judge)
    headline = {k: metrics.get(k) for k in ("benchmark", "n", "generation_errors")}
    if "recognition" in metrics:
        headline.update(war=metrics["recognition"]["war"], uar=metrics["recognition"]["uar"])
    for key in ("war", "uar"):
        if isinstance(metrics.get(key), dict):
            headline[key] = metrics[key]
    if "rationale" in metrics:
        headline.update({k: metrics["rationale"][k] for k in ("format_valid", "au_f1", "hallucination_rate")})
    print(json.dumps(headline, indent=2))
    print(f"report: {args.out}/summary.md")
    per_fold = list(metrics["folds"].values()) if "folds" in metrics else [metrics]
    unloaded = sum(len(m.get("load_problems") or []) for m in per_fold)
    return batch_exit_code(sum(m["n"] for m in per_fold) + unloaded,
                           sum(m["generation_errors"] for m in per_fold) + unloaded)
