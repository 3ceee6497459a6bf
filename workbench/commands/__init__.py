"""Subcommands of ``workbench``: one module each, with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys


def not_yet_available(feature: str) -> int:
    """Say plainly that a command exists but its feature has not landed yet."""
    print(f"workbench: {feature} is not yet available in this version.", file=sys.stderr)
    return 3


def add_placeholder(
    subparsers: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    """Register a subcommand whose feature is still to come (accepts and ignores arguments)."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(
        run=lambda args: not_yet_available(f"'workbench {name}'"), accepts_unknown=True
    )
    return parser
