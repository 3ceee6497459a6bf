"""``workbench data``: build training corpora and freeze validation sets."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(subparsers, "data", "build training corpora and freeze validation sets")
