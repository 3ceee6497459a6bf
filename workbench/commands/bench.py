"""``workbench bench``: benchmark models (real-time factor, memory) against a reference."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(
        subparsers, "bench", "benchmark models (real-time factor, memory) against a reference"
    )
