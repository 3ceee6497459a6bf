"""``workbench models``: list the model registry, and ``workbench models export``: ship a run.

``export`` turns a training run's ``best.pt`` (or any checkpoint) into a bundle folder
(``resources/bundles/<name>`` to ship it) with a model card whose facts are measured from the
model and the run folder, followed by a hand-written body (data, evaluation, rebuild command).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = "list the model registry (names, tasks, presets, sample rates, parameter counts)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help=DESCRIPTION, description=DESCRIPTION)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write a run's best checkpoint as a bundle with a model card",
        description="Write a training run's best checkpoint (or a checkpoint file) as an "
        "inference bundle: weights (state dict only), bundle.json and MODEL_CARD.md.",
    )
    export.add_argument("source", type=Path, help="run folder (its best.pt) or checkpoint file")
    export.add_argument("--name", required=True, help="bundle name (the folder name)")
    export.add_argument(
        "--out", type=Path, default=None, help="parent folder (default: resources/bundles)"
    )
    export.add_argument("--title", default=None, help="card title (default: the name)")
    export.add_argument("--description", default="", help="one line for pickers")
    export.add_argument(
        "--card-body", type=Path, default=None, help="Markdown appended to the measured facts"
    )
    export.add_argument("--preset", default=None, help="preset the run started from")
    export.add_argument(
        "--threshold", type=float, default=None, help="speaker accept threshold (default: run's)"
    )
    export.add_argument("--chunk-seconds", type=float, default=None)
    export.add_argument("--overlap-seconds", type=float, default=None)
    export.add_argument(
        "--overwrite", action="store_true", help="replace a bundle folder of that name"
    )
    export.set_defaults(run=run_export)


def count_parameters(name: str, preset: str) -> int:
    """Parameters of a registered model's preset, built on the meta device (no memory, instant).

    Args:
        name: Registry name.
        preset: Preset name.

    Returns:
        The number of parameters.
    """
    import torch

    from models import registry

    config = registry.get_spec(name).config(preset)
    try:
        with torch.device("meta"):
            model = registry.build_model(name, config)
    except (RuntimeError, NotImplementedError):
        # A constructor that computes with its tensors cannot run on meta; build for real.
        model = registry.build_model(name, config)
    return sum(parameter.numel() for parameter in model.parameters())


def describe_registry() -> list[dict[str, Any]]:
    """Every registered model with its presets, as plain data."""
    from models import registry

    rows = []
    for name, spec in sorted(registry.registry().items()):
        presets = {}
        for preset in sorted(spec.presets):
            config = spec.config(preset)
            presets[preset] = {
                "sample_rate": int(config.sample_rate),
                "parameters": count_parameters(name, preset),
            }
        rows.append(
            {
                "name": name,
                "task": spec.task,
                "description": spec.description,
                "presets": presets,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A readable table: one line per model and preset."""
    header = ("model", "task", "preset", "rate (Hz)", "parameters")
    lines = [header]
    for row in rows:
        for index, (preset, info) in enumerate(row["presets"].items()):
            lines.append(
                (
                    row["name"] if index == 0 else "",
                    row["task"] if index == 0 else "",
                    preset,
                    str(info["sample_rate"]),
                    f"{info['parameters']:,}",
                )
            )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = []
    for number, line in enumerate(lines):
        cells = [
            cell.rjust(width) if column >= 3 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths))
        ]
        text.append("  ".join(cells).rstrip())
        if number == 0:
            text.append("  ".join("-" * width for width in widths))
    descriptions = [f"  {row['name']}: {row['description']}" for row in rows]
    return "\n".join(text + ["", "Models:"] + descriptions)


def run(args: argparse.Namespace) -> int:
    rows = describe_registry()
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
    else:
        print(format_table(rows))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``workbench models export``: 0 on success, 2 when the source cannot be read."""
    from models import bundles, model_card
    from models.checkpoint import CheckpointError, read_checkpoint

    source: Path = args.source
    checkpoint_path = source / "best.pt" if source.is_dir() else source
    # A checkpoint inside a run folder (checkpoint.pt, best.pt) still has that run's history.
    run_dir = checkpoint_path.parent
    if not (run_dir / "metrics.jsonl").is_file():
        run_dir = None
    try:
        checkpoint = read_checkpoint(checkpoint_path)
        model = bundles.get_model(bundles.bundle_from_checkpoint(checkpoint_path))
    except (CheckpointError, bundles.BundleError, OSError) as exc:
        print(f"workbench models export: {exc}", file=sys.stderr)
        return 2
    threshold = args.threshold
    if threshold is None and isinstance(checkpoint.metrics.get("threshold"), int | float):
        threshold = float(checkpoint.metrics["threshold"])
    preset = args.preset or checkpoint.train_config.get("preset")
    folder = (args.out or bundles.shipped_bundles_dir()) / args.name
    if (folder / bundles.BUNDLE_FILE).exists() and not args.overwrite:
        print(
            f"workbench models export: {folder} already holds a bundle; pass --overwrite to "
            "replace it, or choose another --name or --out.",
            file=sys.stderr,
        )
        return 2
    # The card's facts include the size of the weights file, so the bundle is written with an
    # empty card first (bundle.json then names the card) and the card is filled in after.
    bundle = bundles.save_bundle(
        folder,
        model,
        checkpoint.model_name,
        name=args.name,
        config=checkpoint.model_config,
        threshold=threshold,
        description=args.description,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
        model_card="",
        extra={"training": {"step": checkpoint.step, "metrics": checkpoint.metrics}},
    )
    assert bundle.weights_path is not None and bundle.model_card_path is not None
    facts = model_card.training_facts(
        model,
        checkpoint.model_name,
        preset,
        bundle.weights_path.stat().st_size,
        run_dir=run_dir,
        best_metrics=checkpoint.metrics,
        best_step=checkpoint.step,
        best_label="best validation" if checkpoint_path.name == "best.pt" else checkpoint_path.name,
    )
    body = args.card_body.read_text(encoding="utf-8") if args.card_body else ""
    card = model_card.render_card(args.title or args.name, facts, body)
    bundle.model_card_path.write_text(card, encoding="utf-8")
    print(json.dumps({"bundle": str(folder), "facts": facts}, indent=2, default=str))
    return 0
