"""Evaluation loops: separation quality on a validation set, speaker verification on trials.

Separation (:func:`evaluate_separation`): every item of a set is separated with a
:class:`~models.inference.Separator` (prompted models get the item's source names as prompts,
fixed-output models give their own sources), the outputs are matched to the references and
scored with :mod:`models.metrics`:

* SI-SDR and SI-SDRi per source, BSS-eval SDR and SDRi (512-tap distortion filter);
* the unprocessed mixture as the estimate of every source: its absolute SI-SDR / SDR is the
  baseline, and its improvement is 0 dB by definition;
* the oracle ideal ratio mask ``|S_i| / sum_j |S_j|`` applied to the mixture STFT
  (:func:`ideal_ratio_mask`): the ceiling a magnitude-mask model with that STFT can reach.

Matching outputs to references: a prompted model's outputs come in prompt order, so only
outputs of *repeated* prompts (two ``speech``) may swap; they are matched with
:func:`models.metrics.best_permutation` within each group of equal prompts. A fixed-output
model's outputs are matched by category (``speaker1``/``speaker2`` are both ``speech``,
``noise`` matches ``sfx``; see :func:`category`), with the best permutation inside each
category, which is the usual permutation-invariant scoring of talker outputs.

Speakers (:func:`evaluate_speakers`): each file of a VoxCeleb-format trial list is embedded
once with a :class:`~models.inference.Verifier`, every trial is scored (cosine) and the EER
and minDCF are computed with :mod:`models.metrics`.

Sets (:func:`open_evaluation_set`): the frozen layout of ``workbench data freeze``
(:mod:`models.data.freeze`), or one split folder of the public layouts the readers know
(FUSS, DnR, MTASS-Dataset, MUSDB18-HQ).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from models import metrics

#: Taps of the BSS-eval distortion filter (BSS-eval v3, ``mir_eval``).
SDR_FILTER_LENGTH = 512
#: Target analysis window of the oracle mask; rounded up to a power of two in samples
#: (1024 at 16 kHz, 512 at 8 kHz, 4096 at 44.1 kHz), with a quarter-window hop.
IRM_WINDOW_SECONDS = 0.064
#: Prompts of the prompted (TUSS) model's vocabulary that describe music stems.
STEM_PROMPTS = frozenset({"drums", "bass", "vocals", "other-inst"})
#: Source names of public layouts that are not prompts, and the prompt that asks for them.
PROMPT_ALIASES: dict[str, str] = {
    "music": "music-mix",
    "noise": "sfx",
    "background": "sfx",
    "foreground": "sfx",
    "other": "other-inst",
}
#: Names that mean the same kind of source for fixed-output models (``noise`` output vs
#: ``sfx`` reference), see :func:`category`.
CATEGORY_ALIASES: dict[str, str] = {
    "noise": "sfx",
    "sfx-mix": "sfx",
    "background": "sfx",
    "foreground": "sfx",
    "music-mix": "music",
    "other-inst": "other",
}
#: Numbered talker names, interchangeable among themselves.
_TALKER = re.compile(r"^(speaker|spk|talker)[ _-]?\d+$", re.IGNORECASE)
#: Scenario of ``models.data.datasets.PromptedDataset`` -> reported task.
SCENARIO_TASKS: dict[str, str] = {
    "speech-enhancement": "enhancement",
    "sfx-separation": "sfx",
    "music-stems": "stems",
    "cinematic": "cinematic",
    "random": "mixed",
}
#: Public layout -> reported task.
LAYOUT_TASKS: dict[str, str] = {"fuss": "sfx", "dnr": "cinematic", "mtass": "three-way"}

ProgressCallback = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- oracle mask


@dataclass(frozen=True)
class StftSettings:
    """The STFT of the oracle ideal ratio mask.

    Attributes:
        sample_rate: Rate of the signals, in Hz.
        n_fft: Window and FFT length in samples.
        hop_length: Hop in samples.
        window: Window name (``torch.hann_window``).
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    window: str = "hann"

    @classmethod
    def for_rate(cls, sample_rate: int) -> StftSettings:
        """About :data:`IRM_WINDOW_SECONDS` rounded up to a power of two, 75 % overlap."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}.")
        n_fft = 2 ** math.ceil(math.log2(IRM_WINDOW_SECONDS * sample_rate))
        return cls(sample_rate, n_fft, n_fft // 4)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for reports (with the padding the transform uses)."""
        return {**dataclasses.asdict(self), "center": True, "pad_mode": "constant"}


def ideal_ratio_mask(sources: Tensor, settings: StftSettings) -> Tensor:
    """Oracle estimates of the sources with the ideal ratio mask ``|S_i| / sum_j |S_j|``.

    The masks are applied to the STFT of the mixture ``sum_i s_i`` (computed as the sum of
    the source STFTs, which is the same by linearity) and inverted with overlap-add. Bins
    where every source is silent get equal masks (the mixture is zero there anyway).

    Args:
        sources: References, shape ``(num_sources, time)``.
        settings: The STFT.

    Returns:
        Estimates, shape ``(num_sources, time)``, float64.
    """
    if not isinstance(sources, Tensor) or sources.dim() != 2 or sources.shape[-1] == 0:
        raise ValueError(
            "sources must be a tensor of shape (num_sources, time), got "
            f"{tuple(sources.shape) if isinstance(sources, Tensor) else type(sources).__name__}."
        )
    signals = sources.detach().to("cpu", torch.float64)
    window = torch.hann_window(settings.n_fft, dtype=torch.float64)
    # Constant padding (not reflect): items shorter than half a window stay valid.
    spectra = torch.stft(
        signals,
        settings.n_fft,
        settings.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # S, F, N
    magnitudes = spectra.abs()
    total = magnitudes.sum(dim=0, keepdim=True)
    masks = torch.where(
        total > 0, magnitudes / total.clamp_min(1e-300), 1.0 / signals.shape[0]
    )  # S, F, N
    mixture = spectra.sum(dim=0, keepdim=True)
    return torch.istft(
        masks * mixture,
        settings.n_fft,
        settings.hop_length,
        window=window,
        center=True,
        length=signals.shape[-1],
    )


# --------------------------------------------------------------------------- labels and matching


def category(name: str) -> str:
    """What kind of source a name stands for, so outputs and references can be paired.

    ``speaker1``/``spk2``/``talker3`` are ``speech``; ``noise``, ``sfx-mix``, ``background``
    are ``sfx``; ``music-mix`` is ``music``; ``other-inst`` is ``other``; the rest are
    themselves (lower case).
    """
    lowered = name.strip().lower()
    if _TALKER.match(lowered):
        return "speech"
    return CATEGORY_ALIASES.get(lowered, lowered)


def prompt_for(name: str, prompts: Sequence[str]) -> str | None:
    """The prompt of a prompted model that asks for a source called ``name``, if any."""
    if name in prompts:
        return name
    lowered = name.strip().lower()
    candidate = "speech" if _TALKER.match(lowered) else PROMPT_ALIASES.get(lowered, lowered)
    return candidate if candidate in prompts else None


def match_outputs(
    estimates: Tensor | np.ndarray,
    estimate_groups: Sequence[str],
    references: Tensor | np.ndarray,
    reference_groups: Sequence[str],
) -> tuple[int, ...]:
    """Pair each reference with an output of the same group, maximising the mean SI-SDR.

    Outputs of one group are interchangeable; outputs of different groups never swap. With
    as many outputs as references in a group, the pairing is
    :func:`models.metrics.best_permutation`; with more outputs (a model that also produces
    sources the item lacks), the best ordered subset is chosen.

    Args:
        estimates: Outputs, shape ``(num_outputs, time)``.
        estimate_groups: Group of each output (``num_outputs`` names).
        references: References, shape ``(num_sources, time)``.
        reference_groups: Group of each reference (``num_sources`` names).

    Returns:
        For each reference, the index of its output.

    Raises:
        ValueError: A group has fewer outputs than references (the message names it).
    """
    estimate_array = np.asarray(estimates, dtype=np.float64)
    reference_array = np.asarray(references, dtype=np.float64)
    if estimate_array.ndim != 2 or reference_array.ndim != 2:
        raise ValueError(
            "estimates and references must have shapes (num_outputs, time) and "
            f"(num_sources, time); got {estimate_array.shape} and {reference_array.shape}."
        )
    if len(estimate_groups) != estimate_array.shape[0] or len(reference_groups) != len(
        reference_array
    ):
        raise ValueError("need one group name per output and one per reference.")
    assignment: list[int] = [-1] * len(reference_groups)
    for group in dict.fromkeys(reference_groups):
        wanted = [i for i, g in enumerate(reference_groups) if g == group]
        available = [i for i, g in enumerate(estimate_groups) if g == group]
        if len(available) < len(wanted):
            raise ValueError(
                f"{len(wanted)} reference(s) of kind '{group}' but the model gives "
                f"{len(available)} such output(s)."
            )
        if len(available) == len(wanted):
            _, permutation = metrics.best_permutation(
                estimate_array[available], reference_array[wanted]
            )
            chosen = [available[p] for p in permutation]
        else:
            pairwise = metrics.si_sdr(
                estimate_array[available][:, None, :], reference_array[wanted][None, :, :]
            )  # outputs, references
            best = max(
                itertools.permutations(range(len(available)), len(wanted)),
                key=lambda order: sum(pairwise[o, j] for j, o in enumerate(order)),
            )
            chosen = [available[o] for o in best]
        for reference_index, output_index in zip(wanted, chosen, strict=True):
            assignment[reference_index] = output_index
    return tuple(assignment)


# --------------------------------------------------------------------------- scores

#: Metric fields of :class:`SourceScore`, in report order.
METRICS: tuple[str, ...] = (
    "si_sdr",
    "si_sdri",
    "sdr",
    "sdri",
    "mixture_si_sdr",
    "mixture_sdr",
    "oracle_irm_si_sdr",
    "oracle_irm_si_sdri",
    "oracle_irm_sdr",
    "oracle_irm_sdri",
)


@dataclass(frozen=True)
class SourceScore:
    """Scores of one source of one item, in dB.

    Attributes:
        name: The reference's name in the set.
        si_sdr: SI-SDR of the model's output.
        si_sdri: Its improvement over the mixture.
        sdr: BSS-eval SDR of the output (``nan`` when SDR is switched off).
        sdri: Its improvement over the mixture.
        mixture_si_sdr: SI-SDR of the mixture as the estimate (the baseline).
        mixture_sdr: SDR of the mixture as the estimate.
        oracle_irm_si_sdr: SI-SDR of the oracle ideal-ratio-mask estimate.
        oracle_irm_si_sdri: Its improvement over the mixture (the ceiling).
        oracle_irm_sdr: SDR of the oracle estimate.
        oracle_irm_sdri: Its improvement over the mixture.
    """

    name: str
    si_sdr: float
    si_sdri: float
    sdr: float
    sdri: float
    mixture_si_sdr: float
    mixture_sdr: float
    oracle_irm_si_sdr: float
    oracle_irm_si_sdri: float
    oracle_irm_sdr: float
    oracle_irm_sdri: float


def score_sources(
    estimates: Tensor | np.ndarray,
    references: Tensor | np.ndarray,
    mixture: Tensor | np.ndarray,
    names: Sequence[str],
    stft: StftSettings,
    sdr_filter_length: int = SDR_FILTER_LENGTH,
) -> list[SourceScore]:
    """Score matched estimates, the mixture baseline and the oracle mask against references.

    Args:
        estimates: Outputs in reference order, shape ``(num_sources, time)``.
        references: References, shape ``(num_sources, time)``.
        mixture: The mixture, shape ``(time,)``.
        names: Reference names (``num_sources``).
        stft: STFT of the oracle mask.
        sdr_filter_length: BSS-eval filter taps; 0 skips SDR (reported as ``nan``).

    Returns:
        One :class:`SourceScore` per reference.
    """
    reference_tensor = torch.as_tensor(np.asarray(references, dtype=np.float64))
    estimate_tensor = torch.as_tensor(np.asarray(estimates, dtype=np.float64))
    mixture_tensor = torch.as_tensor(np.asarray(mixture, dtype=np.float64))
    if reference_tensor.dim() != 2 or estimate_tensor.shape != reference_tensor.shape:
        raise ValueError(
            "estimates and references must both have shape (num_sources, time); got "
            f"{tuple(estimate_tensor.shape)} and {tuple(reference_tensor.shape)}."
        )
    if mixture_tensor.shape != reference_tensor.shape[-1:]:
        raise ValueError(
            f"mixture must have shape (time,) = ({reference_tensor.shape[-1]},), got "
            f"{tuple(mixture_tensor.shape)}."
        )
    if len(names) != reference_tensor.shape[0]:
        raise ValueError(f"need {reference_tensor.shape[0]} names, got {len(names)}.")
    oracle = ideal_ratio_mask(reference_tensor, stft)
    mixtures = mixture_tensor.expand_as(reference_tensor)
    si_sdr = metrics.si_sdr(estimate_tensor, reference_tensor)
    mixture_si_sdr = metrics.si_sdr(mixtures, reference_tensor)
    oracle_si_sdr = metrics.si_sdr(oracle, reference_tensor)
    if sdr_filter_length > 0:
        sdr = metrics.sdr(estimate_tensor, reference_tensor, sdr_filter_length)
        mixture_sdr = metrics.sdr(mixtures, reference_tensor, sdr_filter_length)
        oracle_sdr = metrics.sdr(oracle, reference_tensor, sdr_filter_length)
    else:
        sdr = mixture_sdr = oracle_sdr = np.full(len(names), np.nan)
    return [
        SourceScore(
            name=str(name),
            si_sdr=float(si_sdr[i]),
            si_sdri=float(si_sdr[i] - mixture_si_sdr[i]),
            sdr=float(sdr[i]),
            sdri=float(sdr[i] - mixture_sdr[i]),
            mixture_si_sdr=float(mixture_si_sdr[i]),
            mixture_sdr=float(mixture_sdr[i]),
            oracle_irm_si_sdr=float(oracle_si_sdr[i]),
            oracle_irm_si_sdri=float(oracle_si_sdr[i] - mixture_si_sdr[i]),
            oracle_irm_sdr=float(oracle_sdr[i]),
            oracle_irm_sdri=float(oracle_sdr[i] - mixture_sdr[i]),
        )
        for i, name in enumerate(names)
    ]


def mean_scores(scores: Sequence[SourceScore]) -> dict[str, Any]:
    """Mean of every metric over ``scores`` (``None`` where undefined), plus ``num_sources``."""
    summary: dict[str, Any] = {}
    for metric in METRICS:
        values = np.array([getattr(score, metric) for score in scores], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[metric] = float(finite.mean()) if finite.size else None
    summary["num_sources"] = len(scores)
    return summary


# --------------------------------------------------------------------------- tasks


def task_from_prompts(names: Sequence[str]) -> str:
    """The task a prompted item's source names describe.

    ``stems`` (only stem prompts), ``sfx`` (only ``sfx``), ``two-speaker`` /
    ``multi-speaker`` (talkers, optionally one ``sfx``), ``cinematic`` (speech with
    ``sfx-mix`` and ``music-mix``), ``enhancement`` (one talker with sfx and/or music),
    otherwise ``mixed``.
    """
    speech = sum(name == "speech" for name in names)
    others = [name for name in names if name != "speech"]
    if len(names) >= 2 and set(names) <= STEM_PROMPTS:
        return "stems"
    if names and set(names) == {"sfx"}:
        return "sfx"
    if speech >= 2 and len(others) <= 1 and set(others) <= {"sfx"}:
        return "two-speaker" if speech == 2 else "multi-speaker"
    if speech >= 1 and set(others) == {"sfx-mix", "music-mix"} and len(others) == 2:
        return "cinematic"
    if speech == 1 and others and set(others) <= {"sfx", "sfx-mix", "music-mix"}:
        return "enhancement"
    return "mixed"


def item_task(names: Sequence[str], dataset: str, task: str = "", scenario: str = "") -> str:
    """The task an item is reported under.

    Order: an explicit ``task`` in the item metadata; the prompted dataset's ``scenario``
    (``speech-separation`` becomes ``two-speaker`` or ``multi-speaker`` by talker count);
    for prompted sets, :func:`task_from_prompts`; otherwise the dataset or layout name
    (``three-way``, ``speech-separation``, ...).
    """
    if task:
        return task
    if scenario == "speech-separation":
        return "two-speaker" if sum(n == "speech" for n in names) == 2 else "multi-speaker"
    if scenario:
        return SCENARIO_TASKS.get(scenario, scenario)
    if dataset == "prompted":
        return task_from_prompts(names)
    return LAYOUT_TASKS.get(dataset, dataset)


# --------------------------------------------------------------------------- sets


@dataclass(frozen=True)
class EvaluationItem:
    """One item to evaluate.

    Attributes:
        identifier: Stable id within the set.
        task: Reported task (see :func:`item_task`).
        mixture: Shape ``(time,)``.
        sources: References, shape ``(num_sources, time)``.
        source_names: One per source (duplicates allowed).
        sample_rate: Rate in Hz.
    """

    identifier: str
    task: str
    mixture: Tensor
    sources: Tensor
    source_names: tuple[str, ...]
    sample_rate: int


@dataclass
class EvaluationSet:
    """A separation set on disk, read item by item.

    Attributes:
        folder: Where it lives.
        layout: ``frozen``, ``fuss``, ``dnr``, ``mtass`` or ``musdb``.
        dataset: What it holds (the frozen set's ``dataset``, else the layout).
        sample_rate: The set's rate (the frozen meta's, else the first mixture's).
        meta: The frozen set's ``meta.json`` (empty for public layouts).
    """

    folder: Path
    layout: str
    dataset: str
    sample_rate: int
    meta: dict[str, Any] = field(default_factory=dict)
    _reader: Any = field(default=None, repr=False)
    _records: list[dict[str, str]] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self._reader)

    def item(self, index: int) -> EvaluationItem:
        """Item ``index`` (``0 <= index < len(self)``)."""
        raw = self._reader[index]
        names = tuple(str(name) for name in raw["source_names"])
        record = self._records[index] if self._records else {}
        identifier = str(record.get("index", raw.get("identifier") or index))
        task = item_task(
            names,
            self.dataset,
            task=str(record.get("task") or raw.get("task") or ""),
            scenario=str(record.get("scenario") or raw.get("scenario") or ""),
        )
        return EvaluationItem(
            identifier=identifier,
            task=task,
            mixture=raw["mixture"],
            sources=raw["sources"],
            source_names=names,
            sample_rate=int(raw["sample_rate"]),
        )

    def __iter__(self) -> Iterator[EvaluationItem]:
        for index in range(len(self)):
            yield self.item(index)


def _subfolders_with(folder: Path, *names: str) -> bool:
    return any(
        child.is_dir() and all((child / name).is_file() for name in names)
        for child in folder.iterdir()
    )


def open_evaluation_set(folder: Path | str) -> EvaluationSet:
    """Open a separation set folder, detecting its layout.

    Layouts: the frozen layout of ``workbench data freeze`` (``meta.json`` + ``items.csv``);
    or one split folder of FUSS (``exampleNNNNN.wav`` + ``exampleNNNNN_sources/``), DnR
    (``ID/mix.wav``...), MTASS-Dataset (``mixture/mixtureN/mixture_N.wav``...) or MUSDB18-HQ
    (``SONG/mixture.wav`` + stems). Public-layout items are read whole, at the rate of the
    first mixture, with the mixture recomputed as the sum of the sources.

    Raises:
        FileNotFoundError: The folder is missing or in no known layout.
        ValueError: It is a frozen *speaker* set.
    """
    from models.data import readers
    from models.data.datasets import PremixedDataset
    from models.data.freeze import FrozenDataset

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"the set folder {folder} does not exist")
    if (folder / "meta.json").is_file():
        frozen = FrozenDataset(folder)
        return EvaluationSet(
            folder=folder,
            layout="frozen",
            dataset=str(frozen.meta.get("dataset", "frozen")),
            sample_rate=int(frozen.meta.get("sample_rate", 0)),
            meta=dict(frozen.meta),
            _reader=frozen,
            _records=list(frozen.records),
        )
    parent, split = folder.parent, folder.name
    if any(folder.glob("example*_sources")):
        layout, items = "fuss", readers.read_fuss(parent, split)
    elif (folder / "mixture").is_dir() and any((folder / "mixture").glob("mixture*")):
        layout, items = "mtass", readers.read_mtass(parent, split)
    elif _subfolders_with(folder, "mix.wav"):
        layout, items = "dnr", readers.read_dnr(parent, split)
    elif _subfolders_with(folder, "mixture.wav", "drums.wav"):
        layout, items = "musdb", readers.musdb_items(parent, split)
    else:
        raise FileNotFoundError(
            f"{folder} is in no known set layout: expected a frozen set (meta.json, "
            "items.csv from 'workbench data freeze') or one split folder of FUSS, DnR, "
            "MTASS-Dataset or MUSDB18-HQ"
        )
    if not items:
        raise FileNotFoundError(f"{folder} looks like {layout} but holds no complete items")
    rate = int(sf.info(items[0].mixture).samplerate)
    return EvaluationSet(
        folder=folder,
        layout=layout,
        dataset=layout,
        sample_rate=rate,
        _reader=PremixedDataset(items, sample_rate=rate, seconds=None),
    )


# --------------------------------------------------------------------------- separation


@dataclass(frozen=True)
class ItemResult:
    """Scores of one evaluated item.

    Attributes:
        identifier: Item id.
        task: Reported task.
        sample_rate: Rate in Hz.
        seconds: Audio length.
        outputs: The model output (label) matched to each reference.
        scores: One :class:`SourceScore` per reference, in the item's order.
        separation_seconds: Wall time of the separation alone.
    """

    identifier: str
    task: str
    sample_rate: int
    seconds: float
    outputs: tuple[str, ...]
    scores: tuple[SourceScore, ...]
    separation_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.identifier,
            "task": self.task,
            "sample_rate": self.sample_rate,
            "seconds": self.seconds,
            "separation_seconds": self.separation_seconds,
            "sources": [
                {**dataclasses.asdict(score), "output": output}
                for score, output in zip(self.scores, self.outputs, strict=True)
            ],
        }


@dataclass(frozen=True)
class SeparationEvaluation:
    """Everything :func:`evaluate_separation` measured.

    Attributes:
        items: Evaluated items.
        skipped: ``(identifier, reason)`` of items the model cannot be asked for.
        stft: Oracle-mask STFT per sample rate met.
        sdr_filter_length: BSS-eval taps (0: SDR off).
        wall_seconds: Wall time of the whole loop (reading, separating, scoring).
    """

    items: tuple[ItemResult, ...]
    skipped: tuple[tuple[str, str], ...]
    stft: tuple[StftSettings, ...]
    sdr_filter_length: int
    wall_seconds: float

    def summary(self) -> dict[str, Any]:
        """Means per source name, per task (with its sources) and over all sources."""
        scores = [score for item in self.items for score in item.scores]
        per_source: dict[str, list[SourceScore]] = {}
        for score in scores:
            per_source.setdefault(score.name, []).append(score)
        per_task: dict[str, dict[str, Any]] = {}
        for task in sorted({item.task for item in self.items}):
            task_items = [item for item in self.items if item.task == task]
            task_scores = [score for item in task_items for score in item.scores]
            by_name: dict[str, list[SourceScore]] = {}
            for score in task_scores:
                by_name.setdefault(score.name, []).append(score)
            per_task[task] = {
                "num_items": len(task_items),
                "mean": mean_scores(task_scores),
                "per_source": {name: mean_scores(group) for name, group in by_name.items()},
            }
        overall = mean_scores(scores) if scores else {}
        audio_seconds = sum(item.seconds for item in self.items)
        return {
            "overall": overall,
            "per_source": {name: mean_scores(group) for name, group in per_source.items()},
            "per_task": per_task,
            "mixture_baseline": {
                "si_sdr": overall.get("mixture_si_sdr"),
                "sdr": overall.get("mixture_sdr"),
                # The mixture as its own estimate improves on itself by nothing.
                "si_sdri": 0.0,
                "sdri": 0.0,
            },
            "oracle_irm": {
                "mask": "|S_i| / sum_j |S_j| on the mixture STFT, inverted by overlap-add",
                "stft": [settings.as_dict() for settings in self.stft],
                "si_sdr": overall.get("oracle_irm_si_sdr"),
                "si_sdri": overall.get("oracle_irm_si_sdri"),
                "sdr": overall.get("oracle_irm_sdr"),
                "sdri": overall.get("oracle_irm_sdri"),
            },
            "counts": {
                "items": len(self.items),
                "skipped": len(self.skipped),
                "sources": len(scores),
                "tasks": {task: info["num_items"] for task, info in per_task.items()},
            },
            "skipped": [{"id": i, "reason": reason} for i, reason in self.skipped],
            "wall_seconds": self.wall_seconds,
            "audio_seconds": audio_seconds,
            "real_time_factor": self.wall_seconds / audio_seconds if audio_seconds else None,
            "sdr_filter_length": self.sdr_filter_length,
        }


def separate_item(separator: Any, item: EvaluationItem) -> tuple[np.ndarray, tuple[str, ...]]:
    """Run the separator on an item and line its outputs up with the references.

    Args:
        separator: A :class:`models.inference.Separator`.
        item: The item.

    Returns:
        ``(estimates, outputs)``: estimates in reference order, shape ``(num_sources,
        time)``, and the output label matched to each reference.

    Raises:
        ValueError: The model cannot produce one of the item's sources.
    """
    mixture = item.mixture.detach().cpu().numpy().astype(np.float32, copy=False)
    references = item.sources.detach().cpu().numpy()
    if separator.prompted:
        vocabulary = tuple(separator.model.PROMPTS)
        prompts = [prompt_for(name, vocabulary) for name in item.source_names]
        missing = [n for n, p in zip(item.source_names, prompts, strict=True) if p is None]
        if missing:
            raise ValueError(
                f"no prompt asks for {', '.join(sorted(set(missing)))} "
                f"(prompts: {', '.join(vocabulary)})"
            )
        result = separator.separate(mixture, item.sample_rate, prompts=prompts)
        estimates = np.stack(result.arrays)
        order = match_outputs(estimates, prompts, references, prompts)
    else:
        result = separator.separate(mixture, item.sample_rate)
        estimates = np.stack(result.arrays)
        try:
            order = match_outputs(
                estimates,
                [category(label) for label in result.labels],
                references,
                [category(name) for name in item.source_names],
            )
        except ValueError as exc:
            raise ValueError(
                f"the model's outputs ({', '.join(result.labels)}) cannot stand for the item's "
                f"sources ({', '.join(item.source_names)}): {exc}"
            ) from None
    return estimates[list(order)], tuple(result.names[i] for i in order)


def _output_names(separator: Any) -> tuple[str, ...]:
    """The fixed outputs of a separator's model (``source_names`` of its config)."""
    config = getattr(separator.model, "config", None)
    return tuple(getattr(config, "source_names", ()) or ())


def fold_into_background(item: EvaluationItem, outputs: Sequence[str]) -> EvaluationItem:
    """Sum the references a model has no output for into its one background output.

    An enhancement model (outputs ``speech`` + ``noise``) evaluated on a three-way item
    (``speech``, ``music``, ``noise``) must return music inside ``noise``: everything that is
    not speech. So when the model has exactly one output whose kind is not ``speech``, every
    reference of a kind the model lacks is added to the reference of that kind (created if
    the item has none). Any other model, or an item it covers, is returned unchanged.

    Args:
        item: The item.
        outputs: The model's output names.

    Returns:
        The item, with ``sources`` of shape ``(num_kept, time)`` after folding.
    """
    kinds = [category(name) for name in outputs]
    background = [name for name, kind in zip(outputs, kinds, strict=True) if kind != "speech"]
    if len(background) != 1:
        return item
    target = category(background[0])
    foreign = [i for i, n in enumerate(item.source_names) if category(n) not in kinds]
    if not foreign:
        return item
    kept = [i for i in range(len(item.source_names)) if i not in foreign]
    names = [item.source_names[i] for i in kept]
    sources = [item.sources[i] for i in kept]
    folded = item.sources[foreign].sum(dim=0)
    if target in [category(n) for n in names]:
        index = [category(n) for n in names].index(target)
        sources[index] = sources[index] + folded
    else:
        names.append(background[0])
        sources.append(folded)
    return dataclasses.replace(item, sources=torch.stack(sources), source_names=tuple(names))


def evaluate_separation(
    separator: Any,
    items: Iterable[EvaluationItem],
    sdr_filter_length: int = SDR_FILTER_LENGTH,
    total: int | None = None,
    progress: ProgressCallback | None = None,
) -> SeparationEvaluation:
    """Separate and score every item.

    Items the model cannot be asked for (a source kind it has no output or prompt for) are
    skipped with the reason, not failed: a set may mix tasks a fixed-output model only
    partly covers.

    Args:
        separator: A :class:`models.inference.Separator`.
        items: The items (e.g. an :class:`EvaluationSet`).
        sdr_filter_length: BSS-eval taps; 0 skips SDR.
        total: Number of items, for progress fractions.
        progress: Called after every item with ``{"done", "total", "id", "message"}``.

    Returns:
        The :class:`SeparationEvaluation`.
    """
    started = time.perf_counter()
    results: list[ItemResult] = []
    skipped: list[tuple[str, str]] = []
    stft: dict[int, StftSettings] = {}
    for done, item in enumerate(items, start=1):
        separation_started = time.perf_counter()
        try:
            if not separator.prompted:
                item = fold_into_background(item, _output_names(separator))
            estimates, outputs = separate_item(separator, item)
        except ValueError as exc:
            skipped.append((item.identifier, str(exc)))
            message = f"skipped item {item.identifier}: {exc}"
        else:
            separation_seconds = time.perf_counter() - separation_started
            settings = stft.setdefault(item.sample_rate, StftSettings.for_rate(item.sample_rate))
            scores = score_sources(
                estimates,
                item.sources,
                item.mixture,
                item.source_names,
                settings,
                sdr_filter_length,
            )
            results.append(
                ItemResult(
                    identifier=item.identifier,
                    task=item.task,
                    sample_rate=item.sample_rate,
                    seconds=item.mixture.shape[-1] / item.sample_rate,
                    outputs=outputs,
                    scores=tuple(scores),
                    separation_seconds=separation_seconds,
                )
            )
            mean = np.mean([score.si_sdri for score in scores])
            message = f"item {item.identifier} ({item.task}): SI-SDRi {mean:.2f} dB"
        if progress is not None:
            progress({"done": done, "total": total, "id": item.identifier, "message": message})
    return SeparationEvaluation(
        items=tuple(results),
        skipped=tuple(skipped),
        stft=tuple(stft[rate] for rate in sorted(stft)),
        sdr_filter_length=sdr_filter_length,
        wall_seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Trial:
    """One verification trial: label 1 (same speaker) or 0, and the two files."""

    label: int
    enroll: str
    test: str
    enroll_path: Path
    test_path: Path


def read_trial_list(path: Path | str, audio_root: Path | str | None = None) -> list[Trial]:
    """Read a VoxCeleb-format trial list and find its audio.

    ``path`` is the list (``label enroll test`` per line) or a frozen speaker set folder
    (its ``trials.txt``). Paths resolve against ``audio_root`` when given, else the first
    of the list's folder, its ``utterances/`` (the frozen layout) and its ``wav/``
    (VoxCeleb) that holds the first enrolment file.

    Raises:
        FileNotFoundError: The list or some of its audio files are missing.
        ValueError: A line is malformed or the list lacks target or non-target trials.
    """
    from models.data.datasets import read_trials

    list_path = Path(path)
    if list_path.is_dir():
        list_path = list_path / "trials.txt"
    if not list_path.is_file():
        raise FileNotFoundError(f"the trial list {list_path} does not exist")
    entries = read_trials(list_path)
    if not entries:
        raise ValueError(f"the trial list {list_path} has no trials")
    if {label for label, _, _ in entries} != {0, 1}:
        raise ValueError(
            f"the trial list {list_path} needs both target (1) and non-target (0) trials"
        )
    folder = list_path.parent
    candidates = (
        [Path(audio_root)]
        if audio_root is not None
        else [folder, folder / "utterances", folder / "wav"]
    )
    base = next((c for c in candidates if (c / entries[0][1]).is_file()), candidates[0])
    trials = [Trial(label, a, b, base / a, base / b) for label, a, b in entries]
    missing = sorted(
        {str(p) for t in trials for p in (t.enroll_path, t.test_path) if not p.is_file()}
    )
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise FileNotFoundError(
            f"{len(missing)} audio file(s) of {list_path} are missing under {base}: {shown} "
            "(paths are relative to the list's folder; pass the audio folder otherwise)"
        )
    return trials


@dataclass(frozen=True)
class ScoredTrial:
    """A trial with its cosine score."""

    label: int
    enroll: str
    test: str
    score: float


@dataclass(frozen=True)
class SpeakerEvaluation:
    """Everything :func:`evaluate_speakers` measured.

    Attributes:
        trials: Scored trials in list order.
        eer: Equal error rate, a fraction.
        eer_threshold: Score threshold at the EER.
        min_dcf: Minimum normalised detection cost at ``p_target``.
        min_dcf_threshold: Threshold reaching it.
        p_target: Target prior of the DCF.
        num_files: Distinct files embedded.
        wall_seconds: Wall time (reading, embedding, scoring).
    """

    trials: tuple[ScoredTrial, ...]
    eer: float
    eer_threshold: float
    min_dcf: float
    min_dcf_threshold: float
    p_target: float
    num_files: int
    wall_seconds: float

    def summary(self, per_trial: bool = False) -> dict[str, Any]:
        """Plain data for reports; ``per_trial`` adds every trial's score."""
        targets = sum(trial.label for trial in self.trials)
        data: dict[str, Any] = {
            "eer": self.eer,
            "eer_percent": 100 * self.eer,
            "eer_threshold": self.eer_threshold,
            "min_dcf": self.min_dcf,
            "min_dcf_threshold": self.min_dcf_threshold,
            "p_target": self.p_target,
            "num_trials": len(self.trials),
            "num_target_trials": targets,
            "num_nontarget_trials": len(self.trials) - targets,
            "num_files": self.num_files,
            "wall_seconds": self.wall_seconds,
        }
        if per_trial:
            data["trials"] = [dataclasses.asdict(trial) for trial in self.trials]
        return data


def evaluate_speakers(
    verifier: Any,
    trials: Sequence[Trial],
    p_target: float = 0.01,
    progress: ProgressCallback | None = None,
) -> SpeakerEvaluation:
    """Embed every file once, score every trial, and compute EER and minDCF.

    Args:
        verifier: A :class:`models.inference.Verifier`.
        trials: From :func:`read_trial_list`.
        p_target: Target prior of the minDCF (0.01: VoxCeleb / NIST SRE).
        progress: Called after every embedded file with ``{"done", "total", "message"}``.

    Returns:
        The :class:`SpeakerEvaluation`.
    """
    started = time.perf_counter()
    files = list(dict.fromkeys(p for t in trials for p in (t.enroll_path, t.test_path)))
    embeddings: dict[Path, np.ndarray] = {}
    for done, path in enumerate(files, start=1):
        audio, rate = sf.read(str(path), dtype="float32")
        embeddings[path] = verifier.embed(audio, int(rate))
        if progress is not None:
            progress({"done": done, "total": len(files), "message": f"embedded {path.name}"})
    scored = tuple(
        ScoredTrial(
            t.label,
            t.enroll,
            t.test,
            verifier.score(embeddings[t.enroll_path], embeddings[t.test_path]),
        )
        for t in trials
    )
    scores = np.array([trial.score for trial in scored])
    labels = np.array([trial.label for trial in scored])
    eer, eer_threshold = metrics.eer_with_threshold(scores, labels)
    min_dcf, min_dcf_threshold = metrics.min_dcf_with_threshold(scores, labels, p_target)
    return SpeakerEvaluation(
        trials=scored,
        eer=eer,
        eer_threshold=eer_threshold,
        min_dcf=min_dcf,
        min_dcf_threshold=min_dcf_threshold,
        p_target=p_target,
        num_files=len(files),
        wall_seconds=time.perf_counter() - started,
    )
