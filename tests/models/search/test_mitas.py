"""MiTAS comparison job: equal budgets, the parameter / SI-SDRi table, resume, evaluation."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models.search.mitas import (
    MitasSettings,
    SeparationData,
    evaluate_separator,
    run_mitas,
    stack_items,
)

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[3]
TINY_MODEL = (
    ("encoder_filters", 16),
    ("bottleneck_channels", 8),
    ("hidden_channels", 16),
    ("num_blocks", 3),
    ("num_repeats", 2),
)


def tiny_settings(**changes: Any) -> MitasSettings:
    values: dict[str, Any] = dict(
        variants=("none", "ss"),
        model_overrides=TINY_MODEL,
        steps=3,
        batch_size=2,
        segment_seconds=0.25,
        valid_items=2,
        valid_seconds=0.25,
        log_interval=1,
    )
    values.update(changes)
    return MitasSettings(**values)


def comparable(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("wall_time", "throughput")} for r in rows]


def test_two_variants_give_the_table_on_the_command_line(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "workbench.commands.search_separation",
        "mitas",
        "--run",
        str(tmp_path),
        "--threads=1",
        "--variants=none,ss",
        "--steps-per-variant=2",
        *[f"--set=model.{key}={value}" for key, value in TINY_MODEL],
        "--set=batch_size=2",
        "--set=segment_seconds=0.25",
        "--set=valid_items=2",
        "--set=valid_seconds=0.25",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SI-SDRi" in done.stdout and "sep. params" in done.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["complete"] and [row["variant"] for row in result["table"]] == ["none", "ss"]
    none, shared = result["table"]
    for row in (none, shared):
        assert set(result["columns"]) <= set(row)
        assert row["steps"] == 2 and math.isfinite(row["si_sdri"])
    # Sharing across stacks (R = 2) halves the shared convolutions; compute is unchanged.
    assert shared["separator_parameters"] < none["separator_parameters"]
    assert none["parameters"] - shared["parameters"] == (
        none["separator_parameters"] - shared["separator_parameters"]
    )
    assert shared["macs_per_second"] == pytest.approx(none["macs_per_second"])
    valid_rows = [r for r in comparable(tmp_path / "metrics.jsonl") if r["split"] == "valid"]
    assert [r["variant"] for r in valid_rows] == ["none", "ss"]


def test_resumed_comparison_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    settings = tiny_settings()
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_mitas(settings, whole, stream=io.StringIO(), device="cpu") == "finished"
    # Stop inside the second variant (3 steps of "none" + 1 of "ss"), then finish.
    assert run_mitas(settings, parts, max_steps=4, stream=io.StringIO()) == "stopped"
    partial = json.loads((parts / "result.json").read_text())
    assert not partial["complete"] and [r["variant"] for r in partial["table"]] == ["none"]
    stream = io.StringIO()
    assert run_mitas(settings, parts, stream=stream) == "finished"
    assert "ss" in stream.getvalue().splitlines()[-2]  # the printed table's last row

    def table(path: Path) -> list[dict[str, Any]]:
        rows = json.loads((path / "result.json").read_text())["table"]
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]

    assert table(parts) == table(whole)
    assert comparable(parts / "metrics.jsonl") == comparable(whole / "metrics.jsonl")


def test_unknown_sharing_code_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="ss, sn, ns"):
        tiny_settings(variants=("none", "xx"))


class PassThrough(nn.Module):
    """Returns the mixture as every source: zero improvement by definition."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, mixture: Tensor) -> Tensor:
        return (self.scale * mixture).unsqueeze(1).expand(-1, 2, -1)


def test_evaluation_measures_improvement_over_the_mixture() -> None:
    data = SeparationData("synthetic", 8000)
    mixtures, sources = stack_items(data.dataset("valid", 0.25), range(3))
    assert mixtures.shape == (3, 2000) and sources.shape == (3, 2, 2000)
    assert torch.allclose(sources.sum(dim=1), mixtures)
    scores = evaluate_separator(PassThrough(), mixtures, sources)
    assert scores["si_sdri"] == pytest.approx(0.0, abs=1e-9) and scores["items"] == 3
    with pytest.raises(ValueError, match="items, S, time"):
        evaluate_separator(PassThrough(), mixtures, sources[0])


def test_train_and_valid_talkers_differ_and_items_are_reproducible() -> None:
    data = SeparationData("synthetic", 8000, seed=3)
    train, valid = data.dataset("train", 0.1), data.dataset("valid", 0.1)
    assert torch.equal(train[5]["mixture"], data.dataset("train", 0.1)[5]["mixture"])
    assert not torch.equal(train[5]["mixture"], valid[5]["mixture"])
    with pytest.raises(ValueError, match="synthetic"):
        SeparationData("/no/such/corpus", 8000)
