"""``workbench models`` through a real subprocess: JSON listing and the readable table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models import registry


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench", "models", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def listing() -> dict:
    result = _run("--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_lists_every_registered_model_and_preset(listing: dict) -> None:
    rows = {row["name"]: row for row in listing["models"]}
    assert set(rows) == set(registry.registry())
    for name, spec in registry.registry().items():
        row = rows[name]
        assert row["task"] == spec.task in ("separation", "speaker")
        assert row["description"] == spec.description
        assert set(row["presets"]) == set(spec.presets)
        for preset, info in row["presets"].items():
            assert info["sample_rate"] == spec.config(preset).sample_rate
            assert isinstance(info["parameters"], int) and info["parameters"] > 0


def test_parameter_counts_equal_real_builds(listing: dict) -> None:
    rows = {row["name"]: row for row in listing["models"]}
    for name, preset in (("conv_tasnet", "paper"), ("conv_tasnet", "small"), ("tuss", "small")):
        model = registry.build_model(name, preset=preset)
        real = sum(p.numel() for p in model.parameters())
        assert rows[name]["presets"][preset]["parameters"] == real
    # The paper Conv-TasNet is torchaudio's size class (about 5 M parameters).
    assert 4.5e6 < rows["conv_tasnet"]["presets"]["paper"]["parameters"] < 5.5e6


def test_table_is_readable(listing: dict) -> None:
    result = _run()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "task", "preset", "rate", "(Hz)", "parameters"]
    for row in listing["models"]:
        assert any(line.startswith(row["name"]) for line in lines)
        for preset, info in row["presets"].items():
            cells = f"{preset} {info['sample_rate']} {info['parameters']:,}"
            assert any(" ".join(line.split()).endswith(cells) for line in lines), cells


def test_export_ships_a_run_as_a_bundle_with_a_measured_card(tmp_path) -> None:
    """A real two-step run, exported: weights-only bundle, card facts read off the run."""
    from models.bundles import get_model, load_bundle

    run_dir = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "workbench", "train", "--model", "conv_tasnet", "--preset",
         "small", "--run", str(run_dir), "--max-steps", "2", "--set", "valid_items=2",
         "--set", "segment_seconds=0.5", "--set", "valid_segment_seconds=0.5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    body = tmp_path / "body.md"
    body.write_text("## Evaluation\n\nHand-written part.\n")
    result = _run(
        "export", str(run_dir), "--name", "tiny-separator", "--out", str(tmp_path / "bundles"),
        "--card-body", str(body), "--description", "two steps only",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)["facts"]
    assert facts["history"]["steps"] == 2
    assert facts["settings"]["data"] == "synthetic" and facts["best_step"] == 2

    bundle = load_bundle(tmp_path / "bundles" / "tiny-separator")
    assert bundle.trained and bundle.description == "two steps only"
    model = get_model(bundle)
    assert sum(p.numel() for p in model.parameters()) == facts["parameters"]
    card = bundle.model_card_path.read_text()
    assert f"| parameters | {facts['parameters']:,} |" in card
    assert "| steps trained | 2 |" in card and card.rstrip().endswith("Hand-written part.")

    # An existing bundle is never replaced by accident.
    again = _run(
        "export", str(run_dir), "--name", "tiny-separator", "--out", str(tmp_path / "bundles")
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert bundle.model_card_path.read_text() == card
    replaced = _run(
        "export", str(run_dir), "--name", "tiny-separator", "--out", str(tmp_path / "bundles"),
        "--overwrite",
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert "Hand-written part." not in bundle.model_card_path.read_text()

    missing = _run("export", str(tmp_path / "nowhere"), "--name", "x", "--out", str(tmp_path))
    assert missing.returncode == 2 and "checkpoint" in missing.stderr.lower()
