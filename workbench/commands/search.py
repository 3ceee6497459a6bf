"""``workbench search``: run an architecture search (NAS-TasNet, MiTAS, SpeechNAS, AutoSpeech)."""

from __future__ import annotations

import argparse

from workbench.commands import add_placeholder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_placeholder(
        subparsers,
        "search",
        "run an architecture search (NAS-TasNet, MiTAS, SpeechNAS, AutoSpeech)",
    )
