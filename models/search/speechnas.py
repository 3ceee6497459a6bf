"""SpeechNAS search (Zhu et al., ASRU 2021) as a resumable job in a run folder.

Three stages, each resumable from the run folder:

1. **Supernet** (``supernet.pt``): single-path one-shot training with uniform sampling
   (Guo et al., SPOS): every step runs one architecture drawn uniformly from the D-TDNN-SS
   space (per dense layer: branches, bottleneck width, selection dimension) on the shared
   weights of :class:`models.speaker_encoders.DTdnn` (``supernet=True``), with a softmax
   head (a margin slows the shared weights' early progress).
2. **Search** (an Optuna study, SQLite in the run folder by default): Bayesian optimisation
   over sub-networks. A trial suggests one choice per layer, measures the stand-alone
   network's parameters and MACs per second of audio, prunes it when it exceeds the budget
   (``--max-parameters`` / ``--max-macs``), otherwise re-estimates the BatchNorm statistics
   for that path on training batches (the SPOS evaluation step) and scores validation EER on
   the trial list. Single objective: EER under the budget (TPE or GP). Multi-objective: EER
   and the cost (NSGA-II, multi-objective TPE or GP). Several workers may share the study.
3. **Retrain** (``retrain/trial-NNNN/``): the chosen architectures (the best under the
   budget, or the Pareto set) from scratch with AAM-softmax + MHE, then EER on the trials.

``result.json`` lists the chosen architectures as configs (``model_name`` ``"speechnas"``; a
search candidate *is* a config), their search and retrained metrics, and the Pareto front.
``trials.jsonl`` is the trial table; ``metrics.jsonl`` and ``status.json`` come from
:class:`models.train.reporting.JobReporter`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import optuna
import torch
from torch import nn

from models.checkpoint import read_checkpoint, save_checkpoint
from models.registry import get_spec
from models.search import optuna_study
from models.search.common import (
    Budget,
    Override,
    RetrainSettings,
    SpeakerData,
    apply_overrides,
    evaluate_encoder,
    learning_rate,
    load_speaker_data,
    pick_device,
    settings_differences,
    settings_from_dict,
    settings_to_dict,
    train_command,
    train_encoder,
    training_batch,
    valid_feature_batches,
)
from models.speaker_encoders import (
    Architecture,
    DTdnn,
    DTdnnConfig,
    architecture_space,
    derive_config,
    sample_architecture,
)
from models.speaker_losses import SoftmaxHead
from models.train.reporting import JobReporter, write_json_atomic

MODEL_NAME = "speechnas"
CONFIG_FILE = "config.json"
SUPERNET_FILE = "supernet.pt"
RESULT_FILE = "result.json"
OBJECTIVES = ("single", "multi")
COSTS = ("parameters", "macs")
#: Settings a resumed run may change: its budget, not what it searches.
BUDGET_FIELDS = ("supernet_steps", "trials", "retrain_steps", "retrain_top", "max_minutes")
#: Cumulative share of ``--max-minutes`` at which each stage ends.
STAGE_SHARES = {"supernet": 0.5, "search": 0.8, "retrain": 1.0}


@dataclass(frozen=True)
class SpeechNasSettings:
    """Every choice of one SpeechNAS search (saved as ``config.json``).

    Attributes:
        preset: ``speechnas`` preset of the supernet (``supernet_small``, ``supernet``).
        model_overrides: ``(field, value)`` changes to that config (``--set model.KEY=V``).
        data: ``"synthetic"`` or a speaker corpus.
        data_overrides: Dataset options (``--set data.KEY=V``).
        seed: Seeds initialisation, data order, architecture sampling and the sampler.
        batch_size: Utterances per supernet step.
        segment_seconds: Training crop length.
        valid_seconds: Validation utterances are cut to this length.
        supernet_steps: Supernet training steps (``--max-steps``).
        supernet_lr: Peak learning rate of the supernet (AdamW, warm-up, cosine).
        weight_decay: AdamW weight decay (supernet and retraining).
        warmup_steps: Linear warm-up steps (capped at a tenth of the stage's steps).
        grad_clip: Global gradient-norm clip.
        trials: Trials in the study (``--max-trials``), over all workers: evaluated ones and
            ones pruned for exceeding the budget (cheap, but they stop a sampler that keeps
            proposing oversized networks from running for ever); failed ones do not count.
        sampler: ``tpe``, ``gp``, ``nsga2`` (multi-objective only) or ``random``.
        startup_trials: Random trials before the model-based sampler takes over.
        objective: ``single`` (EER under the budget) or ``multi`` (EER and the cost).
        cost: What the budget and the second objective measure: ``parameters`` or ``macs``
            (multiply-accumulates per second of audio, front end excluded).
        budget: Largest allowed cost (0: unconstrained).
        calibration_batches: Training batches used to re-estimate BatchNorm per trial.
        retrain_steps: Steps of each final retraining.
        retrain_top: Architectures retrained: the best ``retrain_top`` (single objective) or
            up to ``retrain_top`` points spread along the Pareto front (multi-objective).
        retrain_lr: Peak learning rate of the retraining.
        margin: AAM-softmax margin of the retraining (radians).
        scale: AAM-softmax scale.
        mhe_weight: MHE regulariser weight of the retraining.
        log_interval: Steps between ``metrics.jsonl`` training rows.
        checkpoint_minutes: Minutes between checkpoints (0: every step).
        max_minutes: Wall-clock budget of one invocation (0: unlimited), shared by the
            stages as :data:`STAGE_SHARES`; a stage whose share runs out ends there.
        study_name: Optuna study name.
    """

    preset: str = "supernet_small"
    model_overrides: tuple[Override, ...] = ()
    data: str = "synthetic"
    data_overrides: tuple[Override, ...] = ()
    seed: int = 0
    batch_size: int = 16
    segment_seconds: float = 2.0
    valid_seconds: float = 6.0
    supernet_steps: int = 3000
    supernet_lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    trials: int = 40
    sampler: str = "tpe"
    startup_trials: int = 10
    objective: str = "single"
    cost: str = "parameters"
    budget: float = 0.0
    calibration_batches: int = 4
    retrain_steps: int = 2000
    retrain_top: int = 1
    retrain_lr: float = 2e-3
    margin: float = 0.2
    scale: float = 30.0
    mhe_weight: float = 0.01
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0
    study_name: str = "speechnas"

    def __post_init__(self) -> None:
        for name in ("batch_size", "supernet_steps", "calibration_batches", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("trials", "retrain_steps", "retrain_top", "startup_trials", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("budget", "max_minutes", "checkpoint_minutes", "grad_clip", "mhe_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got '{self.objective}'.")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got '{self.cost}'.")
        if self.sampler not in optuna_study.SAMPLERS:
            raise ValueError(
                f"sampler must be one of {optuna_study.SAMPLERS}, got '{self.sampler}'."
            )
        if self.sampler == "nsga2" and self.objective != "multi":
            raise ValueError("The nsga2 sampler needs objective 'multi'.")

    def supernet_config(self) -> DTdnnConfig:
        """The supernet's config: the preset with the model overrides."""
        spec = get_spec(MODEL_NAME)
        try:
            config = spec.config(self.preset)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        overrides = dict(self.model_overrides)
        if config.supernet and "layers" not in overrides:
            # The supernet's default path is the largest one; keep it consistent with an
            # overridden depth or choice set instead of making the user spell it out.
            probe = {
                k: v
                for k, v in overrides.items()
                if k in ("block_layers", "branch_choices", "width_choices", "selection_choices")
            }
            depth = sum(probe.get("block_layers", config.block_layers))
            largest = tuple(
                max(probe.get(name, getattr(config, name)))
                for name in ("branch_choices", "width_choices", "selection_choices")
            )
            overrides["layers"] = (largest,) * depth
        config = apply_overrides(config, overrides.items())
        if not config.supernet:
            raise ValueError(
                f"Preset '{self.preset}' is not a supernet; use 'supernet_small' or 'supernet'."
            )
        return config

    def retrain_settings(self) -> RetrainSettings:
        return RetrainSettings(
            steps=self.retrain_steps,
            batch_size=self.batch_size,
            segment_seconds=self.segment_seconds,
            lr=self.retrain_lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
            head="aam",
            margin=self.margin,
            scale=self.scale,
            mhe_weight=self.mhe_weight,
            valid_seconds=self.valid_seconds,
            log_interval=self.log_interval,
            checkpoint_minutes=self.checkpoint_minutes,
            seed=self.seed,
        )


# ---------------------------------------------------------------- run folder


def mask_storage(url: str | None) -> str | None:
    """The storage URL with any password replaced by ``***`` (for ``config.json``)."""
    if not url or "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def resolve_settings(
    run_dir: Path,
    requested: SpeechNasSettings | None,
    budget: dict[str, Any] | None = None,
) -> SpeechNasSettings:
    """The settings of this run.

    A new run uses ``requested``. On resume, ``requested`` must ask for the same search as
    the saved one (only :data:`BUDGET_FIELDS` may change). With ``requested=None`` (a worker,
    or "resume whatever is there") the saved settings are used with ``budget`` applied.

    Raises:
        ValueError: The requested settings change more than the budget, or there are neither
            settings nor a saved ``config.json``.
    """
    path = Path(run_dir) / CONFIG_FILE
    budget = dict(budget or {})
    unknown = sorted(set(budget) - set(BUDGET_FIELDS))
    if unknown:
        raise ValueError(f"Only the budget {BUDGET_FIELDS} can be changed, not {unknown}.")
    if not path.exists():
        if requested is None:
            raise ValueError(
                f"{run_dir} has no {CONFIG_FILE}: start the main search job there first."
            )
        return dataclasses.replace(requested, **budget)
    saved = settings_from_dict(SpeechNasSettings, json.loads(path.read_text())["settings"])
    if requested is None:
        return dataclasses.replace(saved, **budget)
    problems = settings_differences(saved, requested, BUDGET_FIELDS)
    if problems:
        raise ValueError(
            f"{run_dir} holds a different search; use a new --run folder or the same "
            "settings:\n  " + "\n  ".join(problems)
        )
    return dataclasses.replace(requested, **budget)


def write_run_config(
    run_dir: Path, settings: SpeechNasSettings, data: SpeakerData, storage: str | None
) -> None:
    """``config.json``: the settings, the resolved supernet config, data and storage."""
    payload = {
        "search": "speechnas",
        "model_name": MODEL_NAME,
        "settings": settings_to_dict(settings),
        "supernet_config": dataclasses.asdict(settings.supernet_config()),
        "data": data.description,
        "storage": mask_storage(storage) or "study.db (SQLite in this folder)",
    }
    write_json_atomic(Path(run_dir) / CONFIG_FILE, payload)


# ---------------------------------------------------------------- helpers


def dtdnn_macs(config: DTdnnConfig, architecture: Architecture, frames: int) -> int:
    """Multiply-accumulates of one D-TDNN(-SS) forward pass on ``frames`` feature frames.

    Counted from the shapes, the way :func:`models.flops.count_macs` counts them (every
    convolution and linear layer, biases and element-wise work excluded); a test checks the
    two agree. ``count_macs`` traces the real forward pass, but its first call in a process
    costs seconds (it loads PyTorch's decomposition tables), which a search worker would pay
    before its first trial.

    Args:
        config: The (supernet) config; only its fixed sizes are read.
        architecture: One ``(branches, width, selection)`` per dense layer.
        frames: Feature frames of the input.

    Returns:
        MACs for one utterance.
    """
    channels, growth = config.init_channels, config.growth_rate
    macs = channels * config.features.num_mels * config.init_kernel_size * frames
    choices = iter(architecture)
    for num_layers in config.block_layers:
        for _ in range(num_layers):
            branches, width, selection = next(choices)
            macs += width * channels * frames  # 1x1 bottleneck
            macs += branches * growth * width * config.kernel_size * frames
            if branches > 1:  # statistics-and-selection: gather FNN, one FNN per branch
                macs += selection * 4 * growth + branches * growth * selection
            channels += growth
        macs += (channels // 2) * channels * frames  # transit layer
        channels //= 2
    return macs + config.embedding_dim * 2 * channels


def dtdnn_layer_parameters(
    config: DTdnnConfig, in_channels: int, branches: int, width: int, selection: int
) -> int:
    """Parameters of one stand-alone dense layer (see :class:`DenseTdnnLayer`)."""
    growth = config.growth_rate
    prelu = config.activation == "prelu"
    count = 2 * in_channels + (in_channels if prelu else 0)  # BN, PReLU on the input
    count += width * in_channels + 2 * width + (width if prelu else 0)  # 1x1, BN, PReLU
    count += branches * growth * width * config.kernel_size
    if branches > 1:
        count += 4 * growth * selection + selection  # gather FNN
        count += branches * (selection * growth + growth)  # one selection FNN per branch
    return count


def architecture_cost(model: DTdnn, architecture: Architecture) -> tuple[int, int]:
    """``(parameters, MACs per second of audio)`` of a sub-network of ``model``.

    Parameters are of the stand-alone network: everything outside the dense blocks (stem,
    transit layers, embedding) is the supernet's own, the dense layers are counted from
    their choices; MACs are of the encoder on one second of features (the front end is the
    same for every architecture and is not counted). Both are counted from shapes, not by
    building the network, so a trial costs microseconds here; the tests check them against
    the built network.
    """
    config = model.config
    fixed = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("blocks."))
    parameters, channels = fixed, config.init_channels
    choices = iter(architecture)
    for num_layers in config.block_layers:
        for _ in range(num_layers):
            parameters += dtdnn_layer_parameters(config, channels, *next(choices))
            channels += config.growth_rate
        channels //= 2
    frames = model.front_end.num_frames(config.sample_rate)
    return parameters, dtdnn_macs(config, architecture, frames)


def suggest_architecture(trial: optuna.Trial, config: DTdnnConfig) -> Architecture:
    """One ``(branches, width, selection)`` per dense layer from the trial's suggestions."""
    choices = []
    for index, layer in enumerate(architecture_space(config)):
        choices.append(
            (
                trial.suggest_categorical(f"layer{index:02d}_branches", list(layer["branches"])),
                trial.suggest_categorical(f"layer{index:02d}_width", list(layer["width"])),
                trial.suggest_categorical(f"layer{index:02d}_selection", list(layer["selection"])),
            )
        )
    return tuple(choices)


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """Up to ``count`` items evenly spaced along ``items`` (both ends included)."""
    if count <= 0 or not items:
        return []
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(k * step)] for k in range(count)]


def choose_architectures(
    rows: Sequence[dict[str, Any]], settings: SpeechNasSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(chosen rows, Pareto front rows)`` from the trial table.

    Single objective: the ``retrain_top`` lowest-EER distinct architectures (all within the
    budget, since over-budget trials are pruned). Multi-objective: up to ``retrain_top``
    points spread along the EER/cost Pareto front, from lowest EER to lowest cost.
    """
    front = optuna_study.pareto_front(rows, ["eer", settings.cost])
    if settings.objective == "multi":
        return spread(front, settings.retrain_top), front
    complete = [
        row
        for row in rows
        if row["state"] == "COMPLETE" and row["objectives"].get("eer") is not None
    ]
    complete.sort(key=lambda row: (row["objectives"]["eer"], row["objectives"][settings.cost]))
    chosen, seen = [], set()
    for row in complete:
        key = json.dumps(row["architecture"])
        if key in seen:
            continue
        seen.add(key)
        chosen.append(row)
        if len(chosen) >= settings.retrain_top:
            break
    return chosen, front


# ---------------------------------------------------------------- the job


class SpeechNasJob:
    """One SpeechNAS search in ``run_dir`` (the main job, or a search-only worker).

    Args:
        run_dir: The run folder (created).
        settings: Requested settings (``None``: the saved ones).
        budget: Budget fields to change on the saved or requested settings.
        storage: Optuna storage URL (``None``: the saved one, else SQLite in the folder).
        worker: Only contribute trials to the study (needs a finished supernet).
        supernet_path: A worker's supernet checkpoint (default ``run_dir/supernet.pt``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        heartbeat_seconds: Heartbeat of running trials (a killed worker's trial is retried
            after two missed beats).
        should_stop: Polled between steps and trials (SIGTERM): checkpoint and return.
        stream: Where the JSON progress lines go (stdout).
    """

    def __init__(
        self,
        run_dir: Path,
        settings: SpeechNasSettings | None = None,
        budget: dict[str, Any] | None = None,
        storage: str | None = None,
        worker: bool = False,
        supernet_path: Path | None = None,
        device: str = "auto",
        heartbeat_seconds: int = optuna_study.HEARTBEAT_SECONDS,
        should_stop: Callable[[], bool] = lambda: False,
        stream: TextIO | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if worker and settings is not None:
            raise ValueError("A worker takes its settings from the run folder; pass budget only.")
        self.settings = resolve_settings(self.run_dir, settings, budget)
        self.worker = worker
        self.storage_url = storage or self._saved_storage()
        self.supernet_path = Path(supernet_path) if supernet_path else self.run_dir / SUPERNET_FILE
        self.device = pick_device(device)
        self.heartbeat_seconds = heartbeat_seconds
        self.should_stop = should_stop
        self.budget = Budget(self.settings.max_minutes, STAGE_SHARES)
        self.config = self.settings.supernet_config()
        s = self.settings
        self.total_units = s.supernet_steps + s.trials + s.retrain_top * s.retrain_steps
        if worker:
            folder = self.run_dir / "workers" / f"{socket.gethostname()}-{os.getpid()}"
            folder.mkdir(parents=True, exist_ok=True)
            self.reporter = JobReporter(folder, s.trials, stream)
        else:
            self.reporter = JobReporter(self.run_dir, self.total_units, stream)
        self.data: SpeakerData | None = None
        # Progress counters: supernet steps, evaluated trials, retraining steps.
        self._supernet_step = self._trials_done = self._retrain_done = 0

    def _saved_storage(self) -> str | None:
        path = self.run_dir / CONFIG_FILE
        if not path.exists():
            return None
        saved = json.loads(path.read_text()).get("storage")
        if not saved or "***" in saved or saved.startswith("study.db"):
            return None
        return saved

    # -- entry point --

    def run(self) -> dict[str, Any]:
        """Run (or resume) the job; returns the result (``state`` is finished or stopped)."""
        s = self.settings
        self.reporter.begin(0, "loading data")
        try:
            self.data = load_speaker_data(
                s.data, self.config.sample_rate, dict(s.data_overrides), seed=s.seed
            )
            if not self.worker:
                write_run_config(self.run_dir, s, self.data, self.storage_url)
            if self.worker:
                model = self._load_supernet(require_finished=True)
                study = self._open_study()
                self._search(model, study)
                result = {"state": "stopped" if self.should_stop() else "finished"}
                result["trials"] = optuna_study.counted_trials(study)
                self.reporter.finish(result["state"], result["trials"], "worker done")
                return result
            model, finished = self._train_supernet()
            if not finished:
                return self._stop("stopped during supernet training")
            study = self._open_study()
            self._search(model, study)
            if self.should_stop():
                return self._stop("stopped during the search")
            result = self._retrain(study)
        except BaseException as exc:
            self.reporter.finish("failed", self._units_done(), f"{type(exc).__name__}: {exc}")
            raise
        state = "stopped" if result.get("stopped") else "finished"
        message = result.get("message", "")
        done = self.total_units if state == "finished" else self._units_done()
        self.reporter.finish(state, done, message, result=RESULT_FILE)
        return {**result, "state": state}

    def _stop(self, message: str) -> dict[str, Any]:
        self.reporter.finish("stopped", self._units_done(), message)
        return {"state": "stopped", "message": message}

    # -- progress --

    def _units_done(self) -> int:
        return self._supernet_step + self._trials_done + self._retrain_done

    # -- stage 1: supernet --

    def _supernet_state(
        self, for_training: bool = True
    ) -> tuple[DTdnn, SoftmaxHead | None, torch.optim.Optimizer | None, int, bool]:
        """Supernet (and, for training, its head and optimizer) from ``supernet.pt`` if any."""
        assert self.data is not None
        torch.manual_seed(self.settings.seed)
        model = DTdnn(self.config).to(self.device)
        head = optimizer = None
        if for_training:
            head = SoftmaxHead(self.config.embedding_dim, self.data.num_speakers).to(self.device)
            optimizer = torch.optim.AdamW(
                [*model.parameters(), *head.parameters()],
                lr=self.settings.supernet_lr,
                weight_decay=self.settings.weight_decay,
            )
        step, finished = 0, False
        if self.supernet_path.exists():
            saved = read_checkpoint(self.supernet_path, map_location=self.device)
            if saved.model_config != dataclasses.asdict(self.config):
                raise ValueError(f"{self.supernet_path} holds another supernet configuration.")
            model.load_state_dict(saved.model_state)
            if for_training:
                head.load_state_dict(saved.extra["head"])
                optimizer.load_state_dict(saved.optimizer_state)
            step = saved.step
            finished = bool(saved.extra.get("finished"))
        return model, head, optimizer, step, finished

    def _save_supernet(self, model, head, optimizer, step: int, finished: bool) -> None:
        save_checkpoint(
            self.supernet_path,
            model,
            MODEL_NAME,
            self.config,
            optimizer=optimizer,
            step=step,
            train_config=settings_to_dict(self.settings),
            extra={"head": head.state_dict(), "finished": finished},
        )

    def _load_supernet(self, require_finished: bool) -> DTdnn:
        if not self.supernet_path.exists():
            raise ValueError(
                f"No supernet at {self.supernet_path}: the main job trains it before workers "
                "can search (or pass --supernet FILE)."
            )
        model, _, _, step, finished = self._supernet_state(for_training=False)
        if require_finished and not finished:
            raise ValueError(
                f"The supernet at {self.supernet_path} is still training (step {step}); "
                "start workers once the main job has reached its search stage."
            )
        self._supernet_step = step
        return model

    def _train_supernet(self) -> tuple[DTdnn, bool]:
        """Train (or resume) the supernet. Returns ``(model, finished)``."""
        s, data = self.settings, self.data
        assert data is not None
        model, head, optimizer, step, finished = self._supernet_state()
        self._supernet_step = step
        if finished:
            return model, True
        deadline = self.budget.deadline("supernet")
        num_samples = round(s.segment_seconds * data.sample_rate)
        indices = list(range(len(data.train_waveforms)))
        warmup = min(s.warmup_steps, s.supernet_steps // 10)
        parameters = [*model.parameters(), *head.parameters()]
        model.train()
        last_save = time.monotonic()
        window_start = time.monotonic()
        self.reporter.begin(self._units_done(), f"supernet step {step}")
        while step < s.supernet_steps:
            if self.should_stop():
                self._save_supernet(model, head, optimizer, step, False)
                return model, False
            if Budget.passed(deadline):
                break
            lr = learning_rate(step, s.supernet_lr, warmup, s.supernet_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The path and the batch of step k depend only on (seed, k): resuming continues
            # the same sequence with nothing but the step saved.
            architecture = sample_architecture(self.config, random.Random(s.seed * 7_919 + step))
            waveforms, labels = training_batch(
                data, indices, step, s.batch_size, num_samples, s.seed
            )
            waveforms, labels = waveforms.to(self.device), labels.to(self.device)
            with torch.no_grad():
                features = model.front_end(waveforms)
            loss = head(model(features, architecture), labels)
            if not torch.isfinite(loss):
                raise RuntimeError(f"Supernet loss became {loss.item()} at step {step}.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip > 0:
                nn.utils.clip_grad_norm_(parameters, s.grad_clip)
            optimizer.step()
            step += 1
            self._supernet_step = step
            if step % s.log_interval == 0 or step == s.supernet_steps:
                elapsed = max(time.monotonic() - window_start, 1e-9)
                window_start = time.monotonic()
                self.reporter.metrics(
                    {
                        "stage": "supernet",
                        "step": step,
                        "split": "train",
                        "loss": loss.item(),
                        "lr": lr,
                        "throughput": s.batch_size * min(s.log_interval, step) / elapsed,
                        "wall_time": time.time(),
                    }
                )
                self.reporter.progress(
                    self._units_done(), f"supernet step {step}/{s.supernet_steps}"
                )
            if time.monotonic() - last_save >= s.checkpoint_minutes * 60:
                self._save_supernet(model, head, optimizer, step, False)
                last_save = time.monotonic()
        # Finished: all steps done, or the stage's share of --max-minutes spent (the search
        # then works with the supernet as trained so far).
        self._save_supernet(model, head, optimizer, step, True)
        self.reporter.metrics(
            {"stage": "supernet", "step": step, "split": "train", "event": "finished"}
        )
        return model, True

    # -- stage 2: search --

    def _open_study(self) -> optuna.Study:
        s = self.settings
        storage = optuna_study.open_storage(
            self.storage_url, self.run_dir, heartbeat_seconds=self.heartbeat_seconds
        )
        directions = ["minimize"] if s.objective == "single" else ["minimize", "minimize"]
        # Probe the study for its size so a resumed job or a second worker does not replay
        # the first job's random start-up samples.
        probe = optuna_study.open_study(
            s.study_name, storage, directions, optuna.samplers.RandomSampler()
        )
        offset = len(probe.get_trials(deepcopy=False))
        seed = s.seed * 1_000 + offset + (os.getpid() % 100_000) * 7 * int(self.worker)
        sampler = optuna_study.make_sampler(
            s.sampler, len(directions), seed=seed, startup_trials=s.startup_trials
        )
        return optuna_study.open_study(s.study_name, storage, directions, sampler)

    def _objective_names(self) -> list[str]:
        return ["eer"] if self.settings.objective == "single" else ["eer", self.settings.cost]

    def _search(self, model: DTdnn, study: optuna.Study) -> None:
        s, data = self.settings, self.data
        assert data is not None
        trials_path = self.run_dir / optuna_study.TRIALS_FILE
        names = self._objective_names()
        self._trials_done = optuna_study.counted_trials(study)
        if self._trials_done >= s.trials:
            optuna_study.export_trials(study, trials_path, names)
            return
        model.eval()
        calibration = self._calibration_features(model)
        valid = valid_feature_batches(
            model.front_end, data, round(s.valid_seconds * data.sample_rate), self.device
        )
        if s.budget > 0:
            c = self.config
            smallest = (
                (min(c.branch_choices), min(c.width_choices), min(c.selection_choices)),
            ) * sum(c.block_layers)
            cost = architecture_cost(model, smallest)[0 if s.cost == "parameters" else 1]
            if cost > s.budget:
                raise ValueError(
                    f"The budget ({s.cost} <= {s.budget:g}) is below the smallest "
                    f"architecture of the space ({cost:,}); raise it."
                )

        def objective(trial: optuna.Trial) -> float | tuple[float, float]:
            started = time.monotonic()
            optuna_study.claim_trial(trial, "worker" if self.worker else "main")
            architecture = suggest_architecture(trial, self.config)
            trial.set_user_attr("architecture", [list(choice) for choice in architecture])
            optuna_study.export_trials(study, trials_path, names)
            try:
                parameters, macs = architecture_cost(model, architecture)
                cost = parameters if s.cost == "parameters" else macs
                measured: dict[str, Any] = {"parameters": parameters, "macs": macs}
                trial.set_user_attr("objectives", measured)
                if s.budget > 0 and cost > s.budget:
                    trial.set_user_attr("over_budget", True)
                    raise optuna.TrialPruned(f"{s.cost} {cost:,} over the budget {s.budget:g}")
                model.recalibrate_batchnorm(calibration, architecture)
                model.eval()
                scores = evaluate_encoder(
                    lambda features: model(features, architecture), valid, data.trials
                )
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                raise
            measured = {**scores, "parameters": parameters, "macs": macs}
            trial.set_user_attr("objectives", measured)
            self.reporter.metrics(
                {
                    "stage": "search",
                    "step": trial.number,
                    "split": "valid",
                    "metrics": measured,
                    "duration_seconds": time.monotonic() - started,
                    "wall_time": time.time(),
                }
            )
            if s.objective == "single":
                return scores["eer"]
            return scores["eer"], float(cost)

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            optuna_study.export_trials(study, trials_path, names)
            self._trials_done = optuna_study.counted_trials(study)
            eer = trial.user_attrs.get("objectives", {}).get("eer")
            detail = "" if eer is None else f", EER {100 * eer:.2f} %"
            self.reporter.progress(
                self._units_done() if not self.worker else self._trials_done,
                f"trial {trial.number} {trial.state.name.lower()}{detail} "
                f"({self._trials_done}/{s.trials})",
            )

        self.reporter.progress(
            self._units_done() if not self.worker else self._trials_done, "search"
        )
        optuna_study.run_trials(
            study,
            objective,
            s.trials,
            deadline=self.budget.deadline("search"),
            callbacks=[after_trial],
            should_stop=self.should_stop,
        )
        optuna_study.export_trials(study, trials_path, names)

    def _calibration_features(self, model: DTdnn) -> list[torch.Tensor]:
        s, data = self.settings, self.data
        assert data is not None
        num_samples = round(s.segment_seconds * data.sample_rate)
        indices = list(range(len(data.train_waveforms)))
        batches = []
        with torch.no_grad():
            for k in range(s.calibration_batches):
                # Steps far past any training step: the same calibration set for every trial.
                waveforms, _ = training_batch(
                    data, indices, 10**9 + k, s.batch_size, num_samples, s.seed
                )
                batches.append(model.front_end(waveforms.to(self.device)))
        return batches

    # -- stage 3: retrain --

    def _retrain(self, study: optuna.Study) -> dict[str, Any]:
        s, data = self.settings, self.data
        assert data is not None
        rows = [
            optuna_study.trial_record(trial, self._objective_names())
            for trial in study.get_trials(deepcopy=False)
        ]
        chosen_rows, front = choose_architectures(rows, s)
        retrain_settings = s.retrain_settings()
        deadline = self.budget.deadline("retrain")
        chosen = []
        self._retrain_done = 0
        for position, row in enumerate(chosen_rows):
            config = derive_config(self.config, row["architecture"])
            folder = self.run_dir / "retrain" / f"trial-{row['number']:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(folder / "model_config.json", dataclasses.asdict(config))
            candidate_deadline = None
            if deadline is not None:
                remaining = max(deadline - time.monotonic(), 0.0)
                candidate_deadline = time.monotonic() + remaining / (len(chosen_rows) - position)
            offset = self._retrain_done

            def on_step(
                step: int, row_metrics: dict[str, Any], offset: int = offset, index: int = position
            ) -> None:
                self._retrain_done = offset + step
                self.reporter.progress(
                    self._units_done(), f"retrain {index + 1}/{len(chosen_rows)} step {step}"
                )

            retrained = {}
            if retrain_settings.steps > 0:
                retrained = train_encoder(
                    MODEL_NAME,
                    config,
                    data,
                    retrain_settings,
                    folder,
                    self.device,
                    deadline=candidate_deadline,
                    on_step=on_step,
                    should_stop=self.should_stop,
                    reporter=self.reporter,
                    tags={"stage": "retrain", "candidate": row["number"]},
                )
                if retrained.get("stopped"):
                    return {"stopped": True, "message": "stopped during retraining"}
            self._retrain_done = offset + retrain_settings.steps
            chosen.append(
                {
                    "trial": row["number"],
                    "model_name": MODEL_NAME,
                    "architecture": row["architecture"],
                    "config": dataclasses.asdict(config),
                    "train_command": train_command(MODEL_NAME, s.preset, config),
                    "search": row["objectives"],
                    "retrained": retrained,
                    "bundle": str((folder / "best.pt").relative_to(self.run_dir))
                    if (folder / "best.pt").exists()
                    else None,
                }
            )
        result = {
            "search": "speechnas",
            "objective": s.objective,
            "cost": s.cost,
            "budget": s.budget,
            "trials": optuna_study.counted_trials(study),
            "chosen": chosen,
            "pareto_front": [
                {
                    "trial": row["number"],
                    "architecture": row["architecture"],
                    **{
                        k: row["objectives"].get(k)
                        for k in ("eer", "min_dcf", "parameters", "macs")
                    },
                }
                for row in front
            ],
            "message": f"{len(chosen)} architecture(s) retrained"
            if chosen
            else "no completed trial to retrain",
        }
        write_json_atomic(self.run_dir / RESULT_FILE, result)
        return result
