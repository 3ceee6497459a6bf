"""Manifests: one row per audio file of a corpus, written as CSV or JSON lines.

Every file the corpus builder writes gets one :class:`ManifestRow`. The datasets read rows, never
walk folders, so a corpus built here and a corpus a user lays out by hand (see
``models.data.readers``) look the same to training code. Paths are stored relative to the
corpus root so a corpus folder can be moved or mounted elsewhere.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["speech", "music", "stem", "sfx", "noise", "rir"]
Split = Literal["train", "validation"]

KINDS: tuple[str, ...] = ("speech", "music", "stem", "sfx", "noise", "rir")
SPLITS: tuple[str, ...] = ("train", "validation")
STEM_LABELS: tuple[str, ...] = ("drums", "bass", "vocals", "other")


@dataclass(frozen=True)
class ManifestRow:
    """One audio file of a corpus.

    Attributes:
        path: File path, relative to the corpus root (or absolute for external corpora).
        kind: ``speech``, ``music``, ``stem``, ``sfx``, ``noise`` or ``rir``.
        source: Where it came from: the Debian package, PyPI package or generator name.
        identity: Speaker, voice, instrument-set or kit id; empty when unknown. Speaker
            identities are ``source:speaker`` so that two packages never share an id by chance.
        licence: Licence of the audio as distributed (SPDX-like short name or a plain phrase).
        duration: Length in seconds.
        sample_rate: Sampling rate of the file in Hz.
        split: ``train`` or ``validation``.
        label: Stem label (``drums``, ``bass``, ``vocals``, ``other``) for stems, the folder
            category for sfx, the RT60 in seconds for room impulse responses.
        group: Files sharing a group belong together: the stems of one rendered song, the
            utterances of one TTS batch.
        origin: ``recorded``, ``tts``, ``midi``, ``simulated`` or ``generated``.
        language: BCP-47-ish language code for speech, empty otherwise.
        gender: ``female``, ``male`` or empty when unknown.
    """

    path: str
    kind: str
    source: str
    identity: str
    licence: str
    duration: float
    sample_rate: int
    split: str
    label: str = ""
    group: str = ""
    origin: str = "recorded"
    language: str = ""
    gender: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.licence:
            raise ValueError(f"every manifest row needs a licence (row for {self.path!r})")


FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(ManifestRow))
_INT_FIELDS = {"sample_rate"}
_FLOAT_FIELDS = {"duration"}


def _from_strings(record: dict[str, str]) -> ManifestRow:
    missing = [name for name in ("path", "kind", "source", "licence") if name not in record]
    if missing:
        raise ValueError(f"manifest record lacks columns {missing}; expected columns {FIELDS}")
    values: dict[str, object] = {}
    for name in FIELDS:
        if name not in record or record[name] is None:
            continue
        raw = record[name]
        if name in _INT_FIELDS:
            values[name] = int(float(raw))
        elif name in _FLOAT_FIELDS:
            values[name] = float(raw)
        else:
            values[name] = str(raw)
    return ManifestRow(**values)  # type: ignore[arg-type]


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> int:
    """Write rows atomically as CSV (``.csv``) or JSON lines (``.jsonl``).

    Returns:
        The number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            for row in rows:
                handle.write(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n")
                count += 1
        elif path.suffix == ".csv":
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow(dataclasses.asdict(row))
                count += 1
        else:
            raise ValueError(f"manifest path must end in .csv or .jsonl, got {path.name!r}")
    os.replace(tmp, path)
    return count


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest` (CSV or JSON lines)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            return [_from_strings(json.loads(line)) for line in handle if line.strip()]
        if path.suffix == ".csv":
            return [_from_strings(record) for record in csv.DictReader(handle)]
    raise ValueError(f"manifest path must end in .csv or .jsonl, got {path.name!r}")


def select(
    rows: Sequence[ManifestRow],
    kind: str | Sequence[str] | None = None,
    split: str | None = None,
    label: str | Sequence[str] | None = None,
    min_duration: float = 0.0,
) -> list[ManifestRow]:
    """Rows matching every given criterion (``None`` matches anything)."""
    kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
    labels = {label} if isinstance(label, str) else set(label) if label is not None else None
    return [
        row
        for row in rows
        if (kinds is None or row.kind in kinds)
        and (split is None or row.split == split)
        and (labels is None or row.label in labels)
        and row.duration >= min_duration
    ]


def resolve(root: Path, row: ManifestRow) -> Path:
    """Absolute path of a row's file under ``root`` (absolute row paths are kept)."""
    path = Path(row.path)
    return path if path.is_absolute() else Path(root) / path


def summarize(rows: Iterable[ManifestRow]) -> dict[str, dict[str, dict[str, float]]]:
    """Hours, file count and distinct identities per kind and split.

    Returns:
        ``{kind: {split: {"hours": h, "files": n, "identities": k}}}``.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    identities: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        cell = table.setdefault(row.kind, {}).setdefault(
            row.split, {"hours": 0.0, "files": 0, "identities": 0}
        )
        cell["hours"] += row.duration / 3600.0
        cell["files"] += 1
        if row.identity:
            identities.setdefault((row.kind, row.split), set()).add(row.identity)
    for (kind, split), names in identities.items():
        table[kind][split]["identities"] = len(names)
    return table


def format_summary(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of :func:`summarize`'s result."""
    lines = [
        "| kind | split | hours | files | identities |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        for split in SPLITS:
            cell = table.get(kind, {}).get(split)
            if cell is None:
                continue
            lines.append(
                f"| {kind} | {split} | {cell['hours']:.2f} | {int(cell['files'])} | "
                f"{int(cell['identities'])} |"
            )
    return "\n".join(lines)
