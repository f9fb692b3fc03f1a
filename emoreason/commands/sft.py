"""emoreason sft: supervised fine-tuning of a video-LLM from a recipe (YAML + key=value overrides)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("sft", help="supervised fine-tuning (TRL SFTTrainer + video collator)",
                              description=__doc__)
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/tiny/sft/synthfacs.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides of any recipe key (TRL SFTConfig / ModelConfig or emoreason's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.sft.train import run_sft
    from emoreason.training import load_recipe

    print(run_sft(load_recipe("sft", args.config, args.overrides)))
    return 0
