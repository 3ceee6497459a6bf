"""``workbench train``: train a registered model in a resumable run folder."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(subparsers, "train", "train a registered model in a resumable run folder")
