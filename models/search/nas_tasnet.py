"""NAS-TasNet architecture search: warm-up, alternating weight/architecture steps, derive, retrain.

The search space is the supernet of :mod:`models.nas_tasnet` (every Conv-TasNet block is a
choice of depthwise kernel {3, 5} x expansion {1, 2, 4} or a zero op). One run goes through
four stages, counted on one global step axis (warm-up, search, retrain):

1. **Warm-up** (``warmup_steps``): the architecture is frozen (alpha stays at zero) and every
   step trains the weights of one uniformly sampled path, so every candidate has useful
   weights before the architecture distribution starts to prefer some.
2. **Search** (``search_steps``): each step is a weight step on training data with one path
   sampled from ``softmax(alpha)``; every ``arch_interval`` steps an architecture step on
   validation data follows. Two strategies:

   * ``gradient`` (ProxylessNAS, Cai et al. 2019): per block two candidates are sampled and
     binary gates pick one (:meth:`~models.nas_tasnet.NasTasNet.sample_two_paths`); the
     loss is the separation loss plus ``flops_weight * E[MACs] / T_ref``, whose gradient
     reaches alpha through the gates and the softmax; after the Adam step (``beta1 = 0``, so
     unsampled logits receive no momentum) the pair's logits are shifted so unsampled
     candidates keep their probabilities.
   * ``reinforce`` (as MnasNet, Tan et al. 2019): ``M = reinforce_samples`` architectures are
     sampled from ``softmax(alpha)`` and scored on the same validation batch; the reward is
     ``SI-SDR * (MACs / T_ref) ** w`` with ``w = reward_exponent = -0.07``, and the policy
     gradient uses a moving-average baseline (``baseline_decay``).

   The auxiliary loss (``aux_loss``, NAS-TasNet) replaces the separation loss of weight
   steps and gradient architecture steps with the EMA over repeats of the per-repeat losses
   (:meth:`~models.nas_tasnet.NasTasNet.forward_repeats`), so blocks of early repeats
   receive direct gradient. Every ``epoch_steps`` search steps (and once when the search
   starts) a row with split ``"search"`` goes to ``metrics.jsonl``: ``entropy_per_repeat``
   (mean entropy in nats of the blocks' distributions in each repeat), ``expected_macs`` and
   ``loss`` (the mean weight-step loss of the epoch).
3. **Derive**: the most probable candidate of every block gives a plain Conv-TasNet config
   (:meth:`~models.nas_tasnet.NasTasNet.derive`), written to ``result.json`` with its
   parameters, MACs per second and the SI-SDRi of the sub-network with inherited weights.
4. **Retrain** (``retrain_steps``): the derived Conv-TasNet is trained from scratch by the
   shared training loop in ``retrain/`` (a complete ``workbench train`` run folder; its
   ``train`` rows are copied into the job's ``metrics.jsonl`` with ``stage: "retrain"``),
   scored on the validation items, and saved as ``best.pt`` (a checkpoint the app opens as
   a bundle).

``T_ref`` (``macs_reference``) defaults to the expected MACs of the uniform distribution, so
the cost term starts near 1. REINFORCE rewards use ``SI-SDR / (MACs / T_ref) ** w`` when the
SI-SDR is negative (early in a search): multiplying a negative quality by the cost factor
would reward the *expensive* architectures.

Resume: ``checkpoint.pt`` holds the supernet, both optimisers, the path-sampling generator,
the REINFORCE baseline and the epoch accumulators; the batch of step ``k`` is a pure function
of ``(seed, k)``. Running the same command again continues at the saved step with the same
numbers as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from models.checkpoint import read_checkpoint, save_checkpoint
from models.conv_tasnet import ConvTasNet, ConvTasNetConfig
from models.flops import macs_per_second
from models.nas_tasnet import NasTasNet, NasTasNetConfig
from models.registry import get_spec
from models.search.common import apply_overrides, pick_device
from models.search.mitas import (
    CHECKPOINT_FILE,
    RESULT_FILE,
    SeparationData,
    config_overrides,
    evaluate_separator,
    final_model,
    loop_position,
    parameter_counts,
    pit_si_sdr_loss,
    prepare_settings,
    read_result,
    stack_items,
    step_indices,
    train_in_loop,
    truncate_metrics,
    validation_items,
    write_settings,
)
from models.train.config import TrainConfig, model_config
from models.train.reporting import (
    METRICS_FILE,
    JobReporter,
    StopRequested,
    write_json_atomic,
)

STRATEGIES: tuple[str, ...] = ("gradient", "reinforce")
RETRAIN_FOLDER = "retrain"
BEST_FILE = "best.pt"
#: Settings that may differ when a run folder is resumed.
BUDGET_FIELDS: tuple[str, ...] = ("checkpoint_minutes",)

Override = tuple[str, Any]


@dataclass(frozen=True)
class NasTasNetSearchSettings:
    """Every choice of one NAS-TasNet search.

    Attributes:
        strategy: ``"gradient"`` (binarised two-path gates) or ``"reinforce"``.
        aux_loss: Use the per-repeat auxiliary loss in weight and gradient-architecture steps.
        preset: ``nas_tasnet`` preset (the search space).
        model_overrides: ``(field, value)`` overrides of the supernet config.
        data: ``"synthetic"`` or a corpus.
        data_overrides: Dataset options.
        warmup_steps: Weight steps on uniformly sampled paths, architecture frozen.
        search_steps: Alternating weight / architecture steps.
        retrain_steps: Steps training the derived network from scratch (0: derive only).
        epoch_steps: Search steps per epoch (one ``search`` row with the entropies each).
        arch_interval: An architecture step after every this many weight steps.
        batch_size: Mixtures per step (weight and architecture steps alike).
        segment_seconds: Length of training and architecture-step mixtures.
        weight_lr: Adam learning rate of the supernet weights.
        arch_lr: Adam learning rate of alpha (``betas = (0, 0.999)``).
        grad_clip: Gradient-norm clip of weight steps (0: off).
        flops_weight: Weight of ``E[MACs] / T_ref`` in the architecture loss (both
            strategies; REINFORCE also has the cost in its reward). The term is about 1 and
            its gradient is the same sign every step, while the separation loss (dB) gives
            noisy per-pair gradients, so a small weight already steers the search.
        macs_reference: ``T_ref`` in MACs per second (0: expected MACs of the uniform
            distribution over the search space).
        reward_exponent: ``w`` of the REINFORCE reward.
        reinforce_samples: ``M`` architectures per REINFORCE step.
        baseline_decay: Weight of the old value in the reward moving average.
        retrain_lr: AdamW learning rate of the retraining (constant, so a retraining cut by
            ``--max-steps`` and resumed computes what an uninterrupted one does).
        valid_items: Validation items the derived networks are scored on.
        valid_seconds: Their length.
        log_interval: Steps between ``train`` rows.
        checkpoint_minutes: Minutes between checkpoints (0: after every step).
        seed: Initial weights, data and every sampled path.
    """

    strategy: str = "gradient"
    aux_loss: bool = True
    preset: str = "small"
    model_overrides: tuple[Override, ...] = ()
    data: str = "synthetic"
    data_overrides: tuple[Override, ...] = ()
    warmup_steps: int = 500
    search_steps: int = 2000
    retrain_steps: int = 2000
    epoch_steps: int = 100
    arch_interval: int = 1
    batch_size: int = 4
    segment_seconds: float = 1.0
    weight_lr: float = 1e-3
    arch_lr: float = 6e-3
    grad_clip: float = 5.0
    flops_weight: float = 0.1
    macs_reference: float = 0.0
    reward_exponent: float = -0.07
    reinforce_samples: int = 4
    baseline_decay: float = 0.9
    retrain_lr: float = 1e-3
    valid_items: int = 16
    valid_seconds: float = 2.0
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"Unknown strategy '{self.strategy}'. Valid strategies: {', '.join(STRATEGIES)}."
            )
        positive = (
            "epoch_steps",
            "arch_interval",
            "batch_size",
            "reinforce_samples",
            "valid_items",
            "log_interval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        non_negative = (
            "warmup_steps",
            "search_steps",
            "retrain_steps",
            "grad_clip",
            "flops_weight",
            "macs_reference",
            "checkpoint_minutes",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("segment_seconds", "valid_seconds", "weight_lr", "arch_lr", "retrain_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}.")

    @property
    def search_end(self) -> int:
        """Global step at which the search ends and retraining starts."""
        return self.warmup_steps + self.search_steps

    @property
    def total_steps(self) -> int:
        return self.search_end + self.retrain_steps

    def supernet_config(self) -> NasTasNetConfig:
        """The search space: the preset with the overrides."""
        return apply_overrides(get_spec("nas_tasnet").config(self.preset), self.model_overrides)

    def retrain_config(self, derived: ConvTasNetConfig, data: SeparationData) -> TrainConfig:
        """The shared loop's settings training ``derived`` from scratch."""
        spec = get_spec("conv_tasnet")
        preset = self.preset if self.preset in spec.presets else "small"
        config = data.train_config(
            "conv_tasnet",
            preset=preset,
            overrides=config_overrides(derived, spec.config(preset)),
            batch_size=self.batch_size,
            segment_seconds=self.segment_seconds,
            valid_segment_seconds=self.valid_seconds,
            valid_items=self.valid_items,
            lr=self.retrain_lr,
            warmup_steps=0,
            schedule="constant",
            grad_clip=self.grad_clip,
            valid_interval=max(self.retrain_steps, 1),
            log_interval=self.log_interval,
            checkpoint_minutes=self.checkpoint_minutes,
            max_steps=max(self.retrain_steps, 1),
        )
        if model_config(config) != derived:
            raise ValueError("The retraining overrides do not rebuild the derived config.")
        return config


# ---------------------------------------------------------------- losses and rewards


def separation_loss(
    model: NasTasNet, mixture: Tensor, sources: Tensor, aux: bool
) -> tuple[Tensor, Tensor]:
    """The training loss of the current path(s), and the final output's loss.

    Args:
        model: The supernet with its path(s) set.
        mixture: Shape ``(batch, time)``.
        sources: Shape ``(batch, S, time)``.
        aux: Combine the per-repeat PIT losses with :meth:`NasTasNet.auxiliary_loss`
            instead of using the final output alone.

    Returns:
        ``(loss, final_loss)``: scalars; ``final_loss`` is the mean negative SI-SDR (dB) of
        the last repeat's estimate.
    """
    if not aux:
        loss = pit_si_sdr_loss(model(mixture), sources).mean()
        return loss, loss
    estimates = model.forward_repeats(mixture)  # B, R, S, T
    batch, repeats, num_sources, time = estimates.shape
    targets = sources.unsqueeze(1).expand(batch, repeats, num_sources, time)
    per_repeat = pit_si_sdr_loss(
        estimates.reshape(batch * repeats, num_sources, time),
        targets.reshape(batch * repeats, num_sources, time),
    ).view(batch, repeats)  # each repeat gets its own best permutation
    per_repeat = per_repeat.mean(dim=0)  # R
    return model.auxiliary_loss(per_repeat), per_repeat[-1]


def cost_aware_reward(quality: Tensor, macs_ratio: Tensor, exponent: float) -> Tensor:
    """``quality * macs_ratio ** exponent``, sign-aware.

    For ``exponent < 0`` the factor is below one for architectures costlier than the
    reference; multiplying a *negative* quality by it would raise the reward of costly
    architectures, so negative qualities are divided by the factor instead.

    Args:
        quality: SI-SDR per architecture (dB), shape ``(M,)``.
        macs_ratio: ``MACs / T_ref`` per architecture, shape ``(M,)``.
        exponent: ``w`` (-0.07).

    Returns:
        Rewards, shape ``(M,)``.
    """
    factor = macs_ratio.clamp_min(1e-9).pow(exponent)
    return torch.where(quality >= 0, quality * factor, quality / factor)


def uniform_expected_macs(model: NasTasNet) -> float:
    """Expected MACs per second when every candidate is equally likely (the default T_ref)."""
    return float(model.fixed_macs() + model.candidate_macs.mean(dim=1).sum())


def derived_choices(model: NasTasNet) -> tuple[int, ...]:
    """The most probable candidate per block; if every block prefers the zero op, the most
    probable real candidate of the block that likes its zero op least (a network needs a block).
    """
    choices = list(model.argmax_architecture())
    zero = model.zero_index
    if zero is not None and all(c == zero for c in choices):
        probs = torch.softmax(model.alpha.detach(), dim=-1)
        block = int(probs[:, zero].argmin())
        choices[block] = int(probs[block, :zero].argmax())
    return tuple(choices)


def describe_architecture(model: NasTasNet, choices: tuple[int, ...]) -> list[list[str]]:
    """Readable architecture: per repeat, per block ``"k3e2"`` or ``"zero"``."""
    config = model.config
    names = [f"k{k}e{e}" for k, e in config.candidates] + ["zero"] * int(config.include_zero)
    return [
        [names[c] for c in choices[r * config.num_blocks : (r + 1) * config.num_blocks]]
        for r in range(config.num_repeats)
    ]


# ---------------------------------------------------------------- the search


@dataclass
class SearchState:
    """What a checkpoint carries besides weights and optimiser states.

    Attributes:
        step: Global steps done (warm-up and search).
        baseline: REINFORCE reward moving average (NaN before the first step).
        wall_time: Seconds spent searching (across resumes).
        epoch: Accumulators of the current epoch (sums and counts).
    """

    step: int = 0
    baseline: float = math.nan
    wall_time: float = 0.0
    epoch: dict[str, float] = field(default_factory=dict)


def _empty_epoch() -> dict[str, float]:
    return {
        "train_loss": 0.0,
        "train_count": 0.0,
        "arch_loss": 0.0,
        "quality": 0.0,
        "arch_count": 0.0,
    }


class NasTasNetSearch:
    """The supernet, its two optimisers and the search state of one run folder.

    Args:
        settings: The search settings.
        device: Where to run.
    """

    def __init__(self, settings: NasTasNetSearchSettings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.config = settings.supernet_config()
        torch.manual_seed(settings.seed)
        self.model = NasTasNet(self.config).to(device)
        self.weight_optimizer = torch.optim.Adam(
            self.model.weight_parameters(), lr=settings.weight_lr
        )
        # beta1 = 0: an unsampled candidate (zero gradient) must not keep moving on momentum.
        self.arch_optimizer = torch.optim.Adam(
            self.model.architecture_parameters(), lr=settings.arch_lr, betas=(0.0, 0.999)
        )
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.macs_reference = settings.macs_reference or uniform_expected_macs(self.model)
        self.data = SeparationData(
            settings.data,
            self.config.sample_rate,
            self.config.source_names,
            settings.data_overrides,
            settings.seed,
        )
        self.train_set = self.data.dataset("train", settings.segment_seconds)
        self.arch_set = self.data.dataset("valid", settings.segment_seconds)
        self.state = SearchState(epoch=_empty_epoch())

    # ---- checkpoint

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            self.model,
            "nas_tasnet",
            self.config,
            optimizer=self.weight_optimizer,
            step=self.state.step,
            train_config={"search": "nas_tasnet", **dataclasses.asdict(self.settings)},
            extra={
                "arch_optimizer": self.arch_optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "baseline": self.state.baseline,
                "wall_time": self.state.wall_time,
                "epoch": dict(self.state.epoch),
            },
        )

    def restore(self, path: Path) -> bool:
        """Load ``path`` if it exists; returns whether it did."""
        if not path.exists():
            return False
        saved = read_checkpoint(path, map_location=self.device)
        if saved.model_config != dataclasses.asdict(self.config):
            raise ValueError(f"{path} holds another search space; use a new run folder.")
        self.model.load_state_dict(saved.model_state)
        self.weight_optimizer.load_state_dict(saved.optimizer_state)
        self.arch_optimizer.load_state_dict(saved.extra["arch_optimizer"])
        self.generator.set_state(saved.extra["generator"])
        torch.set_rng_state(saved.extra["torch_rng"])
        self.state = SearchState(
            step=saved.step,
            baseline=float(saved.extra["baseline"]),
            wall_time=float(saved.extra["wall_time"]),
            epoch={key: float(value) for key, value in saved.extra["epoch"].items()},
        )
        return True

    # ---- steps

    def batch(self, dataset: Any, index: int, first: int = 0) -> tuple[Tensor, Tensor]:
        """Batch ``index`` of ``dataset``, counting items from ``first``."""
        indices = step_indices(index, self.settings.batch_size)
        mixture, sources = stack_items(dataset, range(first + indices.start, first + indices.stop))
        return mixture.to(self.device), sources.to(self.device)

    def weight_step(self) -> float:
        """One weight step on a sampled path (uniform during warm-up); returns its loss."""
        settings, model = self.settings, self.model
        warmup = self.state.step < settings.warmup_steps
        model.sample_active_paths(uniform=warmup, generator=self.generator)
        mixture, sources = self.batch(self.train_set, self.state.step)
        loss, _ = separation_loss(model, mixture, sources, settings.aux_loss)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Loss became {loss.item()} at step {self.state.step}: lower weight_lr."
            )
        self.weight_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.weight_parameters(), settings.grad_clip or math.inf)
        self.weight_optimizer.step()
        return loss.item()

    def architecture_step(self, index: int) -> tuple[float, float]:
        """One architecture step on validation batch ``index``.

        Returns:
            ``(architecture loss, SI-SDR in dB of the evaluated path(s))``.
        """
        # Past the items the derived networks are scored on, so the score is not the
        # architecture objective itself.
        mixture, sources = self.batch(self.arch_set, index, first=self.settings.valid_items)
        if self.settings.strategy == "gradient":
            return self._gradient_step(mixture, sources)
        return self._reinforce_step(mixture, sources)

    def _cost_term(self) -> Tensor:
        return self.settings.flops_weight * self.model.expected_macs() / self.macs_reference

    def _gradient_step(self, mixture: Tensor, sources: Tensor) -> tuple[float, float]:
        model = self.model
        before = model.alpha.detach().clone()
        model.sample_two_paths(generator=self.generator)
        task_loss, final_loss = separation_loss(model, mixture, sources, self.settings.aux_loss)
        loss = task_loss + self._cost_term()
        self.arch_optimizer.zero_grad(set_to_none=True)
        # Only alpha accumulates a gradient: the weights keep theirs for their own step.
        loss.backward(inputs=model.architecture_parameters())
        self.arch_optimizer.step()
        model.rescale_sampled_pairs(before)
        return loss.item(), -final_loss.item()

    def _reinforce_step(self, mixture: Tensor, sources: Tensor) -> tuple[float, float]:
        model, settings = self.model, self.settings
        architectures = model.sample_architectures(settings.reinforce_samples, self.generator)
        qualities = []
        with torch.no_grad():
            for choices in architectures:
                model.set_architecture(choices)
                qualities.append(-pit_si_sdr_loss(model(mixture), sources).mean())
        quality = torch.stack(qualities)
        ratio = model.architecture_macs(architectures) / self.macs_reference
        rewards = cost_aware_reward(quality, ratio.to(quality), settings.reward_exponent)
        mean_reward = float(rewards.mean())
        if math.isnan(self.state.baseline):
            self.state.baseline = mean_reward
        log_probs = model.architecture_log_prob(architectures)
        loss = model.reinforce_loss(log_probs, rewards, self.state.baseline) + self._cost_term()
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.arch_optimizer.step()
        decay = settings.baseline_decay
        self.state.baseline = decay * self.state.baseline + (1 - decay) * mean_reward
        return loss.item(), quality.mean().item()

    # ---- monitoring

    def entropy_row(self, wall_time: float) -> dict[str, Any]:
        """The ``search`` row of the epoch that just ended (and reset the accumulators)."""
        settings, epoch = self.settings, self.state.epoch
        entropies = [round(float(e), 6) for e in self.model.repeat_entropies().detach().cpu()]
        expected = float(self.model.expected_macs().detach())
        train_loss = epoch["train_loss"] / max(epoch["train_count"], 1.0)
        metrics: dict[str, float] = {
            f"entropy_repeat_{r + 1}": value for r, value in enumerate(entropies)
        }
        metrics["expected_gmacs"] = round(expected / 1e9, 6)
        if epoch["arch_count"]:
            metrics["arch_loss"] = round(epoch["arch_loss"] / epoch["arch_count"], 6)
            metrics["valid_si_sdr"] = round(epoch["quality"] / epoch["arch_count"], 6)
        search_steps_done = max(self.state.step - settings.warmup_steps, 0)
        row = {
            "step": self.state.step,
            "split": "search",
            "epoch": math.ceil(search_steps_done / settings.epoch_steps),
            "loss": round(train_loss, 6),
            "entropy_per_repeat": entropies,
            "expected_macs": round(expected, 1),
            "metrics": metrics,
            "lr": settings.arch_lr,
            "throughput": 0.0,
            "wall_time": round(wall_time, 3),
        }
        self.state.epoch = _empty_epoch()
        return row


def run_nas_tasnet_search(
    settings: NasTasNetSearchSettings,
    run_dir: Path,
    max_steps: int = 0,
    max_minutes: float = 0.0,
    stream: TextIO | None = None,
    device: str | None = None,
) -> str:
    """Search, derive and retrain (or resume doing so) in ``run_dir``.

    Args:
        settings: The search.
        run_dir: The run folder (created).
        max_steps: Stop this invocation when the global step (warm-up, search and
            retraining steps counted together) reaches this (0: no limit); run again to
            continue.
        max_minutes: Wall-clock budget of this invocation (0: unlimited).
        stream: Where JSON progress lines go (stdout by default).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    Returns:
        ``"finished"`` or ``"stopped"``.
    """
    run_dir = Path(run_dir)
    prepare_settings(settings, run_dir, BUDGET_FIELDS)
    reporter = JobReporter(run_dir, settings.total_steps, stream)
    try:
        return _run(settings, run_dir, max_steps, max_minutes, reporter, device)
    except BaseException as exc:
        reporter.finish("failed", 0, f"{type(exc).__name__}: {exc}")
        raise


def _run(
    settings: NasTasNetSearchSettings,
    run_dir: Path,
    max_steps: int,
    max_minutes: float,
    reporter: JobReporter,
    device_name: str | None,
) -> str:
    search = NasTasNetSearch(settings, pick_device(device_name or "auto"))
    resumed = search.restore(run_dir / CHECKPOINT_FILE)
    saved_step = search.state.step
    if (run_dir / RETRAIN_FOLDER / CHECKPOINT_FILE).exists():
        saved_step = settings.search_end + loop_position(run_dir / RETRAIN_FOLDER)[0]
    # Rows a killed process wrote after its last checkpoint are replayed: drop them.
    truncate_metrics(run_dir / METRICS_FILE, lambda row: int(row.get("step", 0)) <= saved_step)
    write_settings(
        settings,
        run_dir,
        {
            "data": search.data.description(),
            "supernet_config": dataclasses.asdict(search.config),
            "macs_reference": search.macs_reference,
        },
    )
    reporter.begin(saved_step, f"resumed at step {saved_step}" if resumed else "started")
    deadline = time.monotonic() + max_minutes * 60 if max_minutes > 0 else None
    stop = StopRequested().install()
    try:
        outcome = _search_loop(search, run_dir, max_steps, deadline, stop, reporter)
        if outcome == "finished":
            outcome = _derive_and_retrain(search, run_dir, max_steps, deadline, stop, reporter)
    finally:
        stop.restore()
    return outcome


def _search_loop(
    search: NasTasNetSearch,
    run_dir: Path,
    max_steps: int,
    deadline: float | None,
    stop: StopRequested,
    reporter: JobReporter,
) -> str:
    settings, state = search.settings, search.state
    checkpoint_path = run_dir / CHECKPOINT_FILE
    started = last_save = window_start = time.monotonic()
    base_wall = state.wall_time
    fresh = not checkpoint_path.exists()
    saved_step = -1 if fresh else state.step
    if fresh and settings.warmup_steps == 0 and settings.search_steps > 0:
        reporter.metrics(search.entropy_row(base_wall))  # epoch 0: the uniform start
    while state.step < settings.search_end:
        if (
            stop.requested
            or (0 < max_steps <= state.step)
            or (deadline is not None and time.monotonic() >= deadline)
        ):
            break
        loss = search.weight_step()
        epoch = state.epoch
        epoch["train_loss"] += loss
        epoch["train_count"] += 1
        searching = state.step >= settings.warmup_steps
        offset = state.step - settings.warmup_steps
        if searching and offset % settings.arch_interval == 0:
            arch_loss, quality = search.architecture_step(offset // settings.arch_interval)
            epoch["arch_loss"] += arch_loss
            epoch["quality"] += quality
            epoch["arch_count"] += 1
        state.step += 1
        now = time.monotonic()
        state.wall_time = base_wall + now - started
        stage = "search" if searching else "warmup"
        if state.step % settings.log_interval == 0 or state.step == settings.search_end:
            steps_in_window = (state.step - 1) % settings.log_interval + 1
            reporter.metrics(
                {
                    "step": state.step,
                    "split": "train",
                    "stage": stage,
                    "loss": round(loss, 6),
                    "metrics": {},
                    "lr": settings.weight_lr,
                    "throughput": round(
                        steps_in_window * settings.batch_size / max(now - window_start, 1e-9), 3
                    ),
                    "wall_time": round(state.wall_time, 3),
                }
            )
            reporter.progress(state.step, f"{stage} step {state.step} loss {loss:.3f}")
            window_start = now
        searched = state.step - settings.warmup_steps
        if settings.search_steps > 0 and (
            state.step == settings.warmup_steps  # epoch 0: the search starts from here
            or (searched > 0 and searched % settings.epoch_steps == 0)
            or state.step == settings.search_end
        ):
            reporter.metrics(search.entropy_row(state.wall_time))
        if now - last_save >= settings.checkpoint_minutes * 60:
            search.save(checkpoint_path)
            last_save, saved_step = time.monotonic(), state.step
    if state.step != saved_step:
        search.save(checkpoint_path)
    if state.step < settings.search_end:
        _finish_stopped(reporter, state.step, stop)
        return "stopped"
    return "finished"


def _finish_stopped(reporter: JobReporter, step: int, stop: StopRequested) -> None:
    # The shared loop handles SIGTERM itself while it retrains, so the flag may be unset.
    reason = "stop requested" if stop.requested else "budget spent or stop requested"
    reporter.finish("stopped", step, f"{reason} at step {step}; run again to continue")


def _derive_and_retrain(
    search: NasTasNetSearch,
    run_dir: Path,
    max_steps: int,
    deadline: float | None,
    stop: StopRequested,
    reporter: JobReporter,
) -> str:
    settings, model = search.settings, search.model
    result = read_result(run_dir)
    if "choices" not in result:
        result = _derive(search)
        write_json_atomic(run_dir / RESULT_FILE, result)
    choices = tuple(result["choices"])
    derived = model.derive(choices)
    if settings.retrain_steps == 0:
        reporter.finish("finished", settings.search_end, _summary(result))
        return "finished"
    if "retrain" in result:
        reporter.finish("finished", settings.total_steps, _summary(result))
        return "finished"
    offset = settings.search_end
    folder = run_dir / RETRAIN_FOLDER
    outcome = train_in_loop(
        settings.retrain_config(derived, search.data),
        folder,
        step_limit=None if max_steps <= 0 else max(max_steps - offset, 0),
        deadline=deadline,
        on_progress=lambda done, message: reporter.progress(offset + done, f"retrain {message}"),
        on_row=lambda row: reporter.metrics(
            {**row, "step": offset + int(row["step"]), "stage": "retrain"}
        ),
        device=str(search.device),
    )
    if not outcome.finished:
        _finish_stopped(reporter, offset + outcome.step, stop)
        return "stopped"
    retrained = final_model(folder, search.device)
    mixtures, sources = validation_items(search.data, settings.valid_seconds, settings.valid_items)
    scores = evaluate_separator(retrained, mixtures, sources, settings.batch_size)
    result["retrain"] = {
        "steps": outcome.step,
        "si_sdri": round(scores["si_sdri"], 4),
        "si_sdr": round(scores["si_sdr"], 4),
        "train_seconds": round(outcome.wall_time, 2),
        "best": BEST_FILE,
    }
    save_checkpoint(
        run_dir / BEST_FILE,
        retrained,
        "conv_tasnet",
        derived,
        step=outcome.step,
        metrics={"si_sdri": scores["si_sdri"], "si_sdr": scores["si_sdr"]},
        train_config={"search": "nas_tasnet", **dataclasses.asdict(settings)},
    )
    reporter.metrics(
        {
            "step": settings.total_steps,
            "split": "valid",
            "stage": "retrain",
            "loss": round(-scores["si_sdr"], 6),
            "metrics": {"si_sdri": scores["si_sdri"], "si_sdr": scores["si_sdr"]},
            "lr": None,
            "throughput": 0.0,
            "wall_time": round(outcome.wall_time, 3),
        }
    )
    write_json_atomic(run_dir / RESULT_FILE, result)
    reporter.finish("finished", settings.total_steps, _summary(result))
    return "finished"


def _derive(search: NasTasNetSearch) -> dict[str, Any]:
    """The derived architecture, its cost and its quality with inherited weights."""
    settings, model = search.settings, search.model
    choices = derived_choices(model)
    derived: ConvTasNetConfig = model.derive(choices)
    probabilities = torch.softmax(model.alpha.detach(), dim=-1).cpu()
    chosen = probabilities.gather(1, torch.tensor(choices)[:, None]).squeeze(1)
    # The sub-network with the supernet's weights: how good the search's own estimate was.
    inherited = ConvTasNet(derived).to(search.device)
    inherited.load_state_dict(model.derived_state_dict(choices))
    mixtures, sources = validation_items(search.data, settings.valid_seconds, settings.valid_items)
    scores = evaluate_separator(inherited, mixtures, sources, settings.batch_size)
    return {
        "search": "nas_tasnet",
        "strategy": settings.strategy,
        "aux_loss": settings.aux_loss,
        "choices": list(choices),
        "architecture": describe_architecture(model, choices),
        "choice_probabilities": [round(float(p), 4) for p in chosen],
        "derived_config": dataclasses.asdict(derived),
        **parameter_counts(inherited),
        "macs_per_second": macs_per_second(inherited),
        "expected_macs": float(model.expected_macs().detach()),
        "macs_reference": search.macs_reference,
        "entropy_per_repeat": [round(float(e), 6) for e in model.repeat_entropies().detach()],
        "inherited_weights": {
            "si_sdri": round(scores["si_sdri"], 4),
            "si_sdr": round(scores["si_sdr"], 4),
        },
        "valid_items": settings.valid_items,
        "valid_seconds": settings.valid_seconds,
        "data": search.data.description(),
    }


def _summary(result: dict[str, Any]) -> str:
    blocks = ", ".join("/".join(repeat) for repeat in result["architecture"])
    text = f"derived {result['parameters']:,} params, {result['macs_per_second'] / 1e9:.2f} GMACs/s [{blocks}]"
    if "retrain" in result:
        text += f"; retrained SI-SDRi {result['retrain']['si_sdri']:.2f} dB"
    return text
