"""``workbench eval``: evaluate a bundle on a validation set."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(subparsers, "eval", "evaluate a bundle on a validation set")
