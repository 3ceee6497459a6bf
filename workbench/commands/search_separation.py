"""``workbench search nas-tasnet`` and ``workbench search mitas``: the separation searches.

:func:`add_parsers` registers both subcommands on the ``search`` command's subparsers; each
sets ``run``. The work lives in :mod:`models.search.nas_tasnet` and
:mod:`models.search.mitas`; this module parses, sets threads and prints. Both commands write
into ``--run DIR`` and print JSON progress lines; running the same command again on the same
folder resumes it. ``python -m workbench.commands.search_separation nas-tasnet ...`` runs one
without the rest of the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAS_TASNET_HELP = "NAS-TasNet: search Conv-TasNet blocks (gradient or REINFORCE), derive, retrain"
MITAS_HELP = "MiTAS: compare Conv-TasNet parameter-sharing variants at an equal budget"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", dest="run_dir", required=True, type=Path, metavar="DIR", help="run folder"
    )
    parser.add_argument(
        "--data",
        default="synthetic",
        metavar="SPEC",
        help="'synthetic' (generated two-talker mixtures) or a corpus (default synthetic)",
    )
    parser.add_argument(
        "--preset", default="small", help="model preset the search starts from (default small)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights, data and sampling seed")
    parser.add_argument(
        "--max-steps",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="stop this invocation when the job has done N steps in all (0: no limit); "
        "run the same command again to continue",
    )
    parser.add_argument(
        "--max-minutes",
        type=_non_negative_float,
        default=0.0,
        metavar="M",
        help="wall-clock budget of this invocation (0: unlimited); checkpoints and stops",
    )
    parser.add_argument(
        "--device", default=None, choices=("cpu", "cuda"), help="default: CUDA when available"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="CPU threads for torch (default: all)"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any search setting (e.g. batch_size=8), model.FIELD=V for the model config, "
        "data.OPTION=V for the dataset; repeatable",
    )


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``nas-tasnet`` and ``mitas`` on the ``search`` command's subparsers."""
    for name in SEARCHES:
        add_parser(subparsers, name)


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register one search (``"nas-tasnet"`` or ``"mitas"``) under ``name``.

    This is the hook ``workbench.commands.search`` calls for each search it lists.
    """
    if name not in SEARCHES:
        raise ValueError(f"Unknown separation search '{name}'; valid: {', '.join(SEARCHES)}.")
    return SEARCHES[name](subparsers, name)


def _add_nas_tasnet(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    nas = subparsers.add_parser(name, help=NAS_TASNET_HELP, description=NAS_TASNET_HELP)
    _add_job_options(nas)
    nas.add_argument(
        "--strategy",
        choices=("gradient", "reinforce"),
        default="gradient",
        help="architecture update: binarised two-path gates or REINFORCE (default gradient)",
    )
    nas.add_argument(
        "--aux-loss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-repeat auxiliary loss (default on)",
    )
    nas.add_argument("--warmup-steps", type=_non_negative_int, default=500, metavar="N")
    nas.add_argument("--search-steps", type=_non_negative_int, default=2000, metavar="N")
    nas.add_argument(
        "--retrain-steps",
        type=_non_negative_int,
        default=2000,
        metavar="N",
        help="steps training the derived network from scratch (0: derive only)",
    )
    nas.add_argument(
        "--epoch-steps",
        type=_positive_int,
        default=100,
        metavar="N",
        help="search steps per logged epoch (entropy per repeat)",
    )
    nas.add_argument(
        "--flops-weight",
        type=_non_negative_float,
        default=0.1,
        metavar="W",
        help="weight of the expected-MACs term of the architecture loss (default 0.1)",
    )
    nas.add_argument(
        "--reinforce-samples",
        type=_positive_int,
        default=4,
        metavar="M",
        help="architectures sampled per REINFORCE step (default 4)",
    )
    nas.set_defaults(run=run_nas_tasnet)
    return nas


def _add_mitas(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    mitas = subparsers.add_parser(name, help=MITAS_HELP, description=MITAS_HELP)
    _add_job_options(mitas)
    mitas.add_argument(
        "--variants",
        default="none,ss,sn,ns",
        metavar="A,B",
        help="sharing codes to compare: none, ss, sn, ns, nd, dn, na (default none,ss,sn,ns)",
    )
    mitas.add_argument(
        "--steps-per-variant", type=_positive_int, default=2000, metavar="N", help="default 2000"
    )
    mitas.add_argument(
        "--minutes-per-variant",
        type=_non_negative_float,
        default=0.0,
        metavar="M",
        help="also stop each variant after M training minutes (0: steps only)",
    )
    mitas.set_defaults(run=run_mitas)
    return mitas


def _settings(base: Any, args: argparse.Namespace) -> Any:
    from models.search.common import apply_settings

    return apply_settings(base, args.settings, prefixes=("model", "data"))


def _prepare(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)


def run_nas_tasnet(args: argparse.Namespace) -> int:
    """Run (or resume) a NAS-TasNet search; 0 when finished, 2 on bad settings, 4 when stopped."""
    _prepare(args)
    from models.search.nas_tasnet import NasTasNetSearchSettings, run_nas_tasnet_search

    try:
        settings = NasTasNetSearchSettings(
            strategy=args.strategy,
            aux_loss=args.aux_loss,
            preset=args.preset,
            data=args.data,
            warmup_steps=args.warmup_steps,
            search_steps=args.search_steps,
            retrain_steps=args.retrain_steps,
            epoch_steps=args.epoch_steps,
            flops_weight=args.flops_weight,
            reinforce_samples=args.reinforce_samples,
            seed=args.seed,
        )
        settings = _settings(settings, args)
        settings.supernet_config()  # an unknown preset or field fails before any file
    except (ValueError, KeyError) as exc:
        print(f"workbench search nas-tasnet: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = run_nas_tasnet_search(
            settings, args.run_dir, args.max_steps, args.max_minutes, device=args.device
        )
    except ValueError as exc:
        print(f"workbench search nas-tasnet: {exc}", file=sys.stderr)
        return 2
    return 0 if outcome == "finished" else 4


def run_mitas(args: argparse.Namespace) -> int:
    """Run (or resume) a MiTAS comparison; 0 when finished, 2 on bad settings, 4 when stopped."""
    _prepare(args)
    from models.search.mitas import MitasSettings
    from models.search.mitas import run_mitas as run_comparison

    try:
        variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        settings = MitasSettings(
            variants=variants,
            preset=args.preset,
            data=args.data,
            steps=args.steps_per_variant,
            minutes=args.minutes_per_variant,
            seed=args.seed,
        )
        settings = _settings(settings, args)
        settings.base_config()
    except (ValueError, KeyError) as exc:
        print(f"workbench search mitas: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = run_comparison(
            settings, args.run_dir, args.max_steps, args.max_minutes, device=args.device
        )
    except ValueError as exc:
        print(f"workbench search mitas: {exc}", file=sys.stderr)
        return 2
    return 0 if outcome == "finished" else 4


SEARCHES: dict[str, Any] = {"nas-tasnet": _add_nas_tasnet, "mitas": _add_mitas}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nas-tasnet ...`` or ``mitas ...`` on its own (without ``workbench search``)."""
    parser = argparse.ArgumentParser(
        prog="python -m workbench.commands.search_separation",
        description="The separation searches of 'workbench search'.",
    )
    add_parsers(parser.add_subparsers(dest="search", metavar="SEARCH", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
