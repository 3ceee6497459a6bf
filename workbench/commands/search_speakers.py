"""``workbench search speechnas`` and ``workbench search autospeech``: speaker-model searches.

Both write into ``--run DIR`` (``config.json``, ``metrics.jsonl``, ``status.json``,
``trials.jsonl``, ``result.json``, checkpoints) and print JSON progress lines on stdout.
Running the same command on the same folder resumes it. Settings not covered by an option
are changed with ``--set KEY=VALUE`` (search settings), ``--set model.KEY=VALUE`` (the
searched network's config, dotted for nested fields: ``model.features.num_mels=40``) and
``--set data.KEY=VALUE`` (dataset options); AutoSpeech adds ``--set retrain.KEY=VALUE`` for
the derived network.

SpeechNAS workers: ``workbench search speechnas --run DIR --worker [--storage URL]`` adds
trials to the study of the job in ``DIR`` (its supernet must be trained); start as many as
you like, on other machines with a shared folder (or ``--supernet FILE``) and a database
``--storage``.

Heavy imports (torch, optuna) happen inside ``run`` so ``workbench --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the search ``name`` (``speechnas`` or ``autospeech``)."""
    if name == "speechnas":
        _add_speechnas(subparsers)
    elif name == "autospeech":
        _add_autospeech(subparsers)
    else:
        raise ValueError(f"search_speakers provides speechnas and autospeech, not '{name}'.")


def _common(parser: argparse.ArgumentParser, preset: str, steps_help: str) -> None:
    parser.add_argument(
        "--run",
        dest="run_dir",
        metavar="DIR",
        required=True,
        type=Path,
        help="run folder (resumed if it exists)",
    )
    parser.add_argument(
        "--data", default=None, help="'synthetic' (generated speakers) or a speaker corpus"
    )
    parser.add_argument("--preset", default=None, help=f"searched network preset ({preset})")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting: KEY (search), model.KEY, data.KEY",
    )
    parser.add_argument("--max-steps", type=int, default=None, help=steps_help)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-clock budget of this invocation, shared by the stages",
    )
    parser.add_argument(
        "--retrain-steps", type=int, default=None, help="steps of the final retraining"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")


def _add_speechnas(subparsers: argparse._SubParsersAction) -> None:
    text = "SpeechNAS: supernet, Bayesian optimisation (Optuna) of D-TDNN-SS, retrain"
    parser = subparsers.add_parser("speechnas", help=text, description=text)
    _common(parser, "supernet_small or supernet", "supernet training steps")
    parser.add_argument(
        "--max-trials", type=int, default=None, help="evaluated trials in the study (all workers)"
    )
    parser.add_argument("--sampler", choices=("tpe", "gp", "nsga2", "random"), default=None)
    parser.add_argument(
        "--objective",
        choices=("single", "multi"),
        default=None,
        help="single: EER under the budget; multi: EER and the cost (Pareto front)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-parameters", type=float, default=None, help="parameter budget")
    budget.add_argument(
        "--max-macs", type=float, default=None, help="budget in MACs per second of audio"
    )
    parser.add_argument(
        "--retrain-top", type=int, default=None, help="architectures retrained at the end"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: journal:PATH or a database URL (default: SQLite in the run folder)",
    )
    parser.add_argument("--study-name", default=None)
    parser.add_argument(
        "--worker",
        action="store_true",
        help="only add trials to the study of the job in --run (settings come from there)",
    )
    parser.add_argument("--supernet", type=Path, default=None, help="a worker's supernet file")
    parser.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=30,
        help="trial heartbeat; a trial silent for two beats (a killed worker) is retried",
    )
    parser.set_defaults(run=run_speechnas)


def _add_autospeech(subparsers: argparse._SubParsersAction) -> None:
    text = "AutoSpeech: DARTS bi-level cell search, derive the genotype, retrain"
    parser = subparsers.add_parser("autospeech", help=text, description=text)
    _common(parser, "search_small or search", "bi-level search steps")
    parser.add_argument(
        "--retrain-preset", default=None, help="size of the derived network (small or paper)"
    )
    parser.add_argument("--retrain-head", choices=("softmax", "aam"), default=None)
    parser.set_defaults(run=run_autospeech)


def _given(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Settings fields for the options the user actually gave."""
    return {
        field: getattr(args, option)
        for option, field in mapping.items()
        if getattr(args, option, None) is not None
    }


def _fail(name: str, message: str) -> int:
    print(f"workbench search {name}: error: {message}", file=sys.stderr)
    return 2


def run_speechnas(args: argparse.Namespace) -> int:
    import dataclasses

    import optuna

    from models.search.common import apply_settings
    from models.search.speechnas import SpeechNasJob, SpeechNasSettings
    from models.train.reporting import StopRequested

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = _given(
        args,
        {
            "max_steps": "supernet_steps",
            "max_trials": "trials",
            "retrain_steps": "retrain_steps",
            "retrain_top": "retrain_top",
            "max_minutes": "max_minutes",
        },
    )
    search = _given(
        args,
        {
            "data": "data",
            "preset": "preset",
            "seed": "seed",
            "sampler": "sampler",
            "objective": "objective",
            "study_name": "study_name",
        },
    )
    if args.max_parameters is not None:
        search.update(cost="parameters", budget=args.max_parameters)
    if args.max_macs is not None:
        search.update(cost="macs", budget=args.max_macs)
    stop = StopRequested().install()
    try:
        if args.worker:
            if args.settings or search:
                return _fail(
                    "speechnas",
                    "a --worker takes the search settings from the run folder; "
                    "give it only --max-trials, --max-minutes and --storage.",
                )
            settings = None
            budget = {k: v for k, v in budget.items() if k in ("trials", "max_minutes")}
        else:
            settings = apply_settings(SpeechNasSettings(), args.settings, ("model", "data"))
            settings = dataclasses.replace(settings, **search)
        job = SpeechNasJob(
            args.run_dir,
            settings,
            budget=budget,
            storage=args.storage,
            worker=args.worker,
            supernet_path=args.supernet,
            device=args.device,
            heartbeat_seconds=args.heartbeat_seconds,
            should_stop=lambda: stop.requested,
        )
        job.run()
    except ValueError as exc:
        return _fail("speechnas", str(exc))
    finally:
        stop.restore()
    return 0


def run_autospeech(args: argparse.Namespace) -> int:
    import dataclasses

    from models.search.autospeech import AutoSpeechJob, AutoSpeechSettings
    from models.search.common import apply_settings
    from models.train.reporting import StopRequested

    budget = _given(
        args,
        {
            "max_steps": "search_steps",
            "retrain_steps": "retrain_steps",
            "max_minutes": "max_minutes",
        },
    )
    search = _given(
        args,
        {
            "data": "data",
            "preset": "preset",
            "seed": "seed",
            "retrain_preset": "retrain_preset",
            "retrain_head": "retrain_head",
        },
    )
    stop = StopRequested().install()
    try:
        settings = apply_settings(AutoSpeechSettings(), args.settings, ("model", "retrain", "data"))
        settings = dataclasses.replace(settings, **search)
        AutoSpeechJob(
            args.run_dir,
            settings,
            budget=budget,
            device=args.device,
            should_stop=lambda: stop.requested,
        ).run()
    except ValueError as exc:
        return _fail("autospeech", str(exc))
    finally:
        stop.restore()
    return 0
