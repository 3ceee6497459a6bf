"""Per-family training adapters: which data, which loss, which validation metric.

Every adapter is an ``nn.Module`` holding the registered model (and a classifier head for
speakers), so one DDP wrapper covers all trainable weights; ``forward(batch)`` returns
``(loss, logs)``. The loop in :mod:`.loop` never looks inside.

* :class:`ThreeWayTask` (``mtass``): fixed source order (speech, music, noise), the
  MTASS complex-spectrum MSE + SNR loss on both stages; SI-SDRi per source.
* :class:`SeparationTask` (``conv_tasnet``): negative SI-SDR in the model's source order,
  with permutation-invariant training among talkers (``speaker1``, ``speaker2``... have no
  order; ``speech``/``noise`` outputs do); SI-SDRi per source after the best permutation.
* :class:`NasTasNetTask` (``nas_tasnet``): the supernet's warm-up phase (architecture
  frozen, a uniformly random path per step), optionally with the per-repeat auxiliary loss.
* :class:`PromptedTask` (``tuss``): prompts in the data's order, estimates compared in that
  order with the soft-capped SNR loss; only outputs of identical prompts (two ``speech``
  prompts) are matched by PIT.
* :class:`SpeakerTask` (every speaker encoder): AAM-softmax over training speakers;
  validation EER and minDCF on trials between held-out utterances.

Options of an adapter come from ``--set task.KEY=VALUE`` (:attr:`TrainingTask.OPTIONS`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile
import torch
import torchaudio.functional as audio_functional
from torch import Tensor, nn
from torch.utils.data import Dataset

from models import checkpoint as checkpoints
from models import losses, metrics, registry
from models.mtass import mtass_loss
from models.speaker_losses import AAMSoftmax
from models.train.config import SettingsError, TrainConfig, model_config

Batch = dict[str, Any]


@dataclass(frozen=True)
class ValidationResult:
    """One validation pass.

    Attributes:
        loss: Mean training loss on the validation examples.
        score: Higher is better (mean SI-SDRi, or minus the EER); decides ``best.pt``.
        metrics: Named values for ``metrics.jsonl``.
        items: Examples (or utterances) evaluated.
        threshold: Speaker tasks: the EER threshold on the cosine score.
    """

    loss: float
    score: float
    metrics: dict[str, float]
    items: int
    threshold: float | None = None


class TrainingTask(nn.Module):
    """Base adapter: owns the model and the training-time pieces around it.

    Args:
        config: The run's settings.
        data_kind: Dataset family the adapter trains on (see :func:`make_dataset`).
    """

    #: ``--set task.KEY`` options and their defaults.
    OPTIONS: ClassVar[dict[str, Any]] = {}
    #: Single-path supernets leave weights unused in a step; DDP must be told.
    find_unused_parameters: bool = False

    def __init__(self, config: TrainConfig, data_kind: str) -> None:
        super().__init__()
        self.config = config
        self.data_kind = data_kind
        self.model_config = model_config(config)
        self.model = registry.build_model(config.model, self.model_config)
        self.options = self.parse_options(config)

    @classmethod
    def parse_options(cls, config: TrainConfig) -> dict[str, Any]:
        """:attr:`OPTIONS` updated by ``config.task_options``.

        Raises:
            SettingsError: On an unknown option or a value of the wrong type.
        """
        options = dict(cls.OPTIONS)
        for key, value in config.task_options:
            if key not in cls.OPTIONS:
                valid = ", ".join(sorted(cls.OPTIONS)) or "none"
                raise SettingsError(
                    f"Unknown option task.{key} for model '{config.model}'. Valid: {valid}."
                )
            default = cls.OPTIONS[key]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise SettingsError(f"task.{key} needs a number like {default!r}, got {value!r}.")
            options[key] = type(default)(value)
        return options

    @property
    def sample_rate(self) -> int:
        return int(self.model_config.sample_rate)

    def datasets(self, with_validation: bool) -> tuple[Dataset, Dataset | None]:
        """Training set (endless, index-addressed) and, on rank 0, the validation set."""
        names = tuple(getattr(self.model_config, "source_names", ()))
        train = make_dataset(self.data_kind, self.config, "train", self.sample_rate, names)
        valid = (
            make_dataset(self.data_kind, self.config, "valid", self.sample_rate, names)
            if with_validation
            else None
        )
        return train, valid

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        """Stack dataset items into a batch."""
        return {
            "mixture": torch.stack([torch.as_tensor(i["mixture"]) for i in items]),
            "sources": torch.stack([torch.as_tensor(i["sources"]) for i in items]),
            "source_names": [tuple(i["source_names"]) for i in items],
        }

    @staticmethod
    def to_device(batch: Batch, device: torch.device) -> Batch:
        return {
            key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
            for key, value in batch.items()
        }

    def before_step(self, step: int) -> None:
        """Hook run before the forward of training step ``step`` (default: nothing)."""

    def extra_state_dict(self) -> dict[str, Any]:
        """Trainable state outside the model (classifier heads) for the checkpoint."""
        return {}

    def load_extra_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`extra_state_dict`."""

    def validate(self, dataset: Dataset) -> ValidationResult:
        raise NotImplementedError

    def best_metrics(self, result: ValidationResult) -> dict[str, float]:
        """What ``best.pt`` records about its validation."""
        return dict(result.metrics)


# ---------------------------------------------------------------- separation


class SeparationTask(TrainingTask):
    """Separation in the model's source order; PIT only among interchangeable outputs.

    Outputs named ``speaker1``, ``speaker2``... form one group whose members may swap (talkers
    have no order); every other output (``speech``, ``music``, ``noise``) is compared with
    its own reference. Loss: negative SI-SDR.
    """

    #: The validation examples per forward (all have the same length).
    VALID_BATCH = 4

    @property
    def groups(self) -> tuple[str, ...]:
        """Permutation group of each output."""
        return tuple(_group(name) for name in self.model.source_names)

    def loss_per_example(self, estimates: Tensor, batch: Batch) -> Tensor:
        """Loss of each example, shape ``(batch,)``."""
        targets = self.targets(batch)
        if len(set(self.groups)) == len(self.groups):
            return losses.negative_si_sdr(estimates, targets).mean(dim=-1)
        return losses.pit_loss(losses.negative_si_sdr, estimates, targets, self.groups)[0]

    def targets(self, batch: Batch) -> Tensor:
        """References ``(batch, num_sources, time)`` in the model's output order."""
        sources = batch["sources"]
        names = tuple(batch["source_names"][0])
        wanted = tuple(self.model.source_names)
        if names == wanted:
            return sources
        if sorted(names) == sorted(wanted):
            return sources[:, [names.index(name) for name in wanted]]
        raise ValueError(
            f"The data's sources {names} do not match the model's outputs {wanted}; "
            "choose data with those sources or override model.source_names."
        )

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        estimates = self.model(batch["mixture"])  # B, S, T
        return self.loss_per_example(estimates, batch).mean(), {}

    @torch.no_grad()
    def validate(self, dataset: Dataset) -> ValidationResult:
        was_training = self.training
        self.eval()
        count = min(self.config.valid_items, _length(dataset))
        device = next(self.parameters()).device
        totals: dict[str, list[float]] = {}
        loss_sum = 0.0
        for start in range(0, count, self.VALID_BATCH):
            items = [dataset[i] for i in range(start, min(start + self.VALID_BATCH, count))]
            batch = self.to_device(self.collate(items), device)
            estimates = self.model(batch["mixture"])
            loss_sum += float(self.loss_per_example(estimates, batch).sum())
            references = self.targets(batch)
            for index in range(len(items)):
                reference = references[index]
                estimate = align_within_groups(estimates[index], reference, self.groups)
                _add_improvements(
                    totals, self.model.source_names, estimate, reference, batch["mixture"][index]
                )
        self.train(was_training)
        return _separation_result(totals, loss_sum, count)


def _group(name: str) -> str:
    return "speaker" if name.startswith("speaker") else name


def align_within_groups(estimate: Tensor, reference: Tensor, groups: Sequence[str]) -> Tensor:
    """The estimates reordered to best match the references (by SI-SDR), swapping only
    outputs of the same group.

    Args:
        estimate: Shape ``(num_sources, time)``.
        reference: Shape ``(num_sources, time)``.
        groups: Group label per source.

    Returns:
        Shape ``(num_sources, time)``.
    """
    if len(set(groups)) == len(groups):
        return estimate
    score = metrics.si_sdr(estimate[:, None], reference[None])  # S_est, S_ref
    best, best_value = list(range(len(groups))), -math.inf
    for order in itertools.permutations(range(len(groups))):
        if any(groups[o] != groups[j] for j, o in enumerate(order)):
            continue
        value = sum(score[o, j] for j, o in enumerate(order))
        if value > best_value:
            best, best_value = list(order), value
    return estimate[best]


def _add_improvements(
    totals: dict[str, list[float]],
    names: Sequence[str],
    estimate: Tensor,
    reference: Tensor,
    mixture: Tensor,
) -> None:
    """Append each source's SI-SDRi (``estimate``, ``reference``: ``(S, time)``) by name."""
    improvement = metrics.si_sdr_improvement(estimate, reference, mixture)
    energy = reference.pow(2).sum(dim=-1).cpu()
    for name, value, power in zip(names, improvement, energy, strict=True):
        if power > 0:  # SI-SDR of a silent reference is undefined
            totals.setdefault(name, []).append(float(value))


def _separation_result(
    totals: dict[str, list[float]], loss_sum: float, count: int
) -> ValidationResult:
    per_source = {f"si_sdri/{name}": float(np.mean(v)) for name, v in sorted(totals.items())}
    overall = float(np.mean([v for values in totals.values() for v in values]))
    return ValidationResult(
        loss=loss_sum / max(count, 1),
        score=overall,
        metrics={"si_sdri": overall, **per_source},
        items=count,
    )


class ThreeWayTask(SeparationTask):
    """Complex-MTASSNet on speech + music + noise mixtures (fixed order, both stages)."""

    OPTIONS: ClassVar[dict[str, Any]] = {"snr_weight": 0.01, "stage1_weight": 1.0}

    def loss_per_example(self, estimates: Tensor, batch: Batch) -> Tensor:
        # Validation: the final (stage-2) waveforms only. mtass_loss averages over the batch,
        # hence one call per example.
        targets = self.targets(batch)
        return torch.stack(
            [
                self._mtass_loss(estimates[i : i + 1], targets[i : i + 1])
                for i in range(len(targets))
            ]
        )

    def _mtass_loss(self, estimates: Tensor | Sequence[Tensor], targets: Tensor) -> Tensor:
        stages = [estimates] if isinstance(estimates, Tensor) else list(estimates)
        weights = [self.options["stage1_weight"], 1.0][-len(stages) :]
        return mtass_loss(
            stages,
            targets,
            snr_weight=self.options["snr_weight"],
            stage_weights=weights,
            n_fft=self.model_config.n_fft,
            hop_length=self.model_config.hop_length,
        )

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        # Both stages are trained jointly: the stage-1 estimates get their own loss term.
        stage1, stage2 = self.model.forward_spectra(batch["mixture"])
        loss = self._mtass_loss((stage1, stage2), self.targets(batch))
        return loss, {}


class NasTasNetTask(SeparationTask):
    """NAS-TasNet supernet warm-up: architecture frozen, a uniform random path per step.

    With ``aux_loss_weight`` ``w > 0`` the loss is ``(1 - w) * L_final + w * L_aux``, where
    ``L_aux`` is the supernet's EMA over per-repeat losses (``w = 1`` is the paper's loss).
    Validation runs the argmax architecture (all-equal logits: the first candidate).
    """

    find_unused_parameters = True

    def __init__(self, config: TrainConfig, data_kind: str) -> None:
        super().__init__(config, data_kind)
        self.model.architecture_logits.requires_grad_(False)

    def before_step(self, step: int) -> None:
        # Seeded by the step, not a running RNG: every rank draws the same path and a
        # resumed run draws what the uninterrupted one would have.
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        self.model.sample_active_paths(uniform=True, generator=generator)

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        weight = self.config.aux_loss_weight
        if weight <= 0:
            return super().forward(batch)
        repeats = self.model.forward_repeats(batch["mixture"])  # B, R, S, T
        per_repeat = torch.stack(
            [self.loss_per_example(repeats[:, r], batch) for r in range(repeats.shape[1])],
            dim=-1,
        )  # B, R
        final = per_repeat[:, -1].mean()
        auxiliary = self.model.auxiliary_loss(per_repeat).mean()
        loss = (1 - weight) * final + weight * auxiliary
        return loss, {"final_loss": final.detach(), "aux_loss": auxiliary.detach()}

    def validate(self, dataset: Dataset) -> ValidationResult:
        self.model.set_architecture(self.model.argmax_architecture())
        return super().validate(dataset)


class PromptedTask(SeparationTask):
    """TUSS: one estimate per prompt in the data's prompt order, soft-capped SNR loss.

    Items may carry different numbers of prompts; a batch is split into groups of equal
    prompt count, each group is one forward, and the loss is the example-weighted mean.
    """

    OPTIONS: ClassVar[dict[str, Any]] = {"snr_max": 30.0, "zero_reference_weight": 0.1}

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        prompts = list(registry.get_spec(self.config.model).model_class.PROMPTS)
        groups: dict[int, list[Mapping[str, Any]]] = {}
        for item in items:
            groups.setdefault(len(item["source_names"]), []).append(item)
        batches = []
        for group in groups.values():
            names = [tuple(i["source_names"]) for i in group]
            unknown = sorted({n for row in names for n in row} - set(prompts))
            if unknown:
                raise ValueError(f"Sources {unknown} are not TUSS prompts ({', '.join(prompts)}).")
            batches.append(
                {
                    "mixture": torch.stack([torch.as_tensor(i["mixture"]) for i in group]),
                    "sources": torch.stack([torch.as_tensor(i["sources"]) for i in group]),
                    "prompts": torch.tensor([[prompts.index(n) for n in row] for row in names]),
                    "source_names": names,
                }
            )
        return {"groups": batches, "size": len(items)}

    @staticmethod
    def to_device(batch: Batch, device: torch.device) -> Batch:
        return {
            "groups": [TrainingTask.to_device(group, device) for group in batch["groups"]],
            "size": batch["size"],
        }

    def group_loss(self, estimates: Tensor, group: Batch) -> Tensor:
        loss = functools.partial(
            losses.thresholded_snr_loss,
            mixture=group["mixture"][:, None, None, :],
            snr_max=self.options["snr_max"],
            zero_reference_weight=self.options["zero_reference_weight"],
        )
        return losses.pit_loss(loss, estimates, group["sources"], groups=group["prompts"])[0]

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        total = 0.0
        for group in batch["groups"]:
            estimates = self.model(group["mixture"], group["prompts"])
            total = total + self.group_loss(estimates, group).sum()
        return total / batch["size"], {}

    @torch.no_grad()
    def validate(self, dataset: Dataset) -> ValidationResult:
        was_training = self.training
        self.eval()
        count = min(self.config.valid_items, _length(dataset))
        device = next(self.parameters()).device
        totals: dict[str, list[float]] = {}
        loss_sum = 0.0
        for index in range(count):
            batch = self.to_device(self.collate([dataset[index]]), device)
            group = batch["groups"][0]
            estimates = self.model(group["mixture"], group["prompts"])
            loss_sum += float(self.group_loss(estimates, group).sum())
            names = group["source_names"][0]
            reference = group["sources"][0]
            estimate = align_within_groups(estimates[0], reference, names)
            _add_improvements(totals, names, estimate, reference, group["mixture"][0])
        self.train(was_training)
        return _separation_result(totals, loss_sum, count)


# ---------------------------------------------------------------- speakers


class SpeakerTask(TrainingTask):
    """Speaker encoder with an AAM-softmax head; validation EER/minDCF on trials.

    The trials are the validation data's trial list when it has one (a set written by
    ``workbench data freeze``, VoxCeleb's ``veri_test2.txt``), else every pair of
    ``valid_items`` held-out utterances.
    """

    OPTIONS: ClassVar[dict[str, Any]] = {
        "margin": 0.2,
        "scale": 30.0,
        "mhe_weight": 0.0,
        "p_target": 0.01,
    }

    def __init__(self, config: TrainConfig, data_kind: str) -> None:
        super().__init__(config, data_kind)
        self.find_unused_parameters = bool(
            getattr(self.model_config, "supernet", False)
            or getattr(self.model_config, "search", False)
        )
        self.head: AAMSoftmax | None = None  # sized by the training speakers in datasets()

    def datasets(self, with_validation: bool) -> tuple[Dataset, Dataset | None]:
        train, valid = super().datasets(with_validation)
        # The head is sized by the training speakers, known only once the data are read.
        self.head = AAMSoftmax(
            int(self.model_config.embedding_dim),
            num_speakers(train),
            margin=self.options["margin"],
            scale=self.options["scale"],
            mhe_weight=self.options["mhe_weight"],
        ).to(next(self.model.parameters()).device)
        return train, valid

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        return {
            "waveform": torch.stack([torch.as_tensor(i["waveform"]) for i in items]),
            "speaker_index": torch.tensor([int(i["speaker_index"]) for i in items]),
            "speaker_id": [str(i["speaker_id"]) for i in items],
        }

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        embeddings = self.model.embed(batch["waveform"])
        labels = batch["speaker_index"]
        loss = self.head(embeddings, labels)
        accuracy = (self.head.cosine(embeddings.detach()).argmax(dim=1) == labels).float().mean()
        return loss, {"accuracy": accuracy}

    def extra_state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_extra_state_dict(self, state: Mapping[str, Any]) -> None:
        if "head" in state:
            self.head.load_state_dict(state["head"])

    @torch.no_grad()
    def validate(self, dataset: Dataset) -> ValidationResult:
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        listed = getattr(dataset, "trials", None)  # a trial list: every utterance it names
        count = len(dataset) if listed else min(self.config.valid_items, _length(dataset))
        items = [dataset[i] for i in range(count)]
        embeddings = []
        for start in range(0, count, 8):
            chunk = items[start : start + 8]
            # Trial-list utterances differ in length: embed those one at a time.
            same_length = len({item["waveform"].shape[0] for item in chunk}) == 1
            for part in [chunk] if same_length else [[item] for item in chunk]:
                batch = self.to_device(self.collate(part), device)
                embeddings.append(
                    torch.nn.functional.normalize(self.model.embed(batch["waveform"]))
                )
        self.train(was_training)
        embedding = torch.cat(embeddings).cpu()
        speakers = [str(item["speaker_id"]) for item in items]
        pairs = listed or [
            (int(speakers[a] == speakers[b]), a, b)
            for a, b in itertools.combinations(range(count), 2)
        ]
        scores = np.array([float(embedding[a] @ embedding[b]) for _, a, b in pairs])
        labels = np.array([label for label, _, _ in pairs])
        if labels.min() == labels.max():
            raise ValueError(
                "The validation trials need both same-speaker and different-speaker pairs; "
                f"{count} utterances from {len(set(speakers))} speakers give only one kind. "
                "Raise valid_items."
            )
        eer, threshold = metrics.eer_with_threshold(scores, labels)
        min_dcf = metrics.min_dcf(scores, labels, p_target=self.options["p_target"])
        return ValidationResult(
            loss=math.nan,
            score=-eer,
            metrics={"eer": eer, "min_dcf": min_dcf, "trials": float(len(pairs))},
            items=count,
            threshold=threshold,
        )

    def best_metrics(self, result: ValidationResult) -> dict[str, float]:
        # models.bundles reads the accept threshold of a checkpoint from metrics["threshold"].
        return {**result.metrics, "threshold": float(result.threshold)}


def num_speakers(dataset: Dataset) -> int:
    """Training identities of a speaker dataset (``num_speakers`` or ``speaker_ids``)."""
    for name in ("num_speakers", "speaker_ids", "speakers"):
        value = getattr(dataset, name, None)
        if value is not None:
            return int(value) if isinstance(value, int) else len(value)
    raise ValueError(f"{type(dataset).__name__} does not say how many speakers it holds.")


# ---------------------------------------------------------------- building


#: Adapter and dataset family for each registered model.
#: Adapter of each registered separation model (speaker encoders share SpeakerTask).
ADAPTERS: dict[str, type[TrainingTask]] = {
    "mtass": ThreeWayTask,
    "conv_tasnet": SeparationTask,
    "nas_tasnet": NasTasNetTask,
    "tuss": PromptedTask,
}


def task_family(config: TrainConfig) -> tuple[type[TrainingTask], str]:
    """Adapter class and dataset family (see :func:`make_dataset`) for ``config.model``.

    Raises:
        SettingsError: For a model no adapter covers, or outputs no dataset provides.
    """
    if registry.get_spec(config.model).task == "speaker":
        return SpeakerTask, "speakers"
    if config.model not in ADAPTERS:
        raise SettingsError(
            f"No training adapter for model '{config.model}'. Trainable: "
            f"{', '.join(trainable_models())}."
        )
    if config.model == "tuss":
        return PromptedTask, "prompted"
    names = tuple(model_config(config).source_names)
    talkers = sum(_group(name) == "speaker" for name in names)
    if talkers and set(names) - {f"speaker{i + 1}" for i in range(talkers)} <= {"noise"}:
        return ADAPTERS[config.model], "speech_separation"
    kinds = {("music", "noise", "speech"): "three_way", ("noise", "speech"): "enhancement"}
    if tuple(sorted(names)) in kinds:
        return ADAPTERS[config.model], kinds[tuple(sorted(names))]
    raise SettingsError(
        f"No dataset gives the sources {names} of '{config.model}': use speaker1..speakerN "
        "(optionally + noise), speech + noise, or speech + music + noise."
    )


def check_settings(config: TrainConfig) -> None:
    """Everything about ``config`` that can be checked without building anything.

    Raises:
        SettingsError: On an unknown model, preset or field, or an unknown task option.
    """
    try:
        model_config(config)
    except (KeyError, ValueError) as exc:
        raise SettingsError(exc.args[0] if exc.args else str(exc)) from None
    task_class, data_kind = task_family(config)
    task_class.parse_options(config)
    specs = [config.data, *[v for k, v in config.data_options if k == "valid"]]
    for spec in map(str, specs):
        layout, _, path = spec.partition(":")
        if spec == "synthetic" or _is_corpus(Path(spec)):
            continue
        if layout not in LAYOUTS or not Path(path).is_dir():
            raise SettingsError(
                f"--data {spec}: not 'synthetic', a corpus built by 'workbench data build', a "
                "set written by 'workbench data freeze' (validation only) or LAYOUT:FOLDER "
                f"(layouts: {', '.join(LAYOUTS)}); check that the folder exists."
            )
        if LAYOUTS[layout][0] != data_kind and (LAYOUTS[layout][0], data_kind) != (
            "three_way",
            "enhancement",
        ):
            raise SettingsError(
                f"--data {spec}: {layout} holds {LAYOUTS[layout][0]} data; "
                f"'{config.model}' trains on {data_kind} data."
            )


def _is_corpus(folder: Path) -> bool:
    return (folder / "manifests" / "corpus.csv").is_file() or (folder / "meta.json").is_file()


def build_task(config: TrainConfig) -> TrainingTask:
    """The adapter for ``config.model`` (speaker encoders share :class:`SpeakerTask`)."""
    task_class, data_kind = task_family(config)
    return task_class(config, data_kind)


def trainable_models() -> list[str]:
    """Registered models :func:`build_task` can train."""
    return sorted(
        name
        for name, spec in registry.registry().items()
        if name in ADAPTERS or spec.task == "speaker"
    )


def save_best(
    task: TrainingTask, path: Path, config: TrainConfig, step: int, result: ValidationResult
) -> None:
    """Write ``best.pt``: the model alone, openable as an inference bundle."""
    checkpoints.save_checkpoint(
        path,
        task.model,
        config.model,
        config=task.model_config,
        step=step,
        metrics=task.best_metrics(result),
        train_config=config.to_dict(),
    )


def _length(dataset: Dataset) -> int:
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return 1 << 62  # endless


#: ``--data LAYOUT:PATH`` public layouts, the dataset families they serve, and their
#: training / validation subsets.
LAYOUTS: dict[str, tuple[str, tuple[str, str]]] = {
    "librimix": ("speech_separation", ("train-100", "dev")),
    "wsj0-mix": ("speech_separation", ("tr", "cv")),
    "mtass": ("three_way", ("train", "dev")),
    "dnr": ("prompted", ("tr", "cv")),
    "musdb": ("prompted", ("train", "test")),
    "voxceleb": ("speakers", ("train", "validation")),
}
#: Validation draws from other seeds than training (synthetic banks serve both splits).
VALID_SEED_OFFSET = 1_000_003
#: DnR's source names as TUSS prompts.
DNR_PROMPTS = {"speech": "speech", "music": "music-mix", "sfx": "sfx-mix"}


def make_dataset(
    kind: str, config: TrainConfig, split: str, sample_rate: int, source_names: Sequence[str]
) -> Dataset:
    """The dataset of family ``kind`` for ``split`` (``"train"`` or ``"valid"``).

    ``config.data`` is ``synthetic``, a corpus root from ``workbench data build`` or
    ``LAYOUT:PATH`` (:data:`LAYOUTS`). Options: ``data.valid=SPEC`` validates on other data
    (another spec, or a folder written by ``workbench data freeze``); every other
    ``data.KEY`` goes to the dataset constructor (``data.reverb_probability=0.3``).

    Args:
        kind: ``three_way``, ``enhancement``, ``speech_separation``, ``prompted`` or
            ``speakers``.
        config: Supplies ``data``, ``data_options``, segment lengths, ``valid_items``, ``seed``.
        split: ``"train"`` (endless, index-addressed) or ``"valid"`` (``valid_items`` long).
        sample_rate: The model's rate.
        source_names: The model's outputs (they size the speech-separation mixtures).
    """
    from models.data import datasets as data
    from models.data.freeze import FrozenDataset, frozen_trials

    # Settings the run derives (lengths, seeds, talkers) win over data.KEY options.
    options = dict(config.data_options)
    valid_spec = str(options.pop("valid", config.data))
    spec = valid_spec if split == "valid" else config.data
    training = split == "train"
    split_name = "train" if training else "validation"
    names = tuple(source_names)
    common: dict[str, Any] = {
        "seconds": config.segment_seconds if training else config.valid_segment_seconds,
        "length": config.max_steps * config.batch_size if training else config.valid_items,
        "seed": config.seed if training else config.seed + VALID_SEED_OFFSET,
    }
    classes = {
        "three_way": data.ThreeWayDataset,
        "enhancement": data.ThreeWayDataset,
        "speech_separation": data.SpeechSeparationDataset,
        "prompted": data.PromptedDataset,
        "speakers": data.SpeakerDataset,
    }
    dataset_class = classes[kind]
    if kind == "speech_separation":
        speakers = sum(name.startswith("speaker") for name in names)
        common |= {"num_speakers": speakers, "noise": "noise" in names}
    if spec == "synthetic":
        if kind == "speakers" and not training:
            # Held-out identities, few enough that the validation utterances repeat them.
            common["num_speakers"] = max(2, config.valid_items // 4)
        dataset = dataset_class.synthetic(sample_rate, split_name, **(options | common))
    elif not training and (Path(spec) / "meta.json").is_file():
        if kind == "speakers":
            trials = frozen_trials(spec)
            dataset = TrialUtterances(trials, sample_rate, common["seconds"])
        else:
            dataset = FrozenDataset(spec)
            if dataset.meta.get("sample_rate") != sample_rate:
                raise SettingsError(
                    f"The frozen set {spec} is at {dataset.meta.get('sample_rate')} Hz; the "
                    f"model runs at {sample_rate} Hz. Freeze it with --sample-rate {sample_rate}."
                )
    elif ":" in spec and spec.split(":", 1)[0] in LAYOUTS:
        dataset = _public_layout(spec, kind, training, sample_rate, names, common, options)
    else:
        dataset = dataset_class.from_manifest(spec, split_name, sample_rate, **(options | common))
    if kind == "enhancement":  # speech against everything else
        dataset = _MergedSources(dataset, {"speech": ("speech",), "noise": ("music", "noise")})
    return dataset


def _public_layout(
    spec: str,
    kind: str,
    training: bool,
    sample_rate: int,
    names: tuple[str, ...],
    common: dict[str, Any],
    options: dict[str, Any],
) -> Dataset:
    """A dataset over a corpus in a standard public layout (``LAYOUT:PATH``)."""
    from models.data import datasets as data
    from models.data import readers

    layout, path = spec.split(":", 1)
    layout_kind, subsets = LAYOUTS[layout]
    if layout_kind != kind and not (layout_kind == "three_way" and kind == "enhancement"):
        raise SettingsError(f"--data {layout}: holds {layout_kind} data, this model needs {kind}.")
    subset = subsets[0] if training else subsets[1]
    split_name = "train" if training else "validation"
    if layout == "musdb":
        rows = readers.read_musdb(path, subset)
        return data.PromptedDataset.from_rows(
            rows,
            "/",
            split_name,
            sample_rate,
            **({"scenarios": {"music-stems": 1.0}} | options | common),
        )
    if layout == "voxceleb":
        official = [Path(path) / name for name in ("veri_test2.txt", "veri_test.txt")]
        listed = next((file for file in official if file.is_file()), None)
        if not training and listed is not None:  # the official trial list
            trials = readers.voxceleb_trial_paths(path, data.read_trials(listed))
            return TrialUtterances(trials, sample_rate, common["seconds"])
        rows = readers.read_voxceleb(path, split_name)
        return data.SpeakerDataset.from_rows(
            rows, "/", split_name, sample_rate, **(options | common)
        )
    rate = 8000 if sample_rate <= 8000 else 16000  # the rates LibriMix and WSJ0-mix ship
    if layout == "librimix":
        mix_type = "mix_both" if common.get("noise") else "mix_clean"
        speakers = common["num_speakers"]
        items = readers.read_librimix(path, subset, rate, mix_type=mix_type, num_speakers=speakers)
    elif layout == "wsj0-mix":
        items = readers.read_wsj0_mix(path, subset, rate, num_speakers=common["num_speakers"])
    elif layout == "mtass":
        items = readers.read_mtass(path, subset)
    else:  # dnr
        items = readers.read_dnr(path, subset)
    dataset: Dataset = data.PremixedDataset(items, sample_rate, common["seconds"], common["seed"])
    if layout == "dnr":
        dataset = _MergedSources(dataset, {p: (n,) for n, p in DNR_PROMPTS.items()})
    elif kind == "speech_separation":
        dataset = _MergedSources(dataset, None, names)  # s1, s2[, noise] -> the model's names
    if training:
        return _Cycled(dataset)
    return _Cycled(dataset, min(len(dataset), common["length"]))


class TrialUtterances(Dataset):
    """The utterances of a verification trial list, for validation.

    Args:
        trials: ``(label, enroll_path, test_path)``; label 1 for same speaker.
        sample_rate: The model's rate (files are resampled).
        max_seconds: Longer utterances are cropped around their middle.

    Attributes:
        trials: ``(label, enroll_index, test_index)`` into this dataset.
    """

    def __init__(
        self, trials: Sequence[tuple[int, Path, Path]], sample_rate: int, max_seconds: float
    ) -> None:
        if not trials:
            raise ValueError("The trial list is empty.")
        self.paths = sorted({str(p) for _, enroll, test in trials for p in (enroll, test)})
        position = {path: index for index, path in enumerate(self.paths)}
        self.trials = [(int(label), position[str(a)], position[str(b)]) for label, a, b in trials]
        self.sample_rate = sample_rate
        self.max_samples = int(max_seconds * sample_rate)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        audio, rate = soundfile.read(self.paths[index], dtype="float32", always_2d=True)
        waveform = torch.from_numpy(audio.mean(axis=1))
        if rate != self.sample_rate:
            waveform = audio_functional.resample(waveform, rate, self.sample_rate)
        if waveform.shape[0] > self.max_samples:
            start = (waveform.shape[0] - self.max_samples) // 2
            waveform = waveform[start : start + self.max_samples]
        return {"waveform": waveform, "speaker_index": -1, "speaker_id": self.paths[index]}


class _Cycled(Dataset):
    """A finite dataset as an endless one (index modulo its size), or its first ``length``."""

    def __init__(self, dataset: Dataset, length: int | None = None) -> None:
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless training set has no length")
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index % len(self.dataset)]  # type: ignore[arg-type]


class _MergedSources(Dataset):
    """Sums or renames the sources of another dataset's items.

    Args:
        dataset: The dataset.
        merge: New name -> old names summed into it (``None``: rename by position).
        names: New names by position, when ``merge`` is ``None``.
    """

    def __init__(
        self,
        dataset: Dataset,
        merge: Mapping[str, tuple[str, ...]] | None,
        names: Sequence[str] = (),
    ) -> None:
        self.dataset, self.merge, self.names = dataset, merge, tuple(names)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        old = list(item["source_names"])
        if self.merge is None:
            if len(old) != len(self.names):
                raise ValueError(f"Items have sources {old}; the model expects {self.names}.")
            item["source_names"] = list(self.names)
            return item
        sources = item["sources"]
        present = {
            new: [old.index(n) for n in group if n in old] for new, group in self.merge.items()
        }
        item["sources"] = torch.stack(
            [sources[rows].sum(dim=0) for rows in present.values() if rows]
        )
        item["source_names"] = [new for new, rows in present.items() if rows]
        item.pop("relative_levels_db", None)  # no longer one level per source
        return item
