"""AutoSpeech search (Ding et al., 2020) as a resumable job in a run folder.

1. **Search** (``search.pt``): DARTS bi-level optimisation of the cell network
   :class:`models.autospeech.AutoSpeech` (``search=True``) with the first-order
   approximation: each step first updates the architecture weights (Adam) on a batch of the
   *architecture* half of the training utterances, then the network weights (SGD with
   momentum, cosine schedule) on a batch of the *weight* half. Both halves hold every
   training speaker (utterances alternate between them), since the classification loss
   needs the same classes on both sides; speaker-disjoint validation trials are kept for the
   final EER. The entropy of the operation distribution is logged as the search proceeds.
2. **Derive**: the DARTS genotype (per node, the two strongest edges, each with its strongest
   operation other than ``none``) as a config of the retraining preset.
3. **Retrain** (``retrain/derived/``): the derived network from scratch (softmax
   cross-entropy as AutoSpeech, or AAM-softmax), then EER and minDCF on the trials.

The run folder gets ``config.json``, ``metrics.jsonl``, ``status.json``, ``trials.jsonl``
(one row: the derived cell with its objectives) and ``result.json`` (the derived config).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from models.autospeech import AutoSpeech, AutoSpeechConfig
from models.checkpoint import read_checkpoint, save_checkpoint
from models.flops import count_macs
from models.registry import get_spec
from models.search import optuna_study
from models.search.common import (
    Budget,
    Override,
    RetrainSettings,
    SpeakerData,
    apply_overrides,
    learning_rate,
    load_speaker_data,
    pick_device,
    settings_differences,
    settings_from_dict,
    settings_to_dict,
    train_command,
    train_encoder,
    training_batch,
)
from models.speaker_losses import SoftmaxHead
from models.train.reporting import JobReporter, write_json_atomic

MODEL_NAME = "autospeech"
CONFIG_FILE = "config.json"
SEARCH_FILE = "search.pt"
RESULT_FILE = "result.json"
#: Settings a resumed run may change.
BUDGET_FIELDS = ("search_steps", "retrain_steps", "max_minutes")
#: Cumulative share of ``--max-minutes`` at which each stage ends.
STAGE_SHARES = {"search": 0.7, "retrain": 1.0}


@dataclass(frozen=True)
class AutoSpeechSettings:
    """Every choice of one AutoSpeech search (saved as ``config.json``).

    Attributes:
        preset: ``autospeech`` preset of the search network (``search_small``, ``search``).
        model_overrides: Changes to the search network's config (``--set model.KEY=V``).
        retrain_preset: ``autospeech`` preset whose size the derived network takes
            (``small``: C = 16, 5 cells; ``paper``: C = 128, 8 cells).
        retrain_overrides: Changes to the derived config (``--set retrain.KEY=V``).
        data: ``"synthetic"`` or a speaker corpus.
        data_overrides: Dataset options (``--set data.KEY=V``).
        seed: Seeds initialisation and data order.
        batch_size: Utterances per weight step and per architecture step.
        segment_seconds: Training crop length.
        valid_seconds: Validation utterances are cut to this length.
        search_steps: Bi-level steps (``--max-steps``).
        weight_lr: Peak SGD learning rate of the network weights (DARTS: 0.025).
        weight_momentum: SGD momentum.
        weight_decay: SGD weight decay of the network weights.
        arch_lr: Adam learning rate of the architecture weights (DARTS: 3e-4).
        arch_weight_decay: Adam weight decay of the architecture weights.
        arch_start_step: Steps of weight-only warm-up before architecture steps begin.
        grad_clip: Gradient-norm clip of the weight step.
        retrain_steps: Steps of the final retraining.
        retrain_head: ``softmax`` (as AutoSpeech) or ``aam`` (AAM-softmax + MHE).
        retrain_lr: Peak AdamW learning rate of the retraining.
        margin: AAM margin (``retrain_head="aam"``).
        scale: AAM scale.
        mhe_weight: MHE weight (``retrain_head="aam"``).
        log_interval: Steps between ``metrics.jsonl`` rows.
        checkpoint_minutes: Minutes between checkpoints (0: every step).
        max_minutes: Wall-clock budget of one invocation (0: unlimited), shared as
            :data:`STAGE_SHARES`.
    """

    preset: str = "search_small"
    model_overrides: tuple[Override, ...] = ()
    retrain_preset: str = "small"
    retrain_overrides: tuple[Override, ...] = ()
    data: str = "synthetic"
    data_overrides: tuple[Override, ...] = ()
    seed: int = 0
    batch_size: int = 8
    segment_seconds: float = 2.0
    valid_seconds: float = 6.0
    search_steps: int = 2000
    weight_lr: float = 0.025
    weight_momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    arch_start_step: int = 0
    grad_clip: float = 5.0
    retrain_steps: int = 2000
    retrain_head: str = "softmax"
    retrain_lr: float = 2e-3
    margin: float = 0.2
    scale: float = 30.0
    mhe_weight: float = 0.01
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "search_steps", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("retrain_steps", "arch_start_step", "max_minutes", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.retrain_head not in ("softmax", "aam"):
            raise ValueError(f"retrain_head must be 'softmax' or 'aam', got '{self.retrain_head}'.")

    def search_config(self) -> AutoSpeechConfig:
        """The search network's config: the preset with the model overrides."""
        config = _preset(self.preset)
        config = apply_overrides(config, self.model_overrides)
        if not config.search:
            raise ValueError(
                f"Preset '{self.preset}' is a derived network; search with 'search_small' "
                "or 'search'."
            )
        return config

    def derived_config(self, normal: Any, reduce: Any) -> AutoSpeechConfig:
        """The retraining config of a genotype.

        Size (channels, cells, embedding) comes from ``retrain_preset`` and
        ``retrain_overrides``; the cell shape (steps, multiplier, primitives), the front end
        and the sample rate from the search network, so the genotype fits.
        """
        search = self.search_config()
        base = dataclasses.replace(
            _preset(self.retrain_preset),
            sample_rate=search.sample_rate,
            features=search.features,
            steps=search.steps,
            multiplier=search.multiplier,
            primitives=search.primitives,
            search=False,
            normal=tuple(tuple(pair) for pair in normal),
            reduce=tuple(tuple(pair) for pair in reduce),
        )
        return apply_overrides(base, self.retrain_overrides)

    def retrain_settings(self) -> RetrainSettings:
        return RetrainSettings(
            steps=self.retrain_steps,
            batch_size=self.batch_size,
            segment_seconds=self.segment_seconds,
            lr=self.retrain_lr,
            head=self.retrain_head,
            margin=self.margin,
            scale=self.scale,
            mhe_weight=self.mhe_weight,
            grad_clip=self.grad_clip,
            valid_seconds=self.valid_seconds,
            log_interval=self.log_interval,
            checkpoint_minutes=self.checkpoint_minutes,
            seed=self.seed,
        )


def _preset(name: str) -> AutoSpeechConfig:
    try:
        return get_spec(MODEL_NAME).config(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def split_for_bilevel(data: SpeakerData) -> tuple[list[int], list[int]]:
    """``(weight indices, architecture indices)``: each speaker's utterances alternate.

    A speaker with one utterance gives it to the weight half; the architecture half is never
    empty when any speaker has two.
    """
    seen: dict[int, int] = {}
    weights, architecture = [], []
    for index, speaker in enumerate(data.train_speakers):
        position = seen.get(speaker, 0)
        seen[speaker] = position + 1
        (weights if position % 2 == 0 else architecture).append(index)
    if not architecture:
        raise ValueError(
            "The bi-level search needs at least two training utterances of some speaker."
        )
    return weights, architecture


def genotype_text(normal: Any, reduce: Any) -> str:
    """A compact one-line form of a genotype for logs."""

    def cell(genotype: Any) -> str:
        return " ".join(f"{operation}<-{source}" for operation, source in genotype)

    return f"normal: {cell(normal)} | reduce: {cell(reduce)}"


class AutoSpeechJob:
    """One AutoSpeech search in ``run_dir``.

    Args:
        run_dir: The run folder (created).
        settings: Requested settings (``None``: the saved ones).
        budget: Budget fields to change on the saved or requested settings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        should_stop: Polled between steps (SIGTERM): checkpoint and return.
        stream: Where the JSON progress lines go (stdout).
    """

    def __init__(
        self,
        run_dir: Path,
        settings: AutoSpeechSettings | None = None,
        budget: dict[str, Any] | None = None,
        device: str = "auto",
        should_stop: Callable[[], bool] = lambda: False,
        stream: TextIO | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings = self._resolve(settings, dict(budget or {}))
        self.device = pick_device(device)
        self.should_stop = should_stop
        self.budget = Budget(self.settings.max_minutes, STAGE_SHARES)
        self.config = self.settings.search_config()
        s = self.settings
        self.reporter = JobReporter(self.run_dir, s.search_steps + s.retrain_steps, stream)
        self.data: SpeakerData | None = None
        self._search_step = 0
        self._retrain_step = 0

    def _resolve(
        self, requested: AutoSpeechSettings | None, budget: dict[str, Any]
    ) -> AutoSpeechSettings:
        unknown = sorted(set(budget) - set(BUDGET_FIELDS))
        if unknown:
            raise ValueError(f"Only the budget {BUDGET_FIELDS} can be changed, not {unknown}.")
        path = self.run_dir / CONFIG_FILE
        if not path.exists():
            if requested is None:
                raise ValueError(f"{self.run_dir} has no {CONFIG_FILE} to resume.")
            return dataclasses.replace(requested, **budget)
        saved = settings_from_dict(AutoSpeechSettings, json.loads(path.read_text())["settings"])
        if requested is None:
            return dataclasses.replace(saved, **budget)
        problems = settings_differences(saved, requested, BUDGET_FIELDS)
        if problems:
            raise ValueError(
                f"{self.run_dir} holds a different search; use a new --run folder or the same "
                "settings:\n  " + "\n  ".join(problems)
            )
        return dataclasses.replace(requested, **budget)

    # -- entry point --

    def run(self) -> dict[str, Any]:
        """Run (or resume) the job; returns the result (``state`` is finished or stopped)."""
        s = self.settings
        self.reporter.begin(0, "loading data")
        try:
            self.data = load_speaker_data(
                s.data, self.config.sample_rate, dict(s.data_overrides), seed=s.seed
            )
            write_json_atomic(
                self.run_dir / CONFIG_FILE,
                {
                    "search": "autospeech",
                    "model_name": MODEL_NAME,
                    "settings": settings_to_dict(s),
                    "search_config": dataclasses.asdict(self.config),
                    "data": self.data.description,
                },
            )
            search = self._search()
            if search is None:
                self.reporter.finish("stopped", self._done(), "stopped during the search")
                return {"state": "stopped"}
            result = self._retrain(*search)
        except BaseException as exc:
            self.reporter.finish("failed", self._done(), f"{type(exc).__name__}: {exc}")
            raise
        if result.get("stopped"):
            self.reporter.finish("stopped", self._done(), "stopped during retraining")
            return {"state": "stopped"}
        self.reporter.finish("finished", self.reporter.total, result["message"], result=RESULT_FILE)
        return {**result, "state": "finished"}

    def _done(self) -> int:
        return self._search_step + self._retrain_step

    # -- stage 1: bi-level search --

    def _search(self) -> tuple[Any, Any, dict[str, float]] | None:
        """Run or resume the search; ``(normal, reduce, entropies)`` or ``None`` if stopped."""
        s, data = self.settings, self.data
        assert data is not None
        torch.manual_seed(s.seed)
        model = AutoSpeech(self.config).to(self.device)
        head = SoftmaxHead(self.config.embedding_dim, data.num_speakers).to(self.device)
        weights = [*model.weight_parameters(), *head.parameters()]
        weight_optimizer = torch.optim.SGD(
            weights, lr=s.weight_lr, momentum=s.weight_momentum, weight_decay=s.weight_decay
        )
        arch_optimizer = torch.optim.Adam(
            model.arch_parameters(),
            lr=s.arch_lr,
            betas=(0.5, 0.999),
            weight_decay=s.arch_weight_decay,
        )
        path = self.run_dir / SEARCH_FILE
        step, finished = 0, False
        if path.exists():
            saved = read_checkpoint(path, map_location=self.device)
            if saved.model_config != dataclasses.asdict(self.config):
                raise ValueError(f"{path} holds another search network; use a new run folder.")
            model.load_state_dict(saved.model_state)
            head.load_state_dict(saved.extra["head"])
            weight_optimizer.load_state_dict(saved.optimizer_state)
            arch_optimizer.load_state_dict(saved.extra["arch_optimizer"])
            step, finished = saved.step, bool(saved.extra.get("finished"))
            # A resumed search continues the Gumbel noise where the saved one left it.
            if "rng" in saved.extra:
                torch.set_rng_state(saved.extra["rng"].cpu())
        self._search_step = step

        def save(done: bool) -> None:
            save_checkpoint(
                path,
                model,
                MODEL_NAME,
                self.config,
                optimizer=weight_optimizer,
                step=step,
                train_config=settings_to_dict(s),
                extra={
                    "head": head.state_dict(),
                    "arch_optimizer": arch_optimizer.state_dict(),
                    "finished": done,
                    "rng": torch.get_rng_state(),
                },
            )

        if not finished:
            weight_half, arch_half = split_for_bilevel(data)
            num_samples = round(s.segment_seconds * data.sample_rate)
            deadline = self.budget.deadline("search")
            last_save = window_start = time.monotonic()
            self.reporter.begin(self._done(), f"search step {step}")
            model.train()
            while step < s.search_steps:
                if self.should_stop():
                    save(False)
                    return None
                if Budget.passed(deadline):
                    break
                arch_loss = None
                if step >= s.arch_start_step:
                    # First-order DARTS: the architecture gradient at the current weights
                    # (no unrolled virtual step), on data the weights do not train on.
                    waveforms, labels = training_batch(
                        data, arch_half, step, s.batch_size, num_samples, s.seed + 1
                    )
                    arch_loss = self._loss(model, head, waveforms, labels)
                    arch_optimizer.zero_grad(set_to_none=True)
                    weight_optimizer.zero_grad(set_to_none=True)
                    arch_loss.backward()
                    arch_optimizer.step()
                lr = learning_rate(step, s.weight_lr, 0, s.search_steps, floor=0.04)
                for group in weight_optimizer.param_groups:
                    group["lr"] = lr
                waveforms, labels = training_batch(
                    data, weight_half, step, s.batch_size, num_samples, s.seed
                )
                loss = self._loss(model, head, waveforms, labels)
                weight_optimizer.zero_grad(set_to_none=True)
                arch_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if s.grad_clip > 0:
                    nn.utils.clip_grad_norm_(weights, s.grad_clip)
                weight_optimizer.step()
                step += 1
                self._search_step = step
                if step % s.log_interval == 0 or step == s.search_steps:
                    entropy = model.architecture_entropy().tolist()
                    elapsed = max(time.monotonic() - window_start, 1e-9)
                    window_start = time.monotonic()
                    self.reporter.metrics(
                        {
                            "stage": "search",
                            "step": step,
                            "split": "train",
                            "loss": loss.item(),
                            "metrics": {
                                "arch_loss": None if arch_loss is None else arch_loss.item(),
                                "entropy_normal": entropy[0],
                                "entropy_reduce": entropy[1],
                            },
                            "lr": lr,
                            "throughput": s.batch_size * min(s.log_interval, step) / elapsed,
                            "wall_time": time.time(),
                        }
                    )
                    self.reporter.progress(self._done(), f"search step {step}/{s.search_steps}")
                if time.monotonic() - last_save >= s.checkpoint_minutes * 60:
                    save(False)
                    last_save = time.monotonic()
            save(True)
        normal, reduce = model.genotype()
        entropy = model.architecture_entropy().tolist()
        return normal, reduce, {"entropy_normal": entropy[0], "entropy_reduce": entropy[1]}

    def _loss(self, model: AutoSpeech, head: SoftmaxHead, waveforms, labels) -> torch.Tensor:
        waveforms, labels = waveforms.to(self.device), labels.to(self.device)
        with torch.no_grad():
            features = model.front_end(waveforms)
        loss = head(model(features), labels)
        if not torch.isfinite(loss):
            raise RuntimeError("The search loss is not finite: lower weight_lr or arch_lr.")
        return loss

    # -- stages 2 and 3: derive and retrain --

    def _retrain(self, normal: Any, reduce: Any, entropy: dict[str, float]) -> dict[str, Any]:
        s, data = self.settings, self.data
        assert data is not None
        config = self.derive(normal, reduce)
        folder = self.run_dir / "retrain" / "derived"
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "model_config.json", dataclasses.asdict(config))
        model = AutoSpeech(config)
        parameters = sum(p.numel() for p in model.parameters())
        frames = model.front_end.num_frames(config.sample_rate)
        probe = torch.zeros(1, frames, config.features.num_mels)
        macs = count_macs(model, lambda: model(probe))
        genotype = {"normal": [list(p) for p in normal], "reduce": [list(p) for p in reduce]}
        row = {
            "number": 0,
            "state": "RUNNING",
            "params": genotype,
            "architecture": genotype,
            "objectives": {"parameters": parameters, "macs": macs, **entropy},
            "values": None,
            "duration_seconds": None,
            "retry_of": None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "error": None,
        }
        trials_path = self.run_dir / optuna_study.TRIALS_FILE
        optuna_study.write_trials(trials_path, [row])
        self.reporter.metrics(
            {"stage": "derive", "step": self._search_step, "genotype": genotype, **entropy}
        )
        started = time.monotonic()
        retrained: dict[str, Any] = {}
        if s.retrain_steps > 0:

            def on_step(step: int, _row: dict[str, Any]) -> None:
                self._retrain_step = step
                self.reporter.progress(self._done(), f"retrain step {step}/{s.retrain_steps}")

            retrained = train_encoder(
                MODEL_NAME,
                config,
                data,
                s.retrain_settings(),
                folder,
                self.device,
                deadline=self.budget.deadline("retrain"),
                on_step=on_step,
                should_stop=self.should_stop,
                reporter=self.reporter,
                tags={"stage": "retrain", "candidate": 0},
            )
            if retrained.get("stopped"):
                return {"stopped": True}
        self._retrain_step = s.retrain_steps
        objectives = {**row["objectives"]}
        for key in ("eer", "min_dcf"):
            if key in retrained:
                objectives[key] = retrained[key]
        row.update(
            state="COMPLETE",
            objectives=objectives,
            values=[objectives["eer"]] if "eer" in objectives else None,
            duration_seconds=round(time.monotonic() - started, 3),
        )
        optuna_study.write_trials(trials_path, [row])
        chosen = {
            "trial": 0,
            "model_name": MODEL_NAME,
            "architecture": genotype,
            "config": dataclasses.asdict(config),
            "train_command": train_command(MODEL_NAME, s.retrain_preset, config),
            "search": entropy,
            "retrained": retrained,
            "bundle": str((folder / "best.pt").relative_to(self.run_dir))
            if (folder / "best.pt").exists()
            else None,
        }
        result = {
            "search": "autospeech",
            "genotype": genotype,
            "genotype_text": genotype_text(normal, reduce),
            "chosen": [chosen],
            "pareto_front": [{"trial": 0, **objectives}],
            "message": f"derived cell retrained ({parameters:,} parameters)"
            + (f", EER {100 * objectives['eer']:.2f} %" if "eer" in objectives else ""),
        }
        write_json_atomic(self.run_dir / RESULT_FILE, result)
        return result

    def derive(self, normal: Any, reduce: Any) -> AutoSpeechConfig:
        """The retraining config of a genotype (see :meth:`AutoSpeechSettings.derived_config`)."""
        return self.settings.derived_config(normal, reduce)
