"""``workbench search SEARCH ...``: run an architecture search as a resumable job.

Each search lives in its own module with ``add_parser(subparsers, name)`` registering the
subcommand ``name`` (with ``set_defaults(run=...)``), so the searches never edit one file:

==============  ===========================================
``nas-tasnet``  ``workbench.commands.search_separation``
``mitas``       ``workbench.commands.search_separation``
``speechnas``   ``workbench.commands.search_speakers``
``autospeech``  ``workbench.commands.search_speakers``
==============  ===========================================

A search whose module has not landed yet is still listed, and says so when run.
"""

from __future__ import annotations

import argparse
import importlib

from workbench.commands import not_yet_available

DESCRIPTION = "run an architecture search (NAS-TasNet, MiTAS, SpeechNAS, AutoSpeech)"

#: Subcommand -> (module providing it, one-line help).
SEARCHES: dict[str, tuple[str, str]] = {
    "nas-tasnet": (
        "workbench.commands.search_separation",
        "NAS-TasNet: differentiable or REINFORCE search over Conv-TasNet blocks",
    ),
    "mitas": (
        "workbench.commands.search_separation",
        "MiTAS: compare weight-sharing variants of TDCN++ on one budget",
    ),
    "speechnas": (
        "workbench.commands.search_speakers",
        "SpeechNAS: supernet, Bayesian optimisation (Optuna) of D-TDNN-SS, retrain",
    ),
    "autospeech": (
        "workbench.commands.search_speakers",
        "AutoSpeech: DARTS bi-level cell search, derive, retrain",
    ),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help=DESCRIPTION, description=DESCRIPTION)
    searches = parser.add_subparsers(dest="search", metavar="SEARCH")
    for name, (module_name, help_text) in SEARCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            _add_not_yet_available(searches, name, help_text)
            continue
        module.add_parser(searches, name)

    def no_search(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=no_search)


def _add_not_yet_available(
    searches: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    text = f"{help_text} (not yet available)"
    # No option prefix: every argument (``--run DIR`` included) is swallowed as a word, so
    # the panel's full command line gets the plain "not yet available" answer, not a usage
    # error about an option this placeholder never declared.
    parser = searches.add_parser(
        name, help=text, description=text, prefix_chars="\x00", add_help=False
    )
    parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(run=lambda args: not_yet_available(f"'workbench search {name}'"))
    return parser
