"""``workbench data freeze``: write a validation set to disk once, so metrics compare across runs.

Frozen separation layout (``layout_version`` 1)::

    OUT/meta.json        dataset, count, seconds, sample_rate, split, seed, corpus, licences
    OUT/items.csv        index, mixture, sources, source_names, relative_levels_db
                         (lists joined with ';', paths relative to OUT)
    OUT/items/NNNNNN/mixture.wav, sK_NAME.wav   32-bit float WAV, so the sources still sum
                                                to the mixture exactly

Frozen speaker layout::

    OUT/meta.json
    OUT/utterances/SPEAKER/NNNN.wav   one crop per utterance
    OUT/speakers.csv                  path, speaker_id
    OUT/trials.txt                    VoxCeleb format 'label enroll test', paths relative
                                      to OUT/utterances

:class:`FrozenDataset` reads the separation layout back with the item contract of
``models.data.datasets``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from models.data.datasets import (
    PromptedDataset,
    SpeakerDataset,
    SpeechSeparationDataset,
    ThreeWayDataset,
    read_trials,
    write_trials,
)
from models.data.manifest import read_manifest

LAYOUT_VERSION = 1
DATASETS = ("three-way", "prompted", "speech-separation", "speakers")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def make_dataset(
    dataset: str,
    root: Path | None,
    count: int,
    seconds: float,
    sample_rate: int,
    split: str,
    seed: int,
) -> Any:
    """The dataset ``freeze`` renders: from the corpus at ``root``, or synthetic when ``None``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    common = {"seconds": seconds, "length": count, "seed": seed}
    classes = {
        "three-way": ThreeWayDataset,
        "prompted": PromptedDataset,
        "speech-separation": SpeechSeparationDataset,
        "speakers": SpeakerDataset,
    }
    cls = classes[dataset]
    if root is None:
        return cls.synthetic(sample_rate=sample_rate, split=split, **common)
    manifest = Path(root) / "manifests" / "corpus.csv"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"no corpus manifest at {manifest}; run 'workbench data build' or use --synthetic"
        )
    return cls.from_manifest(root, split=split, sample_rate=sample_rate, **common)


def freeze_dataset(
    dataset: str,
    out: Path,
    root: Path | None = None,
    count: int = 200,
    seconds: float = 10.0,
    sample_rate: int = 16000,
    split: str = "validation",
    seed: int = 0,
) -> Path:
    """Render ``count`` items of a dataset into ``out`` (which must not exist or be empty).

    Returns:
        ``out``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder for the frozen set")
    data = make_dataset(dataset, root, count, seconds, sample_rate, split, seed)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    licences: list[str] = []
    if root is not None:
        licences = sorted(
            {
                r.licence
                for r in read_manifest(Path(root) / "manifests" / "corpus.csv")
                if r.split == split
            }
        )
    meta = {
        "layout_version": LAYOUT_VERSION,
        "dataset": dataset,
        "count": count,
        "seconds": seconds,
        "sample_rate": sample_rate,
        "split": split,
        "seed": seed,
        "corpus": str(root) if root is not None else "synthetic",
        "licences": licences,
    }
    if dataset == "speakers":
        _freeze_speakers(data, partial, count)
    else:
        _freeze_separation(data, partial, count)
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return out


def _freeze_separation(data: Any, folder: Path, count: int) -> None:
    with (folder / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "mixture", "sources", "source_names", "relative_levels_db"])
        for index in range(count):
            item = data[index]
            item_folder = folder / "items" / f"{index:06d}"
            item_folder.mkdir(parents=True)
            rate = item["sample_rate"]
            mixture = f"items/{index:06d}/mixture.wav"
            sf.write(str(folder / mixture), item["mixture"].numpy(), rate, subtype="FLOAT")
            paths = []
            for number, (name, source) in enumerate(
                zip(item["source_names"], item["sources"], strict=True)
            ):
                path = f"items/{index:06d}/s{number}_{_safe(name)}.wav"
                sf.write(str(folder / path), source.numpy(), rate, subtype="FLOAT")
                paths.append(path)
            levels = item.get("relative_levels_db")
            writer.writerow(
                [
                    index,
                    mixture,
                    ";".join(paths),
                    ";".join(item["source_names"]),
                    ";".join(f"{v:.4f}" for v in levels.tolist()) if levels is not None else "",
                ]
            )


def _freeze_speakers(data: SpeakerDataset, folder: Path, count: int) -> None:
    by_speaker: dict[str, list[str]] = {}
    with (folder / "speakers.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "speaker_id"])
        for index in range(count):
            item = data[index]
            speaker = item["speaker_id"]
            relative = f"{_safe(speaker)}/{index:04d}.wav"
            path = folder / "utterances" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), item["waveform"].numpy(), item["sample_rate"], subtype="FLOAT")
            writer.writerow([f"utterances/{relative}", speaker])
            by_speaker.setdefault(speaker, []).append(relative)
    trials = []
    speakers = sorted(s for s, paths in by_speaker.items() if len(paths) >= 2)
    for position, speaker in enumerate(speakers):
        paths = by_speaker[speaker]
        other = by_speaker[speakers[(position + 1) % len(speakers)]]
        for first, second in zip(paths, paths[1:], strict=False):
            trials.append((1, first, second))
            if other is not paths:
                trials.append((0, first, other[0]))
    if not trials:
        raise ValueError("too few utterances per speaker to make trials; raise --count")
    write_trials(folder / "trials.txt", trials)


class FrozenDataset(Dataset):
    """A frozen separation set, read back with the dataset item contract."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a frozen set (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("dataset") == "speakers":
            raise ValueError(f"{self.folder} is a frozen speaker set; use read_trials")
        with (self.folder / "items.csv").open(newline="") as handle:
            self.records = list(csv.DictReader(handle))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        mixture, rate = sf.read(str(self.folder / record["mixture"]), dtype="float32")
        sources = [
            sf.read(str(self.folder / path), dtype="float32")[0]
            for path in record["sources"].split(";")
        ]
        item: dict[str, Any] = {
            "mixture": torch.from_numpy(mixture),
            "sources": torch.from_numpy(np.stack(sources)),
            "source_names": record["source_names"].split(";"),
            "sample_rate": int(rate),
        }
        if record.get("relative_levels_db"):
            item["relative_levels_db"] = torch.tensor(
                [float(v) for v in record["relative_levels_db"].split(";")]
            )
        return item


def frozen_trials(folder: Path | str) -> list[tuple[int, Path, Path]]:
    """The trials of a frozen speaker set with absolute paths."""
    folder = Path(folder)
    return [
        (label, folder / "utterances" / a, folder / "utterances" / b)
        for label, a, b in read_trials(folder / "trials.txt")
    ]
