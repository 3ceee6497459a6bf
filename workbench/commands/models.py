"""``workbench models``: list the model registry."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(subparsers, "models", "list the model registry")
