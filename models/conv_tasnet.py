"""Conv-TasNet and TDCN++ time-domain separation, with MiTAS parameter sharing.

Conv-TasNet (Luo & Mesgarani, "Conv-TasNet: Surpassing ideal time-frequency magnitude
masking for speech separation", 2019) is a learned encoder (``N`` filters of ``L`` samples,
hop ``L/2``), a temporal convolutional separator that estimates one mask per source over the
encoder features, and a transposed-convolution decoder. The separator is ``R`` repeats of
``X`` depthwise-separable blocks (:class:`models.blocks.tcn.TCNBlock`) with dilations
``1, 2, ..., 2**(X-1)``; the skip outputs of all blocks are summed and turned into masks.

Options on top of the original:

* TDCN++ (Kavalerov et al., "Universal sound separation", 2019): feature-wise layer norm
  (``norm="fln"``), longer-range skip-residual connections between repeats
  (``repeat_skip_connections``: the input of repeat ``r >= 1`` also receives a 1x1-conv
  projection of the input of repeat ``r - 1``), and a learnable per-block scale on the block
  outputs initialised to ``0.9 ** x`` for block ``x`` of its repeat (``block_scale``).
* Causal operation (``causal=True``): cumulative layer norm and left-only padding, for the
  live low-latency model; :attr:`ConvTasNet.algorithmic_latency_samples` is then the encoder
  window ``L``. A causal model can also stream (:meth:`ConvTasNet.stream_init`,
  :meth:`ConvTasNet.stream_step`): it keeps, per layer, only what the next frames need (the
  unframed input samples, the running cLN sums, the last ``(P - 1) * d`` frames of every
  depthwise convolution's input and the decoder's overlap-add tail), so a block costs its own
  frames and never recomputes history, and the streamed output equals :meth:`forward` on the
  whole signal, delayed by ``L`` samples.
* MiTAS parameter sharing (``sharing``), a two-letter code: the first letter says how the
  depthwise convolutions are shared, the second how the pointwise (1x1) convolutions of a
  block (input, residual and skip convs) are shared:

  - ``n``: not shared, every block has its own weights;
  - ``s``: shared across stacks (repeats): block ``x`` of every repeat uses the same weights;
  - ``d``: shared across dilations: all blocks of one repeat use the same weights;
  - ``a``: shared across all blocks of the separator.

  The named variants are ``ss``, ``sn``, ``ns``, ``nd``, ``dn`` and ``na``; ``"none"`` is
  ``nn``. Norms, PReLUs and block scales stay per block (they hold ``~4H`` numbers each and
  let shared weights behave differently at each position). Sharing ``s`` in both letters
  divides the block parameters by ``R``.
* Per-block overrides used by derived search architectures (NAS-TasNet):
  ``blocks_per_repeat`` (a repeat may have fewer blocks; dilations inside a repeat are always
  ``1, 2, 4, ...`` over the blocks it has), ``block_kernel_sizes`` and ``block_hidden``
  (one entry per block in order). Empty tuples mean uniform ``X``, ``P`` and ``H``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks.tcn import (
    NORM_TYPES,
    CumulativeLayerNorm,
    PointwiseConvs,
    TCNBlock,
    make_norm,
)
from models.registry import ModelSpec

MASK_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "relu", "softmax", "linear")
ENCODER_ACTIVATIONS: tuple[str, ...] = ("none", "relu")
SHARING_LETTERS: str = "nsda"
#: The MiTAS variants; any two letters of :data:`SHARING_LETTERS` are accepted.
SHARING_VARIANTS: tuple[str, ...] = ("none", "ss", "sn", "ns", "nd", "dn", "na")


@dataclass(frozen=True)
class ConvTasNetConfig:
    """Every architecture choice of a Conv-TasNet / TDCN++ model.

    Attributes:
        sample_rate: Sample rate the model is trained at (Hz).
        num_sources: Number of output sources ``S``.
        source_names: One label per source.
        encoder_filters: Encoder filters ``N``.
        encoder_kernel_size: Encoder window ``L`` in samples (even; the hop is ``L / 2``).
        bottleneck_channels: Bottleneck and skip width ``B``.
        hidden_channels: Hidden width ``H`` of every block (unless ``block_hidden``).
        kernel_size: Depthwise kernel ``P`` of every block (unless ``block_kernel_sizes``).
        num_blocks: Blocks per repeat ``X`` (unless ``blocks_per_repeat``).
        num_repeats: Repeats ``R``.
        norm: ``"gln"`` (global), ``"cln"`` (cumulative, causal) or ``"fln"`` (feature-wise).
        causal: Causal padding; requires ``norm="cln"``.
        mask_activation: ``"sigmoid"``, ``"relu"``, ``"softmax"`` (over sources) or ``"linear"``.
        encoder_activation: ``"none"`` (linear encoder, as torchaudio) or ``"relu"``.
        repeat_skip_connections: TDCN++ long-range skip-residual connections between repeats.
        block_scale: TDCN++ learnable per-block output scale initialised to ``0.9 ** x``.
        sharing: MiTAS sharing code (see the module docstring).
        sharing_by_shape: Share only between blocks of one sharing group that also have the
            same shape (hidden width; and kernel, for depthwise). A searched network has
            blocks of mixed shapes, which plain sharing rejects; with this flag its MiTAS
            variant shares every weight it can.
        blocks_per_repeat: Per-repeat block counts overriding ``num_blocks`` (length ``R``).
        block_kernel_sizes: Per-block depthwise kernels (length = total blocks).
        block_hidden: Per-block hidden widths (length = total blocks).
    """

    sample_rate: int = 8000
    num_sources: int = 2
    source_names: tuple[str, ...] = ("speaker1", "speaker2")
    encoder_filters: int = 512
    encoder_kernel_size: int = 16
    bottleneck_channels: int = 128
    hidden_channels: int = 512
    kernel_size: int = 3
    num_blocks: int = 8
    num_repeats: int = 3
    norm: str = "gln"
    causal: bool = False
    mask_activation: str = "sigmoid"
    encoder_activation: str = "none"
    repeat_skip_connections: bool = False
    block_scale: bool = False
    sharing: str = "none"
    sharing_by_shape: bool = False
    blocks_per_repeat: tuple[int, ...] = ()
    block_kernel_sizes: tuple[int, ...] = ()
    block_hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_sources < 1 or len(self.source_names) != self.num_sources:
            raise ValueError(
                f"source_names {self.source_names} must hold num_sources={self.num_sources} "
                "labels (num_sources >= 1)."
            )
        if self.encoder_kernel_size < 2 or self.encoder_kernel_size % 2:
            raise ValueError(
                f"encoder_kernel_size must be even and >= 2 (hop = L / 2), "
                f"got {self.encoder_kernel_size}."
            )
        if self.norm not in NORM_TYPES:
            raise ValueError(f"norm must be one of {NORM_TYPES}, got '{self.norm}'.")
        if self.causal and self.norm != "cln":
            raise ValueError(f"A causal model needs norm='cln'; '{self.norm}' pools future frames.")
        if self.mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation must be one of {MASK_ACTIVATIONS}.")
        if self.encoder_activation not in ENCODER_ACTIVATIONS:
            raise ValueError(f"encoder_activation must be one of {ENCODER_ACTIVATIONS}.")
        sharing_code(self.sharing)  # validates
        if self.num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {self.num_repeats}.")
        if self.blocks_per_repeat and len(self.blocks_per_repeat) != self.num_repeats:
            raise ValueError(
                f"blocks_per_repeat needs num_repeats={self.num_repeats} entries, "
                f"got {len(self.blocks_per_repeat)}."
            )
        counts = self.repeat_block_counts
        if any(count < 0 for count in counts) or sum(counts) < 1:
            raise ValueError(f"Block counts per repeat must be >= 0 with >= 1 in all: {counts}.")
        total = sum(counts)
        for name in ("block_kernel_sizes", "block_hidden"):
            values = getattr(self, name)
            if values and len(values) != total:
                raise ValueError(f"{name} needs one entry per block ({total}), got {len(values)}.")
            if any(v < 1 for v in values):
                raise ValueError(f"{name} entries must be >= 1, got {values}.")

    @property
    def repeat_block_counts(self) -> tuple[int, ...]:
        """Number of blocks in each repeat."""
        return self.blocks_per_repeat or (self.num_blocks,) * self.num_repeats

    @property
    def stride(self) -> int:
        """Encoder hop in samples."""
        return self.encoder_kernel_size // 2


def sharing_code(sharing: str) -> tuple[str, str]:
    """Split a MiTAS sharing code into ``(depthwise_letter, pointwise_letter)``.

    Args:
        sharing: ``"none"`` or two letters from ``n``, ``s``, ``d``, ``a``.

    Returns:
        The two letters.
    """
    if sharing == "none":
        return "n", "n"
    if len(sharing) != 2 or any(letter not in SHARING_LETTERS for letter in sharing):
        raise ValueError(
            f"sharing must be 'none' or two letters from '{SHARING_LETTERS}' (depthwise, "
            f"pointwise), e.g. {', '.join(SHARING_VARIANTS[1:])}; got '{sharing}'."
        )
    return sharing[0], sharing[1]


def _sharing_key(letter: str, repeat: int, index: int) -> tuple[int, ...]:
    if letter == "s":
        return (index,)
    if letter == "d":
        return (repeat,)
    if letter == "a":
        return ()
    return (repeat, index)


def check_mixture(mixture: Tensor) -> None:
    """Raise ``ValueError`` unless ``mixture`` is a finite, non-empty ``(batch, time)`` tensor."""
    if not isinstance(mixture, Tensor) or mixture.dim() != 2:
        shape = tuple(mixture.shape) if isinstance(mixture, Tensor) else type(mixture).__name__
        raise ValueError(f"Expected a mixture of shape (batch, time), got {shape}.")
    if mixture.shape[0] == 0 or mixture.shape[1] == 0:
        raise ValueError(f"Expected a non-empty (batch, time) mixture, got {tuple(mixture.shape)}.")
    if not mixture.is_floating_point():
        raise ValueError(f"Expected a floating-point mixture, got {mixture.dtype}.")
    if not bool(torch.isfinite(mixture).all()):
        raise ValueError("The mixture contains NaN or infinite samples.")


class TCNSeparator(nn.Module):
    """The Conv-TasNet mask estimator: norm, bottleneck, repeats of TCN blocks, mask head.

    Args:
        config: The model config (uses ``N``, ``B``, ``H``, ``P``, repeats, norm, options).
        blocks: Prebuilt blocks replacing the ones ``config`` describes (a search supernet
            passes its mixed blocks and runs them itself).
    """

    def __init__(self, config: ConvTasNetConfig, blocks: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.num_sources = config.num_sources
        self.encoder_filters = config.encoder_filters
        self.mask_activation = config.mask_activation
        self.repeat_block_counts = config.repeat_block_counts
        bottleneck = config.bottleneck_channels
        self.input_norm = make_norm(config.norm, config.encoder_filters)
        self.bottleneck = nn.Conv1d(config.encoder_filters, bottleneck, kernel_size=1)
        self.blocks = self._build_blocks(config) if blocks is None else blocks
        self.repeat_projections = (
            nn.ModuleList(
                nn.Conv1d(bottleneck, bottleneck, kernel_size=1)
                for _ in range(config.num_repeats - 1)
            )
            if config.repeat_skip_connections
            else None
        )
        self.output_prelu = nn.PReLU()
        self.output_conv = nn.Conv1d(
            bottleneck, config.encoder_filters * config.num_sources, kernel_size=1
        )

    @staticmethod
    def _build_blocks(config: ConvTasNetConfig) -> nn.ModuleList:
        counts = config.repeat_block_counts
        total = sum(counts)
        kernels = config.block_kernel_sizes or (config.kernel_size,) * total
        hidden = config.block_hidden or (config.hidden_channels,) * total
        depthwise_letter, pointwise_letter = sharing_code(config.sharing)
        positions = [(r, x) for r, count in enumerate(counts) for x in range(count)]
        # The last block's residual output would feed nothing, so it has no residual conv
        # (as in torchaudio); under sharing its group still has one if another block needs it.
        needs_residual = [i < total - 1 for i in range(total)]
        pointwise_groups: dict[tuple[int, ...], list[int]] = {}
        depthwise_groups: dict[tuple[int, ...], list[int]] = {}
        for i, (r, x) in enumerate(positions):
            by_shape = config.sharing_by_shape
            pointwise_key = _sharing_key(pointwise_letter, r, x) + (
                (hidden[i],) if by_shape else ()
            )
            depthwise_key = _sharing_key(depthwise_letter, r, x) + (
                (hidden[i], kernels[i]) if by_shape else ()
            )
            pointwise_groups.setdefault(pointwise_key, []).append(i)
            depthwise_groups.setdefault(depthwise_key, []).append(i)
        pointwise: dict[int, PointwiseConvs] = {}
        for members in pointwise_groups.values():
            widths = {hidden[i] for i in members}
            if len(widths) > 1:
                raise ValueError(
                    f"Pointwise sharing '{config.sharing}' joins blocks of different hidden "
                    f"widths {sorted(widths)}; use uniform widths or no pointwise sharing."
                )
            module = PointwiseConvs(
                config.bottleneck_channels,
                hidden[members[0]],
                has_residual=any(needs_residual[i] for i in members),
            )
            pointwise.update(dict.fromkeys(members, module))
        depthwise: dict[int, nn.Conv1d] = {}
        for members in depthwise_groups.values():
            shapes = {(hidden[i], kernels[i]) for i in members}
            if len(shapes) > 1:
                raise ValueError(
                    f"Depthwise sharing '{config.sharing}' joins blocks of different "
                    f"(hidden, kernel) shapes {sorted(shapes)}; use uniform blocks."
                )
            width, kernel = shapes.pop()
            module = nn.Conv1d(width, width, kernel, groups=width)
            depthwise.update(dict.fromkeys(members, module))
        return nn.ModuleList(
            TCNBlock(
                config.bottleneck_channels,
                hidden[i],
                kernels[i],
                dilation=2**x,
                norm_type=config.norm,
                causal=config.causal,
                has_residual=needs_residual[i],
                scale_init=0.9**x if config.block_scale else None,
                pointwise=pointwise[i],
                depthwise=depthwise[i],
            )
            for i, (r, x) in enumerate(positions)
        )

    def masks_from_skip(self, skip_sum: Tensor) -> Tensor:
        """The mask head: PReLU, 1x1 conv to ``N * S`` channels, mask nonlinearity.

        Args:
            skip_sum: Summed skip outputs, shape ``(batch, B, frames)``.

        Returns:
            Masks of shape ``(batch, num_sources, N, frames)``.
        """
        batch, _, frames = skip_sum.shape
        masks = self.output_conv(self.output_prelu(skip_sum))
        masks = masks.view(batch, self.num_sources, self.encoder_filters, frames)  # B, S, N, F
        if self.mask_activation == "sigmoid":
            return torch.sigmoid(masks)
        if self.mask_activation == "relu":
            return F.relu(masks)
        if self.mask_activation == "softmax":
            return torch.softmax(masks, dim=1)
        return masks

    def repeat_input(self, x: Tensor, repeat: int, repeat_inputs: list[Tensor]) -> Tensor:
        """Add the TDCN++ long-range connection (if enabled) to the input of ``repeat``."""
        if self.repeat_projections is not None and repeat > 0:
            x = x + self.repeat_projections[repeat - 1](repeat_inputs[repeat - 1])
        repeat_inputs.append(x)
        return x

    def forward(self, features: Tensor) -> Tensor:
        """Estimate masks.

        Args:
            features: Encoder output of shape ``(batch, N, frames)``.

        Returns:
            Masks of shape ``(batch, num_sources, N, frames)``.
        """
        x = self.bottleneck(self.input_norm(features))  # B, B_ch, F
        skip_sum = torch.zeros_like(x)
        repeat_inputs: list[Tensor] = []
        index = 0
        for repeat, count in enumerate(self.repeat_block_counts):
            x = self.repeat_input(x, repeat, repeat_inputs)
            for _ in range(count):
                residual, skip = self.blocks[index](x)
                skip_sum = skip_sum + skip
                if residual is not None:
                    x = x + residual
                index += 1
        return self.masks_from_skip(skip_sum)


class MaskingCodec(nn.Module):
    """Learned encoder and decoder shared by Conv-TasNet and its search supernet.

    Args:
        encoder_filters: Filters ``N``.
        encoder_kernel_size: Window ``L`` (even); hop ``L / 2``.
        encoder_activation: ``"none"`` or ``"relu"``.
    """

    def __init__(
        self, encoder_filters: int, encoder_kernel_size: int, encoder_activation: str = "none"
    ) -> None:
        super().__init__()
        self.kernel_size = encoder_kernel_size
        self.stride = encoder_kernel_size // 2
        self.encoder_activation = encoder_activation
        self.encoder = nn.Conv1d(
            1, encoder_filters, encoder_kernel_size, stride=self.stride, bias=False
        )
        self.decoder = nn.ConvTranspose1d(
            encoder_filters, 1, encoder_kernel_size, stride=self.stride, bias=False
        )

    def encode(self, mixture: Tensor) -> Tensor:
        """Pad and encode.

        One hop of zeros goes in front and at least one behind, so every output sample is
        covered by two overlapping frames; more zeros behind make the frames tile exactly.
        Front padding never breaks causality: it only delays every frame equally.

        Args:
            mixture: Tensor of shape ``(batch, time)``.

        Returns:
            Features of shape ``(batch, N, frames)``.
        """
        time = mixture.shape[-1]
        extra = (self.stride - (time + 2 * self.stride - self.kernel_size) % self.stride) % (
            self.stride
        )
        padded = F.pad(mixture.unsqueeze(1), (self.stride, self.stride + extra))  # B, 1, T'
        features = self.encoder(padded)
        return F.relu(features) if self.encoder_activation == "relu" else features

    def decode(self, features: Tensor, masks: Tensor, time: int) -> Tensor:
        """Apply masks and decode back to ``time`` samples.

        Args:
            features: Encoder output, shape ``(batch, N, frames)``.
            masks: Shape ``(batch, num_sources, N, frames)``.
            time: Length of the unpadded mixture.

        Returns:
            Sources of shape ``(batch, num_sources, time)``.
        """
        batch, num_sources, filters, frames = masks.shape
        masked = (features.unsqueeze(1) * masks).reshape(batch * num_sources, filters, frames)
        decoded = self.decoder(masked).view(batch, num_sources, -1)  # B, S, T'
        return decoded[..., self.stride : self.stride + time]


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class _NormWeights:
    """A cumulative layer norm's affine weights and epsilon, detached for streaming."""

    weight: Tensor
    bias: Tensor
    eps: float


@dataclass(frozen=True)
class _BlockWeights:
    """One TCN block's weights, detached and reshaped once for channels-last streaming.

    The 1x1 convolutions are ``(out, in)`` matrices for ``F.linear``, the skip and residual
    ones stacked into one ``(2 B, H)`` output matrix (skip first) so a block makes one matrix
    product fewer; the depthwise taps are ``P`` vectors of ``H`` weights, tap ``k``
    multiplying the frame ``(P - 1 - k) * d`` frames back.
    """

    input_weight: Tensor
    input_bias: Tensor
    input_prelu: Tensor
    input_norm: _NormWeights
    taps: tuple[Tensor, ...]
    depthwise_bias: Tensor
    dilation: int
    depthwise_prelu: Tensor
    depthwise_norm: _NormWeights
    output_weight: Tensor
    output_bias: Tensor
    has_residual: bool
    scale: Tensor | None


@dataclass(frozen=True)
class _StreamWeights:
    """Every weight a streaming step reads, prepared once by :meth:`ConvTasNet.stream_init`.

    Preparing them once matters: a live block is a handful of frames, so a step is a few
    hundred tiny kernels and each avoided view or reshape of a parameter is a measurable
    share of it.
    """

    encoder: Tensor
    encoder_relu: bool
    input_norm: _NormWeights
    bottleneck_weight: Tensor
    bottleneck_bias: Tensor
    repeat_projections: tuple[tuple[Tensor, Tensor], ...]
    blocks: tuple[_BlockWeights, ...]
    output_prelu: Tensor
    output_weight: Tensor
    output_bias: Tensor
    mask_activation: str
    decoder: Tensor


@dataclass
class ConvTasNetStreamState:
    """What a causal :class:`ConvTasNet` carries from one streamed block to the next.

    :meth:`ConvTasNet.stream_step` updates it in place (its ring buffers are written, not
    copied) and returns it; start a new stream with :meth:`ConvTasNet.stream_init`.

    Attributes:
        pending: Input samples not yet covered by a whole encoder frame, shape
            ``(batch, samples < L)``; it starts as the ``L / 2`` zeros
            :meth:`MaskingCodec.encode` puts in front of a signal.
        frames: Encoder frames processed so far (the cumulative norms' frame count and the
            ring buffers' write position).
        norm_totals: Per cumulative layer norm (the separator's input norm, then two per
            block in order), the running ``(sum, sum of squares)`` over channels and frames
            so far, shape ``(2, batch, 1)``, float64 (float32 sums drift over an hour of
            frames).
        rings: Per TCN block, a ring buffer of the last ``(P - 1) * d`` frames its causal
            depthwise convolution looks back on, channels last: shape
            ``(batch, (P - 1) * d, H)``; frame ``t`` sits at row ``t % ((P - 1) * d)``.
        decoder_tail: Second half of the last decoded frame, still to be overlap-added,
            shape ``(batch, 1, num_sources, L / 2)``.
        skip: Decoded samples still to drop (the encoder's front padding).
        delayed: Separated samples not yet returned, shape ``(batch, num_sources, samples)``.
        weights: The model's weights prepared for streaming.
    """

    pending: Tensor
    frames: int
    norm_totals: list[Tensor]
    rings: list[Tensor]
    decoder_tail: Tensor
    skip: int
    delayed: Tensor
    weights: _StreamWeights

    @property
    def batch_size(self) -> int:
        """Number of parallel streams."""
        return self.pending.shape[0]


def _norm_weights(norm: nn.Module) -> _NormWeights:
    if not isinstance(norm, CumulativeLayerNorm):
        raise ValueError(f"Streaming needs cumulative layer norms, got {type(norm).__name__}.")
    return _NormWeights(norm.weight.detach(), norm.bias.detach(), float(norm.eps))


def _matrix(conv: nn.Conv1d) -> tuple[Tensor, Tensor]:
    """A 1x1 convolution as an ``(out, in)`` matrix and bias for ``F.linear``."""
    bias = conv.bias.detach() if conv.bias is not None else None
    return conv.weight.detach()[..., 0], bias


def _prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU on a channels-last tensor (``F.prelu`` puts per-channel weights on dim 1)."""
    if weight.numel() == 1:
        return F.prelu(x, weight)
    return torch.where(x >= 0, x, x * weight)


def _cumulative_norm_step(
    norm: _NormWeights, x: Tensor, totals: Tensor, inverse_count: Tensor
) -> tuple[Tensor, Tensor]:
    """Cumulative layer norm on the next frames of a stream, from running totals.

    Equals :class:`models.blocks.tcn.CumulativeLayerNorm` on the whole stream, restricted to
    these frames.

    Args:
        norm: The norm's weights.
        x: The new frames, channels last: shape ``(batch, frames, C)``.
        totals: ``(sum, sum of squares)`` of all earlier frames, shape ``(2, batch, 1)``,
            float64 (float32 sums drift over an hour of frames).
        inverse_count: ``1 / (C * frames so far)`` at each new frame, shape ``(frames,)``,
            float64.

    Returns:
        ``(normalised, totals)``: the normalised frames (shape of ``x``) and the totals
        including them.
    """
    sums = torch.stack((x.sum(dim=-1), torch.linalg.vecdot(x, x)))  # 2, B, F
    cumulative = torch.cumsum(sums, dim=-1, dtype=torch.float64).add_(totals)
    # Mean and mean of square per frame; the difference is formed in float32 exactly as the
    # offline norm forms it.
    moments = (cumulative * inverse_count).to(x.dtype).unsqueeze(-1)  # 2, B, F, 1
    mean, mean_square = moments.unbind(0)
    scale = torch.addcmul(mean_square, mean, mean, value=-1.0)  # the variance, for now
    scale = scale.clamp_min_(0.0).add_(norm.eps).rsqrt_()
    # A few elementwise kernels rather than batch_norm: on a few frames batch_norm forks an
    # OpenMP region per call, which costs more than the kernels it saves. (``narrow`` and
    # ``unbind`` rather than indexing for the same reason: a step is ~1,000 small calls.)
    normalised = (x - mean).mul_(scale)
    frames = cumulative.shape[-1]
    return torch.addcmul(norm.bias, normalised, norm.weight), cumulative.narrow(-1, frames - 1, 1)


def _ring_segments(start: int, length: int, size: int) -> list[tuple[int, int, int]]:
    """``(ring_start, ring_end, offset)`` pieces of ``length`` rows from ``start`` (mod size)."""
    start %= size
    first = min(length, size - start)
    pieces = [(start, start + first, 0)]
    if first < length:
        pieces.append((0, length - first, first))
    return pieces


def _causal_depthwise_step(
    hidden: Tensor, ring: Tensor, frames_before: int, block: _BlockWeights
) -> Tensor:
    """The causal dilated depthwise convolution of one block on the next frames.

    Tap ``k`` multiplies the frame ``lag = (P - 1 - k) * d`` back: the part of that window
    before this block comes from the ring buffer, the rest from ``hidden`` itself. The ring
    is then overwritten with the newest frames (in place: no copy of the history).

    Args:
        hidden: The new frames, shape ``(batch, F, H)``.
        ring: The last ``(P - 1) * d`` frames, shape ``(batch, (P - 1) * d, H)``.
        frames_before: Frames processed before ``hidden`` (frame ``t`` is at ring row
            ``t % ring_size``).
        block: The block's weights.

    Returns:
        The convolution output, shape ``(batch, F, H)``.
    """
    frames = hidden.shape[1]
    taps = len(block.taps)
    size = ring.shape[1]
    output = torch.addcmul(block.depthwise_bias, hidden, block.taps[-1])
    for tap in range(taps - 1):
        lag = (taps - 1 - tap) * block.dilation
        weight = block.taps[tap]
        for ring_start, ring_end, offset in _ring_segments(
            frames_before - lag, min(lag, frames), size
        ):
            length = ring_end - ring_start
            output.narrow(1, offset, length).addcmul_(ring.narrow(1, ring_start, length), weight)
        if frames > lag:
            output.narrow(1, lag, frames - lag).addcmul_(hidden.narrow(1, 0, frames - lag), weight)
    if size:
        newest = min(frames, size)  # older new frames would be overwritten at once
        first = frames - newest
        for ring_start, ring_end, offset in _ring_segments(frames_before + first, newest, size):
            length = ring_end - ring_start
            ring.narrow(1, ring_start, length).copy_(hidden.narrow(1, first + offset, length))
    return output


class ConvTasNet(nn.Module):
    """Conv-TasNet / TDCN++ separator.

    Args:
        config: The architecture.
    """

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.config = config
        self.source_names: tuple[str, ...] = tuple(config.source_names)
        self.num_sources = config.num_sources
        self.codec = MaskingCodec(
            config.encoder_filters, config.encoder_kernel_size, config.encoder_activation
        )
        self.separator = TCNSeparator(config)

    @property
    def algorithmic_latency_samples(self) -> int | None:
        """Look-ahead a streaming implementation needs, in samples.

        For a causal model this is the encoder window ``L``: output sample ``t`` depends only
        on input samples ``< t + L``. ``None`` for non-causal models, whose output depends on
        the whole input (gLN and fLN pool every frame).
        """
        return self.config.encoder_kernel_size if self.config.causal else None

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate.

        Args:
            mixture: Tensor of shape ``(batch, time)``.

        Returns:
            Sources of shape ``(batch, num_sources, time)``.
        """
        check_mixture(mixture)
        features = self.codec.encode(mixture)
        masks = self.separator(features)
        return self.codec.decode(features, masks, mixture.shape[-1])

    @property
    def supports_streaming(self) -> bool:
        """Whether :meth:`stream_init` / :meth:`stream_step` work (causal models only)."""
        return self.config.causal

    @property
    def stream_latency_samples(self) -> int:
        """Delay of :meth:`stream_step`'s output behind its input: the encoder window ``L``.

        Output sample ``t`` needs input up to ``t + L - 1`` (two half-overlapping frames) and
        frames complete every ``L / 2`` samples, so ``L`` covers any block size.
        """
        return self.config.encoder_kernel_size

    def stream_init(self, batch_size: int = 1) -> ConvTasNetStreamState:
        """The state of ``batch_size`` fresh streams, on the model's device and dtype.

        The state holds the weights as prepared at this call (the stacked skip and
        residual matrices are copies): start a new stream after moving the model or
        changing its weights.

        Args:
            batch_size: Number of parallel streams (e.g. audio channels).

        Returns:
            The initial state for :meth:`stream_step`.

        Raises:
            ValueError: For a non-causal model (its gLN / fLN pool the whole signal, so it
                cannot stream) or a batch size below 1.
        """
        if not self.config.causal:
            raise ValueError(
                "Only a causal Conv-TasNet (causal=True, norm='cln') can stream; this one pools "
                f"the whole signal in its '{self.config.norm}' norms."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        weights = self._stream_weights()
        device, dtype = weights.encoder.device, weights.encoder.dtype
        stride = self.config.stride
        return ConvTasNetStreamState(
            pending=torch.zeros(batch_size, stride, device=device, dtype=dtype),
            frames=0,
            norm_totals=[
                torch.zeros(2, batch_size, 1, device=device, dtype=torch.float64)
                for _ in range(1 + 2 * len(weights.blocks))
            ],
            rings=[
                torch.zeros(
                    batch_size,
                    (len(block.taps) - 1) * block.dilation,
                    block.taps[0].shape[0],
                    device=device,
                    dtype=dtype,
                )
                for block in weights.blocks
            ],
            decoder_tail=torch.zeros(
                batch_size, 1, self.num_sources, stride, device=device, dtype=dtype
            ),
            skip=stride,
            delayed=torch.zeros(
                batch_size,
                self.num_sources,
                self.stream_latency_samples,
                device=device,
                dtype=dtype,
            ),
            weights=weights,
        )

    def _stream_weights(self) -> _StreamWeights:
        codec, separator = self.codec, self.separator
        blocks = []
        for block in separator.blocks:
            pointwise = block.pointwise
            input_weight, input_bias = _matrix(pointwise.input_conv)
            output_weight, output_bias = _matrix(pointwise.skip_conv)
            if block.has_residual:
                residual_weight, residual_bias = _matrix(pointwise.residual_conv)
                output_weight = torch.cat((output_weight, residual_weight))
                output_bias = torch.cat((output_bias, residual_bias))
            blocks.append(
                _BlockWeights(
                    input_weight=input_weight,
                    input_bias=input_bias,
                    input_prelu=block.input_prelu.weight.detach(),
                    input_norm=_norm_weights(block.input_norm),
                    taps=tuple(block.depthwise.weight.detach()[:, 0].T),  # P x (H,)
                    depthwise_bias=block.depthwise.bias.detach(),
                    dilation=block.dilation,
                    depthwise_prelu=block.depthwise_prelu.weight.detach(),
                    depthwise_norm=_norm_weights(block.depthwise_norm),
                    output_weight=output_weight,
                    output_bias=output_bias,
                    has_residual=block.has_residual,
                    scale=block.scale.detach() if block.scale is not None else None,
                )
            )
        bottleneck_weight, bottleneck_bias = _matrix(separator.bottleneck)
        output_weight, output_bias = _matrix(separator.output_conv)
        projections = separator.repeat_projections or ()
        return _StreamWeights(
            encoder=codec.encoder.weight.detach()[:, 0].T,  # L, N
            encoder_relu=codec.encoder_activation == "relu",
            input_norm=_norm_weights(separator.input_norm),
            bottleneck_weight=bottleneck_weight,
            bottleneck_bias=bottleneck_bias,
            repeat_projections=tuple(_matrix(projection) for projection in projections),
            blocks=tuple(blocks),
            output_prelu=separator.output_prelu.weight.detach(),
            output_weight=output_weight,
            output_bias=output_bias,
            mask_activation=separator.mask_activation,
            decoder=codec.decoder.weight.detach()[:, 0],  # N, L
        )

    def stream_step(
        self, block: Tensor, state: ConvTasNetStreamState
    ) -> tuple[Tensor, ConvTasNetStreamState]:
        """Separate the next block of a stream.

        Only the encoder frames the block completes are computed; every layer takes its past
        from ``state`` (running cLN sums, ring buffers of the depthwise convolutions' inputs,
        the decoder's overlap-add tail), so a block never recomputes history. Output sample
        ``i`` of the stream is sample ``i - L`` of :meth:`forward` on the whole stream so far
        (zeros for ``i < L``); feeding ``L`` zeros after the last block returns the rest of
        the offline output.

        Args:
            block: The next samples, shape ``(batch, samples)`` (any length, 0 included).
            state: From :meth:`stream_init` or the previous step; updated in place.

        Returns:
            ``(sources, state)``: the delayed sources, shape ``(batch, num_sources, samples)``,
            and the updated state.
        """
        if not isinstance(block, Tensor) or block.dim() != 2:
            shape = tuple(block.shape) if isinstance(block, Tensor) else type(block).__name__
            raise ValueError(f"Expected a block of shape (batch, samples), got {shape}.")
        if block.shape[0] != state.batch_size:
            raise ValueError(
                f"Expected a block of shape ({state.batch_size}, samples) for this state, "
                f"got {tuple(block.shape)}."
            )
        if not block.is_floating_point() or not bool(torch.isfinite(block).all()):
            raise ValueError("The block must hold finite floating-point samples.")
        stride, window = self.config.stride, self.config.encoder_kernel_size
        buffer = torch.cat((state.pending, block.to(state.pending.dtype)), dim=-1)  # B, T
        num_frames = (buffer.shape[-1] - window) // stride + 1 if buffer.shape[-1] >= window else 0
        if num_frames:
            decoded = self._stream_frames(buffer, num_frames, state)
            state.delayed = torch.cat((state.delayed, decoded), dim=-1)  # B, S, T
        state.pending = buffer[:, num_frames * stride :]
        samples = block.shape[-1]
        output = state.delayed[..., :samples]
        state.delayed = state.delayed[..., samples:]
        return output, state

    def _stream_frames(
        self, buffer: Tensor, num_frames: int, state: ConvTasNetStreamState
    ) -> Tensor:
        """Encode, separate and decode the ``num_frames`` whole frames at the start of ``buffer``.

        Runs channels last, ``(batch, frames, channels)``, with every 1x1 convolution as one
        matrix product and each depthwise convolution as ``P`` multiply-adds: on the few
        frames of a live block, convolution kernels cost far more in set-up than in
        arithmetic (measured here: about 0.8 ms per depthwise call through oneDNN against
        tens of microseconds this way).

        Returns:
            The completed output samples, shape ``(batch, num_sources, samples)``.
        """
        weights = state.weights
        stride, window = self.config.stride, self.config.encoder_kernel_size
        batch = buffer.shape[0]
        frames_before = state.frames
        used = (num_frames - 1) * stride + window
        features = buffer[:, :used].unfold(-1, window, stride) @ weights.encoder  # B, F, N
        if weights.encoder_relu:
            features = F.relu(features)
        frame_count = torch.arange(
            frames_before + 1,
            frames_before + num_frames + 1,
            device=buffer.device,
            dtype=torch.float64,
        )  # F
        # 1 / (values pooled up to each frame), per channel count: the same for every norm
        # of one width.
        inverse_counts: dict[int, Tensor] = {}

        def inverse_count(channels: int) -> Tensor:
            if channels not in inverse_counts:
                inverse_counts[channels] = (frame_count * channels).reciprocal_()
            return inverse_counts[channels]

        totals = state.norm_totals
        x, totals[0] = _cumulative_norm_step(
            weights.input_norm, features, totals[0], inverse_count(features.shape[-1])
        )
        x = F.linear(x, weights.bottleneck_weight, weights.bottleneck_bias)  # B, F, B_ch
        skip_sum = torch.zeros_like(x)
        repeat_inputs: list[Tensor] = []
        index = 0
        for repeat, count in enumerate(self.separator.repeat_block_counts):
            if weights.repeat_projections and repeat > 0:
                x = x + F.linear(repeat_inputs[repeat - 1], *weights.repeat_projections[repeat - 1])
            repeat_inputs.append(x)
            for _ in range(count):
                block = weights.blocks[index]
                hidden_inverse = inverse_count(block.taps[0].shape[0])
                hidden = F.linear(x, block.input_weight, block.input_bias)  # B, F, H
                hidden, totals[1 + 2 * index] = _cumulative_norm_step(
                    block.input_norm,
                    _prelu(hidden, block.input_prelu),
                    totals[1 + 2 * index],
                    hidden_inverse,
                )
                hidden = _causal_depthwise_step(hidden, state.rings[index], frames_before, block)
                hidden, totals[2 + 2 * index] = _cumulative_norm_step(
                    block.depthwise_norm,
                    _prelu(hidden, block.depthwise_prelu),
                    totals[2 + 2 * index],
                    hidden_inverse,
                )
                outputs = F.linear(hidden, block.output_weight, block.output_bias)
                if block.scale is not None:
                    outputs = outputs * block.scale
                width = x.shape[-1]
                skip_sum = skip_sum + outputs.narrow(-1, 0, width)
                if block.has_residual:
                    x = x + outputs.narrow(-1, width, width)
                index += 1
        masks = F.linear(
            _prelu(skip_sum, weights.output_prelu), weights.output_weight, weights.output_bias
        )
        masks = masks.view(batch, num_frames, self.num_sources, -1)  # B, F, S, N
        if weights.mask_activation == "sigmoid":
            masks = torch.sigmoid(masks)
        elif weights.mask_activation == "relu":
            masks = F.relu(masks)
        elif weights.mask_activation == "softmax":
            masks = torch.softmax(masks, dim=2)
        # The transposed-conv decoder as frames of L samples, overlap-added: a frame's first
        # half completes the previous frame's second half (L = 2 * hop).
        decoded = (features.unsqueeze(2) * masks) @ weights.decoder  # B, F, S, L
        previous_halves = torch.cat((state.decoder_tail, decoded[:, :-1, :, stride:]), dim=1)
        complete = decoded[..., :stride] + previous_halves  # B, F, S, hop
        complete = complete.permute(0, 2, 1, 3).reshape(batch, self.num_sources, -1)
        state.decoder_tail = decoded[:, -1:, :, stride:]
        state.frames = frames_before + num_frames
        skip_now = min(state.skip, complete.shape[-1])
        state.skip -= skip_now
        return complete[..., skip_now:]


def conv_tasnet_paper() -> ConvTasNetConfig:
    """Luo & Mesgarani 2019 best non-causal configuration (Table II): about 5.0 M parameters."""
    return ConvTasNetConfig()


def conv_tasnet_small() -> ConvTasNetConfig:
    """Two-talker 8 kHz model trainable on two CPU cores in 1-2 hours (about 0.85 M params).

    Same window as the paper (2 ms at 8 kHz) but a quarter of the encoder filters and a
    narrower bottleneck; two repeats of eight blocks keep a 1 s receptive field.
    """
    return ConvTasNetConfig(
        encoder_filters=128,
        bottleneck_channels=64,
        hidden_channels=256,
        num_blocks=8,
        num_repeats=2,
    )


def conv_tasnet_tdcnpp() -> ConvTasNetConfig:
    """Paper sizes with the three TDCN++ changes (fLN, repeat skip-residuals, block scales)."""
    return ConvTasNetConfig(norm="fln", repeat_skip_connections=True, block_scale=True)


def conv_tasnet_causal_small() -> ConvTasNetConfig:
    """Live enhancement at 16 kHz: causal, speech + noise, 2 ms algorithmic latency.

    ``L = 32`` samples (2 ms, far under the 32 ms budget) keeps the latency at one encoder
    window; cLN and left padding make every frame depend on the past only.
    """
    return ConvTasNetConfig(
        sample_rate=16000,
        source_names=("speech", "noise"),
        encoder_filters=128,
        encoder_kernel_size=32,
        bottleneck_channels=64,
        hidden_channels=256,
        num_blocks=8,
        num_repeats=2,
        norm="cln",
        causal=True,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    "conv_tasnet": ModelSpec(
        name="conv_tasnet",
        task="separation",
        config_class=ConvTasNetConfig,
        model_class=ConvTasNet,
        presets={
            "paper": conv_tasnet_paper,
            "small": conv_tasnet_small,
            "tdcnpp": conv_tasnet_tdcnpp,
            "causal_small": conv_tasnet_causal_small,
        },
        description="Conv-TasNet / TDCN++ time-domain separation with MiTAS sharing options",
    ),
}
