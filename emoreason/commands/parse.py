"""emoreason parse: read a model response (stdin or --file) and print what the parser finds, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("parse", help="parse a model response into emotion, AUs and format validity",
                              description=__doc__)
    p.add_argument("--file", help="read the response from this file instead of stdin")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.reasoning import parse_response

    text = Path(args.file).read_text(encoding="utf-8", errors="replace") if args.file else sys.stdin.read()
    print(json.dumps(parse_response(text).to_dict(), ensure_ascii=False))
    return 0
