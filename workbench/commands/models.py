"""``workbench models``: list the model registry with every preset's rate and parameter count."""

from __future__ import annotations

import argparse
import json
from typing import Any

DESCRIPTION = "list the model registry (names, tasks, presets, sample rates, parameter counts)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help=DESCRIPTION, description=DESCRIPTION)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)


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
