"""On-the-fly datasets: shapes, levels (within 0.1 dB of the drawn values), sums, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from models.data.datasets import (
    PROMPTS,
    ManifestBank,
    PromptedDataset,
    SpeakerDataset,
    SpeechSeparationDataset,
    ThreeWayDataset,
    collate,
    make_trials,
    read_trials,
    write_trials,
)
from models.data.manifest import ManifestRow
from models.data.mixing import convolve, ratio_db, scale_to_ratio

RATE = 8000


def check_separation_item(item: dict, num_samples: int) -> None:
    mixture, sources = item["mixture"], item["sources"]
    assert mixture.shape == (num_samples,)
    assert sources.dim() == 2 and sources.shape[1] == num_samples
    assert sources.shape[0] == len(item["source_names"])
    assert item["sample_rate"] == RATE
    # The mixture is exactly the sum of the references.
    assert torch.equal(mixture, sources.sum(dim=0))
    assert float(mixture.abs().max()) <= 0.99 + 1e-6
    levels = item["relative_levels_db"]
    for index in range(1, sources.shape[0]):
        measured = ratio_db(sources[index], sources[0])
        assert abs(measured - float(levels[index])) < 0.1, (index, measured, levels)


def datasets_from(bank_kind: str, mini_corpus) -> list:
    common = {"seconds": 1.0, "length": 6, "seed": 3}
    if bank_kind == "synthetic":
        return [
            ThreeWayDataset.synthetic(RATE, reverb_probability=0.5, **common),
            PromptedDataset.synthetic(RATE, reverb_probability=0.5, **common),
            SpeechSeparationDataset.synthetic(RATE, noise=True, **common),
            SpeechSeparationDataset.synthetic(RATE, num_speakers=3, **common),
        ]
    root, rows = mini_corpus
    return [
        ThreeWayDataset.from_rows(rows, root, sample_rate=RATE, reverb_probability=0.5, **common),
        PromptedDataset.from_rows(rows, root, sample_rate=RATE, reverb_probability=0.5, **common),
        SpeechSeparationDataset.from_rows(rows, root, sample_rate=RATE, noise=True, **common),
    ]


@pytest.mark.parametrize("bank_kind", ["synthetic", "manifest"])
def test_separation_items_are_shaped_levelled_and_summed(bank_kind, mini_corpus) -> None:
    for dataset in datasets_from(bank_kind, mini_corpus):
        for index in range(4):
            check_separation_item(dataset[index], RATE)


def test_three_way_ratios_are_in_range_and_named() -> None:
    dataset = ThreeWayDataset.synthetic(RATE, seconds=0.5, length=8)
    for index in range(8):
        item = dataset[index]
        assert item["source_names"] == ["speech", "music", "noise"]
        speech, music, noise = item["sources"]
        assert -5.1 <= ratio_db(speech, music) <= 5.1
        assert -5.1 <= ratio_db(speech, noise) <= 5.1


def test_items_are_deterministic_per_index_and_epoch() -> None:
    train = PromptedDataset.synthetic(RATE, seconds=0.5, length=4, seed=7)
    first, again, other = train[2], train[2], train[3]
    assert torch.equal(first["mixture"], again["mixture"])
    assert first["source_names"] == again["source_names"]
    assert not torch.equal(first["mixture"], other["mixture"])
    # Training is endless: any index works, and a new epoch gives new mixtures.
    assert train[10_000]["mixture"].shape == (RATE // 2,)
    train.set_epoch(1)
    assert not torch.equal(train[2]["mixture"], first["mixture"])
    # Validation is fixed: epochs do not change it, and it has a size.
    validation = ThreeWayDataset.synthetic(RATE, seconds=0.5, length=3, split="validation")
    before = validation[1]["mixture"]
    validation.set_epoch(5)
    assert torch.equal(validation[1]["mixture"], before)
    with pytest.raises(IndexError):
        validation[3]


def test_prompted_items_follow_prompt_order_and_bounds() -> None:
    dataset = PromptedDataset.synthetic(RATE, seconds=0.5, length=40, seed=1)
    seen = set()
    for index in range(40):
        item = dataset[index]
        names = item["source_names"]
        assert 2 <= len(names) <= 4
        assert [PROMPTS[i] for i in item["prompts"].tolist()] == names
        seen.add(item["scenario"])
        if names.count("speech") > 1:
            assert item["scenario"] in ("speech-separation", "cinematic", "random")
    assert {"speech-separation", "music-stems", "cinematic"} <= seen


def test_speech_separation_uses_different_talkers(mini_corpus) -> None:
    root, rows = mini_corpus
    dataset = SpeechSeparationDataset.from_rows(
        rows, root, sample_rate=RATE, seconds=0.5, length=5, num_speakers=3
    )
    for index in range(5):
        item = dataset[index]
        assert item["source_names"] == ["speaker1", "speaker2", "speaker3"]
        assert len(set(item["speakers"])) == 3
    with pytest.raises(ValueError, match="num_speakers"):
        SpeechSeparationDataset.synthetic(RATE, num_speakers=4)


def test_speaker_dataset_items_and_balance(mini_corpus) -> None:
    root, rows = mini_corpus
    train = SpeakerDataset.from_rows(rows, root, sample_rate=RATE, seconds=1.0, length=20)
    assert train.num_speakers == 4
    indices = set()
    for index in range(20):
        item = train[index]
        assert item["waveform"].shape == (RATE,)
        assert train.speaker_ids[item["speaker_index"]] == item["speaker_id"]
        assert float(item["waveform"].abs().max()) <= 0.99 + 1e-6
        indices.add(item["speaker_index"])
    assert len(indices) == 4
    validation = SpeakerDataset.from_rows(
        rows, root, split="validation", sample_rate=RATE, seconds=1.0, length=4
    )
    assert not validation.augment
    assert set(validation.speaker_ids).isdisjoint(train.speaker_ids)
    synthetic = SpeakerDataset.synthetic(RATE, seconds=0.5, length=3, num_speakers=5)
    assert synthetic[0]["waveform"].shape == (RATE // 2,)


def test_trials_round_trip(mini_corpus, tmp_path: Path) -> None:
    _, rows = mini_corpus
    trials = make_trials(rows, 10, seed=1)
    assert [label for label, _, _ in trials].count(1) == 5
    identity = {row.path: row.identity for row in rows}
    for label, enroll, test in trials:
        assert enroll != test
        assert (identity[enroll] == identity[test]) == bool(label)
    write_trials(tmp_path / "trials.txt", trials)
    assert read_trials(tmp_path / "trials.txt") == trials
    (tmp_path / "bad.txt").write_text("2 a b\n")
    with pytest.raises(ValueError, match="label enroll test"):
        read_trials(tmp_path / "bad.txt")


def test_collate_pads_variable_prompt_counts() -> None:
    dataset = PromptedDataset.synthetic(RATE, seconds=0.25, length=8, seed=2)
    loader = DataLoader(dataset, batch_size=8, collate_fn=collate)
    batch = next(iter(loader))
    counts = batch["source_mask"].sum(dim=1)
    assert batch["mixture"].shape == (8, RATE // 4)
    assert batch["sources"].shape == (8, int(counts.max()), RATE // 4)
    assert len(set(counts.tolist())) > 1, "fixture should mix prompt counts"
    for row in range(8):
        count = int(counts[row])
        assert (batch["prompts"][row, count:] == -1).all()
        assert (batch["sources"][row, count:] == 0).all()
        assert torch.allclose(batch["sources"][row].sum(0), batch["mixture"][row], atol=1e-6)
    assert batch["sample_rate"] == RATE


def test_bank_rejects_missing_audio(mini_corpus) -> None:
    root, rows = mini_corpus
    speech_only = [r for r in rows if r.kind == "speech"]
    bank = ManifestBank(speech_only, root, RATE, "train")
    with pytest.raises(ValueError, match="music"):
        ThreeWayDataset(bank, seconds=0.5)[0]
    with pytest.raises(ValueError, match="seconds"):
        ThreeWayDataset(bank, seconds=0)


def test_mixing_helpers() -> None:
    generator = torch.Generator().manual_seed(0)
    speech = torch.randn(4000, generator=generator)
    noise = torch.randn(4000, generator=generator) * 3
    scaled = scale_to_ratio(speech, noise, 7.5)
    assert abs(ratio_db(speech, scaled) - 7.5) < 1e-3
    impulse = torch.zeros(50)
    impulse[10] = 1.0
    assert torch.allclose(convolve(speech, impulse), speech, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(time,\)"):
        scale_to_ratio(speech[None], noise, 0.0)


def test_manifest_rows_with_absolute_paths_work(mini_corpus) -> None:
    root, rows = mini_corpus
    absolute = [ManifestRow(**{**row.__dict__, "path": str(root / row.path)}) for row in rows]
    dataset = ThreeWayDataset.from_rows(absolute, "/unused", sample_rate=RATE, seconds=0.5)
    check_separation_item(dataset[0], RATE // 2)
