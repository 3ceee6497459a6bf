"""The training loop: one linear, resumable loop for every registered model.

A run folder holds ``config.json`` (the resolved :class:`TrainConfig`), ``metrics.jsonl``,
``status.json``, ``checkpoint.pt`` and ``best.pt``. Running :func:`train` on a folder that
has a checkpoint continues exactly where it stopped: the data are index-addressed (example
``i`` is drawn from its own seed), so the sampler position is just the step, and model,
optimizer, scheduler and every RNG state come back from the checkpoint. SIGTERM (the app's
Stop) checkpoints and returns ``"stopped"``; ``kill -9`` loses at most
``checkpoint_minutes`` of work, since checkpoints are written atomically.

Under torchrun every process runs this same loop: rank ``r`` of ``W`` trains on examples
``(step * W + r) * batch_size + i``, DDP averages the gradients, and only rank 0 writes
files and validates (the others wait in the next per-step agreement).

What differs between model families (datasets, loss, metric) lives in :mod:`.tasks`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler

from models import checkpoint as checkpoints
from models.train import distributed
from models.train.config import (
    CONFIG_FILE,
    RESUMABLE_CHANGES,
    RunFolderError,
    TrainConfig,
    differences,
    load_config,
    save_config,
)
from models.train.distributed import DistributedContext
from models.train.reporting import METRICS_FILE, JobReporter, StopRequested
from models.train.tasks import TrainingTask, build_task, check_settings, save_best

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"


@dataclass
class TrainState:
    """Loop counters that a checkpoint carries besides the weights."""

    step: int = 0
    best_score: float = -math.inf
    bad_validations: int = 0
    wall_time: float = 0.0
    early_stopped: bool = False


def train(
    config: TrainConfig, run_dir: Path, stream: TextIO | None = None, device: str | None = None
) -> str:
    """Train (or resume) in ``run_dir`` until ``max_steps``, the time budget, early stopping
    or a stop request.

    Args:
        config: The run's settings; on an existing folder only the budget may differ.
        run_dir: The run folder (created if missing).
        stream: Where JSON progress lines go (stdout by default).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    Returns:
        The final state: ``"finished"`` or ``"stopped"``.
    """
    context = distributed.setup(device)
    run_dir = Path(run_dir)
    try:
        # Outside the failure report below: a mismatched command must not mark the run it
        # refused to touch as failed.
        config = prepare_run_folder(config, run_dir, context)
        reporter = JobReporter(run_dir, config.max_steps, stream, enabled=context.is_main)
        try:
            return _train(config, run_dir, context, reporter)
        except BaseException as exc:
            reporter.finish("failed", 0, f"{type(exc).__name__}: {exc}")
            raise
    finally:
        distributed.cleanup()


def _train(
    config: TrainConfig, run_dir: Path, context: DistributedContext, reporter: JobReporter
) -> str:
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    task = build_task(config).to(context.device)
    train_set, valid_set = task.datasets(context.is_main)  # may add a head sized by the data
    parameters = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config))
    state = restore(run_dir / CHECKPOINT_FILE, task, optimizer, scheduler, context, config)
    loader = iter(
        DataLoader(
            train_set,
            batch_sampler=StepBatches(state.step, config, context),
            collate_fn=task.collate,
            num_workers=config.num_workers,
            pin_memory=context.device.type == "cuda",
            # Its own generator: an iterator draws a base seed, which from the global RNG
            # would shift every later dropout mask of a resumed run by one draw.
            generator=torch.Generator(),
        )
    )
    model = distributed.wrap(task, context, task.find_unused_parameters)
    stop = StopRequested().install()
    reporter.begin(state.step, f"resumed at step {state.step}" if state.step else "started")
    started = last_checkpoint = window_start = time.monotonic()
    saved_step, window_examples, outcome = state.step, 0, "finished"
    while state.step < config.max_steps and not state.early_stopped:
        batch = task.to_device(next(loader), context.device)
        task.before_step(state.step)
        loss, logs = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip or math.inf)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        state.step += 1
        window_examples += config.batch_size * context.world_size
        wall_time = state.wall_time + time.monotonic() - started
        if state.step % config.log_interval == 0 or state.step == config.max_steps:
            loss_value = distributed.mean_across(loss, context).item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"The loss became {loss_value} at step {state.step}; lower lr or grad_clip."
                )
            now = time.monotonic()
            metrics = {name: float(value) for name, value in logs.items()}
            reporter.metrics(
                row(state.step, "train", loss_value, metrics | {"grad_norm": float(grad_norm)},
                    lr, window_examples / (now - window_start), wall_time)
            )  # fmt: skip
            reporter.progress(state.step, f"step {state.step} loss {loss_value:.3f}")
            window_start, window_examples = now, 0
        if context.is_main and (
            state.step % config.valid_interval == 0 or state.step == config.max_steps
        ):
            validate(task, valid_set, state, config, run_dir, reporter, wall_time)
        now = time.monotonic()
        stop_now, out_of_time, checkpoint_due, early = distributed.agree_any(
            [
                stop.requested,
                config.max_minutes > 0 and now - started >= config.max_minutes * 60,
                now - last_checkpoint >= config.checkpoint_minutes * 60,
                state.early_stopped,
            ],
            context,
        )
        if stop_now or out_of_time or early or state.step >= config.max_steps:
            outcome = "finished" if early or state.step >= config.max_steps else "stopped"
            break
        if checkpoint_due:
            save(run_dir, task, optimizer, scheduler, state, config, context, started)
            last_checkpoint, saved_step = time.monotonic(), state.step
    stop.restore()
    if state.step != saved_step or not (run_dir / CHECKPOINT_FILE).exists():
        save(run_dir, task, optimizer, scheduler, state, config, context, started)
    fingerprints = distributed.gather_objects(distributed.parameter_fingerprint(task), context)
    message = finish_message(outcome, state, config, stop_requested=stop.requested)
    reporter.finish(outcome, state.step, message, rank_fingerprints=fingerprints)
    return outcome


def validate(
    task: TrainingTask,
    valid_set: Dataset,
    state: TrainState,
    config: TrainConfig,
    run_dir: Path,
    reporter: JobReporter,
    wall_time: float,
) -> None:
    """Score the model on the validation split; keep ``best.pt``; count toward early stop."""
    began = time.monotonic()
    result = task.validate(valid_set)
    throughput = result.items / max(time.monotonic() - began, 1e-9)
    reporter.metrics(
        row(state.step, "valid", result.loss, result.metrics, math.nan, throughput, wall_time)
    )
    if result.score > state.best_score:
        state.best_score, state.bad_validations = result.score, 0
        save_best(task, run_dir / BEST_FILE, config, state.step, result)
    else:
        state.bad_validations += 1
        state.early_stopped = 0 < config.patience <= state.bad_validations


def row(
    step: int,
    split: str,
    loss: float,
    metrics: dict[str, float],
    lr: float,
    throughput: float,
    wall_time: float,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` line (the fields ``workbench/jobs/runs.py`` documents)."""
    return {
        "step": step,
        "split": split,
        "loss": None if math.isnan(loss) else round(float(loss), 6),
        "metrics": {name: round(float(value), 6) for name, value in metrics.items()},
        "lr": None if math.isnan(lr) else lr,
        "throughput": round(throughput, 3),
        "wall_time": round(wall_time, 3),
    }


def finish_message(outcome: str, state: TrainState, config: TrainConfig, **flags: bool) -> str:
    if state.early_stopped:
        return f"early stop at step {state.step}: no improvement in {config.patience} validations"
    if outcome == "finished":
        return f"finished {state.step} steps"
    if flags.get("stop_requested"):
        return f"stopped at step {state.step}; run again to continue"
    return (
        f"time budget of {config.max_minutes:g} min spent at step {state.step}; "
        "run again to continue"
    )


class StepBatches(Sampler[list[int]]):
    """Index batches for steps ``start_step, start_step + 1, ...`` of this rank."""

    def __init__(self, start_step: int, config: TrainConfig, context: DistributedContext) -> None:
        self.start_step, self.config, self.context = start_step, config, context

    def __iter__(self) -> Iterator[list[int]]:
        size, world, rank = self.config.batch_size, self.context.world_size, self.context.rank
        for step in range(self.start_step, self.config.max_steps):
            first = (step * world + rank) * size
            yield list(range(first, first + size))

    def __len__(self) -> int:
        return max(self.config.max_steps - self.start_step, 0)


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine (or constant) decay."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        span = max(config.max_steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        floor = config.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def prepare_run_folder(
    config: TrainConfig, run_dir: Path, context: DistributedContext
) -> TrainConfig:
    """Write ``config.json``, or check the command against the run it resumes.

    Raises:
        RunFolderError: When the folder holds a run with other settings (only
            :data:`RESUMABLE_CHANGES` may change when resuming).
        SettingsError: On settings no model or adapter accepts.
    """
    path = run_dir / CONFIG_FILE
    if path.exists():
        saved = load_config(path)
        changed = differences(saved, config)
        if changed:
            raise RunFolderError(
                f"The run folder {run_dir} holds a run with other settings; use a new --run "
                "folder, or the same settings to resume. Differences: " + "; ".join(changed)
            )
        config = replace(
            saved,
            **{name: getattr(config, name) for name in RESUMABLE_CHANGES},
        )
    check_settings(config)  # an unknown model, preset, field or option: nothing is written
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, path)
    return config


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors (loadable with ``weights_only=True``)."""
    version, python_state, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": torch.tensor(math.nan if gauss is None else gauss, dtype=torch.float64),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_position": torch.tensor([position, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor(cached, dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    gauss = float(state["python_gauss"])
    random.setstate((3, tuple(state["python"].tolist()), None if math.isnan(gauss) else gauss))
    position, has_gauss = state["numpy_position"].tolist()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, position, has_gauss, float(state["numpy_gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def save(
    run_dir: Path,
    task: TrainingTask,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    state: TrainState,
    config: TrainConfig,
    context: DistributedContext,
    started: float,
) -> None:
    """Write ``checkpoint.pt`` (rank 0), with every rank's RNG state."""
    rng_states = distributed.gather_objects(rng_state(), context)
    if not context.is_main:
        return
    saved_state = replace(state, wall_time=state.wall_time + time.monotonic() - started)
    checkpoints.save_checkpoint(
        run_dir / CHECKPOINT_FILE,
        task.model,
        config.model,
        config=task.model_config,
        optimizer=optimizer,
        scheduler=scheduler,
        step=state.step,
        metrics={"best_score": saved_state.best_score},
        train_config=config.to_dict(),
        extra={
            "loop": asdict(saved_state),
            "next_example_index": state.step * config.batch_size * context.world_size,
            "world_size": context.world_size,
            "rng": rng_states,
            "task": task.extra_state_dict(),
        },
    )


def restore(
    path: Path,
    task: TrainingTask,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    context: DistributedContext,
    config: TrainConfig,
) -> TrainState:
    """Load ``checkpoint.pt`` into the freshly built objects; a new run seeds its RNGs."""
    if not path.exists():
        seed = config.seed * 1000 + context.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        return TrainState()
    saved = checkpoints.read_checkpoint(path, map_location=context.device)
    task.model.load_state_dict(saved.model_state)
    task.load_extra_state_dict(saved.extra.get("task", {}))
    optimizer.load_state_dict(saved.optimizer_state)
    scheduler.load_state_dict(saved.scheduler_state)
    rng_states = saved.extra["rng"]
    # Another process count cannot replay the same draws; rank 0's state is the best guess.
    set_rng_state(rng_states[context.rank] if len(rng_states) > context.rank else rng_states[0])
    state = TrainState(**saved.extra["loop"])
    if context.is_main:
        truncate_metrics(path.parent / METRICS_FILE, state.step)
    return state


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed process wrote after its last checkpoint (they are replayed)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _row_step(line) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def _row_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line: drop it
