"""MiTAS: compare Conv-TasNet parameter-sharing variants at an equal training budget.

MiTAS shares the separator's depthwise and pointwise convolutions across stacks (repeats),
dilations or all blocks (the ``sharing`` codes of :mod:`models.conv_tasnet`: ``ss``, ``sn``,
``ns``, ``nd``, ``dn``, ``na`` and ``none``). Sharing divides the separator's parameters but
not its computation, so the question is how much SI-SDR each variant keeps per parameter.
:func:`run_mitas` trains every chosen variant from the same initial seed on the same batches
for the same number of steps (or minutes), scores each on the same validation items and writes
the table (variant, parameters, separator parameters, MACs per second, SI-SDRi) to
``result.json``.

Every variant is a run of the shared training loop (:func:`models.train.loop.train`) with
identical settings but for ``sharing``: AdamW at a constant learning rate, the same seed,
the same batches in the same order and the training pipeline's data for ``--data``.

This module also holds the separation pieces both separation searches use (NAS-TasNet
retrains its derived architecture through :func:`train_in_loop` too):

* :class:`SeparationData`: the training pipeline's index-addressed two-talker datasets;
* :func:`pit_si_sdr_loss`: permutation-invariant negative SI-SDR;
* :func:`train_in_loop`: one resumable run of the shared loop, bounded per invocation by
  steps or a deadline and in total by steps or minutes, its progress and rows forwarded;
* :func:`evaluate_separator`: SI-SDRi of PIT-aligned estimates on fixed validation items.

Run folder: ``config.json`` (the settings), ``metrics.jsonl`` (``train`` rows tagged with the
variant, one ``valid`` row per scored variant), ``status.json``, ``result.json`` and one
shared-loop run folder per variant in ``variants/NAME/``. Running the same command again
resumes the unfinished variant from its checkpoint and skips the scored ones.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from models import metrics
from models.checkpoint import load_checkpoint, read_checkpoint
from models.conv_tasnet import ConvTasNetConfig, sharing_code
from models.flops import macs_per_second
from models.losses import negative_si_sdr, pit_loss, reorder_sources
from models.registry import get_spec
from models.search.common import (
    apply_overrides,
    pick_device,
    settings_differences,
    settings_from_dict,
    settings_to_dict,
)
from models.train.config import TrainConfig, model_config
from models.train.loop import train as train_loop
from models.train.reporting import METRICS_FILE, JobReporter, write_json_atomic
from models.train.tasks import make_dataset

Override = tuple[str, Any]

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"
VARIANTS_FOLDER = "variants"
#: Settings that may change when a run folder is resumed (they do not change what is computed).
BUDGET_FIELDS: tuple[str, ...] = ("checkpoint_minutes",)


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class SeparationData:
    """Where a separation search gets its two-talker items: the training pipeline's datasets.

    Items come from :func:`models.train.tasks.make_dataset` (the ``speech_separation``
    family), the same entry point ``workbench train`` uses, so a search, its retraining in
    the shared loop and a plain training run see the same mixtures for the same seed, and a
    corpus becomes usable here as soon as the training pipeline reads it.

    Attributes:
        spec: ``--data``: ``"synthetic"`` or a corpus.
        sample_rate: Audio rate of the model.
        source_names: The model's outputs.
        options: Dataset options (``--set data.KEY=VALUE``).
        seed: Data seed (the training seed of the runs that retrain on it).
    """

    spec: str
    sample_rate: int
    source_names: tuple[str, ...] = ("speaker1", "speaker2")
    options: tuple[Override, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        # An unreadable spec fails here, before any training, in plain words.
        try:
            self.dataset("valid", 0.01)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"Cannot read separation data '{self.spec}': {exc}. Use 'synthetic', a corpus "
                "built by 'workbench data build', or LAYOUT:PATH."
            ) from exc

    def dataset(self, split: str, seconds: float) -> Dataset:
        """The ``split`` (``"train"`` or ``"valid"``) with items of ``seconds``.

        Item ``i`` depends only on ``(seed, split, i)``; validation items can be indexed far
        past the ``valid_items`` a training run scores (architecture steps use them).

        Returns:
            A dataset whose item ``i`` is ``{"mixture": (time,), "sources": (S, time), ...}``.
        """
        config = self.train_config(
            "conv_tasnet",
            segment_seconds=seconds,
            valid_segment_seconds=seconds,
            valid_items=1_000_000,
        )
        return make_dataset("speech_separation", config, split, self.sample_rate, self.source_names)

    def train_config(self, model: str, **values: Any) -> TrainConfig:
        """A :class:`TrainConfig` reading this data (``values`` set every other field)."""
        return TrainConfig(
            model=model, data=self.spec, data_options=self.options, seed=self.seed, **values
        )

    def description(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.options)
        return f"{self.spec} two-talker mixtures at {self.sample_rate} Hz, seed {self.seed}" + (
            f" ({options})" if options else ""
        )


def stack_items(dataset: Dataset, indices: Iterable[int]) -> tuple[Tensor, Tensor]:
    """Collate items into a batch.

    Args:
        dataset: Items ``{"mixture": (time,), "sources": (S, time)}`` or
            ``(mixture, sources)`` pairs.
        indices: Item indices.

    Returns:
        ``(mixture (batch, time), sources (batch, S, time))``.
    """
    mixtures, sources = [], []
    for index in indices:
        item = dataset[index]
        mixture, source = (
            (item["mixture"], item["sources"]) if isinstance(item, Mapping) else item[:2]
        )
        mixtures.append(torch.as_tensor(mixture, dtype=torch.float32))
        sources.append(torch.as_tensor(source, dtype=torch.float32))
    return torch.stack(mixtures), torch.stack(sources)


def step_indices(step: int, batch_size: int) -> range:
    """Training items of step ``step``: consecutive, so every step sees fresh mixtures."""
    return range(step * batch_size, (step + 1) * batch_size)


# ---------------------------------------------------------------- loss and evaluation


def pit_si_sdr_loss(estimates: Tensor, sources: Tensor) -> Tensor:
    """Permutation-invariant negative SI-SDR.

    Args:
        estimates: Shape ``(batch, S, time)``.
        sources: Shape ``(batch, S, time)``.

    Returns:
        Loss per example (mean over sources of the best assignment), shape ``(batch,)``.
    """
    loss, _ = pit_loss(negative_si_sdr, estimates, sources)
    return loss


@torch.no_grad()
def evaluate_separator(
    model: nn.Module,
    mixtures: Tensor,
    sources: Tensor,
    batch_size: int = 4,
) -> dict[str, float]:
    """SI-SDR and SI-SDR improvement of PIT-aligned estimates.

    Args:
        model: ``forward(mixture (batch, time)) -> (batch, S, time)``.
        mixtures: Shape ``(items, time)``.
        sources: Shape ``(items, S, time)``.
        batch_size: Items per forward.

    Returns:
        ``{"si_sdr", "si_sdri", "items"}``: means over items and sources (dB).
    """
    if mixtures.dim() != 2 or sources.dim() != 3 or sources.shape[0] != mixtures.shape[0]:
        raise ValueError(
            "Expected mixtures (items, time) and sources (items, S, time); got "
            f"{tuple(mixtures.shape)} and {tuple(sources.shape)}."
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    si_sdr_values, improvements = [], []
    try:
        for start in range(0, mixtures.shape[0], batch_size):
            mixture = mixtures[start : start + batch_size]
            target = sources[start : start + batch_size]
            estimates = model(mixture.to(device)).cpu()
            _, permutation = pit_loss(negative_si_sdr, estimates, target)
            aligned = reorder_sources(estimates, permutation)
            si_sdr_values.append(metrics.si_sdr(aligned, target))
            improvements.append(metrics.si_sdr_improvement(aligned, target, mixture))
    finally:
        model.train(was_training)
    si_sdr = torch.as_tensor([float(v) for batch in si_sdr_values for v in batch.ravel()])
    si_sdri = torch.as_tensor([float(v) for batch in improvements for v in batch.ravel()])
    return {
        "si_sdr": float(si_sdr.mean()),
        "si_sdri": float(si_sdri.mean()),
        "items": int(mixtures.shape[0]),
    }


def validation_items(data: SeparationData, seconds: float, count: int) -> tuple[Tensor, Tensor]:
    """The first ``count`` validation items: every variant (or architecture) is scored on these.

    Returns:
        ``(mixtures (count, time), sources (count, S, time))``.
    """
    return stack_items(data.dataset("valid", seconds), range(count))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Distinct parameters (shared modules count once) of the model and its separator."""
    separator = getattr(model, "separator", model)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "separator_parameters": sum(p.numel() for p in separator.parameters()),
    }


# ---------------------------------------------------------------- training in the shared loop


@dataclass
class TrainingOutcome:
    """Where a run of the shared loop stands.

    Attributes:
        step: Steps done (across resumes).
        finished: The step budget, or the minutes budget, is spent.
        wall_time: Training seconds spent (across resumes).
    """

    step: int
    finished: bool
    wall_time: float


def loop_position(folder: Path) -> tuple[int, float]:
    """``(step, training seconds)`` of the shared loop's checkpoint in ``folder``."""
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return 0, 0.0
    saved = read_checkpoint(path)
    return saved.step, float(saved.extra.get("loop", {}).get("wall_time", 0.0))


class _ProgressLines(io.TextIOBase):
    """A text stream that hands each complete JSON line of the loop to ``on_event``."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.on_event = on_event
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.on_event(event)
        return len(text)


def train_in_loop(
    config: TrainConfig,
    folder: Path,
    *,
    step_limit: int | None = None,
    minutes_limit: float | None = None,
    deadline: float | None = None,
    on_progress: Callable[[int, str], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    device: str | None = None,
) -> TrainingOutcome:
    """Train (or resume) one run of :func:`models.train.loop.train` in ``folder``.

    ``config.max_steps`` is the run's whole budget. This invocation stops earlier at
    ``step_limit`` steps or ``deadline``; the loop takes a smaller ``max_steps`` or
    ``max_minutes`` for that (both may change on resume; with a constant learning rate the
    numbers do not depend on them). ``minutes_limit`` is a budget of training time over all
    invocations (MiTAS "equal minutes").

    Args:
        config: The run (use ``schedule="constant"`` when it may be cut and resumed).
        folder: The run folder.
        step_limit: Stop this invocation at this many steps.
        minutes_limit: The run's total training minutes.
        deadline: ``time.monotonic()`` at which this invocation must stop.
        on_progress: Called with ``(steps done, message)`` for each progress line.
        on_row: Called with every new ``train`` row of the run's ``metrics.jsonl``.
        device: ``"cpu"``, ``"cuda"`` or ``None``.

    Returns:
        Where the run stands.
    """
    step, spent = loop_position(folder)

    def is_finished(step: int, spent: float) -> bool:
        # One second of slack: the loop stops at the first step past its time budget.
        by_time = minutes_limit is not None and spent >= minutes_limit * 60 - 1.0
        return step >= config.max_steps or by_time

    if is_finished(step, spent):
        return TrainingOutcome(step, True, spent)
    target = config.max_steps if step_limit is None else min(config.max_steps, step_limit)
    minutes = []
    if minutes_limit is not None:
        minutes.append((minutes_limit * 60 - spent) / 60)
    if deadline is not None:
        minutes.append((deadline - time.monotonic()) / 60)
    if target <= step or (minutes and min(minutes) <= 0):
        return TrainingOutcome(step, False, spent)
    mirrored = step  # rows up to the checkpoint were passed on by the invocation that wrote it

    def pass_rows() -> None:
        nonlocal mirrored
        if on_row is None:
            return
        try:
            lines = (folder / METRICS_FILE).read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line being written
            # The loop also logs and validates at the end of every invocation, which depends
            # on where it was cut: pass on the rows of the uncut run's grid only (callers
            # write their own scores).
            row_step = int(row.get("step", 0))
            on_grid = row_step % config.log_interval == 0 or row_step == config.max_steps
            if row.get("split") == "train" and row_step > mirrored and on_grid:
                on_row(row)
                mirrored = row_step

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            pass_rows()
            if on_progress is not None:
                on_progress(int(event.get("done", 0)), str(event.get("message", "")))

    run_config = dataclasses.replace(
        config, max_steps=target, max_minutes=max(min(minutes), 1e-6) if minutes else 0.0
    )
    train_loop(run_config, folder, stream=_ProgressLines(on_event), device=device)
    pass_rows()
    step, spent = loop_position(folder)
    return TrainingOutcome(step, is_finished(step, spent), spent)


def final_model(folder: Path, device: str | torch.device = "cpu") -> nn.Module:
    """The latest weights of the loop's run in ``folder`` (its ``checkpoint.pt``)."""
    model, _ = load_checkpoint(folder / CHECKPOINT_FILE, device)
    return model


def config_overrides(config: Any, base: Any) -> tuple[Override, ...]:
    """``(field, value)`` pairs turning ``base`` into ``config``, in field order.

    Field order keeps every intermediate config valid: ``num_repeats`` comes before
    ``blocks_per_repeat``, which comes before the per-block tuples.
    """
    if type(config) is not type(base):
        raise ValueError(f"Cannot express a {type(config).__name__} over a {type(base).__name__}.")
    return tuple(
        (f.name, getattr(config, f.name))
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(base, f.name)
    )


# ---------------------------------------------------------------- run-folder helpers


def truncate_metrics(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop ``metrics.jsonl`` rows a killed process wrote after its last checkpoint.

    Args:
        path: The metrics file.
        keep: Predicate on a parsed row; a torn (unparsable) line is always dropped.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and keep(row):
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def prepare_settings(settings: Any, run_dir: Path, budget_fields: Sequence[str]) -> Any:
    """Write ``config.json``, or check the command against the run it resumes.

    Raises:
        ValueError: When the folder holds a run with other settings.
    """
    path = run_dir / CONFIG_FILE
    if path.exists():
        saved_values = json.loads(path.read_text())
        saved_values.pop("resolved", None)
        saved = settings_from_dict(type(settings), saved_values)
        changed = settings_differences(saved, settings, budget_fields)
        if changed:
            raise ValueError(
                f"The run folder {run_dir} holds a run with other settings; use a new --run "
                "folder, or the same settings to resume. Differences: " + "; ".join(changed)
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    return settings


def write_settings(settings: Any, run_dir: Path, resolved: Mapping[str, Any]) -> None:
    """Write ``config.json``: the settings plus resolved, informational values."""
    write_json_atomic(
        run_dir / CONFIG_FILE, {**settings_to_dict(settings), "resolved": dict(resolved)}
    )


def read_result(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- MiTAS


@dataclass(frozen=True)
class MitasSettings:
    """One MiTAS comparison.

    Attributes:
        variants: Sharing codes to compare (``"none"`` is the unshared baseline).
        preset: ``conv_tasnet`` preset every variant starts from.
        model_overrides: ``(field, value)`` overrides of that preset (``--set model.KEY=V``).
        data: ``"synthetic"`` or a corpus.
        data_overrides: Dataset options (``--set data.KEY=V``).
        steps: Training steps per variant.
        minutes: Training minutes per variant (0: steps only); a variant stops at whichever
            of ``steps`` and ``minutes`` comes first, counted across resumes.
        batch_size: Mixtures per step.
        segment_seconds: Training mixture length.
        lr: AdamW learning rate, constant (no warm-up or decay: every step of an equal
            budget weighs the same, and a minutes budget has no known end to decay to).
        grad_clip: Gradient-norm clip.
        valid_items: Validation items every variant is scored on.
        valid_seconds: Validation item length.
        log_interval: Steps between ``train`` rows.
        checkpoint_minutes: Minutes between checkpoints (0: every step).
        seed: Initial weights (the same for every variant) and data.
    """

    variants: tuple[str, ...] = ("none", "ss", "sn", "ns")
    preset: str = "small"
    model_overrides: tuple[Override, ...] = ()
    data: str = "synthetic"
    data_overrides: tuple[Override, ...] = ()
    steps: int = 2000
    minutes: float = 0.0
    batch_size: int = 4
    segment_seconds: float = 1.0
    lr: float = 1e-3
    grad_clip: float = 5.0
    valid_items: int = 16
    valid_seconds: float = 2.0
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("Give at least one sharing variant, e.g. none,ss.")
        for variant in self.variants:
            sharing_code(variant)  # validates, listing the codes
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"Variants repeat: {self.variants}.")
        for name in ("steps", "batch_size", "valid_items", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("segment_seconds", "valid_seconds", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        for name in ("minutes", "grad_clip", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")

    def base_config(self) -> ConvTasNetConfig:
        """The ``conv_tasnet`` config of the preset with the overrides (unshared)."""
        return apply_overrides(get_spec("conv_tasnet").config(self.preset), self.model_overrides)

    def variant_config(self, variant: str) -> ConvTasNetConfig:
        return dataclasses.replace(self.base_config(), sharing=variant)

    def data_source(self) -> SeparationData:
        base = self.base_config()
        return SeparationData(
            self.data, base.sample_rate, base.source_names, self.data_overrides, self.seed
        )

    def train_config(self, variant: str) -> TrainConfig:
        """The shared loop's settings for one variant (identical but for ``sharing``)."""
        config = self.data_source().train_config(
            "conv_tasnet",
            preset=self.preset,
            overrides=(*self.model_overrides, ("sharing", variant)),
            batch_size=self.batch_size,
            segment_seconds=self.segment_seconds,
            valid_segment_seconds=self.valid_seconds,
            valid_items=self.valid_items,
            lr=self.lr,
            warmup_steps=0,
            schedule="constant",
            grad_clip=self.grad_clip,
            valid_interval=self.steps,
            log_interval=self.log_interval,
            checkpoint_minutes=self.checkpoint_minutes,
            max_steps=self.steps,
        )
        if model_config(config) != self.variant_config(variant):
            raise ValueError(f"The training overrides do not rebuild variant '{variant}'.")
        return config


TABLE_COLUMNS: tuple[str, ...] = (
    "variant",
    "parameters",
    "separator_parameters",
    "macs_per_second",
    "si_sdri",
)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison as aligned text (what the command prints)."""
    header = ("variant", "params", "sep. params", "GMACs/s", "SI-SDRi dB", "steps")
    lines = [header]
    for row in rows:
        lines.append(
            (
                str(row["variant"]),
                f"{row['parameters']:,}",
                f"{row['separator_parameters']:,}",
                f"{row['macs_per_second'] / 1e9:.3f}",
                f"{row['si_sdri']:.2f}",
                str(row.get("steps", "")),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                  enumerate(zip(line, widths, strict=True)))
        for line in lines
    )  # fmt: skip


def run_mitas(
    settings: MitasSettings,
    run_dir: Path,
    max_steps: int = 0,
    max_minutes: float = 0.0,
    stream: TextIO | None = None,
    device: str | None = None,
) -> str:
    """Train, score and tabulate every variant (or resume doing so) in ``run_dir``.

    Each variant is a run of the shared training loop in ``variants/NAME/`` (its own
    ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and ``best.pt``); its ``train``
    rows are copied into the job's ``metrics.jsonl`` with a ``variant`` field.

    Args:
        settings: The comparison.
        run_dir: The run folder (created).
        max_steps: Stop this invocation once this many training steps (summed over the
            variants) are done (0: no limit); run again to continue.
        max_minutes: Wall-clock budget of this invocation (0: unlimited).
        stream: Where JSON progress lines go (stdout by default).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    Returns:
        ``"finished"`` or ``"stopped"``.
    """
    run_dir = Path(run_dir)
    prepare_settings(settings, run_dir, BUDGET_FIELDS)
    total = settings.steps * len(settings.variants)
    reporter = JobReporter(run_dir, total, stream)
    try:
        return _run_mitas(settings, run_dir, max_steps, max_minutes, reporter, device)
    except BaseException as exc:
        reporter.finish("failed", 0, f"{type(exc).__name__}: {exc}")
        raise


def _run_mitas(
    settings: MitasSettings,
    run_dir: Path,
    max_steps: int,
    max_minutes: float,
    reporter: JobReporter,
    device_name: str | None,
) -> str:
    device = pick_device(device_name or "auto")
    data = settings.data_source()
    write_settings(
        settings,
        run_dir,
        {"data": data.description(), "base_config": dataclasses.asdict(settings.base_config())},
    )
    rows: dict[str, dict[str, Any]] = {
        row["variant"]: row for row in read_result(run_dir).get("table", [])
    }
    deadline = time.monotonic() + max_minutes * 60 if max_minutes > 0 else None
    minutes_limit = settings.minutes if settings.minutes > 0 else None

    def done_steps() -> int:
        return settings.steps * sum(variant in rows for variant in settings.variants)

    reporter.begin(done_steps(), "resumed" if rows else "started")
    items = validation_items(data, settings.valid_seconds, settings.valid_items)
    for variant in settings.variants:
        if variant in rows:
            continue
        folder = run_dir / VARIANTS_FOLDER / variant
        saved_step, _ = loop_position(folder)
        # Rows a killed process wrote past the variant's checkpoint are replayed, and its
        # score is written again: drop both.
        truncate_metrics(
            run_dir / METRICS_FILE,
            lambda row, v=variant, s=saved_step: (
                row.get("variant") != v
                or (row.get("split") == "train" and int(row.get("step", 0)) <= s)
            ),
        )
        before = done_steps()
        outcome = train_in_loop(
            settings.train_config(variant),
            folder,
            step_limit=None if max_steps <= 0 else max(max_steps - before, 0),
            minutes_limit=minutes_limit,
            deadline=deadline,
            on_progress=lambda done, message, v=variant, b=before: reporter.progress(
                b + done, f"{v}: {message}"
            ),
            on_row=lambda row, v=variant: reporter.metrics({**row, "variant": v}),
            device=None if device_name is None else str(device),
        )
        if not outcome.finished:
            reporter.finish("stopped", before + outcome.step, "stopped; run again to continue")
            return "stopped"
        model = final_model(folder, device)
        scores = evaluate_separator(model, items[0], items[1], settings.batch_size)
        rows[variant] = {
            "variant": variant,
            **parameter_counts(model),
            "macs_per_second": macs_per_second(model),
            "si_sdri": round(scores["si_sdri"], 4),
            "si_sdr": round(scores["si_sdr"], 4),
            "steps": outcome.step,
            "train_seconds": round(outcome.wall_time, 2),
        }
        reporter.metrics(
            {
                "step": outcome.step,
                "split": "valid",
                "variant": variant,
                "loss": round(-scores["si_sdr"], 6),
                "metrics": {"si_sdri": scores["si_sdri"], "si_sdr": scores["si_sdr"]},
                "lr": None,
                "throughput": 0.0,
                "wall_time": round(outcome.wall_time, 3),
            }
        )
        _write_mitas_result(run_dir, settings, data, rows)
        reporter.progress(done_steps(), f"{variant}: SI-SDRi {scores['si_sdri']:.2f} dB")
    table = [rows[v] for v in settings.variants]
    print(format_table(table), file=reporter.stream, flush=True)
    reporter.finish("finished", done_steps(), f"compared {len(table)} variants")
    return "finished"


def _write_mitas_result(
    run_dir: Path,
    settings: MitasSettings,
    data: SeparationData,
    rows: Mapping[str, Mapping[str, Any]],
) -> None:
    ordered = [dict(rows[v]) for v in settings.variants if v in rows]
    write_json_atomic(
        run_dir / RESULT_FILE,
        {
            "search": "mitas",
            "columns": list(TABLE_COLUMNS),
            "table": ordered,
            "complete": len(ordered) == len(settings.variants),
            "valid_items": settings.valid_items,
            "valid_seconds": settings.valid_seconds,
            "data": data.description(),
            "budget": {"steps": settings.steps, "minutes": settings.minutes},
        },
    )
