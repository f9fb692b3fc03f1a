"""emoreason tiny-model: build the embedded randomly initialised video-LLM."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("tiny-model", help="build a tiny, randomly initialised video-LLM of a real family",
                              description=__doc__)
    # families are checked in run(): importing emoreason.models.tiny here would load torch for every `--help`
    p.add_argument("--family", default="qwen2_5_vl",
                   help="qwen2_5_vl, qwen3_vl, or qwen2_5_omni (the Qwen2.5-Omni thinker: audio + vision encoders)")
    p.add_argument("--out", required=True, help="directory to write the model into")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (same seed → identical files)")
    p.add_argument("sizes", nargs="*", metavar="key=value",
                   help="size options (emoreason.models.TinySpec), e.g. vision_patch=7 vision_hidden=192 "
                        "vision_depth=4 text_hidden=128 text_layers=2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.models import build_tiny_model
    from emoreason.models.tiny import FAMILIES, spec_from_overrides

    if args.family not in FAMILIES:
        raise ValueError(f"--family {args.family!r} is not one of {', '.join(FAMILIES)}")

    out = build_tiny_model(args.family, args.out, seed=args.seed, spec=spec_from_overrides(args.sizes))
    print(out)
    return 0
