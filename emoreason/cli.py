"""The ``emoreason`` console script: one entry point, one subcommand per stage.

Command modules live in ``emoreason.commands`` and import heavy libraries (torch, transformers) only when
they run, so ``emoreason --help`` stays instant. Each module exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from emoreason import __version__

# (module, in the order `--help` lists them)
COMMAND_MODULES = (
    "emoreason.commands.tiny_model",
    "emoreason.commands.generate",
    "emoreason.commands.parse",
    "emoreason.commands.synth",
    "emoreason.commands.data",
    "emoreason.commands.au_detect",
    "emoreason.commands.synth_cot",
    "emoreason.commands.vision_warmup",
    "emoreason.commands.sft",
    "emoreason.commands.grpo",
    "emoreason.commands.eval",
    "emoreason.commands.serve",
    "emoreason.commands.predict",
    "emoreason.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoreason",
        description="Train, evaluate and serve video-LLMs that recognise facial emotion and explain it "
                    "through facial Action Units.")
    parser.add_argument("--version", action="version", version=f"emoreason {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity (default INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("emoreason").error("interrupted")
        return 130
    except (FileNotFoundError, ValueError, KeyError) as exc:
        logging.getLogger("emoreason").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
