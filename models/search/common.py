"""What the speaker searches share: settings, data access, batches, scoring, a training loop.

* :class:`SpeakerData`: training utterances with speaker labels and a validation trial list
  (VoxCeleb ``label enroll test`` pairs), from :func:`load_speaker_data`.
* :func:`training_batch`: the batch of step ``k`` is a pure function of ``(seed, k)``
  (utterances, crops), so a resumed job continues the exact data order without saving a
  sampler state.
* :func:`verification_metrics`: EER and minDCF of cosine scores on the trial list.
* :func:`train_encoder`: the resumable retraining loop (encoder + AAM-softmax/MHE or softmax
  head) both searches use for their final architectures.
* :class:`Budget`: the ``--max-minutes`` budget split into stage shares.
* ``--set KEY=VALUE`` parsing (:func:`apply_settings`) and config overrides applied together
  (:func:`apply_overrides`), so coupled fields such as ``block_layers`` and ``layers`` can
  change in one go.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import metrics
from models.checkpoint import read_checkpoint, save_checkpoint
from models.speaker_losses import AAMSoftmax, SoftmaxHead
from models.train.reporting import JobReporter

Override = tuple[str, Any]


# ---------------------------------------------------------------- settings


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``1e-3``, ``(1, 2)``, ``True``) or a string."""
    from models.train.config import parse_value as train_parse_value

    return train_parse_value(text)


def freeze(value: Any) -> Any:
    """Lists (from JSON) become tuples so frozen configs stay hashable and comparable."""
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, Mapping):
        return tuple((str(key), freeze(item)) for key, item in value.items())
    return value


def apply_overrides(config: Any, overrides: Iterable[Override]) -> Any:
    """``config`` with every ``(dotted_key, value)`` override applied at once.

    All changes to one (nested) config go into one ``dataclasses.replace``, so fields that
    are validated together (``block_layers`` and ``layers``) can change together.

    Raises:
        ValueError: An unknown field (listing the valid ones) or a value the config rejects.
    """
    tree: dict[str, Any] = {}
    for key, value in overrides:
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"'{key}' sets a field inside '{part}', which was set whole.")
        node[parts[-1]] = value
    return _apply_tree(config, tree, "")


def _apply_tree(node: Any, tree: Mapping[str, Any], prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(node)}
    hints = typing.get_type_hints(type(node))
    updates = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise ValueError(
                f"{type(node).__name__} has no field '{name}' (in '{key}'). "
                f"Valid fields: {', '.join(sorted(names))}."
            )
        current = getattr(node, name)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            value = _apply_tree(current, value, f"{key}.")
        else:
            if (
                isinstance(current, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if typing.get_origin(hints.get(name)) is tuple and not isinstance(value, tuple | list):
                value = (value,)
            value = freeze(value)
        updates[name] = value
    try:
        return dataclasses.replace(node, **updates)
    except (TypeError, ValueError) as exc:
        changed = ", ".join(f"{prefix}{k}={v!r}" for k, v in updates.items())
        raise ValueError(f"Settings {changed} were rejected: {exc}") from None


def apply_settings(settings: Any, items: Iterable[str], prefixes: Sequence[str]) -> Any:
    """Apply ``KEY=VALUE`` strings to a frozen settings dataclass.

    Plain keys are fields of ``settings``; ``PREFIX.KEY`` (for each prefix in ``prefixes``,
    e.g. ``model`` or ``data``) is appended to the tuple field ``PREFIX_overrides`` (so
    ``model.features.num_mels=20`` becomes an override of the model config).

    Raises:
        ValueError: A malformed item or an unknown key (listing the valid ones).
    """
    names = {f.name: f for f in dataclasses.fields(settings)}
    updates: dict[str, Any] = {}
    grouped = {prefix: dict(getattr(settings, f"{prefix}_overrides")) for prefix in prefixes}
    for item in items:
        key, separator, text = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"Expected --set KEY=VALUE, got '{item}'.")
        value = parse_value(text.strip())
        prefix, dot, rest = key.partition(".")
        if dot and prefix in grouped:
            grouped[prefix][rest] = value
        elif key in names and not key.endswith("_overrides"):
            current = getattr(settings, key)
            if isinstance(current, float) and isinstance(value, int):
                value = float(value)
            if isinstance(current, bool) != isinstance(value, bool) or (
                isinstance(current, int | float) and not isinstance(value, int | float)
            ):
                raise ValueError(
                    f"Setting '{key}' needs a {type(current).__name__}, got {value!r}."
                )
            updates[key] = freeze(value)
        else:
            valid = sorted(n for n in names if not n.endswith("_overrides"))
            raise ValueError(
                f"Unknown setting '{key}'. Valid: {', '.join(valid)}; "
                + ", ".join(f"{p}.KEY" for p in prefixes)
                + "."
            )
    for prefix, values in grouped.items():
        updates[f"{prefix}_overrides"] = tuple((k, freeze(v)) for k, v in values.items())
    return dataclasses.replace(settings, **updates)


def config_overrides(base: Any, config: Any, prefix: str = "") -> dict[str, Any]:
    """The dotted ``field: value`` changes that turn config ``base`` into ``config``.

    Nested configs are compared field by field, so a changed ``features.num_mels`` gives one
    ``"features.num_mels"`` entry instead of a whole nested config.
    """
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        old, new = getattr(base, f.name), getattr(config, f.name)
        if dataclasses.is_dataclass(new) and type(old) is type(new):
            changes.update(config_overrides(old, new, f"{prefix}{f.name}."))
        elif old != new:
            changes[f"{prefix}{f.name}"] = new
    return changes


def train_command(model_name: str, preset: str, config: Any) -> list[str]:
    """``workbench train`` arguments that train ``config`` (the preset plus its overrides).

    A search result is a config; this is the same config as a training job, for retraining
    it longer or on other data (add ``--data``, ``--run`` and a budget).
    """
    from models.registry import get_spec

    base = get_spec(model_name).config(preset)
    arguments = ["train", "--model", model_name, "--preset", preset]
    for key, value in config_overrides(base, config).items():
        arguments += ["--set", f"model.{key}={value!r}"]
    return arguments


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON-ready values (override tuples as ``{key: value}``)."""
    values = dataclasses.asdict(settings)
    for name in list(values):
        if name.endswith("_overrides"):
            values[name] = {key: _thaw(value) for key, value in getattr(settings, name)}
    return values


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def settings_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Inverse of :func:`settings_to_dict`; unknown keys raise ``ValueError``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings {unknown}.")
    converted = {}
    for name, value in values.items():
        if name.endswith("_overrides"):
            pairs = value.items() if isinstance(value, Mapping) else value
            converted[name] = tuple((str(k), freeze(v)) for k, v in pairs)
        else:
            converted[name] = freeze(value)
    return cls(**converted)


def settings_differences(saved: Any, requested: Any, budget_fields: Iterable[str]) -> list[str]:
    """Fields other than ``budget_fields`` where two settings differ (a resume mismatch)."""
    skip = set(budget_fields)
    return [
        f"{f.name}: run has {getattr(saved, f.name)!r}, command gives {getattr(requested, f.name)!r}"
        for f in dataclasses.fields(saved)
        if f.name not in skip and getattr(saved, f.name) != getattr(requested, f.name)
    ]


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------- budget


class Budget:
    """The wall-clock budget of one invocation, split into stage shares.

    Args:
        max_minutes: Total minutes (0: unlimited).
        shares: Cumulative fraction of the budget at which each stage must end, e.g.
            ``{"supernet": 0.5, "search": 0.8, "retrain": 1.0}``.
    """

    def __init__(self, max_minutes: float, shares: Mapping[str, float]) -> None:
        self.start = time.monotonic()
        self.total = max_minutes * 60.0 if max_minutes > 0 else None
        self.shares = dict(shares)

    def deadline(self, stage: str) -> float | None:
        """``time.monotonic()`` at which ``stage`` must stop (``None``: no limit)."""
        if self.total is None:
            return None
        return self.start + self.total * self.shares.get(stage, 1.0)

    @staticmethod
    def passed(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline


# ---------------------------------------------------------------- data


@dataclass
class SpeakerData:
    """Speaker-labelled training utterances and a validation trial list.

    Attributes:
        train_waveforms: Training utterances, each of shape ``(time,)`` (a list, or a lazy
            :class:`DatasetWaveforms`).
        train_speakers: Speaker index of each training utterance, in ``[0, num_speakers)``.
        num_speakers: Training speakers (classifier size).
        valid_waveforms: Validation utterances, each of shape ``(time,)``; speakers disjoint
            from the training ones.
        trials: ``(label, enroll, test)``: 1 for same speaker, indices into
            ``valid_waveforms``.
        sample_rate: Audio rate.
        description: Where the data came from (for ``config.json``).
    """

    train_waveforms: Sequence[Tensor]
    train_speakers: Sequence[int]
    num_speakers: int
    valid_waveforms: list[Tensor]
    trials: list[tuple[int, int, int]]
    sample_rate: int
    description: str

    def __post_init__(self) -> None:
        if not self.train_waveforms or len(self.train_waveforms) != len(self.train_speakers):
            raise ValueError("SpeakerData needs training utterances, one speaker index each.")
        labels = [label for label, _, _ in self.trials]
        if 1 not in labels or 0 not in labels:
            raise ValueError("The validation trial list needs target and non-target trials.")


def synthetic_speaker_waveform(
    speaker_seed: int, utterance_seed: int, num_samples: int, sample_rate: int
) -> Tensor:
    """A voiced "utterance" whose timbre depends on the speaker, its content on the utterance.

    A speaker is a fundamental-frequency range and three formant resonances (the vocal tract);
    an utterance is a random pitch contour and syllable envelope through them, plus a little
    noise. Speakers differ in timbre, so an encoder can learn to tell them apart, and two
    utterances of one speaker share no samples.

    Returns:
        Tensor of shape ``(num_samples,)`` in about ``[-0.5, 0.5]``.
    """
    voice = random.Random(speaker_seed)
    f0 = voice.uniform(90.0, 240.0)
    formants = sorted(
        voice.uniform(low, high) for low, high in ((300, 900), (900, 2300), (2300, 3400))
    )
    bandwidths = [voice.uniform(60.0, 160.0) for _ in formants]
    tilt = voice.uniform(0.6, 1.4)
    generator = torch.Generator().manual_seed(utterance_seed)
    time_axis = torch.arange(num_samples) / sample_rate
    rate = 3.0 * float(torch.rand(1, generator=generator))
    contour = f0 * (1.0 + 0.08 * torch.sin(2 * math.pi * rate * time_axis))
    phase = 2 * math.pi * torch.cumsum(contour, 0) / sample_rate
    harmonics = torch.arange(1, int(min(4000.0, sample_rate / 2) // (f0 * 1.1)) + 1).float()
    # The formant gains are taken at the mean pitch: the contour moves each harmonic by at
    # most 8 %, and per-sample gains would cost harmonics x formants x samples operations.
    gain = harmonics.pow(-tilt)
    for formant, bandwidth in zip(formants, bandwidths):
        gain = gain * (1.0 + 4.0 / (1.0 + ((harmonics * f0 - formant) / bandwidth) ** 2))
    voiced = gain @ torch.sin(harmonics[:, None] * phase[None])  # (H) @ (H, T)
    syllables = max(1, int(num_samples / sample_rate * 4))
    envelope = torch.rand(syllables + 1, generator=generator).clamp_min(0.2)
    envelope = F.interpolate(envelope[None, None], size=num_samples, mode="linear")[0, 0]
    signal = voiced * envelope + 0.02 * torch.randn(num_samples, generator=generator)
    return 0.5 * signal / signal.abs().max().clamp_min(1e-6)


def synthetic_speaker_data(
    sample_rate: int = 16000,
    num_speakers: int = 8,
    utterances_per_speaker: int = 6,
    valid_speakers: int = 4,
    valid_utterances: int = 4,
    seconds: float = 2.0,
    seed: int = 0,
) -> SpeakerData:
    """Generated speakers for smoke runs and tests (see :func:`synthetic_speaker_waveform`).

    Validation speakers are disjoint from training speakers; the trial list holds every
    pair of validation utterances.
    """
    num_samples = round(seconds * sample_rate)
    train_waveforms, train_speakers = [], []
    for speaker in range(num_speakers):
        for utterance in range(utterances_per_speaker):
            train_waveforms.append(
                synthetic_speaker_waveform(
                    seed * 100_003 + speaker, seed * 7919 + speaker * 1000 + utterance,
                    num_samples, sample_rate,
                )
            )  # fmt: skip
            train_speakers.append(speaker)
    valid_waveforms, valid_labels = [], []
    for speaker in range(num_speakers, num_speakers + valid_speakers):
        for utterance in range(valid_utterances):
            valid_waveforms.append(
                synthetic_speaker_waveform(
                    seed * 100_003 + speaker, seed * 7919 + speaker * 1000 + utterance,
                    num_samples, sample_rate,
                )
            )  # fmt: skip
            valid_labels.append(speaker)
    trials = [
        (int(valid_labels[i] == valid_labels[j]), i, j)
        for i in range(len(valid_waveforms))
        for j in range(i + 1, len(valid_waveforms))
    ]
    return SpeakerData(
        train_waveforms,
        train_speakers,
        num_speakers,
        valid_waveforms,
        trials,
        sample_rate,
        f"synthetic: {num_speakers} train speakers x {utterances_per_speaker}, "
        f"{valid_speakers} valid speakers x {valid_utterances}, seed {seed}",
    )


class DatasetWaveforms(Sequence[Tensor]):
    """The ``waveform`` of each item of a dataset, read on access (nothing held in memory)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:  # type: ignore[override]
        waveform = torch.as_tensor(self.dataset[index]["waveform"], dtype=torch.float32)
        if waveform.dim() != 1:
            raise ValueError(
                f"Speaker items need a waveform of shape (time,), got {tuple(waveform.shape)}."
            )
        return waveform


def speaker_data_from_datasets(
    train: Any,
    valid: Any,
    sample_rate: int,
    trials: Sequence[tuple[int, int, int]] | None = None,
    description: str = "",
) -> SpeakerData:
    """:class:`SpeakerData` from map-style datasets of speaker items.

    Items are dicts with ``waveform`` (``(time,)``), ``speaker_index`` and ``speaker_id``.
    Training audio is read on demand; the labels come from a ``speaker_indices`` attribute
    when the dataset has one (otherwise every item is read once). The validation utterances
    are read into memory (they are few).

    Args:
        train: Training dataset.
        valid: Validation dataset (speakers disjoint from ``train``).
        sample_rate: Rate of both.
        trials: ``(label, enroll, test)`` indices into ``valid`` (VoxCeleb trial list);
            default every pair of validation utterances.
        description: For ``config.json``.
    """
    labels = getattr(train, "speaker_indices", None)
    if labels is None:
        labels = [int(train[i]["speaker_index"]) for i in range(len(train))]
    labels = [int(label) for label in labels]
    num_speakers = int(getattr(train, "num_speakers", 0) or max(labels) + 1)
    valid_items = [valid[i] for i in range(len(valid))]
    valid_waveforms = [
        torch.as_tensor(item["waveform"], dtype=torch.float32) for item in valid_items
    ]
    if trials is None:
        identities = [str(item["speaker_id"]) for item in valid_items]
        trials = [
            (int(identities[a] == identities[b]), a, b)
            for a in range(len(identities))
            for b in range(a + 1, len(identities))
        ]
    return SpeakerData(
        DatasetWaveforms(train),
        labels,
        num_speakers,
        valid_waveforms,
        [tuple(int(v) for v in trial) for trial in trials],
        sample_rate,
        description or f"{type(train).__name__}: {len(labels)} utterances, {num_speakers} speakers",
    )


def load_speaker_data(
    spec: str, sample_rate: int, options: Mapping[str, Any] = (), seed: int = 0
) -> SpeakerData:
    """Speaker data for a search.

    Args:
        spec: ``"synthetic"`` (generated speakers; ``options`` are
            :func:`synthetic_speaker_data` arguments) or a corpus the data layer reads.
        sample_rate: Rate the encoder expects.
        options: Dataset options (``--set data.KEY=VALUE``).
        seed: Seed of generated data.

    Returns:
        The :class:`SpeakerData`.
    """
    options = dict(options)
    if spec == "synthetic":
        return synthetic_speaker_data(sample_rate=sample_rate, seed=seed, **options)
    root = Path(spec)
    if (root / "manifests" / "corpus.csv").is_file():
        # A corpus from `workbench data build`: training speakers from the train split,
        # validation trials among the held-out voices (disjoint by package or voice).
        from models.data.datasets import SpeakerDataset

        valid_items = int(options.pop("valid_items", 240))
        seconds = float(options.pop("seconds", 3.0))
        train = SpeakerDataset.from_manifest(
            root, split="train", sample_rate=sample_rate, seconds=seconds, seed=seed, **options
        )
        valid = SpeakerDataset.from_manifest(
            root,
            split="validation",
            sample_rate=sample_rate,
            seconds=seconds,
            length=valid_items,
            seed=seed + 1,
        )
        return speaker_data_from_datasets(train, valid, sample_rate, description=f"corpus {root}")
    raise ValueError(
        f"Speaker data '{spec}' is neither 'synthetic' nor a corpus folder built by "
        "'workbench data build' (it needs manifests/corpus.csv)."
    )


# ---------------------------------------------------------------- batches and scoring


def crop(waveform: Tensor, num_samples: int, rng: random.Random) -> Tensor:
    """A random ``num_samples`` window of ``waveform`` (tiled when it is shorter)."""
    if waveform.shape[-1] < num_samples:
        repeats = math.ceil(num_samples / max(waveform.shape[-1], 1))
        waveform = waveform.repeat(repeats)
    start = rng.randrange(waveform.shape[-1] - num_samples + 1)
    return waveform[start : start + num_samples]


def training_batch(
    data: SpeakerData,
    indices: Sequence[int],
    step: int,
    batch_size: int,
    num_samples: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """The batch of ``step``: a pure function of ``(seed, step)``.

    Args:
        data: The speaker data.
        indices: Training utterances to draw from.
        step: Step number (0-based).
        batch_size: Utterances per batch.
        num_samples: Crop length.
        seed: Job seed.

    Returns:
        ``(waveforms (batch, num_samples), labels (batch,))``.
    """
    rng = random.Random(seed * 1_000_003 + step)
    chosen = [indices[rng.randrange(len(indices))] for _ in range(batch_size)]
    waveforms = torch.stack([crop(data.train_waveforms[i], num_samples, rng) for i in chosen])
    labels = torch.tensor([data.train_speakers[i] for i in chosen], dtype=torch.long)
    return waveforms, labels


def valid_feature_batches(
    front_end: Callable[[Tensor], Tensor],
    data: SpeakerData,
    max_samples: int,
    device: torch.device,
    batch_size: int = 32,
) -> list[tuple[list[int], Tensor]]:
    """Features of every validation utterance, grouped into equal-length batches.

    Utterances longer than ``max_samples`` are cut to their first ``max_samples``.

    Returns:
        ``[(utterance indices, features (batch, frames, num_mels)), ...]``.
    """
    by_length: dict[int, list[int]] = {}
    for index, waveform in enumerate(data.valid_waveforms):
        by_length.setdefault(min(waveform.shape[-1], max_samples), []).append(index)
    batches = []
    with torch.no_grad():
        for length, members in sorted(by_length.items()):
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                audio = torch.stack([data.valid_waveforms[i][:length] for i in chunk]).to(device)
                batches.append((chunk, front_end(audio)))
    return batches


def verification_metrics(
    embeddings: Tensor, trials: Sequence[tuple[int, int, int]]
) -> dict[str, float]:
    """EER and minDCF (p_target 0.01) of cosine scores.

    Args:
        embeddings: Tensor of shape ``(utterances, embedding_dim)``.
        trials: ``(label, enroll, test)`` index triples.

    Returns:
        ``{"eer": fraction, "min_dcf": cost}``.
    """
    if not torch.isfinite(embeddings).all():
        raise ValueError("Embeddings contain NaN or infinite values (training diverged).")
    unit = F.normalize(embeddings.double(), dim=1)
    enroll = torch.tensor([t[1] for t in trials])
    test = torch.tensor([t[2] for t in trials])
    scores = (unit[enroll] * unit[test]).sum(dim=1).cpu()
    labels = torch.tensor([t[0] for t in trials])
    return {"eer": metrics.eer(scores, labels), "min_dcf": metrics.min_dcf(scores, labels)}


@torch.no_grad()
def evaluate_encoder(
    forward: Callable[[Tensor], Tensor],
    batches: Sequence[tuple[list[int], Tensor]],
    trials: Sequence[tuple[int, int, int]],
) -> dict[str, float]:
    """Embed the validation feature batches with ``forward`` and score the trials."""
    total = sum(len(indices) for indices, _ in batches)
    embeddings: Tensor | None = None
    for indices, features in batches:
        output = forward(features)
        if embeddings is None:
            embeddings = output.new_zeros(total, output.shape[1])
        embeddings[torch.tensor(indices, device=output.device)] = output
    assert embeddings is not None  # batches is never empty for a valid SpeakerData
    return verification_metrics(embeddings, trials)


# ---------------------------------------------------------------- retraining


@dataclass(frozen=True)
class RetrainSettings:
    """Optimisation of a final (derived) network trained from scratch.

    Attributes:
        steps: Optimiser steps.
        batch_size: Utterances per step.
        segment_seconds: Crop length.
        lr: Peak learning rate (AdamW, linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup_steps: Warm-up steps (capped at a tenth of ``steps``).
        grad_clip: Global gradient-norm clip (0: off).
        head: ``"aam"`` (AAM-softmax, optionally with MHE) or ``"softmax"``.
        margin: AAM margin (radians).
        scale: AAM logit scale.
        mhe_weight: Weight of the MHE regulariser on the class vectors.
        valid_seconds: Validation utterances are cut to this length.
        log_interval: Steps between ``metrics.jsonl`` rows.
        checkpoint_minutes: Minutes between checkpoints (0: every step).
        seed: Initialisation and data order.
    """

    steps: int = 2000
    batch_size: int = 16
    segment_seconds: float = 2.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    head: str = "aam"
    margin: float = 0.2
    scale: float = 30.0
    mhe_weight: float = 0.01
    valid_seconds: float = 6.0
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    seed: int = 0


def learning_rate(step: int, peak: float, warmup: int, total: int, floor: float = 0.05) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``floor * peak`` at ``total``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_head(settings: RetrainSettings, embedding_dim: int, num_speakers: int) -> nn.Module:
    """The training head of a retrain (AAM-softmax + MHE, or plain softmax)."""
    if settings.head == "aam":
        return AAMSoftmax(
            embedding_dim,
            num_speakers,
            margin=settings.margin,
            scale=settings.scale,
            mhe_weight=settings.mhe_weight,
        )
    if settings.head == "softmax":
        return SoftmaxHead(embedding_dim, num_speakers)
    raise ValueError(f"Unknown head '{settings.head}'; valid: aam, softmax.")


def train_encoder(
    model_name: str,
    config: Any,
    data: SpeakerData,
    settings: RetrainSettings,
    folder: Path,
    device: torch.device,
    deadline: float | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    reporter: JobReporter | None = None,
    tags: Mapping[str, Any] = (),
) -> dict[str, Any]:
    """Train a speaker encoder from scratch in ``folder``; resumes from its checkpoint.

    ``folder/checkpoint.pt`` holds the model, head, optimizer and step (the data order is a
    function of the step); ``folder/best.pt`` is the inference checkpoint written at the end.
    Running again on a finished folder trains nothing and returns the saved metrics. A run
    cut short by ``deadline`` is evaluated and counts as finished (its stage's time share is
    spent); one cut short by ``should_stop`` is not, and resumes.

    Args:
        model_name: Registry name (``"speechnas"``, ``"autospeech"``).
        config: The encoder's config.
        data: Training utterances and validation trials.
        settings: Optimisation settings.
        folder: Where the checkpoints go (created).
        device: Where to train.
        deadline: ``time.monotonic()`` at which to stop early (evaluating what there is).
        on_step: Called with ``(steps done, metrics row)`` on every logged step.
        should_stop: Polled between steps; True checkpoints and returns ``{"stopped": True}``.
        reporter: Writes ``metrics.jsonl`` rows.
        tags: Extra keys for each metrics row (``stage``, ``candidate``).

    Returns:
        ``{"step", "eer", "min_dcf", "parameters", "finished", "stopped"}``.
    """
    from models.registry import get_spec

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint_path, best_path = folder / "checkpoint.pt", folder / "best.pt"
    spec = get_spec(model_name)
    torch.manual_seed(settings.seed)
    model = spec.model_class(config).to(device)
    head = make_head(settings, config.embedding_dim, data.num_speakers).to(device)
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *head.parameters()],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    step = 0
    if checkpoint_path.exists():
        saved = read_checkpoint(checkpoint_path, map_location=device)
        if saved.model_config != dataclasses.asdict(config):
            raise ValueError(f"{checkpoint_path} holds another architecture; use a new run folder.")
        model.load_state_dict(saved.model_state)
        head.load_state_dict(saved.extra["head"])
        optimizer.load_state_dict(saved.optimizer_state)
        step = saved.step
        if saved.extra.get("finished"):
            return {**saved.metrics, "step": step, "finished": True, "stopped": False}
    parameters = sum(p.numel() for p in model.parameters())
    num_samples = round(settings.segment_seconds * data.sample_rate)
    indices = list(range(len(data.train_waveforms)))
    warmup = min(settings.warmup_steps, settings.steps // 10)
    last_save = time.monotonic()

    def save(finished: bool, result: Mapping[str, Any]) -> None:
        save_checkpoint(
            checkpoint_path,
            model,
            model_name,
            config,
            optimizer=optimizer,
            step=step,
            metrics=dict(result),
            train_config=dataclasses.asdict(settings),
            extra={"head": head.state_dict(), "finished": finished},
        )

    model.train()
    head.train()
    started = time.monotonic()
    stopped = False
    while step < settings.steps:
        if should_stop():
            stopped = True
            break
        if Budget.passed(deadline):
            break
        lr = learning_rate(step, settings.lr, warmup, settings.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        waveforms, labels = training_batch(
            data, indices, step, settings.batch_size, num_samples, settings.seed + 17
        )
        waveforms, labels = waveforms.to(device), labels.to(device)
        loss = head(model.embed(waveforms), labels)
        if not torch.isfinite(loss):
            raise RuntimeError(f"Loss became {loss.item()} at step {step}: lower the lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_([*model.parameters(), *head.parameters()], settings.grad_clip)
        optimizer.step()
        step += 1
        if step % settings.log_interval == 0 or step == settings.steps:
            elapsed = max(time.monotonic() - started, 1e-9)
            row = {
                **dict(tags),
                "step": step,
                "split": "train",
                "loss": loss.item(),
                "lr": lr,
                "throughput": settings.batch_size * settings.log_interval / elapsed,
                "wall_time": time.time(),
            }
            started = time.monotonic()
            if reporter is not None:
                reporter.metrics(row)
            if on_step is not None:
                on_step(step, row)
        if time.monotonic() - last_save >= settings.checkpoint_minutes * 60:
            save(False, {})
            last_save = time.monotonic()
    if stopped:
        save(False, {})
        return {"step": step, "finished": False, "stopped": True, "parameters": parameters}
    model.eval()
    batches = valid_feature_batches(
        model.front_end, data, round(settings.valid_seconds * data.sample_rate), device
    )
    result = {
        **evaluate_encoder(model, batches, data.trials),
        "parameters": parameters,
        "steps": step,
    }
    if reporter is not None:
        reporter.metrics(
            {
                **dict(tags),
                "step": step,
                "split": "valid",
                "metrics": result,
                "wall_time": time.time(),
            }
        )
    save_checkpoint(best_path, model, model_name, config, step=step, metrics=result)
    save(True, result)
    return {**result, "step": step, "finished": True, "stopped": False}
