"""``workbench open FILE...``: open the window with these files loaded."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "open",
        help="open the window with audio files or folders loaded",
        description="Open the window with audio files (or every audio file in folders) loaded.",
    )
    parser.add_argument("paths", nargs="+", metavar="FILE", help="audio files or folders")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from workbench.app import run_app

    return run_app(list(args.paths))
