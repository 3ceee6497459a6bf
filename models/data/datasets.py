"""Datasets that mix on the fly: three-way, prompted, speech separation, and speakers.

Item contract (training code relies on it):

* Separation datasets (:class:`ThreeWayDataset`, :class:`PromptedDataset`,
  :class:`SpeechSeparationDataset`, :class:`PremixedDataset`) return a dict with

  - ``mixture``: ``Tensor (time,)`` float32;
  - ``sources``: ``Tensor (num_sources, time)``; ``sources.sum(0)`` equals ``mixture``
    exactly (the mixture is computed as that sum). References are the sources exactly as mixed:
    reverberant when reverb was applied, at their final levels;
  - ``source_names``: ``list[str]``, one per source. For the prompted dataset these are the
    prompt names in prompt order, duplicates allowed (two ``"speech"`` for two talkers);
  - ``sample_rate``: ``int``;
  - ``relative_levels_db``: ``Tensor (num_sources,)``, the drawn power ratio of each source to
    source 0 in dB (0 for source 0), which the returned references satisfy to float precision
    (:func:`models.data.mixing.ratio_db` measures it). Absent for :class:`PremixedDataset`.
  - prompted items also carry ``prompts``: ``LongTensor (num_prompts,)`` indices into
    :data:`PROMPTS`.

* :class:`SpeakerDataset` returns ``waveform: Tensor (time,)``, ``speaker_index: int``,
  ``speaker_id: str`` and ``sample_rate: int``.

Where the audio comes from is a :class:`SignalBank`: :class:`ManifestBank` reads a corpus built by
``workbench data build`` or rows from ``models.data.readers`` (standard public layouts), and
:class:`SyntheticBank` generates signals (``models.data.synthetic``) for smoke runs and tests.
Every dataset has ``from_manifest``, ``from_rows`` and ``synthetic`` constructors.

Randomness: item ``index`` draws everything from ``numpy.random.default_rng([seed, epoch,
index])``. Validation datasets ignore :meth:`set_epoch`, so they are fixed; training datasets
are endless: ``len()`` is only the epoch size, any index is valid, and :meth:`set_epoch` gives
new mixtures for the same indices.

Use :func:`collate` as the ``DataLoader`` ``collate_fn``: it stacks fixed-size tensors and pads
a variable number of sources (prompts) with zeros plus a ``source_mask``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

from models.data import synthetic
from models.data.manifest import ManifestRow, read_manifest, resolve
from models.data.mixing import avoid_clipping, convolve, power, resample, speed

# The prompted datasets speak the model's vocabulary (re-exported for the data code).
from models.tuss import PROMPTS as PROMPTS

STEM_PROMPTS = {"drums": "drums", "bass": "bass", "vocals": "vocals", "other-inst": "other"}
_MIN_POWER = 1e-8
_ATTEMPTS = 8


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item: a pure function of (seed, epoch, index)."""
    if index < 0:
        raise ValueError(f"index must be non-negative, got {index}")
    return np.random.default_rng([seed, epoch, index])


# --------------------------------------------------------------------------- banks


class SignalBank:
    """Where a dataset draws its signals from. Subclasses implement the draws.

    Categories: ``speech``, ``music``, ``sfx``, ``noise`` (sfx and coloured noise together),
    and the stem labels ``drums``, ``bass``, ``vocals``, ``other``.
    """

    sample_rate: int

    def has(self, category: str) -> bool:
        raise NotImplementedError

    def draw(self, category: str, length: int, rng: np.random.Generator) -> np.ndarray:
        """A ``(length,)`` float32 signal of ``category``."""
        raise NotImplementedError

    def speakers(self) -> list[str]:
        """Speech identities available (sorted)."""
        raise NotImplementedError

    def utterance(
        self, speaker: str, length: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, str]:
        """``(signal (length,), origin)`` of one speaker, filled from several utterances."""
        raise NotImplementedError

    def utterance_count(self, speaker: str) -> int:
        """How many files a speaker has (generated speakers: unlimited)."""
        raise NotImplementedError

    def song(
        self, labels: Sequence[str], length: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Aligned crops of the stems ``labels`` of one song (missing stems omitted)."""
        raise NotImplementedError

    def room(self, rng: np.random.Generator) -> np.ndarray | None:
        """A room impulse response ``(taps,)`` or ``None`` when the bank has none."""
        raise NotImplementedError


class SyntheticBank(SignalBank):
    """Generated signals (see ``models.data.synthetic``); needs no files."""

    def __init__(self, sample_rate: int = 16000, num_speakers: int = 24, first_speaker: int = 0):
        self.sample_rate = sample_rate
        self._speakers = [f"synthetic:{first_speaker + i:03d}" for i in range(num_speakers)]

    def has(self, category: str) -> bool:
        return category in ("speech", "noise") or category in synthetic.GENERATORS

    def draw(self, category: str, length: int, rng: np.random.Generator) -> np.ndarray:
        if category == "speech":
            return self.utterance(
                self._speakers[int(rng.integers(len(self._speakers)))], length, rng
            )[0]
        if category == "noise":
            if rng.random() < 0.5:
                color = str(rng.choice(["white", "pink", "brown"]))
                return 0.1 * synthetic.coloured_noise(color, length, rng)
            return synthetic.chirps(length, self.sample_rate, rng)
        if category not in synthetic.GENERATORS:
            raise ValueError(f"synthetic bank has no category {category!r}")
        return synthetic.GENERATORS[category](length, self.sample_rate, rng)

    def speakers(self) -> list[str]:
        return list(self._speakers)

    def utterance_count(self, speaker: str) -> int:
        return 1 << 30

    def utterance(
        self, speaker: str, length: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, str]:
        identity = int(speaker.rsplit(":", 1)[-1])
        return synthetic.speech_like(length, self.sample_rate, rng, identity), "generated"

    def song(
        self, labels: Sequence[str], length: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        return {
            label: synthetic.GENERATORS[label](length, self.sample_rate, rng) for label in labels
        }

    def room(self, rng: np.random.Generator) -> np.ndarray | None:
        return synthetic.room_response(self.sample_rate, rng)


@lru_cache(maxsize=1024)
def _load_short(path: str, target_rate: int) -> np.ndarray:
    """A whole (short) file, mono at ``target_rate``; cached per worker process."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != target_rate:
        mono = resample(torch.from_numpy(mono), rate, target_rate).numpy()
    return mono


def read_segment(
    path: str,
    row_rate: int,
    target_rate: int,
    length: int,
    rng: np.random.Generator,
    duration: float,
) -> np.ndarray:
    """A random ``length``-sample segment (at ``target_rate``) of a file; shorter files whole.

    Long files are read partially (FLAC and WAV seek), so a 5-minute song costs one crop.
    """
    if duration <= 30.0:
        return _load_short(path, target_rate)
    needed = int(math.ceil(length * row_rate / target_rate)) + 64
    total = int(duration * row_rate)
    start = int(rng.integers(0, max(1, total - needed)))
    audio, rate = sf.read(path, start=start, frames=needed, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != target_rate:
        mono = resample(torch.from_numpy(mono), rate, target_rate).numpy()
    return mono[:length]


class ManifestBank(SignalBank):
    """Signals from manifest rows (a built corpus or rows from the public-layout readers).

    Args:
        rows: Manifest rows; only those of ``split`` are used (``None`` = all).
        root: Folder that relative row paths are under.
        sample_rate: Rate every draw is returned at (files are resampled as needed).
        split: ``train`` or ``validation``.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        root: Path | str = "/",
        sample_rate: int = 16000,
        split: str | None = "train",
    ) -> None:
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.split = split
        usable = [r for r in rows if split is None or r.split == split]
        self.by_category: dict[str, list[ManifestRow]] = {}
        for row in usable:
            if row.kind in ("speech", "music", "sfx"):
                self.by_category.setdefault(row.kind, []).append(row)
            if row.kind in ("sfx", "noise"):
                self.by_category.setdefault("noise", []).append(row)
            if row.kind == "stem" and row.label:
                self.by_category.setdefault(row.label, []).append(row)
            if row.kind == "rir":
                self.by_category.setdefault("rir", []).append(row)
        self.by_speaker: dict[str, list[ManifestRow]] = {}
        for row in self.by_category.get("speech", []):
            if row.identity:
                self.by_speaker.setdefault(row.identity, []).append(row)
        self.songs: dict[str, dict[str, ManifestRow]] = {}
        for row in usable:
            if row.kind == "stem" and row.group:
                self.songs.setdefault(row.group, {})[row.label] = row
        self._song_names = sorted(self.songs)

    @classmethod
    def from_corpus(
        cls, root: Path | str, sample_rate: int = 16000, split: str = "train"
    ) -> ManifestBank:
        """The bank of a corpus built by ``workbench data build`` under ``root``."""
        root = Path(root)
        return cls(read_manifest(root / "manifests" / "corpus.csv"), root, sample_rate, split)

    def has(self, category: str) -> bool:
        if category == "music":
            return bool(self.by_category.get("music")) or bool(self.songs)
        return bool(self.by_category.get(category))

    def _segment(self, row: ManifestRow, length: int, rng: np.random.Generator) -> np.ndarray:
        path = str(resolve(self.root, row))
        return read_segment(path, row.sample_rate, self.sample_rate, length, rng, row.duration)

    def _fill(
        self,
        rows: Sequence[ManifestRow],
        first: ManifestRow,
        length: int,
        rng: np.random.Generator,
        gap: bool,
    ) -> np.ndarray:
        """Concatenate segments (``first``, then random ``rows``) until ``length`` is filled."""
        pieces: list[np.ndarray] = []
        filled = 0
        row = first
        for _ in range(32):
            piece = self._segment(row, length, rng)
            pieces.append(piece)
            filled += piece.shape[0]
            if gap:
                silence = np.zeros(int(rng.uniform(0.05, 0.4) * self.sample_rate), np.float32)
                pieces.append(silence)
                filled += silence.shape[0]
            if filled >= length:
                break
            row = rows[int(rng.integers(len(rows)))]
        signal = np.concatenate(pieces)
        if signal.shape[0] > length:
            start = int(rng.integers(0, signal.shape[0] - length + 1))
            signal = signal[start : start + length]
        return np.pad(signal, (0, length - signal.shape[0])).astype(np.float32)

    def draw(self, category: str, length: int, rng: np.random.Generator) -> np.ndarray:
        if category == "music" and not self.by_category.get("music") and self.songs:
            stems = self.song(("drums", "bass", "vocals", "other"), length, rng)
            return np.sum(list(stems.values()), axis=0).astype(np.float32)
        rows = self.by_category.get(category)
        if not rows:
            raise ValueError(f"no {category!r} audio in this bank (split {self.split!r})")
        row = rows[int(rng.integers(len(rows)))]
        if category == "speech" and row.identity:
            return self.utterance(row.identity, length, rng)[0]
        if category in ("sfx", "noise") and row.duration * self.sample_rate < length:
            # Short effects: one event placed at a random time, sometimes repeated.
            event = self._segment(row, length, rng)
            out = np.zeros(length, np.float32)
            for _ in range(int(rng.integers(1, 3))):
                start = int(rng.integers(0, max(1, length - event.shape[0])))
                stop = min(length, start + event.shape[0])
                out[start:stop] += event[: stop - start]
            return out
        return self._fill(rows, row, length, rng, gap=category == "speech")

    def speakers(self) -> list[str]:
        return sorted(self.by_speaker)

    def utterance_count(self, speaker: str) -> int:
        return len(self.by_speaker.get(speaker, ()))

    def utterance(
        self, speaker: str, length: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, str]:
        rows = self.by_speaker.get(speaker)
        if not rows:
            raise ValueError(f"unknown speaker {speaker!r}")
        first = rows[int(rng.integers(len(rows)))]
        return self._fill(rows, first, length, rng, gap=True), first.origin

    def song(
        self, labels: Sequence[str], length: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        if not self._song_names:
            raise ValueError(f"no stems in this bank (split {self.split!r})")
        candidates = [
            name for name in self._song_names if all(label in self.songs[name] for label in labels)
        ] or self._song_names
        stems = self.songs[candidates[int(rng.integers(len(candidates)))]]
        durations = [stems[label].duration for label in labels if label in stems]
        shortest = min(durations) if durations else 0.0
        needed = length / self.sample_rate
        offset = float(rng.uniform(0, max(0.0, shortest - needed)))
        out = {}
        for label in labels:
            if label not in stems:
                continue
            row = stems[label]
            start = int(offset * row.sample_rate)
            frames = int(math.ceil(needed * row.sample_rate)) + 64
            audio, rate = sf.read(
                str(resolve(self.root, row)),
                start=start,
                frames=frames,
                dtype="float32",
                always_2d=True,
            )
            mono = audio.mean(axis=1)
            if rate != self.sample_rate:
                mono = resample(torch.from_numpy(mono), rate, self.sample_rate).numpy()
            out[label] = np.pad(mono[:length], (0, max(0, length - mono.shape[0]))).astype(
                np.float32
            )
        return out

    def room(self, rng: np.random.Generator) -> np.ndarray | None:
        rows = self.by_category.get("rir")
        if not rows:
            return None
        row = rows[int(rng.integers(len(rows)))]
        return _load_short(str(resolve(self.root, row)), self.sample_rate)


# --------------------------------------------------------------------------- mixing base


def _as_tensor(signal: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))


def _audible(signal: np.ndarray) -> bool:
    return float(np.mean(signal.astype(np.float64) ** 2)) > _MIN_POWER


def mix_sources(
    signals: Sequence[Tensor],
    relative_levels_db: Sequence[float],
    reference_level_db: float,
    rooms: Sequence[np.ndarray | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Reverberate, level and sum sources.

    Source 0 is set to ``reference_level_db`` dB RMS; source ``i`` to ``relative_levels_db[i]``
    dB relative to source 0, measured after reverb. A final common gain avoids clipping, which
    keeps every ratio.

    Args:
        signals: ``num_sources`` tensors ``(time,)``, none silent.
        relative_levels_db: ``num_sources`` values; the first must be 0.
        reference_level_db: RMS level of source 0 in dB full scale.
        rooms: Per source, an impulse response ``(taps,)`` or ``None`` for dry.

    Returns:
        ``(mixture (time,), sources (num_sources, time))`` with ``mixture == sources.sum(0)``.
    """
    if len(signals) != len(relative_levels_db):
        raise ValueError("one relative level per source is needed")
    wet = []
    for index, signal in enumerate(signals):
        room = rooms[index] if rooms is not None else None
        if room is not None:
            signal = convolve(signal, torch.from_numpy(room))
        wet.append(signal.double())
    reference_power = 10.0 ** (reference_level_db / 10.0)
    levelled = []
    for signal, level in zip(wet, relative_levels_db, strict=True):
        wanted = reference_power * 10.0 ** (level / 10.0)
        levelled.append(signal * torch.sqrt(wanted / (power(signal) + 1e-20)))
    sources = avoid_clipping(torch.stack(levelled)).float()
    return sources.sum(dim=0), sources


class _MixingDataset(Dataset):
    """Shared seed handling for the on-the-fly datasets."""

    def __init__(self, bank: SignalBank, seconds: float, length: int, seed: int, split: str):
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        if length < 1:
            raise ValueError(f"length (items per epoch) must be at least 1, got {length}")
        self.bank = bank
        self.seconds = seconds
        self.length = length
        self.seed = seed
        self.split = split
        self.epoch = 0
        self.sample_rate = bank.sample_rate
        self.num_samples = int(round(seconds * bank.sample_rate))

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """New mixtures for the same indices (training only; validation stays fixed)."""
        if self.split == "train":
            self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        if self.split != "train" and index >= self.length:
            raise IndexError(f"index {index} out of range for a fixed set of {self.length}")
        return item_rng(self.seed, self.epoch, index)

    def _draw(self, category: str, rng: np.random.Generator) -> np.ndarray:
        for _ in range(_ATTEMPTS):
            signal = self.bank.draw(category, self.num_samples, rng)
            if _audible(signal):
                return signal
        raise ValueError(f"could not draw an audible {category!r} signal in {_ATTEMPTS} tries")

    def _rooms(
        self, count: int, probability: float, rng: np.random.Generator
    ) -> list[np.ndarray | None]:
        if probability <= 0 or rng.random() >= probability:
            return [None] * count
        return [self.bank.room(rng) for _ in range(count)]

    @classmethod
    def _bank_from_manifest(cls, root: Path | str, sample_rate: int, split: str) -> ManifestBank:
        return ManifestBank.from_corpus(root, sample_rate, split)


# --------------------------------------------------------------------------- three-way


class ThreeWayDataset(_MixingDataset):
    """MTASS-style clips: speech + music + noise.

    The speech-to-music and speech-to-noise ratios are drawn uniformly in ``ratio_range_db``
    (MTASS: [-5, 5] dB), measured on the sources as mixed. Sources are ``speech``, ``music``,
    ``noise``; ``relative_levels_db`` is ``[0, -smr, -snr]``.

    Args:
        bank: Signal bank.
        seconds: Clip length (MTASS: 10 s).
        length: Items per epoch (training) or set size (validation).
        seed: Base seed.
        split: ``train`` (endless) or ``validation`` (fixed).
        ratio_range_db: Range of both ratios.
        reverb_probability: Chance that an item is reverberated (one room response per source).
        level_range_db: Range of the speech RMS level in dB full scale.
    """

    source_names = ("speech", "music", "noise")

    def __init__(
        self,
        bank: SignalBank,
        seconds: float = 10.0,
        length: int = 1000,
        seed: int = 0,
        split: str = "train",
        ratio_range_db: tuple[float, float] = (-5.0, 5.0),
        reverb_probability: float = 0.0,
        level_range_db: tuple[float, float] = (-32.0, -22.0),
    ) -> None:
        super().__init__(bank, seconds, length, seed, split)
        self.ratio_range_db = ratio_range_db
        self.reverb_probability = reverb_probability
        self.level_range_db = level_range_db

    @classmethod
    def from_manifest(
        cls, root: Path | str, split: str = "train", sample_rate: int = 16000, **kwargs: Any
    ) -> ThreeWayDataset:
        return cls(cls._bank_from_manifest(root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[ManifestRow],
        root: Path | str = "/",
        split: str = "train",
        sample_rate: int = 16000,
        **kwargs: Any,
    ) -> ThreeWayDataset:
        return cls(ManifestBank(rows, root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def synthetic(
        cls, sample_rate: int = 16000, split: str = "train", **kwargs: Any
    ) -> ThreeWayDataset:
        return cls(SyntheticBank(sample_rate), split=split, **kwargs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        signals = [_as_tensor(self._draw(name, rng)) for name in self.source_names]
        speech_to_music = float(rng.uniform(*self.ratio_range_db))
        speech_to_noise = float(rng.uniform(*self.ratio_range_db))
        levels = [0.0, -speech_to_music, -speech_to_noise]
        rooms = self._rooms(3, self.reverb_probability, rng)
        mixture, sources = mix_sources(
            signals, levels, float(rng.uniform(*self.level_range_db)), rooms
        )
        return {
            "mixture": mixture,
            "sources": sources,
            "source_names": list(self.source_names),
            "sample_rate": self.sample_rate,
            "relative_levels_db": torch.tensor(levels),
        }


# --------------------------------------------------------------------------- prompted

#: Scenario name -> weight. Each scenario builds a prompt list (see PromptedDataset).
DEFAULT_SCENARIOS: dict[str, float] = {
    "speech-enhancement": 1.0,
    "speech-separation": 1.0,
    "sfx-separation": 1.0,
    "music-stems": 1.0,
    "cinematic": 1.0,
    "random": 1.0,
}


class PromptedDataset(_MixingDataset):
    """TUSS-style items: 2-4 prompts and one reference per prompt, in prompt order.

    Scenarios (drawn by weight): ``speech-enhancement`` (speech + sfx or sfx-mix, sometimes
    music-mix), ``speech-separation`` (2-3 talkers, sometimes sfx), ``sfx-separation`` (2-4
    effects), ``music-stems`` (2-4 stems of one song), ``cinematic`` (speech, sfx-mix,
    music-mix, sometimes a second talker) and ``random`` (any prompts; duplicates only for
    speech and sfx). The prompt order is shuffled. Duplicate ``speech`` prompts get different
    talkers when the bank has identities. Levels relative to source 0 are uniform in
    ``level_spread_db``.

    Args:
        bank: Signal bank.
        seconds: Clip length.
        length: Items per epoch or set size.
        seed: Base seed.
        split: ``train`` or ``validation``.
        min_prompts: Fewest prompts (2).
        max_prompts: Most prompts (4).
        scenarios: Scenario weights (a subset of :data:`DEFAULT_SCENARIOS`).
        level_spread_db: Range of each source's level relative to source 0.
        reverb_probability: Chance an item is reverberated.
    """

    def __init__(
        self,
        bank: SignalBank,
        seconds: float = 6.0,
        length: int = 1000,
        seed: int = 0,
        split: str = "train",
        min_prompts: int = 2,
        max_prompts: int = 4,
        scenarios: dict[str, float] | None = None,
        level_spread_db: tuple[float, float] = (-5.0, 5.0),
        reverb_probability: float = 0.0,
        level_range_db: tuple[float, float] = (-32.0, -22.0),
    ) -> None:
        super().__init__(bank, seconds, length, seed, split)
        if not 1 <= min_prompts <= max_prompts:
            raise ValueError(
                f"need 1 <= min_prompts <= max_prompts, got {min_prompts}, {max_prompts}"
            )
        self.min_prompts = min_prompts
        self.max_prompts = max_prompts
        weights = dict(DEFAULT_SCENARIOS if scenarios is None else scenarios)
        unknown = set(weights) - set(DEFAULT_SCENARIOS)
        if unknown:
            raise ValueError(
                f"unknown scenarios {sorted(unknown)}; known {list(DEFAULT_SCENARIOS)}"
            )
        weights = {name: w for name, w in weights.items() if w > 0 and self._possible(name)}
        if not weights:
            raise ValueError("no scenario is possible with the audio in this bank")
        self.scenario_names = tuple(weights)
        total = sum(weights.values())
        self.scenario_weights = np.array([weights[n] / total for n in self.scenario_names])
        self.level_spread_db = level_spread_db
        self.reverb_probability = reverb_probability
        self.level_range_db = level_range_db

    @classmethod
    def from_manifest(
        cls, root: Path | str, split: str = "train", sample_rate: int = 16000, **kwargs: Any
    ) -> PromptedDataset:
        return cls(cls._bank_from_manifest(root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[ManifestRow],
        root: Path | str = "/",
        split: str = "train",
        sample_rate: int = 16000,
        **kwargs: Any,
    ) -> PromptedDataset:
        return cls(ManifestBank(rows, root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def synthetic(
        cls, sample_rate: int = 16000, split: str = "train", **kwargs: Any
    ) -> PromptedDataset:
        return cls(SyntheticBank(sample_rate), split=split, **kwargs)

    def _possible(self, scenario: str) -> bool:
        has = self.bank.has
        needs = {
            "speech-enhancement": has("speech") and has("sfx"),
            "speech-separation": has("speech"),
            "sfx-separation": has("sfx"),
            "music-stems": all(has(label) for label in ("drums", "bass"))
            or sum(has(label) for label in STEM_PROMPTS.values()) >= 2,
            "cinematic": has("speech") and has("sfx") and has("music"),
            "random": has("speech") or has("sfx"),
        }
        return needs[scenario]

    def _available_prompts(self) -> list[str]:
        prompts = []
        for prompt in PROMPTS:
            category = STEM_PROMPTS.get(prompt, prompt)
            if prompt == "sfx-mix":
                category = "sfx"
            if prompt == "music-mix":
                category = "music"
            if self.bank.has(category):
                prompts.append(prompt)
        return prompts

    def _prompts(self, scenario: str, rng: np.random.Generator) -> list[str]:
        low, high = self.min_prompts, self.max_prompts
        if scenario == "speech-enhancement":
            prompts = ["speech", str(rng.choice(["sfx", "sfx-mix"]))]
            if self.bank.has("music") and rng.random() < 0.3:
                prompts.append("music-mix")
        elif scenario == "speech-separation":
            prompts = ["speech"] * int(rng.integers(2, 4))
            if self.bank.has("sfx") and rng.random() < 0.3:
                prompts.append("sfx")
        elif scenario == "sfx-separation":
            prompts = ["sfx"] * int(rng.integers(2, 5))
        elif scenario == "music-stems":
            stems = [p for p, label in STEM_PROMPTS.items() if self.bank.has(label)]
            count = int(rng.integers(min(2, len(stems)), min(4, len(stems)) + 1))
            prompts = [str(p) for p in rng.choice(stems, size=count, replace=False)]
        elif scenario == "cinematic":
            prompts = ["speech", "sfx-mix", "music-mix"]
            if rng.random() < 0.3:
                prompts.append("speech")
        else:
            available = self._available_prompts()
            count = int(rng.integers(low, high + 1))
            prompts = []
            while len(prompts) < count:
                prompt = str(rng.choice(available))
                if prompt in prompts and prompt not in ("speech", "sfx"):
                    if all(p in prompts for p in available if p not in ("speech", "sfx")) and not (
                        {"speech", "sfx"} & set(available)
                    ):
                        break
                    continue
                prompts.append(prompt)
        # Respect the prompt-count bounds: drop from the end or pad with speech / sfx.
        prompts = prompts[:high]
        while len(prompts) < low:
            prompts.append("speech" if self.bank.has("speech") else "sfx")
        order = rng.permutation(len(prompts))
        return [prompts[int(i)] for i in order]

    def _source(
        self, prompt: str, rng: np.random.Generator, talkers: list[str], song: dict[str, np.ndarray]
    ) -> np.ndarray:
        if prompt == "speech":
            speakers = self.bank.speakers()
            free = [s for s in speakers if s not in talkers]
            if free:
                for _ in range(_ATTEMPTS):
                    speaker = free[int(rng.integers(len(free)))]
                    signal, _ = self.bank.utterance(speaker, self.num_samples, rng)
                    if _audible(signal):
                        talkers.append(speaker)
                        return signal
            return self._draw("speech", rng)
        if prompt == "sfx-mix":
            count = int(rng.integers(2, 4))
            parts = [self._draw("sfx", rng) for _ in range(count)]
            gains = [10 ** (rng.uniform(-6, 6) / 20) for _ in range(count)]
            mixed = sum(
                g * p / (np.sqrt(np.mean(p**2)) + 1e-9) for g, p in zip(gains, parts, strict=True)
            )
            return np.asarray(mixed, dtype=np.float32)
        if prompt == "music-mix":
            return self._draw("music", rng)
        if prompt in STEM_PROMPTS:
            signal = song.get(STEM_PROMPTS[prompt])
            if signal is not None and _audible(signal):
                return signal
            for _ in range(_ATTEMPTS):
                signal = self.bank.song([STEM_PROMPTS[prompt]], self.num_samples, rng).get(
                    STEM_PROMPTS[prompt]
                )
                if signal is not None and _audible(signal):
                    return signal
            raise ValueError(f"could not draw an audible {prompt!r} stem")
        return self._draw(prompt, rng)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        scenario = str(rng.choice(self.scenario_names, p=self.scenario_weights))
        prompts = self._prompts(scenario, rng)
        stem_labels = [STEM_PROMPTS[p] for p in prompts if p in STEM_PROMPTS]
        song = self.bank.song(stem_labels, self.num_samples, rng) if stem_labels else {}
        talkers: list[str] = []
        signals = [_as_tensor(self._source(p, rng, talkers, song)) for p in prompts]
        levels = [0.0] + [float(rng.uniform(*self.level_spread_db)) for _ in prompts[1:]]
        rooms = self._rooms(len(prompts), self.reverb_probability, rng)
        mixture, sources = mix_sources(
            signals, levels, float(rng.uniform(*self.level_range_db)), rooms
        )
        return {
            "mixture": mixture,
            "sources": sources,
            "source_names": prompts,
            "prompts": torch.tensor([PROMPTS.index(p) for p in prompts], dtype=torch.long),
            "sample_rate": self.sample_rate,
            "relative_levels_db": torch.tensor(levels),
            "scenario": scenario,
        }


# --------------------------------------------------------------------------- speech separation


class SpeechSeparationDataset(_MixingDataset):
    """2 or 3 different talkers, optionally with noise (WHAM!-style), for Conv-TasNet jobs.

    Sources are ``speaker1`` ... ``speakerN`` and, with noise, ``noise`` last. Talker levels
    relative to talker 1 are uniform in ``speaker_spread_db``; the noise level is drawn as a
    talker-1-to-noise ratio in ``snr_range_db``.
    """

    def __init__(
        self,
        bank: SignalBank,
        num_speakers: int = 2,
        seconds: float = 4.0,
        length: int = 1000,
        seed: int = 0,
        split: str = "train",
        noise: bool = False,
        snr_range_db: tuple[float, float] = (0.0, 15.0),
        speaker_spread_db: tuple[float, float] = (-2.5, 2.5),
        reverb_probability: float = 0.0,
        level_range_db: tuple[float, float] = (-32.0, -22.0),
    ) -> None:
        super().__init__(bank, seconds, length, seed, split)
        if num_speakers not in (2, 3):
            raise ValueError(f"num_speakers must be 2 or 3, got {num_speakers}")
        if len(bank.speakers()) < num_speakers:
            raise ValueError(
                f"need at least {num_speakers} speakers in the bank, found {len(bank.speakers())}"
            )
        self.num_speakers = num_speakers
        self.noise = noise
        self.snr_range_db = snr_range_db
        self.speaker_spread_db = speaker_spread_db
        self.reverb_probability = reverb_probability
        self.level_range_db = level_range_db
        self.source_names = tuple(f"speaker{i + 1}" for i in range(num_speakers)) + (
            ("noise",) if noise else ()
        )

    @classmethod
    def from_manifest(
        cls, root: Path | str, split: str = "train", sample_rate: int = 8000, **kwargs: Any
    ) -> SpeechSeparationDataset:
        return cls(cls._bank_from_manifest(root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[ManifestRow],
        root: Path | str = "/",
        split: str = "train",
        sample_rate: int = 8000,
        **kwargs: Any,
    ) -> SpeechSeparationDataset:
        return cls(ManifestBank(rows, root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def synthetic(
        cls, sample_rate: int = 8000, split: str = "train", **kwargs: Any
    ) -> SpeechSeparationDataset:
        return cls(SyntheticBank(sample_rate), split=split, **kwargs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        speakers = self.bank.speakers()
        chosen = rng.choice(len(speakers), size=self.num_speakers, replace=False)
        signals = []
        for speaker_index in chosen:
            for _ in range(_ATTEMPTS):
                signal, _ = self.bank.utterance(speakers[int(speaker_index)], self.num_samples, rng)
                if _audible(signal):
                    break
            else:
                raise ValueError(f"speaker {speakers[int(speaker_index)]} gave no audible clip")
            signals.append(_as_tensor(signal))
        levels = [0.0] + [
            float(rng.uniform(*self.speaker_spread_db)) for _ in range(self.num_speakers - 1)
        ]
        if self.noise:
            signals.append(_as_tensor(self._draw("noise", rng)))
            levels.append(-float(rng.uniform(*self.snr_range_db)))
        rooms = self._rooms(len(signals), self.reverb_probability, rng)
        mixture, sources = mix_sources(
            signals, levels, float(rng.uniform(*self.level_range_db)), rooms
        )
        return {
            "mixture": mixture,
            "sources": sources,
            "source_names": list(self.source_names),
            "sample_rate": self.sample_rate,
            "relative_levels_db": torch.tensor(levels),
            "speakers": [speakers[int(i)] for i in chosen],
        }


# --------------------------------------------------------------------------- premixed sets


@dataclass(frozen=True)
class PremixedItem:
    """One item of a corpus that ships its mixtures (LibriMix, WSJ0-2mix, DnR, MTASS, FUSS)."""

    mixture: str
    sources: tuple[str, ...]
    source_names: tuple[str, ...]
    identifier: str = ""


class PremixedDataset(Dataset):
    """Items read from disk (see ``models.data.readers``), cropped and resampled.

    Args:
        items: The items.
        sample_rate: Output rate.
        seconds: Crop length (``None``: whole items; then use batch size 1 or crop later).
        seed: Seed of the crop positions (fixed per index).
        remix: Return ``sources.sum(0)`` as the mixture (default), which keeps the item
            contract exact; ``False`` returns the mixture file as stored (stored mixtures can
            differ from the sum by quantisation or, for MUSDB, mastering).
    """

    def __init__(
        self,
        items: Sequence[PremixedItem],
        sample_rate: int,
        seconds: float | None = None,
        seed: int = 0,
        remix: bool = True,
    ) -> None:
        if not items:
            raise ValueError("no items: check the corpus folder and layout")
        self.items = list(items)
        self.sample_rate = sample_rate
        self.seconds = seconds
        self.seed = seed
        self.remix = remix

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str, start: int, frames: int) -> Tensor:
        audio, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        signal = torch.from_numpy(audio.mean(axis=1))
        return resample(signal, rate, self.sample_rate)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        info = sf.info(item.mixture)
        start, frames = 0, -1
        if self.seconds is not None:
            frames = int(round(self.seconds * info.samplerate))
            rng = item_rng(self.seed, 0, index)
            start = int(rng.integers(0, max(1, info.frames - frames + 1)))
        sources = [self._read(p, start, frames) for p in item.sources]
        length = min(s.shape[0] for s in sources)
        if self.seconds is not None:
            length = int(round(self.seconds * self.sample_rate))
        stacked = torch.stack(
            [
                torch.nn.functional.pad(s[:length], (0, length - s[:length].shape[0]))
                for s in sources
            ]
        )
        if self.remix:
            mixture = stacked.sum(dim=0)
        else:
            stored = self._read(item.mixture, start, frames)[:length]
            mixture = torch.nn.functional.pad(stored, (0, length - stored.shape[0]))
        return {
            "mixture": mixture,
            "sources": stacked,
            "source_names": list(item.source_names),
            "sample_rate": self.sample_rate,
            "identifier": item.identifier,
        }


# --------------------------------------------------------------------------- speakers


class SpeakerDataset(_MixingDataset):
    """Utterances grouped by identity for speaker classification.

    Each index picks a speaker (uniformly, so classes are balanced), a crop of ``seconds``
    filled from that speaker's utterances, then augments it in training: additive noise
    (SNR 5-20 dB), reverb, and for TTS voices a speed/pitch change of up to 10 % (real voices
    are left unchanged: a pitch change would blur their identity). Validation items are not
    augmented.

    Identities with fewer than ``min_utterances`` files are left out.

    Attributes:
        speaker_ids: Sorted identity names; ``speaker_index`` indexes this list.
    """

    def __init__(
        self,
        bank: SignalBank,
        seconds: float = 3.0,
        length: int = 1000,
        seed: int = 0,
        split: str = "train",
        augment: bool | None = None,
        noise_probability: float = 0.5,
        reverb_probability: float = 0.3,
        speed_probability: float = 0.5,
        min_speakers: int = 2,
        min_utterances: int = 2,
    ) -> None:
        super().__init__(bank, seconds, length, seed, split)
        # Identities with a single file (a one-line character) teach nothing about a voice.
        self.speaker_ids = [s for s in bank.speakers() if bank.utterance_count(s) >= min_utterances]
        if len(self.speaker_ids) < min_speakers:
            raise ValueError(
                f"need at least {min_speakers} speakers, found {len(self.speaker_ids)}"
            )
        self.augment = split == "train" if augment is None else augment
        self.noise_probability = noise_probability if bank.has("noise") else 0.0
        self.reverb_probability = reverb_probability
        self.speed_probability = speed_probability

    @property
    def num_speakers(self) -> int:
        return len(self.speaker_ids)

    @classmethod
    def from_manifest(
        cls, root: Path | str, split: str = "train", sample_rate: int = 16000, **kwargs: Any
    ) -> SpeakerDataset:
        return cls(cls._bank_from_manifest(root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[ManifestRow],
        root: Path | str = "/",
        split: str = "train",
        sample_rate: int = 16000,
        **kwargs: Any,
    ) -> SpeakerDataset:
        return cls(ManifestBank(rows, root, sample_rate, split), split=split, **kwargs)

    @classmethod
    def synthetic(
        cls, sample_rate: int = 16000, split: str = "train", num_speakers: int = 8, **kwargs: Any
    ) -> SpeakerDataset:
        first = 0 if split == "train" else 1000
        return cls(SyntheticBank(sample_rate, num_speakers, first), split=split, **kwargs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        speaker_index = int(rng.integers(self.num_speakers))
        speaker = self.speaker_ids[speaker_index]
        waveform = None
        origin = "recorded"
        for _ in range(_ATTEMPTS):
            signal, origin = self.bank.utterance(speaker, self.num_samples, rng)
            if _audible(signal):
                waveform = _as_tensor(signal)
                break
        if waveform is None:
            raise ValueError(f"speaker {speaker!r} gave no audible clip")
        if self.augment:
            if origin == "tts" and rng.random() < self.speed_probability:
                factor = float(rng.uniform(0.9, 1.1))
                waveform = speed(waveform, factor, self.sample_rate)
                waveform = torch.nn.functional.pad(
                    waveform[: self.num_samples], (0, max(0, self.num_samples - waveform.shape[0]))
                )
            if rng.random() < self.reverb_probability:
                room = self.bank.room(rng)
                if room is not None:
                    waveform = convolve(waveform, torch.from_numpy(room))
            if rng.random() < self.noise_probability:
                noise = _as_tensor(self._draw("noise", rng))
                snr = float(rng.uniform(5.0, 20.0))
                noise = noise * torch.sqrt(
                    power(waveform) / (power(noise) * 10 ** (snr / 10) + 1e-20)
                )
                waveform = waveform + noise
        peak = float(waveform.abs().max())
        if peak > 0.99:
            waveform = waveform * (0.99 / peak)
        return {
            "waveform": waveform.float(),
            "speaker_index": speaker_index,
            "speaker_id": speaker,
            "sample_rate": self.sample_rate,
        }


def make_trials(
    rows: Sequence[ManifestRow], num_trials: int, seed: int = 0, split: str | None = "validation"
) -> list[tuple[int, str, str]]:
    """A balanced verification trial list ``(label, enroll, test)`` from speech rows.

    Half the trials are target (same identity, different files), half non-target. Paths are
    the rows' paths, so the list reads like VoxCeleb's ``veri_test.txt``.
    """
    by_speaker: dict[str, list[str]] = {}
    for row in rows:
        if row.kind == "speech" and row.identity and (split is None or row.split == split):
            by_speaker.setdefault(row.identity, []).append(row.path)
    speakers = sorted(s for s, paths in by_speaker.items() if len(paths) >= 2)
    if len(speakers) < 2:
        raise ValueError("need at least two identities with two or more utterances each")
    rng = np.random.default_rng(seed)
    trials = []
    for number in range(num_trials):
        first = speakers[int(rng.integers(len(speakers)))]
        enroll, same = rng.choice(by_speaker[first], size=2, replace=False)
        if number % 2 == 0:
            trials.append((1, str(enroll), str(same)))
        else:
            other = first
            while other == first:
                other = speakers[int(rng.integers(len(speakers)))]
            trials.append((0, str(enroll), str(rng.choice(by_speaker[other]))))
    return trials


def write_trials(path: Path, trials: Sequence[tuple[int, str, str]]) -> None:
    """Write trials in the VoxCeleb format: ``label enroll test`` per line."""
    Path(path).write_text("".join(f"{label} {a} {b}\n" for label, a, b in trials))


def read_trials(path: Path) -> list[tuple[int, str, str]]:
    """Read a VoxCeleb-format trial list (``label enroll test`` per line)."""
    trials = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: expected 'label enroll test', got {line!r}")
        trials.append((int(parts[0]), parts[1], parts[2]))
    return trials


# --------------------------------------------------------------------------- collate


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of any dataset here.

    Tensors of equal shape are stacked. ``sources`` with different source counts (prompted
    items) are zero-padded to the largest count, with ``source_mask: BoolTensor (batch,
    max_sources)`` marking real sources and ``prompts`` padded with -1. Lists and strings
    become lists per item.

    Returns:
        ``mixture (batch, time)``, ``sources (batch, max_sources, time)``, ``source_mask``, ...
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key == "sources":
            counts = [v.shape[0] for v in values]
            widest = max(counts)
            time = values[0].shape[-1]
            if any(v.shape[-1] != time for v in values):
                raise ValueError("items have different lengths; crop them (seconds=...) first")
            padded = torch.zeros(len(values), widest, time, dtype=values[0].dtype)
            mask = torch.zeros(len(values), widest, dtype=torch.bool)
            for row, value in enumerate(values):
                padded[row, : value.shape[0]] = value
                mask[row, : value.shape[0]] = True
            out["sources"] = padded
            out["source_mask"] = mask
        elif key in ("prompts", "relative_levels_db"):
            widest = max(v.shape[0] for v in values)
            fill = -1 if key == "prompts" else 0.0
            padded = torch.full((len(values), widest), fill, dtype=values[0].dtype)
            for row, value in enumerate(values):
                padded[row, : value.shape[0]] = value
            out[key] = padded
        elif isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], int) and not isinstance(values[0], bool):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    if "sample_rate" in out and isinstance(out["sample_rate"], Tensor):
        out["sample_rate"] = int(out["sample_rate"][0])
    return out
