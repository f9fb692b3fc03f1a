"""emoreason data inspect: load a benchmark as distributed and report counts, coverage and problems."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect datasets on disk (counts, labels, AU coverage, problems)",
                              description=__doc__)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    i = sub.add_parser("inspect", help="summarise a dataset root in a given format")
    i.add_argument("root")
    i.add_argument("--format", required=True, help="dfew, ferv39k, mafw, rafdb, affectnet, ckplus, disfa, bp4d, "
                                                   "affwild2, emer, fea20k, openface, synthfacs")
    i.add_argument("--split")
    i.add_argument("--fold", type=int)
    i.add_argument("--media-root", help="where the clips are, if not under the root (or one layout's folder)")
    i.add_argument("--layout", help="try only this media layout (names in emoreason/datasets/adapters.py)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from emoreason.datasets import load_records
    from emoreason.datasets.inspect import render, summarize

    options = {k: v for k, v in (("media_root", args.media_root), ("layout", args.layout)) if v}
    records = load_records(args.format, args.root, split=args.split, fold=args.fold, **options)
    summary = summarize(records)
    print(json.dumps(summary, indent=2) if args.json else render(summary, args.format))
    return 0
