"""emoreason grpo: GRPO with emotion and AU rewards on a video-LLM, from a recipe (YAML + key=value)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("grpo", help="GRPO with emotion and AU rewards (video rollouts)", description=__doc__)
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/tiny/grpo/synthfacs.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides of any recipe key (TRL GRPOConfig / ModelConfig or emoreason's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.grpo.train import run_grpo
    from emoreason.training import load_recipe

    print(run_grpo(load_recipe("grpo", args.config, args.overrides)))
    return 0
