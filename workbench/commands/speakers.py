"""``workbench speakers``: enroll, verify and identify speakers."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(subparsers, "speakers", "enroll, verify and identify speakers")
