"""emoreason vision-warmup: train the vision tower + merger alone on a dataset's emotion labels and AUs (linear
heads on the pooled video tokens), the model SFT then starts from (YAML + key=value overrides)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("vision-warmup", help="warm the vision tower up on labels and AUs before SFT",
                              description=__doc__)
    p.add_argument("--config", required=True, help="YAML config, e.g. recipes/tiny/warmup/synthfacs.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config keys (VisionWarmupConfig)")
    p.set_defaults(func=run)


def parse_config(args: argparse.Namespace):
    from emoreason.config import load_config
    from emoreason.training.vision_warmup import VisionWarmupConfig

    return load_config(VisionWarmupConfig, args.config, args.overrides)


def run(args: argparse.Namespace) -> int:
    from emoreason.training.vision_warmup import run_vision_warmup

    print(run_vision_warmup(parse_config(args)))
    return 0
