"""Readers for the standard public corpus layouts, so users train on real corpora unchanged.

Each reader returns either manifest rows (pools the mixing datasets draw from, through
``ManifestBank(rows, root="/")``: paths are absolute) or :class:`PremixedItem` lists (corpora
that ship their mixtures, read by :class:`models.data.datasets.PremixedDataset`).

Layouts (as their creators' scripts write them):

* LibriMix: ``ROOT/Libri{2,3}Mix/wav{8k,16k}/{min,max}/{train-100,train-360,dev,test}/
  {mix_clean,mix_both,mix_single,s1,s2,s3,noise}/ID.wav``, and the metadata CSVs
  ``.../metadata/mixture_{split}_{mix_type}.csv`` (``mixture_ID, mixture_path, source_1_path,
  source_2_path[, source_3_path][, noise_path], length``).
* WSJ0-2mix / 3mix: ``ROOT/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/NAME.wav``.
* MUSDB18-HQ: ``ROOT/{train,test}/SONG/{mixture,drums,bass,other,vocals}.wav``. MUSDB18 ships
  ``.stem.mp4`` files, which need an AAC decoder: convert them to the HQ layout first.
* VoxCeleb1/2: ``ROOT/{wav,dev/aac,aac}/idNNNNN/VIDEO/NNNNN.{wav,m4a}`` and the trial list
  ``veri_test.txt`` / ``veri_test2.txt`` (``label enroll test``).
* FSD50K: ``ROOT/FSD50K.{dev,eval}_audio/ID.wav`` and
  ``ROOT/FSD50K.ground_truth/{dev,eval}.csv`` (``fname,labels,mids[,split]``).
* FUSS: ``ROOT/ssdata/{train,validation,eval}/exampleNNNNN.wav`` with
  ``exampleNNNNN_sources/{background0,foreground0,...}_sound.wav``.
* DnR (Divide and Remaster): ``ROOT/{tr,cv,tt}/ID/{mix,speech,music,sfx}.wav``.
* MTASS-Dataset: ``ROOT/{train,dev,test}/{mixture,speech,music,noise}/KINDn/KIND_n.wav``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from models.data.datasets import PremixedItem
from models.data.manifest import ManifestRow

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MUSDB_STEMS = ("drums", "bass", "vocals", "other")


def _require(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: no folder {path}")
    return path


def _row(path: Path, kind: str, source: str, licence: str, split: str, **extra: str) -> ManifestRow:
    info = sf.info(str(path))
    return ManifestRow(
        path=str(path.resolve()),
        kind=kind,
        source=source,
        identity=extra.pop("identity", ""),
        licence=licence,
        duration=round(info.frames / info.samplerate, 4),
        sample_rate=int(info.samplerate),
        split=split,
        **extra,
    )


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


# --------------------------------------------------------------------------- LibriMix / WSJ0-mix


def read_librimix(
    root: Path | str,
    split: str = "dev",
    sample_rate: int = 8000,
    mode: str = "min",
    mix_type: str = "mix_clean",
    num_speakers: int = 2,
) -> list[PremixedItem]:
    """LibriMix items from the metadata CSV when present, else from the folder layout.

    ``root`` may be the LibriMix output folder or its ``Libri2Mix``/``Libri3Mix`` child.
    ``mix_type`` ``mix_both`` adds the noise as a last source.
    """
    root = Path(root)
    child = root / f"Libri{num_speakers}Mix"
    base = child if child.is_dir() else root
    folder = base / f"wav{sample_rate // 1000}k" / mode / split
    csv_path = folder.parent / "metadata" / f"mixture_{split}_{mix_type}.csv"
    with_noise = mix_type == "mix_both"
    names = tuple(f"speaker{i + 1}" for i in range(num_speakers)) + (
        ("noise",) if with_noise else ()
    )
    items = []
    if csv_path.is_file():
        with csv_path.open(newline="") as handle:
            for record in csv.DictReader(handle):
                sources = [record[f"source_{i + 1}_path"] for i in range(num_speakers)]
                if with_noise:
                    sources.append(record["noise_path"])
                resolved = [_resolve_csv_path(p, base) for p in [record["mixture_path"], *sources]]
                items.append(
                    PremixedItem(resolved[0], tuple(resolved[1:]), names, record["mixture_ID"])
                )
        return items
    _require(folder / mix_type, f"LibriMix {split}/{mix_type}")
    for mixture in _audio_files(folder / mix_type):
        sources = [folder / f"s{i + 1}" / mixture.name for i in range(num_speakers)]
        if with_noise:
            sources.append(folder / "noise" / mixture.name)
        items.append(
            PremixedItem(str(mixture), tuple(str(p) for p in sources), names, mixture.stem)
        )
    return items


def _resolve_csv_path(path: str, base: Path) -> str:
    """CSV paths are absolute on the machine that generated them; fall back to ``base``."""
    candidate = Path(path)
    if candidate.is_file():
        return str(candidate)
    parts = candidate.parts
    for marker in ("wav8k", "wav16k"):
        if marker in parts:
            return str(base.joinpath(*parts[parts.index(marker) :]))
    return str(base / candidate.name)


def read_wsj0_mix(
    root: Path | str,
    split: str = "tt",
    sample_rate: int = 8000,
    mode: str = "min",
    num_speakers: int = 2,
) -> list[PremixedItem]:
    """WSJ0-2mix / WSJ0-3mix items (``split`` is ``tr``, ``cv`` or ``tt``)."""
    folder = _require(
        Path(root) / f"wav{sample_rate // 1000}k" / mode / split, f"WSJ0-{num_speakers}mix"
    )
    names = tuple(f"speaker{i + 1}" for i in range(num_speakers))
    items = []
    for mixture in _audio_files(_require(folder / "mix", "WSJ0-mix mixtures")):
        sources = tuple(str(folder / f"s{i + 1}" / mixture.name) for i in range(num_speakers))
        items.append(PremixedItem(str(mixture), sources, names, mixture.stem))
    return items


# --------------------------------------------------------------------------- MUSDB18


def _check_musdb_folder(folder: Path) -> None:
    if any(folder.glob("*.stem.mp4")):
        raise ValueError(
            f"{folder} holds MUSDB18 '.stem.mp4' files, which need an AAC decoder (ffmpeg) that "
            "this application does not ship; convert them to the MUSDB18-HQ wav layout "
            "(for example with musdb's 'musdbconvert') and point the reader at that folder"
        )


def read_musdb(root: Path | str, subset: str = "train") -> list[ManifestRow]:
    """MUSDB18-HQ stems as rows (kind ``stem``, label = stem, group = song).

    ``subset`` ``train`` rows get split ``train``; ``test`` rows get ``validation``.
    """
    folder = _require(Path(root) / subset, "MUSDB18-HQ")
    _check_musdb_folder(folder)
    split = "train" if subset == "train" else "validation"
    rows = []
    for song in sorted(p for p in folder.iterdir() if p.is_dir()):
        for stem in MUSDB_STEMS:
            path = song / f"{stem}.wav"
            if path.is_file():
                rows.append(
                    _row(
                        path,
                        "stem",
                        "musdb18hq",
                        "MUSDB18 (research use)",
                        split,
                        label=stem,
                        group=f"musdb:{song.name}",
                        origin="recorded",
                    )
                )
    if not rows:
        raise FileNotFoundError(f"no MUSDB18-HQ songs under {folder}")
    return rows


def musdb_items(root: Path | str, subset: str = "test") -> list[PremixedItem]:
    """MUSDB18-HQ songs as premixed items (sources drums, bass, vocals, other)."""
    folder = _require(Path(root) / subset, "MUSDB18-HQ")
    _check_musdb_folder(folder)
    items = []
    for song in sorted(p for p in folder.iterdir() if p.is_dir()):
        stems = tuple(str(song / f"{stem}.wav") for stem in MUSDB_STEMS)
        if (song / "mixture.wav").is_file() and all(Path(s).is_file() for s in stems):
            items.append(PremixedItem(str(song / "mixture.wav"), stems, MUSDB_STEMS, song.name))
    return items


# --------------------------------------------------------------------------- VoxCeleb


def read_voxceleb(
    root: Path | str, split: str = "train", source: str = "voxceleb"
) -> list[ManifestRow]:
    """VoxCeleb utterances as speech rows, identity ``idNNNNN``.

    Looks in ``ROOT/wav``, ``ROOT/dev/aac``, ``ROOT/aac`` or ``ROOT`` itself for ``id*``
    folders. VoxCeleb2's ``.m4a`` files need an AAC decoder: convert them to wav first.
    """
    root = Path(root)
    base = next(
        (
            c
            for c in (root / "wav", root / "dev" / "aac", root / "aac", root)
            if c.is_dir() and any(c.glob("id*"))
        ),
        None,
    )
    if base is None:
        raise FileNotFoundError(f"no VoxCeleb 'id*' speaker folders under {root}")
    if (
        next(base.glob("id*/*/*.m4a"), None) is not None
        and next(base.glob("id*/*/*.wav"), None) is None
    ):
        raise ValueError(
            f"{base} holds VoxCeleb2 '.m4a' files, which need an AAC decoder; convert them to "
            "wav (same folder layout) first"
        )
    rows = []
    for path in sorted(base.glob("id*/*/*.wav")):
        speaker = path.parent.parent.name
        rows.append(
            _row(
                path,
                "speech",
                source,
                "VoxCeleb (CC-BY-4.0 metadata; audio YouTube)",
                split,
                identity=speaker,
                group=path.parent.name,
            )
        )
    return rows


def voxceleb_trial_paths(
    root: Path | str, trials: Sequence[tuple[int, str, str]]
) -> list[tuple[int, Path, Path]]:
    """Resolve ``idNNNNN/VIDEO/NNNNN.wav`` trial entries to files under ``root``."""
    root = Path(root)
    base = next((c for c in (root / "wav", root) if c.is_dir()), root)
    return [(label, base / enroll, base / test) for label, enroll, test in trials]


# --------------------------------------------------------------------------- FSD50K / FUSS


def read_fsd50k(root: Path | str, subset: str = "train") -> list[ManifestRow]:
    """FSD50K clips as sfx rows, label = the clip's labels (comma-separated).

    ``subset`` ``train`` and ``val`` read the dev set's split column; ``eval`` the eval set
    (rows marked ``validation``).
    """
    root = Path(root)
    dev = subset in ("train", "val")
    table = root / "FSD50K.ground_truth" / ("dev.csv" if dev else "eval.csv")
    audio = _require(root / ("FSD50K.dev_audio" if dev else "FSD50K.eval_audio"), "FSD50K")
    if not table.is_file():
        raise FileNotFoundError(f"FSD50K: no ground-truth table {table}")
    rows = []
    with table.open(newline="") as handle:
        for record in csv.DictReader(handle):
            if dev and record.get("split", "train") != subset:
                continue
            path = audio / f"{record['fname']}.wav"
            if path.is_file():
                rows.append(
                    _row(
                        path,
                        "sfx",
                        "fsd50k",
                        "CC0 / CC-BY / CC-BY-NC (per clip, FSD50K)",
                        "train" if subset == "train" else "validation",
                        label=record["labels"],
                    )
                )
    return rows


def read_fuss(root: Path | str, subset: str = "validation") -> list[PremixedItem]:
    """FUSS mixtures with their 1-4 sources (``background0``, ``foreground0``...)."""
    root = Path(root)
    folder = root / "ssdata" / subset if (root / "ssdata").is_dir() else root / subset
    _require(folder, "FUSS")
    items = []
    for mixture in sorted(folder.glob("example*.wav")):
        sources_folder = folder / f"{mixture.stem}_sources"
        sources = sorted(sources_folder.glob("*.wav")) if sources_folder.is_dir() else []
        if not sources:
            continue
        names = tuple("background" if s.stem.startswith("background") else "sfx" for s in sources)
        items.append(
            PremixedItem(str(mixture), tuple(str(s) for s in sources), names, mixture.stem)
        )
    return items


def fuss_rows(root: Path | str, subset: str = "train") -> list[ManifestRow]:
    """Every FUSS source file as an sfx row (for drawing effects into new mixtures)."""
    split = "train" if subset == "train" else "validation"
    rows = []
    for item in read_fuss(root, subset):
        for path, name in zip(item.sources, item.source_names, strict=True):
            rows.append(
                _row(Path(path), "sfx", "fuss", "CC-BY (FUSS, from freesound)", split, label=name)
            )
    return rows


# --------------------------------------------------------------------------- DnR / MTASS


def read_dnr(root: Path | str, subset: str = "cv") -> list[PremixedItem]:
    """Divide and Remaster items: sources speech, music, sfx (``subset`` tr, cv or tt)."""
    folder = _require(Path(root) / subset, "DnR")
    names = ("speech", "music", "sfx")
    items = []
    for clip in sorted(p for p in folder.iterdir() if p.is_dir()):
        mixture = clip / "mix.wav"
        sources = tuple(str(clip / f"{name}.wav") for name in names)
        if mixture.is_file() and all(Path(s).is_file() for s in sources):
            items.append(PremixedItem(str(mixture), sources, names, clip.name))
    return items


def read_mtass(root: Path | str, subset: str = "dev") -> list[PremixedItem]:
    """MTASS-Dataset items: sources speech, music, noise (``subset`` train, dev or test).

    The MTASS generation script writes ``SUBSET/KIND/KINDn/KIND_n.wav`` for KIND in mixture,
    speech, music and noise; items are matched by ``n``.
    """
    folder = _require(Path(root) / subset, "MTASS-Dataset")
    names = ("speech", "music", "noise")
    items = []
    mixtures = _require(folder / "mixture", "MTASS-Dataset mixtures")
    for sub in sorted(mixtures.glob("mixture*"), key=lambda p: _number(p.name)):
        number = _number(sub.name)
        mixture = sub / f"mixture_{number}.wav"
        sources = tuple(
            str(folder / kind / f"{kind}{number}" / f"{kind}_{number}.wav") for kind in names
        )
        if mixture.is_file() and all(Path(s).is_file() for s in sources):
            items.append(PremixedItem(str(mixture), sources, names, str(number)))
    return items


def _number(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    return int(digits) if digits else -1
