"""NAS-TasNet: the Conv-TasNet architecture-search space (supernet) and its search helpers.

The supernet is a Conv-TasNet (:mod:`models.conv_tasnet`) whose every separator block is a
mixed operation over candidate depthwise-separable blocks, {kernel 3, 5} x {expansion 1, 2,
4} (hidden width ``H = expansion * B``), plus a zero op that drops the block: seven
candidates per block, each with its own weights, and one row of architecture logits (alpha)
per block.

Forward modes (set by the caller before each forward, ProxylessNAS style, Cai et al. 2019):

* single path (:meth:`NasTasNet.sample_active_paths`, :meth:`NasTasNet.set_architecture`):
  one candidate per block runs; used for weight steps (sampled from ``softmax(alpha)``, or
  uniformly during warm-up) and for evaluating a fixed architecture. No gradient reaches
  alpha.
* two paths (:meth:`NasTasNet.sample_two_paths`): per block two distinct candidates are drawn
  from ``softmax(alpha)``; one of them is made active with the probabilities renormalised
  over the pair. Both run, and the output is ``sum_j g_j * out_j`` with binary gates ``g``
  that are one-hot in the forward pass and carry the softmax Jacobian in the backward pass
  (``g = onehot + p - p.detach()``, ``p = softmax(alpha[pair])``). That reproduces the
  ProxylessNAS estimate ``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)`` over the pair.
  After the architecture optimiser step call :meth:`NasTasNet.rescale_sampled_pairs` so the
  unsampled candidates keep their probabilities.

Dilations are re-indexed over the blocks that are not zero ops: in every forward, the k-th
active (non-zero) block of a repeat uses dilation ``2**k``, exactly as in the derived model
(:meth:`NasTasNet.derive`), so a sampled sub-network and its derived Conv-TasNet compute the
same function with the same weights (:meth:`NasTasNet.derived_state_dict`).

Search helpers: the differentiable expected-MACs term (:meth:`NasTasNet.expected_macs`),
per-repeat estimates through the shared mask head and decoder for the auxiliary loss
(:meth:`NasTasNet.forward_repeats`, :func:`combine_repeat_losses`), REINFORCE sampling and
log-probabilities, and the per-repeat entropy of the architecture distribution.

Single-path forwards leave most candidate weights unused: wrap the supernet in
``DistributedDataParallel(find_unused_parameters=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.blocks.tcn import TCNBlock
from models.conv_tasnet import (
    ConvTasNetConfig,
    MaskingCodec,
    TCNSeparator,
    check_mixture,
)
from models.registry import ModelSpec


@dataclass(frozen=True)
class NasTasNetConfig:
    """The NAS-TasNet supernet (search space) configuration.

    Attributes:
        sample_rate: Sample rate (Hz).
        num_sources: Number of output sources.
        source_names: One label per source.
        encoder_filters: Encoder filters ``N``.
        encoder_kernel_size: Encoder window ``L`` (even; hop ``L / 2``).
        bottleneck_channels: Bottleneck width ``B``.
        num_blocks: Searchable blocks per repeat ``X`` (before zero ops drop any).
        num_repeats: Repeats ``R``.
        kernel_choices: Candidate depthwise kernels.
        expansion_choices: Candidate hidden widths as multiples of ``B``.
        include_zero: Add the zero op (drop the block) to every block's candidates.
        norm: ``"gln"``, ``"cln"`` or ``"fln"``.
        causal: Causal padding (requires ``"cln"``).
        mask_activation: As in :class:`~models.conv_tasnet.ConvTasNetConfig`.
        encoder_activation: As in :class:`~models.conv_tasnet.ConvTasNetConfig`.
        aux_ema_alpha: Weight the running average carries forward in
            :func:`combine_repeat_losses` (NAS-TasNet uses 0.4).
    """

    sample_rate: int = 8000
    num_sources: int = 2
    source_names: tuple[str, ...] = ("speaker1", "speaker2")
    encoder_filters: int = 512
    encoder_kernel_size: int = 16
    bottleneck_channels: int = 128
    num_blocks: int = 8
    num_repeats: int = 3
    kernel_choices: tuple[int, ...] = (3, 5)
    expansion_choices: tuple[int, ...] = (1, 2, 4)
    include_zero: bool = True
    norm: str = "gln"
    causal: bool = False
    mask_activation: str = "sigmoid"
    encoder_activation: str = "none"
    aux_ema_alpha: float = 0.4

    def __post_init__(self) -> None:
        if not self.kernel_choices or any(k < 1 for k in self.kernel_choices):
            raise ValueError(f"kernel_choices must be non-empty and >= 1: {self.kernel_choices}.")
        if not self.expansion_choices or any(e < 1 for e in self.expansion_choices):
            raise ValueError(
                f"expansion_choices must be non-empty and >= 1: {self.expansion_choices}."
            )
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}.")
        if not 0.0 <= self.aux_ema_alpha < 1.0:
            raise ValueError(f"aux_ema_alpha must be in [0, 1), got {self.aux_ema_alpha}.")
        self.base_config()  # validates the shared Conv-TasNet fields

    @property
    def candidates(self) -> tuple[tuple[int, int], ...]:
        """``(kernel, expansion)`` of the non-zero candidates, in alpha column order."""
        return tuple((k, e) for k in self.kernel_choices for e in self.expansion_choices)

    @property
    def num_choices(self) -> int:
        """Candidates per block, the zero op (last column) included."""
        return len(self.candidates) + int(self.include_zero)

    @property
    def total_blocks(self) -> int:
        """Searchable blocks in the supernet (``R * X``)."""
        return self.num_blocks * self.num_repeats

    def base_config(self, **overrides: object) -> ConvTasNetConfig:
        """The Conv-TasNet config sharing this supernet's encoder, bottleneck and mask head."""
        values = dict(
            sample_rate=self.sample_rate,
            num_sources=self.num_sources,
            source_names=self.source_names,
            encoder_filters=self.encoder_filters,
            encoder_kernel_size=self.encoder_kernel_size,
            bottleneck_channels=self.bottleneck_channels,
            hidden_channels=self.bottleneck_channels * max(self.expansion_choices),
            kernel_size=max(self.kernel_choices),
            num_blocks=self.num_blocks,
            num_repeats=self.num_repeats,
            norm=self.norm,
            causal=self.causal,
            mask_activation=self.mask_activation,
            encoder_activation=self.encoder_activation,
        )
        values.update(overrides)
        return ConvTasNetConfig(**values)


def repeat_loss_weights(num_repeats: int, ema_alpha: float = 0.4) -> Tensor:
    """Weights of the per-repeat losses in :func:`combine_repeat_losses`.

    Args:
        num_repeats: ``R``.
        ema_alpha: Weight the running average carries forward.

    Returns:
        Tensor of shape ``(R,)`` summing to 1; the last repeat gets ``1 - ema_alpha``.
    """
    weights = [(1.0 - ema_alpha) * ema_alpha ** (num_repeats - 1 - r) for r in range(num_repeats)]
    weights[0] = ema_alpha ** (num_repeats - 1)
    return torch.tensor(weights)


def combine_repeat_losses(losses: Tensor, ema_alpha: float = 0.4) -> Tensor:
    """The NAS-TasNet auxiliary loss: an exponential moving average over the repeats.

    Every repeat's estimate (its cumulative skip sum through the shared mask head and
    decoder, :meth:`NasTasNet.forward_repeats`) has a loss ``L_r``, ``r = 1..R``. They are
    combined as the EMA along the repeat axis, ending at the final output::

        e_1 = L_1
        e_r = (1 - alpha) * L_r + alpha * e_(r-1)        r = 2..R
        loss = e_R

    i.e. weights ``alpha ** (R-1)`` for ``L_1`` and ``(1 - alpha) * alpha ** (R-r)`` for
    ``r >= 2`` (with ``alpha = 0.4`` and ``R = 3``: 0.16, 0.24, 0.60). The final estimate
    keeps the largest weight, while the first repeats, which otherwise get gradients only
    through the long path, receive a direct signal: the parameter updates are balanced
    across depth. The weights are fixed numbers, not running statistics, so the loss is
    independent of training history (resume-safe) and valid for negative losses such as
    negative SI-SDR.

    Args:
        losses: Per-repeat losses of shape ``(..., R)``.
        ema_alpha: Weight the running average carries forward.

    Returns:
        Tensor of shape ``(...)``.
    """
    weights = repeat_loss_weights(losses.shape[-1], ema_alpha).to(losses)
    return (losses * weights).sum(dim=-1)


class MixedBlock(nn.Module):
    """One searchable block: a candidate :class:`TCNBlock` per ``(kernel, expansion)``.

    The zero op has no module; it is the index ``len(candidates)`` when enabled.

    Args:
        config: The supernet config.
    """

    def __init__(self, config: NasTasNetConfig) -> None:
        super().__init__()
        bottleneck = config.bottleneck_channels
        # Every candidate keeps a residual conv: any block can be the last active one.
        self.candidates = nn.ModuleList(
            TCNBlock(
                bottleneck,
                bottleneck * expansion,
                kernel,
                norm_type=config.norm,
                causal=config.causal,
                has_residual=True,
            )
            for kernel, expansion in config.candidates
        )


class NasSeparator(TCNSeparator):
    """Mask estimator whose blocks are :class:`MixedBlock` s (same head as Conv-TasNet).

    Args:
        config: The supernet config.
    """

    def __init__(self, config: NasTasNetConfig) -> None:
        blocks = nn.ModuleList(MixedBlock(config) for _ in range(config.total_blocks))
        super().__init__(config.base_config(), blocks)
        self.nas_config = config

    def forward(  # type: ignore[override]
        self,
        features: Tensor,
        active: Sequence[int],
        pairs: Sequence[tuple[int, int]] | None,
        logits: Tensor,
    ) -> list[Tensor]:
        """Run the bottleneck and blocks; return the cumulative skip sum after each repeat.

        Args:
            features: Encoder output, shape ``(batch, N, frames)``.
            active: Active candidate per block (the zero op index drops the block).
            pairs: One sampled ``(candidate, candidate)`` pair per block for gated two-path
                mode, or ``None`` for single-path mode.
            logits: Architecture logits ``(total_blocks, num_choices)``.

        Returns:
            ``R`` tensors of shape ``(batch, B, frames)``.
        """
        x = self.bottleneck(self.input_norm(features))  # B, B_ch, F
        skip_sum = torch.zeros_like(x)
        sums: list[Tensor] = []
        num_candidates = len(self.nas_config.candidates)
        index = 0
        for _ in range(self.nas_config.num_repeats):
            depth = 0  # active blocks so far in this repeat: the dilation index
            for _ in range(self.nas_config.num_blocks):
                block: MixedBlock = self.blocks[index]  # type: ignore[assignment]
                dilation = 2**depth
                if pairs is None:
                    choice = active[index]
                    if choice < num_candidates:
                        residual, skip = block.candidates[choice](x, dilation)
                        x = x + residual
                        skip_sum = skip_sum + skip
                else:
                    pair = pairs[index]
                    probs = torch.softmax(logits[index, list(pair)], dim=-1)
                    hard = torch.tensor([float(c == active[index]) for c in pair]).to(probs)
                    gates = hard + probs - probs.detach()  # one-hot forward, softmax backward
                    block_residual = torch.zeros_like(x)
                    for slot, choice in enumerate(pair):
                        if choice < num_candidates:
                            residual, skip = block.candidates[choice](x, dilation)
                            block_residual = block_residual + gates[slot] * residual
                            skip_sum = skip_sum + gates[slot] * skip
                    x = x + block_residual
                if active[index] < num_candidates:
                    depth += 1
                index += 1
            sums.append(skip_sum)
        return sums


class NasTasNet(nn.Module):
    """The NAS-TasNet supernet.

    Args:
        config: The search-space config.
    """

    def __init__(self, config: NasTasNetConfig) -> None:
        super().__init__()
        self.config = config
        self.source_names: tuple[str, ...] = tuple(config.source_names)
        self.num_sources = config.num_sources
        self.codec = MaskingCodec(
            config.encoder_filters, config.encoder_kernel_size, config.encoder_activation
        )
        self.separator = NasSeparator(config)
        self.architecture_logits = nn.Parameter(
            torch.zeros(config.total_blocks, config.num_choices)
        )
        self.register_buffer("candidate_macs", self._candidate_macs(), persistent=False)
        self._active: list[int] = [0] * config.total_blocks
        self._pairs: list[tuple[int, int]] | None = None

    # ---- architecture state -------------------------------------------------------------

    @property
    def alpha(self) -> Tensor:
        """Architecture logits, shape ``(total_blocks, num_choices)`` (alias)."""
        return self.architecture_logits

    @property
    def zero_index(self) -> int | None:
        """Column of the zero op in alpha, or ``None`` without one."""
        return len(self.config.candidates) if self.config.include_zero else None

    @property
    def active_architecture(self) -> tuple[int, ...]:
        """The candidate each block currently runs (the gated one in two-path mode)."""
        return tuple(self._active)

    def architecture_parameters(self) -> list[nn.Parameter]:
        """Parameters of the architecture optimiser (alpha)."""
        return [self.architecture_logits]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Parameters of the weight optimiser (everything except alpha)."""
        return [p for name, p in self.named_parameters() if name != "architecture_logits"]

    def _check_choices(self, choices: Sequence[int] | Tensor) -> list[int]:
        values = [int(c) for c in (choices.tolist() if isinstance(choices, Tensor) else choices)]
        if len(values) != self.config.total_blocks or any(
            not 0 <= c < self.config.num_choices for c in values
        ):
            raise ValueError(
                f"Expected {self.config.total_blocks} choices (one per block) in "
                f"[0, {self.config.num_choices}), got {values}."
            )
        return values

    def set_architecture(self, choices: Sequence[int] | Tensor) -> None:
        """Fix the single active path of every block.

        Args:
            choices: Candidate index per block, length ``total_blocks``.
        """
        self._active = self._check_choices(choices)
        self._pairs = None

    def argmax_architecture(self) -> tuple[int, ...]:
        """The most probable candidate of every block."""
        return tuple(int(c) for c in self.architecture_logits.argmax(dim=-1).tolist())

    def sample_active_paths(
        self, uniform: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample one active path per block (weight step or warm-up).

        Args:
            uniform: Sample uniformly (warm-up, architecture frozen) instead of from alpha.
            generator: Optional CPU random generator.

        Returns:
            LongTensor of shape ``(total_blocks,)``: the chosen candidates.
        """
        probs = self._probabilities().detach().cpu()
        if uniform:
            probs = torch.ones_like(probs)
        choices = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        self.set_architecture(choices)
        return choices

    def sample_two_paths(self, generator: torch.Generator | None = None) -> Tensor:
        """Sample two distinct candidates per block and gate one of them (architecture step).

        Args:
            generator: Optional CPU random generator.

        Returns:
            LongTensor of shape ``(total_blocks, 2)``: the sampled pairs. The active one of
            each pair is in :attr:`active_architecture`.
        """
        if self.config.num_choices < 2:
            raise ValueError("Two-path sampling needs at least two candidates per block.")
        logits = self.architecture_logits.detach().cpu()
        pairs = torch.multinomial(torch.softmax(logits, dim=-1), 2, generator=generator)
        pair_probs = torch.softmax(logits.gather(1, pairs), dim=-1)
        slot = torch.multinomial(pair_probs, 1, generator=generator).squeeze(-1)
        self._active = pairs.gather(1, slot[:, None]).squeeze(-1).tolist()
        self._pairs = [(int(a), int(b)) for a, b in pairs.tolist()]
        return pairs

    @torch.no_grad()
    def rescale_sampled_pairs(self, logits_before: Tensor) -> None:
        """Keep unsampled candidates' probabilities after a two-path architecture step.

        ProxylessNAS: the step changed only the pair's logits; shifting both by one offset so
        that ``logsumexp`` over the pair is what it was before leaves every other
        candidate's probability unchanged.

        Args:
            logits_before: Copy of alpha taken before the optimiser step,
                shape ``(total_blocks, num_choices)``.
        """
        if self._pairs is None:
            raise ValueError("No sampled pairs: call sample_two_paths() before the step.")
        logits = self.architecture_logits
        pairs = torch.tensor(self._pairs, device=logits.device)
        old = logits_before.to(logits).gather(1, pairs)
        new = logits.gather(1, pairs)
        offset = torch.logsumexp(new, dim=-1) - torch.logsumexp(old, dim=-1)
        logits.scatter_(1, pairs, new - offset[:, None])

    def _probabilities(self) -> Tensor:
        return torch.softmax(self.architecture_logits, dim=-1)

    # ---- forward ------------------------------------------------------------------------

    def _skip_sums(self, mixture: Tensor) -> tuple[Tensor, list[Tensor]]:
        check_mixture(mixture)
        features = self.codec.encode(mixture)
        sums = self.separator(features, self._active, self._pairs, self.architecture_logits)
        return features, sums

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate with the current path(s).

        Args:
            mixture: Tensor of shape ``(batch, time)``.

        Returns:
            Sources of shape ``(batch, num_sources, time)``.
        """
        features, sums = self._skip_sums(mixture)
        masks = self.separator.masks_from_skip(sums[-1])
        return self.codec.decode(features, masks, mixture.shape[-1])

    def forward_repeats(self, mixture: Tensor) -> Tensor:
        """Estimates after every repeat, all through the shared mask head and decoder.

        Repeat ``r`` uses the skip outputs summed over the blocks of repeats ``1..r``, the
        same quantity the mask head sees at the end, so the last estimate equals
        :meth:`forward`.

        Args:
            mixture: Tensor of shape ``(batch, time)``.

        Returns:
            Tensor of shape ``(batch, num_repeats, num_sources, time)``.
        """
        features, sums = self._skip_sums(mixture)
        time = mixture.shape[-1]
        estimates = [
            self.codec.decode(features, self.separator.masks_from_skip(s), time) for s in sums
        ]
        return torch.stack(estimates, dim=1)  # B, R, S, T

    def auxiliary_loss(self, per_repeat_losses: Tensor) -> Tensor:
        """:func:`combine_repeat_losses` with this config's ``aux_ema_alpha``.

        Args:
            per_repeat_losses: Shape ``(..., num_repeats)``.

        Returns:
            Shape ``(...)``.
        """
        if per_repeat_losses.shape[-1] != self.config.num_repeats:
            raise ValueError(
                f"Expected per-repeat losses of shape (..., {self.config.num_repeats}), "
                f"got {tuple(per_repeat_losses.shape)}."
            )
        return combine_repeat_losses(per_repeat_losses, self.config.aux_ema_alpha)

    # ---- cost ---------------------------------------------------------------------------

    def _candidate_macs(self) -> Tensor:
        config = self.config
        frames_per_second = config.sample_rate / (config.encoder_kernel_size // 2)
        block: MixedBlock = self.separator.blocks[0]  # type: ignore[assignment]
        per_frame = [candidate.macs_per_frame() for candidate in block.candidates]
        if config.include_zero:
            per_frame.append(0)
        row = torch.tensor(per_frame, dtype=torch.float64) * frames_per_second
        return row.float().expand(config.total_blocks, -1).clone()

    def fixed_macs(self) -> float:
        """MACs per second of the parts every architecture has (encoder, decoder, head)."""
        config = self.config
        frames_per_second = config.sample_rate / (config.encoder_kernel_size // 2)
        filters, window = config.encoder_filters, config.encoder_kernel_size
        per_frame = (
            filters * window * (1 + config.num_sources)  # encoder + one decode per source
            + filters * config.bottleneck_channels  # bottleneck
            + config.bottleneck_channels * filters * config.num_sources  # mask head
        )
        return per_frame * frames_per_second

    def expected_macs(self) -> Tensor:
        """Differentiable expected MACs per second under ``softmax(alpha)``.

        ``fixed_macs() + sum_blocks softmax(alpha_block) . candidate_macs`` (zero op: 0).
        Counts convolutions only, like :mod:`models.flops`. Every candidate is costed with
        its residual 1x1 conv, which the derived model's very last block drops (``B * H``
        MACs per frame, about 1 % of the paper-size total).

        Returns:
            Scalar tensor with a gradient to alpha.
        """
        probs = self._probabilities()
        return self.fixed_macs() + (probs * self.candidate_macs).sum()

    def architecture_macs(self, choices: Tensor) -> Tensor:
        """MACs per second of given architectures (REINFORCE reward term).

        Args:
            choices: LongTensor of shape ``(..., total_blocks)``.

        Returns:
            Tensor of shape ``(...)``.
        """
        if choices.shape[-1] != self.config.total_blocks:
            raise ValueError(
                f"Expected choices of shape (..., {self.config.total_blocks}), "
                f"got {tuple(choices.shape)}."
            )
        table = self.candidate_macs.expand(*choices.shape[:-1], -1, -1)
        picked = table.gather(-1, choices.to(table.device).unsqueeze(-1)).squeeze(-1)
        return self.fixed_macs() + picked.sum(dim=-1)

    # ---- REINFORCE and monitoring -------------------------------------------------------

    def sample_architectures(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample architectures from ``softmax(alpha)`` for REINFORCE.

        Args:
            num_samples: ``M``.
            generator: Optional CPU random generator.

        Returns:
            LongTensor of shape ``(M, total_blocks)``.
        """
        probs = self._probabilities().detach().cpu()
        samples = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
        return samples.T.contiguous()  # M, blocks

    def architecture_log_prob(self, choices: Tensor) -> Tensor:
        """Log-probability of architectures under ``softmax(alpha)`` (differentiable).

        Args:
            choices: LongTensor of shape ``(M, total_blocks)``.

        Returns:
            Tensor of shape ``(M,)``.
        """
        if choices.dim() != 2 or choices.shape[1] != self.config.total_blocks:
            raise ValueError(
                f"Expected choices of shape (M, {self.config.total_blocks}), "
                f"got {tuple(choices.shape)}."
            )
        log_probs = torch.log_softmax(self.architecture_logits, dim=-1)  # blocks, choices
        index = choices.to(log_probs.device).T  # blocks, M
        return log_probs.gather(1, index).sum(dim=0)

    @staticmethod
    def reinforce_loss(
        log_probs: Tensor, rewards: Tensor, baseline: float | Tensor = 0.0
    ) -> Tensor:
        """REINFORCE surrogate loss ``-mean((reward - baseline) * log_prob)``.

        Args:
            log_probs: Shape ``(M,)`` from :meth:`architecture_log_prob`.
            rewards: Shape ``(M,)``, e.g. ``SI-SDR * (MACs / T_ref) ** -0.07``.
            baseline: Variance-reducing baseline (a moving average of rewards).

        Returns:
            Scalar loss whose gradient moves alpha towards higher-reward architectures.
        """
        advantage = (rewards - baseline).detach()
        return -(advantage * log_probs).mean()

    def repeat_entropies(self) -> Tensor:
        """Mean entropy (nats) of the blocks' architecture distributions, per repeat.

        Returns:
            Tensor of shape ``(num_repeats,)``; ``log(num_choices)`` when alpha is uniform.
        """
        log_probs = torch.log_softmax(self.architecture_logits, dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # blocks
        return entropy.view(self.config.num_repeats, self.config.num_blocks).mean(dim=-1)

    # ---- derivation ---------------------------------------------------------------------

    def derive(self, choices: Sequence[int] | Tensor | None = None) -> ConvTasNetConfig:
        """The plain Conv-TasNet of an architecture (default: argmax of alpha per block).

        Zero ops are dropped; the remaining blocks of each repeat get dilations
        ``1, 2, 4, ...`` in order (``blocks_per_repeat``).

        Args:
            choices: Candidate index per block; ``None`` uses :meth:`argmax_architecture`.

        Returns:
            A :class:`~models.conv_tasnet.ConvTasNetConfig` with per-block overrides.
        """
        values = self._check_choices(self.argmax_architecture() if choices is None else choices)
        candidates = self.config.candidates
        counts, kernels, hidden = [], [], []
        for repeat in range(self.config.num_repeats):
            row = values[repeat * self.config.num_blocks : (repeat + 1) * self.config.num_blocks]
            kept = [c for c in row if c < len(candidates)]
            counts.append(len(kept))
            kernels.extend(candidates[c][0] for c in kept)
            hidden.extend(candidates[c][1] * self.config.bottleneck_channels for c in kept)
        if not kernels:
            raise ValueError("Every block of this architecture is a zero op: nothing to derive.")
        return self.config.base_config(
            blocks_per_repeat=tuple(counts),
            block_kernel_sizes=tuple(kernels),
            block_hidden=tuple(hidden),
        )

    def derived_state_dict(
        self, choices: Sequence[int] | Tensor | None = None
    ) -> dict[str, Tensor]:
        """Weights for ``ConvTasNet(self.derive(choices))`` inherited from the supernet.

        Args:
            choices: As in :meth:`derive`.

        Returns:
            A state dict loadable with ``strict=True``.
        """
        values = self._check_choices(self.argmax_architecture() if choices is None else choices)
        num_candidates = len(self.config.candidates)
        kept = [(i, c) for i, c in enumerate(values) if c < num_candidates]
        state: dict[str, Tensor] = {}
        for name, tensor in self.state_dict().items():
            if name == "architecture_logits" or name.startswith("separator.blocks."):
                continue
            state[name] = tensor.detach().clone()
        for new_index, (block_index, choice) in enumerate(kept):
            block: MixedBlock = self.separator.blocks[block_index]  # type: ignore[assignment]
            is_last = new_index == len(kept) - 1
            for name, tensor in block.candidates[choice].state_dict().items():
                if is_last and name.startswith("pointwise.residual_conv."):
                    continue  # the derived last block has no residual output
                state[f"separator.blocks.{new_index}.{name}"] = tensor.detach().clone()
        return state


def nas_tasnet_paper() -> NasTasNetConfig:
    """Supernet around the Conv-TasNet paper sizes (N 512, L 16, B 128, X 8, R 3, 8 kHz)."""
    return NasTasNetConfig()


def nas_tasnet_small() -> NasTasNetConfig:
    """CPU-sized supernet matching ``conv_tasnet`` "small" (N 128, B 64, X 8, R 2)."""
    return NasTasNetConfig(encoder_filters=128, bottleneck_channels=64, num_blocks=8, num_repeats=2)


MODEL_SPECS: dict[str, ModelSpec] = {
    "nas_tasnet": ModelSpec(
        name="nas_tasnet",
        task="separation",
        config_class=NasTasNetConfig,
        model_class=NasTasNet,
        presets={"paper": nas_tasnet_paper, "small": nas_tasnet_small},
        description="NAS-TasNet supernet: Conv-TasNet blocks searched over kernel, width, zero op",
    ),
}
