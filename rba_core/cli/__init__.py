"""The ``rba`` command: one entry point, one module per subcommand (thin layers over rba_core)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import RbaError
from ..files import disk_full_reason, write_error

# subcommand -> module (each defines ``add_parser(subparsers)`` and ``run(args) -> int``)
COMMANDS = {
    "infer": "rba_core.cli.infer",
    "export": "rba_core.cli.export",
    "convert": "rba_core.cli.convert",
    "eval": "rba_core.cli.eval",
    "train": "rba_core.cli.train",
    "finetune": "rba_core.cli.train",
    "replay": "rba_core.cli.replay",
    "calibrate": "rba_core.cli.replay",
    "bag-from-images": "rba_core.cli.replay",
    "demo": "rba_core.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rba", description="RbA anomaly segmentation: inference, evaluation, training, "
                                "export, rosbag replay.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in dict.fromkeys(COMMANDS.values()):  # a module may add several subcommands
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RbaError as exc:
        print(f"rba {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rba {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk where no writer named its file: still one line
        if disk_full_reason(exc) is None:
            raise
        print(f"rba {args.command}: error: {write_error(exc, None)}", file=sys.stderr)
        return 2
