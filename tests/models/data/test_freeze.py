"""``workbench data freeze``: a fixed set on disk that reads back identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.data.datasets import ThreeWayDataset
from models.data.freeze import FrozenDataset, freeze_dataset, frozen_trials
from models.data.manifest import write_manifest

RATE = 8000


def test_frozen_separation_set_reads_back_exactly(tmp_path: Path) -> None:
    out = freeze_dataset(
        "three-way", tmp_path / "set", count=3, seconds=0.5, sample_rate=RATE, seed=5
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dataset"] == "three-way" and meta["corpus"] == "synthetic"
    frozen = FrozenDataset(out)
    live = ThreeWayDataset.synthetic(RATE, split="validation", seconds=0.5, length=3, seed=5)
    assert len(frozen) == 3
    for index in range(3):
        stored, fresh = frozen[index], live[index]
        assert stored["source_names"] == fresh["source_names"]
        assert torch.equal(stored["sources"], fresh["sources"])
        assert torch.equal(stored["mixture"], stored["sources"].sum(0))
        assert torch.allclose(stored["relative_levels_db"], fresh["relative_levels_db"], atol=1e-4)
    with pytest.raises(ValueError, match="not empty"):
        freeze_dataset("three-way", out, count=1, seconds=0.5, sample_rate=RATE)


def test_frozen_speaker_set_has_trials(tmp_path: Path) -> None:
    out = freeze_dataset("speakers", tmp_path / "spk", count=16, seconds=0.5, sample_rate=RATE)
    trials = frozen_trials(out)
    assert {label for label, _, _ in trials} == {0, 1}
    assert all(a.is_file() and b.is_file() for _, a, b in trials)
    for label, a, b in trials:
        assert (a.parent.name == b.parent.name) == bool(label)


def test_freeze_from_a_corpus_and_cli(mini_corpus, tmp_path: Path, capsys) -> None:
    root, rows = mini_corpus
    write_manifest(root / "manifests" / "corpus.csv", rows)
    # In-process: a second interpreter would spend most of the test importing torch.
    from workbench.cli import main

    code = main(
        [
            "data",
            "freeze",
            "--dataset",
            "prompted",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "p"),
            "--count",
            "2",
            "--seconds",
            "0.5",
            "--sample-rate",
            str(RATE),
        ]
    )
    assert code == 0
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["licences"] == ["CC0 (generated)"] and meta["split"] == "validation"
    assert len(FrozenDataset(tmp_path / "p")) == 2
    code = main(
        [
            "data",
            "freeze",
            "--dataset",
            "prompted",
            "--root",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "q"),
        ]
    )
    assert code == 2
    assert "data build" in capsys.readouterr().err
