"""``workbench train``: train a registered model in a resumable run folder.

    workbench train --model conv_tasnet --preset small --data synthetic --run runs/ct1 \\
        --set lr=5e-4 --set model.num_repeats=1 --max-steps 2000 --max-minutes 60

Running the same command again on the same ``--run`` folder resumes it (``--run`` alone is
enough). Under ``torchrun --standalone --nproc-per-node N -m workbench train ...`` every
process runs this command and they train together (DDP); there the folder must be given as
``--run-dir``, because torchrun's own parser takes ``--run`` for its ``--run-path``.
Progress goes to stdout as JSON lines; the run folder gets ``config.json``, ``metrics.jsonl``, ``status.json``,
``checkpoint.pt`` and ``best.pt``. Exit status: 0 when finished or stopped (SIGTERM, time
budget), 1 when training failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

EXAMPLES = """\
settings (--set KEY=VALUE, repeatable):
  lr, weight_decay, batch_size, segment_seconds, warmup_steps, schedule (cosine|constant),
  grad_clip, valid_interval, valid_items, log_interval, checkpoint_minutes, patience,
  aux_loss_weight, seed, num_workers, ...
  model.FIELD=VALUE   a field of the model config (nested: model.cross_prompt.num_heads=1)
  data.OPTION=VALUE   a dataset option
  task.OPTION=VALUE   a loss option (tuss: snr_max; speakers: margin, scale, mhe_weight)

examples:
  workbench train --model mtass --data synthetic --run runs/mtass --max-steps 100
  workbench train --run runs/mtass --max-steps 200        (resume, with a larger budget)
  torchrun --standalone --nproc-per-node 2 -m workbench train --run-dir runs/ct ...
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a registered model in a resumable run folder",
        description="Train a registered model in a resumable run folder.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="registry name (see 'workbench models')")
    parser.add_argument("--preset", default="small", help="model preset (default: small)")
    parser.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic', a corpus built by 'workbench data build', or a folder in a "
        "standard public layout (default: synthetic)",
    )
    parser.add_argument(
        "--run",
        "--run-dir",
        dest="run_dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="run folder (resumed if present); spell it --run-dir under torchrun, which "
        "would read --run as an abbreviation of its own --run-path",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting (see below)",
    )
    parser.add_argument("--max-steps", type=int, help="total optimiser steps of the run")
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget of this invocation")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so 'workbench --help' does not load torch.
    from models.train.config import SettingsError, resolve_config

    try:
        config = resolve_config(
            args.run_dir,
            model=args.model,
            preset=args.preset,
            data=args.data,
            settings=args.settings,
            max_steps=args.max_steps,
            max_minutes=args.max_minutes,
        )
    except SettingsError as exc:
        return _usage_error(str(exc))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        return _usage_error("--device cuda was given, but CUDA is not available here.")

    from models.train.loop import train

    try:
        state = train(config, args.run_dir, device=None if args.device == "auto" else args.device)
    except SettingsError as exc:  # raised before anything is trained or written
        return _usage_error(str(exc))
    except Exception as exc:
        traceback.print_exc()
        print(f"workbench train: training failed: {exc}", file=sys.stderr)
        return 1
    return 0 if state in ("finished", "stopped") else 1


def _usage_error(message: str) -> int:
    print(f"workbench train: error: {message}", file=sys.stderr)
    return 2
