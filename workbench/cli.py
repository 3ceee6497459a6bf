"""The ``workbench`` command: bare opens the window; subcommands are the command line.

Each subcommand lives in its own module under ``workbench.commands`` with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``, so adding a command never touches the
others. Heavy imports (torch, Qt) happen inside ``run`` so ``workbench --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from workbench import __version__

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "open",
    "separate",
    "speakers",
    "models",
    "data",
    "eval",
    "train",
    "search",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Audio Workbench: separation, speaker verification, live demos, training "
        "and architecture search. Run without a command to open the window.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"workbench.commands.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "accepts_unknown", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        from workbench.app import run_app

        return run_app([])
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
