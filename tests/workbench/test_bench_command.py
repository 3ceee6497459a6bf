"""``workbench bench`` through real subprocesses (and its parser in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import build_parser, main


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_bench_models_json_ratios_match_the_printed_values() -> None:
    # --threads 1: two threads on a shared two-core machine mostly measure contention.
    result = _run(
        "bench", "models", "--json", "--models", "conv_tasnet", "--presets", "small",
        "--seconds", "1", "--repeats", "1", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    machine = report["machine"]
    assert machine["threads"] == 1 and machine["device"] == "cpu"
    assert set(machine) >= {"cpu", "threads", "torch", "device"}

    reference = report["reference"]
    assert reference["sample_rate"] == 8000
    assert reference["config"]["enc_num_feats"] == 512
    assert reference["config"]["msk_num_stacks"] == 3
    # The paper configuration: 4.98 M parameters (Luo & Mesgarani report 5.1 M).
    assert 4.5e6 < reference["parameters"] < 5.5e6
    assert reference["rtf"] > 0 and reference["macs_per_second"] > 0
    assert reference["clip_seconds"] == pytest.approx(1.0)

    [row] = report["models"]
    assert set(row) >= {
        "name", "preset", "task", "sample_rate", "parameters", "macs_per_second", "rtf",
        "rtf_ratio_to_reference", "macs_ratio_to_reference", "clip_seconds",
    }  # fmt: skip
    assert (row["name"], row["preset"], row["task"]) == ("conv_tasnet", "small", "separation")
    assert row["sample_rate"] == 8000 and row["clip_seconds"] == pytest.approx(1.0)
    assert "skipped" not in row and row["repeats"] == 1
    assert row["rtf"] > 0 and row["reference_rtf"] > 0
    assert row["rtf_ratio_to_reference"] == pytest.approx(row["rtf"] / row["reference_rtf"])
    assert row["macs_ratio_to_reference"] == pytest.approx(
        row["macs_per_second"] / reference["macs_per_second"]
    )
    # The small preset is N 128, B 64, H 256, X 8, R 2 (about 0.84 M parameters): much
    # smaller than the reference in both parameters and MACs.
    assert 0.5e6 < row["parameters"] < reference["parameters"] / 4
    assert 0.05 < row["macs_ratio_to_reference"] < 0.4


def test_bench_bundles_measures_a_bundle_and_the_live_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from models.bundles import BUNDLE_PATH_VARIABLE, save_bundle
    from models.conv_tasnet import ConvTasNet, ConvTasNetConfig

    tiny = ConvTasNetConfig(
        encoder_filters=16,
        encoder_kernel_size=8,
        bottleneck_channels=8,
        hidden_channels=16,
        num_blocks=3,
        num_repeats=1,
    )
    save_bundle(tmp_path / "tiny-speech", ConvTasNet(tiny), "conv_tasnet", name="tiny-speech")
    # A second bundle with the same rate and output names: both write speaker1/2 stems for the
    # same generated file, which must not collide (separate refuses to overwrite).
    save_bundle(tmp_path / "tiny-twin", ConvTasNet(tiny), "conv_tasnet", name="tiny-twin")
    monkeypatch.setenv(BUNDLE_PATH_VARIABLE, str(tmp_path))
    threads = torch.get_num_threads()
    try:
        code = main(
            ["bench", "bundles", "--json", "--bundles", "tiny-speech,tiny-twin", "--seconds", "0.5",
             "--repeats", "1", "--warmup", "0", "--blocks", "2", "--context-seconds", "0.02",
             "--memory-minutes", "0.02", "--threads", "1"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    row, twin = report["bundles"]
    assert twin["name"] == "tiny-twin"
    assert row["name"] == "tiny-speech" and row["sample_rate"] == 8000
    assert row["parameters"] == sum(p.numel() for p in ConvTasNet(tiny).parameters())
    assert row["rtf_ratio_to_reference"] == pytest.approx(row["rtf"] / row["reference_rtf"])
    assert row["faster_than_real_time"] == pytest.approx(1 / row["rtf"])
    live = report["live"]
    # The app's live bundle (the shipped causal Conv-TasNet, or its untrained placeholder).
    assert live["model"] == "conv_tasnet" and live["bundle"]
    assert live["block_size"] == 512 and live["sample_rate"] == 16000
    assert live["num_blocks"] == 2
    assert live["algorithmic_latency_ms"] == pytest.approx(32.0 + live["model_latency_ms"])
    assert live["p99_fraction"] == pytest.approx(live["p99_ms"] / live["block_ms"])
    assert 0 < live["p50_ms"] <= live["p99_ms"]
    # A peak for each bundle's own `workbench separate` process (torch imported, model built).
    for memory in report["memory"]["bundles"]:
        assert "error" not in memory, memory
        assert memory["peak_rss_mb"]["0.02"] > 50
    assert main(["bench", "bundles", "--bundles", "no-such-bundle"]) == 2
    assert "no-such-bundle" in capsys.readouterr().err


def test_no_bundles_is_said_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from models.bundles import BUNDLE_PATH_VARIABLE, list_bundles
    from workbench.commands.bench import NO_BUNDLES, _shipped_bundles

    monkeypatch.setenv(BUNDLE_PATH_VARIABLE, str(tmp_path))
    bundles, note = _shipped_bundles(None)
    assert bundles == list_bundles()
    assert note == ("" if bundles else NO_BUNDLES)


def test_bench_refuses_unknown_models_and_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process: the refusals happen before any measurement, so a subprocess adds only
    # start-up time.
    assert main(["bench", "models", "--models", "no_such_model"]) == 2
    error = capsys.readouterr().err
    assert "no_such_model" in error and "conv_tasnet" in error
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "models", "--seconds", "-1"])
    assert exit_info.value.code == 2
    assert "positive" in capsys.readouterr().err


def test_options_before_the_subcommand_survive_its_defaults() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "--json", "--threads", "1", "models"])
    assert args.json is True and args.threads == 1 and args.presets == "small,paper"
    args = parser.parse_args(["bench", "models", "--threads", "3"])
    assert args.json is False and args.threads == 3 and args.max_seconds_per_model == 120
    args = parser.parse_args(["bench"])
    assert args.bench_command is None and args.run.__name__ == "run_bundles"
