"""Readers on tiny fixtures generated in each public corpus layout."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from models.data import readers
from models.data.datasets import PremixedDataset, SpeakerDataset, read_trials
from tests.models.data.conftest import tone, write

RATE = 8000


def _mix(folder_sources: list[Path], mixture: Path, seed: int) -> None:
    signals = [tone(0.5, RATE, 150 + 60 * k, seed + k) * 0.5 for k in range(len(folder_sources))]
    for path, signal in zip(folder_sources, signals, strict=True):
        write(path, signal)
    write(mixture, sum(signals))


def check_premixed(items: list, names: tuple[str, ...], count: int) -> None:
    assert len(items) == count
    assert all(item.source_names == names for item in items)
    dataset = PremixedDataset(items, sample_rate=RATE, seconds=0.25)
    item = dataset[0]
    assert item["sources"].shape == (len(names), RATE // 4)
    assert torch.equal(item["mixture"], item["sources"].sum(0))
    stored = PremixedDataset(items, sample_rate=RATE, remix=False)[0]
    assert torch.allclose(stored["mixture"], stored["sources"].sum(0), atol=1e-3)


def test_librimix_folder_and_csv_layouts(tmp_path: Path) -> None:
    base = tmp_path / "Libri2Mix" / "wav8k" / "min" / "dev"
    for index in range(2):
        name = f"{index}_a-{index}_b.wav"
        sources = [base / "s1" / name, base / "s2" / name, base / "noise" / name]
        _mix(sources, base / "mix_both" / name, index)
        _mix(sources[:2], base / "mix_clean" / name, index)
    check_premixed(readers.read_librimix(tmp_path), ("speaker1", "speaker2"), 2)
    both = readers.read_librimix(tmp_path, mix_type="mix_both")
    check_premixed(both, ("speaker1", "speaker2", "noise"), 2)
    # The metadata CSV holds paths from the generating machine; they resolve under root.
    metadata = base.parent / "metadata"
    metadata.mkdir()
    with (metadata / "mixture_dev_mix_clean.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"])
        name = "0_a-0_b.wav"
        writer.writerow(
            [
                name[:-4],
                f"/data/Libri2Mix/wav8k/min/dev/mix_clean/{name}",
                f"/data/Libri2Mix/wav8k/min/dev/s1/{name}",
                f"/data/Libri2Mix/wav8k/min/dev/s2/{name}",
                4000,
            ]
        )
    from_csv = readers.read_librimix(tmp_path)
    check_premixed(from_csv, ("speaker1", "speaker2"), 1)
    assert from_csv[0].identifier == "0_a-0_b"


def test_wsj0_mix_layout(tmp_path: Path) -> None:
    base = tmp_path / "wav8k" / "min" / "tt"
    for index in range(3):
        name = f"a{index}_0.1_b{index}_-0.1.wav"
        _mix([base / "s1" / name, base / "s2" / name], base / "mix" / name, index)
    check_premixed(readers.read_wsj0_mix(tmp_path), ("speaker1", "speaker2"), 3)
    with pytest.raises(FileNotFoundError):
        readers.read_wsj0_mix(tmp_path, split="cv")


def test_musdb18hq_layout_and_stem_mp4_message(tmp_path: Path) -> None:
    for song in ("A - One", "B - Two"):
        folder = tmp_path / "test" / song
        stems = [folder / f"{stem}.wav" for stem in readers.MUSDB_STEMS]
        _mix(stems, folder / "mixture.wav", len(song))
    check_premixed(readers.musdb_items(tmp_path), readers.MUSDB_STEMS, 2)
    rows = readers.read_musdb(tmp_path, "test")
    assert len(rows) == 8 and {r.label for r in rows} == set(readers.MUSDB_STEMS)
    assert {r.group for r in rows} == {"musdb:A - One", "musdb:B - Two"}
    assert all(r.split == "validation" and r.kind == "stem" for r in rows)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "Song.stem.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="decoder"):
        readers.read_musdb(tmp_path, "train")


def test_voxceleb_layout_and_trial_list(tmp_path: Path) -> None:
    for speaker in ("id10001", "id10002", "id10003"):
        for video in ("1zcIwhmdeo4", "7gWzIy6yIIk"):
            for utterance in range(2):
                write(
                    tmp_path / "wav" / speaker / video / f"{utterance:05d}.wav",
                    tone(0.4, RATE, 100 + int(speaker[-1]) * 40, utterance),
                )
    rows = readers.read_voxceleb(tmp_path)
    assert len(rows) == 12
    assert {r.identity for r in rows} == {"id10001", "id10002", "id10003"}
    dataset = SpeakerDataset.from_rows(rows, "/", sample_rate=RATE, seconds=0.5, length=4)
    assert dataset.num_speakers == 3 and dataset[0]["waveform"].shape == (RATE // 2,)
    (tmp_path / "veri_test.txt").write_text(
        "1 id10001/1zcIwhmdeo4/00000.wav id10001/7gWzIy6yIIk/00001.wav\n"
        "0 id10001/1zcIwhmdeo4/00000.wav id10002/1zcIwhmdeo4/00000.wav\n"
    )
    trials = readers.voxceleb_trial_paths(tmp_path, read_trials(tmp_path / "veri_test.txt"))
    assert [label for label, _, _ in trials] == [1, 0]
    assert all(a.is_file() and b.is_file() for _, a, b in trials)
    with pytest.raises(FileNotFoundError):
        readers.read_voxceleb(tmp_path / "nowhere")


def test_fsd50k_layout(tmp_path: Path) -> None:
    truth = tmp_path / "FSD50K.ground_truth"
    truth.mkdir()
    (truth / "dev.csv").write_text(
        "fname,labels,mids,split\n1,Bark,/m/05tny_,train\n2,Door,/m/02dgv,val\n"
    )
    (truth / "eval.csv").write_text('fname,labels,mids\n3,"Rain,Water",/m/06mb1\n')
    for number, folder in ((1, "dev"), (2, "dev"), (3, "eval")):
        write(tmp_path / f"FSD50K.{folder}_audio" / f"{number}.wav", tone(0.3, RATE, 500, number))
    train = readers.read_fsd50k(tmp_path, "train")
    assert [(r.label, r.split) for r in train] == [("Bark", "train")]
    assert [r.label for r in readers.read_fsd50k(tmp_path, "val")] == ["Door"]
    evaluation = readers.read_fsd50k(tmp_path, "eval")
    assert evaluation[0].label == "Rain,Water" and evaluation[0].split == "validation"


def test_fuss_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ssdata" / "validation"
    for index, count in ((0, 2), (1, 3)):
        sources_folder = folder / f"example{index:05d}_sources"
        paths = [sources_folder / "background0_sound.wav"] + [
            sources_folder / f"foreground{k}_sound.wav" for k in range(count - 1)
        ]
        _mix(paths, folder / f"example{index:05d}.wav", index)
    items = readers.read_fuss(tmp_path)
    assert [len(item.sources) for item in items] == [2, 3]
    assert items[1].source_names == ("background", "sfx", "sfx")
    dataset = PremixedDataset(items, sample_rate=RATE, seconds=0.25)
    assert torch.equal(dataset[1]["mixture"], dataset[1]["sources"].sum(0))
    assert len(readers.fuss_rows(tmp_path, "validation")) == 5


def test_dnr_layout(tmp_path: Path) -> None:
    for clip in ("1001", "1002"):
        folder = tmp_path / "cv" / clip
        _mix([folder / f"{n}.wav" for n in ("speech", "music", "sfx")], folder / "mix.wav", 3)
    check_premixed(readers.read_dnr(tmp_path), ("speech", "music", "sfx"), 2)


def test_mtass_layout(tmp_path: Path) -> None:
    for number in (0, 1, 10):
        base = tmp_path / "dev"
        sources = [
            base / kind / f"{kind}{number}" / f"{kind}_{number}.wav"
            for kind in ("speech", "music", "noise")
        ]
        _mix(sources, base / "mixture" / f"mixture{number}" / f"mixture_{number}.wav", number)
    items = readers.read_mtass(tmp_path)
    assert [item.identifier for item in items] == ["0", "1", "10"]
    check_premixed(items, ("speech", "music", "noise"), 3)
