"""``workbench separate``: separate sources (TUSS prompts, MTASS, speech separators) into stem files."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(
        subparsers,
        "separate",
        "separate sources (TUSS prompts, MTASS, speech separators) into stem files",
    )
