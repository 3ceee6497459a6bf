"""NAS-TasNet search job: both strategies, aux loss on/off, entropy rows, derive, retrain, resume."""

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

from models import registry
from models.checkpoint import load_checkpoint, read_checkpoint
from models.conv_tasnet import ConvTasNet
from models.nas_tasnet import NasTasNet
from models.search.mitas import pit_si_sdr_loss
from models.search.nas_tasnet import (
    NasTasNetSearchSettings,
    cost_aware_reward,
    run_nas_tasnet_search,
    separation_loss,
)
from workbench.commands import search_separation

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[3]
TINY_MODEL = (
    ("encoder_filters", 16),
    ("bottleneck_channels", 8),
    ("num_blocks", 3),
    ("num_repeats", 2),
)
TINY_OPTIONS = [f"--set=model.{key}={value}" for key, value in TINY_MODEL] + [
    "--set=batch_size=2",
    "--set=segment_seconds=0.25",
    "--set=valid_items=2",
    "--set=valid_seconds=0.25",
    "--set=log_interval=2",
]


def tiny_settings(**changes: Any) -> NasTasNetSearchSettings:
    values: dict[str, Any] = dict(
        model_overrides=TINY_MODEL,
        warmup_steps=2,
        search_steps=4,
        retrain_steps=2,
        epoch_steps=2,
        batch_size=2,
        segment_seconds=0.25,
        valid_items=2,
        valid_seconds=0.25,
        log_interval=2,
        reinforce_samples=2,
    )
    values.update(changes)
    return NasTasNetSearchSettings(**values)


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the timing fields, which differ between runs."""
    return [{k: v for k, v in row.items() if k not in ("wall_time", "throughput")} for row in rows]


@pytest.mark.parametrize(
    ("strategy", "aux_loss"),
    [("gradient", True), ("gradient", False), ("reinforce", True), ("reinforce", False)],
)
def test_search_derives_an_architecture_that_builds_and_trains(
    tmp_path: Path, strategy: str, aux_loss: bool
) -> None:
    settings = tiny_settings(strategy=strategy, aux_loss=aux_loss)
    stream = io.StringIO()
    assert run_nas_tasnet_search(settings, tmp_path, stream=stream, device="cpu") == "finished"

    # Entropy per repeat: epoch 0 (uniform alpha) when the search starts, then every epoch.
    search_rows = [row for row in read_rows(tmp_path) if row["split"] == "search"]
    assert [row["epoch"] for row in search_rows] == [0, 1, 2]
    assert [row["step"] for row in search_rows] == [2, 4, 6]
    for row in search_rows:
        assert len(row["entropy_per_repeat"]) == 2
        assert row["expected_macs"] > 0 and math.isfinite(row["loss"])
    assert search_rows[0]["entropy_per_repeat"] == pytest.approx([math.log(7)] * 2, abs=1e-6)
    final_entropy = search_rows[-1]["entropy_per_repeat"]
    assert all(0 < value < math.log(7) for value in final_entropy)  # alpha moved off uniform

    # The derived config is a plain Conv-TasNet that builds and trains a step.
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["strategy"] == strategy and result["aux_loss"] is aux_loss
    assert len(result["choices"]) == 6 and len(result["architecture"]) == 2
    config = registry.config_from_dict("conv_tasnet", result["derived_config"])
    torch.manual_seed(0)
    model = ConvTasNet(config)
    assert sum(p.numel() for p in model.parameters()) == result["parameters"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mixture, sources = torch.randn(2, 800), torch.randn(2, 2, 800)
    before = [p.detach().clone() for p in model.parameters()]
    loss = pit_si_sdr_loss(model(mixture), sources).mean()
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    # The retrained network is scored and saved as a loadable best.pt.
    assert result["retrain"]["steps"] == 2 and math.isfinite(result["retrain"]["si_sdri"])
    best, checkpoint = load_checkpoint(tmp_path / "best.pt")
    assert checkpoint.model_name == "conv_tasnet" and best.config == config
    assert best(mixture).shape == (2, 2, 800)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == settings.total_steps
    progress = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert progress[-1]["event"] == "finished"
    assert [p["done"] for p in progress if p["event"] == "progress"] == [2, 4, 6, 8]


def test_resume_continues_at_the_saved_step_with_identical_numbers(tmp_path: Path) -> None:
    settings = tiny_settings(strategy="reinforce", aux_loss=True)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_nas_tasnet_search(settings, whole, stream=io.StringIO(), device="cpu") == "finished"

    # Stopped in the search, then in the retraining, then run to the end.
    assert run_nas_tasnet_search(settings, parts, 3, stream=io.StringIO()) == "stopped"
    assert read_checkpoint(parts / "checkpoint.pt").step == 3
    status = json.loads((parts / "status.json").read_text())
    assert status["state"] == "stopped" and status["step"] == 3
    assert run_nas_tasnet_search(settings, parts, 7, stream=io.StringIO()) == "stopped"
    assert read_checkpoint(parts / "retrain" / "checkpoint.pt").step == 1
    stream = io.StringIO()
    assert run_nas_tasnet_search(settings, parts, stream=stream) == "finished"
    first = json.loads(stream.getvalue().splitlines()[0])
    assert first["done"] == 8  # continued with the last retraining step, not from the start

    assert comparable(read_rows(parts)) == comparable(read_rows(whole))
    whole_result = json.loads((whole / "result.json").read_text())
    parts_result = json.loads((parts / "result.json").read_text())
    for result in (whole_result, parts_result):
        del result["retrain"]["train_seconds"]
    assert parts_result == whole_result
    alpha_whole = read_checkpoint(whole / "checkpoint.pt").model_state["architecture_logits"]
    alpha_parts = read_checkpoint(parts / "checkpoint.pt").model_state["architecture_logits"]
    assert torch.equal(alpha_whole, alpha_parts)


def test_other_settings_on_an_existing_run_folder_are_refused(tmp_path: Path) -> None:
    settings = tiny_settings(search_steps=0, retrain_steps=0)
    assert run_nas_tasnet_search(settings, tmp_path, stream=io.StringIO()) == "finished"
    with pytest.raises(ValueError, match="strategy"):
        run_nas_tasnet_search(
            tiny_settings(search_steps=0, retrain_steps=0, strategy="reinforce"),
            tmp_path,
            stream=io.StringIO(),
        )


def test_auxiliary_loss_is_the_repeat_ema_of_per_repeat_pit_losses() -> None:
    settings = tiny_settings()
    torch.manual_seed(0)
    model = NasTasNet(settings.supernet_config())
    model.sample_active_paths(uniform=True, generator=torch.Generator().manual_seed(1))
    mixture, sources = torch.randn(2, 800), torch.randn(2, 2, 800)
    aux, final = separation_loss(model, mixture, sources, aux=True)
    plain, plain_final = separation_loss(model, mixture, sources, aux=False)
    estimates = model.forward_repeats(mixture)
    per_repeat = [pit_si_sdr_loss(estimates[:, r], sources).mean() for r in range(2)]
    # alpha_ema = 0.4, R = 2: weights 0.4 and 0.6.
    assert aux.item() == pytest.approx(0.4 * per_repeat[0].item() + 0.6 * per_repeat[1].item())
    assert final.item() == pytest.approx(plain.item()) and plain_final is plain


def test_reward_penalises_cost_for_positive_and_negative_quality() -> None:
    ratios = torch.tensor([0.5, 2.0])
    positive = cost_aware_reward(torch.tensor([10.0, 10.0]), ratios, -0.07)
    negative = cost_aware_reward(torch.tensor([-10.0, -10.0]), ratios, -0.07)
    assert positive[0] > positive[1] and negative[0] > negative[1]
    assert positive[1].item() == pytest.approx(10.0 * 2.0**-0.07)


def test_bad_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="gradient, reinforce"):
        tiny_settings(strategy="evolution")


def test_command_line_stops_resumes_and_reports_json_progress(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "workbench.commands.search_separation",
        "nas-tasnet",
        "--run",
        str(tmp_path),
        "--threads=1",
        "--strategy=gradient",
        "--no-aux-loss",
        "--warmup-steps=2",
        "--search-steps=2",
        "--retrain-steps=0",
        "--epoch-steps=2",
        *TINY_OPTIONS,
    ]
    stopped = subprocess.run(
        [*command, "--max-steps=2"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 4, stopped.stderr
    lines = [json.loads(line) for line in stopped.stdout.splitlines()]
    assert lines[-1]["event"] == "stopped" and lines[-1]["done"] == 2
    assert all(0 <= line.get("fraction", 0) <= 1 for line in lines)
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines()]
    assert lines[0]["done"] == 4 and lines[-1]["event"] == "finished"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["aux_loss"] is False and "retrain" not in result


def test_command_line_refuses_unknown_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["nas-tasnet", "--run", str(tmp_path), "--set=no_such_setting=1"]
    assert search_separation.main(argv) == 2
    assert "no_such_setting" in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()
