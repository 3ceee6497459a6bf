"""Model cards: the measured facts of a trained model, written next to its bundle.

A card has two parts. :func:`training_facts` and :func:`render_facts` produce the part that
can be read off the model and its run folder (architecture, parameters, MACs per second of
audio, weights size, training settings, steps, wall time, best validation metrics), so those
numbers are never typed by hand. The rest (data, licences, evaluation against the mixture,
the oracle mask and the same-budget baseline, the rebuild command) is prose a person writes
and :func:`render_card` appends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from models.flops import macs_per_second

#: Run-folder files the facts are read from (see :mod:`models.train.loop`).
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
#: Training settings worth a line on the card, in this order.
CARD_SETTINGS = (
    "data",
    "batch_size",
    "segment_seconds",
    "lr",
    "schedule",
    "warmup_steps",
    "max_steps",
    "seed",
)


def run_history(run_dir: Path) -> dict[str, Any]:
    """Steps, wall time and the last validation row of a ``workbench train`` run folder.

    ``wall_time`` in ``metrics.jsonl`` is carried across resumes in the checkpoint, so the last
    row's value is the training time behind the final state.

    Args:
        run_dir: The run folder.

    Returns:
        ``steps`` (last step logged), ``wall_seconds`` (training time of the final state) and
        ``last_valid`` (the metrics of the last validation row, or {}).
    """
    path = Path(run_dir) / METRICS_FILE
    steps = 0
    wall = 0.0
    last_valid: dict[str, Any] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill; the rest of the file is still good
            time = row.get("wall_time")
            if isinstance(time, int | float):
                wall = float(time)
            if isinstance(row.get("step"), int):
                steps = max(steps, int(row["step"]))
            if row.get("split") == "valid":
                last_valid = {"step": row.get("step"), **dict(row.get("metrics") or {})}
    return {
        "steps": steps,
        "wall_seconds": wall,
        "last_valid": last_valid,
    }


def training_facts(
    model: nn.Module,
    model_name: str,
    preset: str | None,
    weights_bytes: int,
    run_dir: Path | None = None,
    best_metrics: Mapping[str, Any] | None = None,
    best_step: int | None = None,
    best_label: str = "best validation",
) -> dict[str, Any]:
    """Everything the card's facts section says, measured now.

    Args:
        model: The trained model (MACs are counted on CPU with one second of noise).
        model_name: Registry name.
        preset: The preset it started from, if known.
        weights_bytes: Size of the shipped weights file.
        run_dir: Its training run folder, if any (steps, wall time, settings).
        best_metrics: Validation metrics of the shipped checkpoint.
        best_step: Step of the shipped checkpoint.
        best_label: Which checkpoint of the run it is (``"best validation"``, ``"checkpoint.pt"``).

    Returns:
        Plain data for :func:`render_facts`.
    """
    facts: dict[str, Any] = {
        "model_name": model_name,
        "preset": preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "sample_rate": int(model.config.sample_rate),
        "macs_per_second": macs_per_second(model.cpu().eval(), seconds=4.0),
        "weights_bytes": int(weights_bytes),
        "best_metrics": dict(best_metrics or {}),
        "best_step": best_step,
        "best_label": best_label,
    }
    if run_dir is not None:
        facts["history"] = run_history(run_dir)
        config_path = Path(run_dir) / CONFIG_FILE
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            facts["settings"] = {key: config.get(key) for key in CARD_SETTINGS if key in config}
            facts["overrides"] = config.get("overrides") or []
        last_valid = dict(facts["history"]["last_valid"])
        if best_label != "best validation" and last_valid.get("step") == best_step:
            # A training checkpoint stores the run's best score, not its own: show the
            # validation row logged at its step instead.
            last_valid.pop("step")
            facts["best_metrics"] = last_valid
    return facts


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_facts(facts: Mapping[str, Any]) -> str:
    """The facts section of a card as Markdown."""
    lines = [
        "## Facts (measured by `workbench models export`)",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{facts['model_name']}`"
        + (f", preset `{facts['preset']}`" if facts.get("preset") else "")
        + " |",
        f"| parameters | {facts['parameters']:,} |",
        f"| sample rate | {facts['sample_rate']} Hz |",
        f"| MACs per second of audio | {facts['macs_per_second'] / 1e9:.3f} G |",
        f"| weights file | {facts['weights_bytes'] / 2**20:.2f} MiB |",
    ]
    for key, value in (facts.get("settings") or {}).items():
        lines.append(f"| train `{key}` | {value} |")
    overrides = facts.get("overrides") or []
    if overrides:
        pairs = overrides.items() if isinstance(overrides, Mapping) else overrides
        text = ", ".join(f"{key}={value}" for key, value in pairs)
        lines.append(f"| config overrides | {text} |")
    history = facts.get("history")
    if history:
        lines.append(f"| steps trained | {history['steps']} |")
        lines.append(
            f"| training wall time | {history['wall_seconds'] / 60:.1f} min (carried across "
            "resumes; the machine's cores were shared with other jobs) |"
        )
    if facts.get("best_step") is not None:
        label = facts.get("best_label", "best validation")
        lines.append(f"| shipped checkpoint | {label}, step {facts['best_step']} |")
    for key, value in (facts.get("best_metrics") or {}).items():
        lines.append(f"| training-validation `{key}` | {_number(value)} |")
    return "\n".join(lines) + "\n"


def render_card(title: str, facts: Mapping[str, Any], body: str = "") -> str:
    """A whole card: title, the measured facts, then the hand-written ``body``."""
    parts = [f"# {title}", "", render_facts(facts)]
    if body.strip():
        parts += ["", body.strip(), ""]
    return "\n".join(parts)
