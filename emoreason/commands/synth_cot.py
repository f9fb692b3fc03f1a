"""emoreason synth-cot: build AU-grounded chain-of-thought instruction data from a YAML config."""

from __future__ import annotations

import argparse

from emoreason.commands.exit_codes import EPILOG, batch_exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("synth-cot", help="synthesise verified AU-grounded CoT instruction data",
                              description=__doc__ + " Overrides: key=value (e.g. max_records=100 style=json).",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=EPILOG + "\nAn item is a record of the dataset; it fails when no rationale for "
                                              "it passed verification,\nor when it could not be loaded.")
    p.add_argument("--config", help="YAML config (data_pipelines/configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config fields")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from emoreason.config import load_config
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline

    cfg = load_config(CoTConfig, args.config, args.overrides)
    out = CoTPipeline(cfg).run()
    print(json.dumps(json.loads((out / "summary.json").read_text()), indent=2))
    print(f"dataset: {out / 'hf'} (HF save_to_disk) and {out / 'data.jsonl'}")
    summary = json.loads((out / "summary.json").read_text())
    data = out / "data.jsonl"
    lines = data.read_text().splitlines() if data.is_file() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    # a record succeeded when its rationale passed (when not every clip is given one, any of its rows): rows of
    # the other tasks carry ids like `clip:au_perception`, so count clips, not rows
    wanted = "cot" if cfg.tasks.get("cot", 0) >= 1 else None
    accepted = {row.get("clip_id", row["id"]) for row in rows if wanted is None or row.get("task", "cot") == wanted}
    unloaded = len(summary.get("load_problems") or [])
    return batch_exit_code(summary["records"] + unloaded, summary["records"] - len(accepted) + unloaded)
