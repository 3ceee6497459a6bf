"""Temporal convolutional network (TCN) layers shared by Conv-TasNet and its search spaces.

Everything here is channels-first, ``(batch, channels, frames)``, the layout of ``nn.Conv1d``.

* :class:`GlobalLayerNorm` (gLN), :class:`CumulativeLayerNorm` (cLN) and
  :class:`FeatureWiseLayerNorm` (fLN) are the three normalisations of Conv-TasNet
  (Luo & Mesgarani 2019, section II-C) and TDCN++ (Kavalerov et al. 2019).
* :class:`TCNBlock` is the 1-D depthwise-separable convolution block: 1x1 conv (B -> H),
  PReLU, norm, dilated depthwise conv (H), PReLU, norm, then a 1x1 residual output (H -> B)
  and a 1x1 skip output (H -> B). The dilation is a call argument rather than a fixed
  attribute of the depthwise conv, so the same weights can serve several dilations
  (MiTAS sharing across dilations) and a search supernet can re-index dilations when blocks
  are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Normalisation names accepted by :func:`make_norm`.
NORM_TYPES: tuple[str, ...] = ("gln", "cln", "fln")


class GlobalLayerNorm(nn.GroupNorm):
    """Global layer norm (gLN): statistics over channels and frames of each example.

    Identical to ``nn.GroupNorm(1, num_channels)``; kept as a named class so printed
    models say which Conv-TasNet norm they use. Sees the whole signal, so it is not causal.

    Args:
        num_channels: Channel count ``C``.
        eps: Added to the variance (1e-8 as in Conv-TasNet).
    """

    def __init__(self, num_channels: int, eps: float = 1e-8) -> None:
        super().__init__(num_groups=1, num_channels=num_channels, eps=eps)


class FeatureWiseLayerNorm(nn.GroupNorm):
    """Feature-wise layer norm (fLN, TDCN++): statistics over frames, separately per channel.

    Equal to ``nn.GroupNorm(num_channels, num_channels)`` on ``(batch, channels, frames)``:
    each channel is normalised by its own mean and variance over time, so a channel with a
    large dynamic range no longer dominates the others' statistics as it does in gLN.
    Not causal.

    Args:
        num_channels: Channel count ``C``.
        eps: Added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-8) -> None:
        super().__init__(num_groups=num_channels, num_channels=num_channels, eps=eps)


class CumulativeLayerNorm(nn.Module):
    """Cumulative layer norm (cLN): frame ``k`` is normalised by statistics of frames ``<= k``.

    The mean and variance pool all channels of every frame up to and including ``k``, so no
    future frame influences the present: the norm for causal (live) models.

    Args:
        num_channels: Channel count ``C``.
        eps: Added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise causally.

        Args:
            x: Tensor of shape ``(batch, num_channels, frames)``.

        Returns:
            Tensor of the same shape.
        """
        # Running sums in float32: cumulative sums of squares lose precision in half types.
        x32 = x.float()
        frames = x.shape[-1]
        count = torch.arange(1, frames + 1, device=x.device, dtype=torch.float32)
        count = count * self.num_channels  # (frames,)
        cumulative_sum = x32.sum(dim=1).cumsum(dim=-1)  # B, T
        cumulative_square = x32.pow(2).sum(dim=1).cumsum(dim=-1)  # B, T
        mean = cumulative_sum / count
        variance = (cumulative_square / count - mean.pow(2)).clamp_min(0.0)
        normalised = (x32 - mean.unsqueeze(1)) * torch.rsqrt(variance.unsqueeze(1) + self.eps)
        return normalised.to(x.dtype) * self.weight[:, None] + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


def make_norm(norm_type: str, num_channels: int) -> nn.Module:
    """Build a channels-first norm by name.

    Args:
        norm_type: ``"gln"``, ``"cln"`` or ``"fln"``.
        num_channels: Channel count.

    Returns:
        The norm module, applied to ``(batch, num_channels, frames)``.
    """
    if norm_type == "gln":
        return GlobalLayerNorm(num_channels)
    if norm_type == "cln":
        return CumulativeLayerNorm(num_channels)
    if norm_type == "fln":
        return FeatureWiseLayerNorm(num_channels)
    raise ValueError(f"Unknown norm '{norm_type}'. Valid norms: {', '.join(NORM_TYPES)}.")


class PointwiseConvs(nn.Module):
    """The three 1x1 convolutions of one TCN block, grouped so MiTAS sharing can reuse them.

    Args:
        io_channels: Bottleneck width ``B``.
        hidden_channels: Hidden width ``H``.
        has_residual: Whether to build the residual output conv (the very last block of a
            separator has none: its residual output would feed nothing).
    """

    def __init__(self, io_channels: int, hidden_channels: int, has_residual: bool = True) -> None:
        super().__init__()
        self.input_conv = nn.Conv1d(io_channels, hidden_channels, kernel_size=1)
        self.residual_conv = (
            nn.Conv1d(hidden_channels, io_channels, kernel_size=1) if has_residual else None
        )
        self.skip_conv = nn.Conv1d(hidden_channels, io_channels, kernel_size=1)


class TCNBlock(nn.Module):
    """One depthwise-separable dilated convolution block of a Conv-TasNet separator.

    Args:
        io_channels: Bottleneck width ``B`` (input, residual output and skip output).
        hidden_channels: Hidden width ``H``.
        kernel_size: Depthwise kernel ``P``.
        dilation: Default dilation of the depthwise conv (a call may override it).
        norm_type: ``"gln"``, ``"cln"`` or ``"fln"``.
        causal: Pad the depthwise conv on the left only, so frame ``k`` sees frames ``<= k``.
        has_residual: Whether this block produces a residual output.
        scale_init: If given, the residual and skip outputs are multiplied by a learnable
            scalar starting at this value (TDCN++ uses ``0.9 ** x`` for block ``x``).
        pointwise: Shared :class:`PointwiseConvs` to use instead of building new ones.
        depthwise: Shared depthwise ``nn.Conv1d(H, H, P, groups=H)`` to use instead of a new one.
    """

    def __init__(
        self,
        io_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation: int = 1,
        norm_type: str = "gln",
        causal: bool = False,
        has_residual: bool = True,
        scale_init: float | None = None,
        pointwise: PointwiseConvs | None = None,
        depthwise: nn.Conv1d | None = None,
    ) -> None:
        super().__init__()
        self.io_channels = io_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.causal = causal
        self.has_residual = has_residual
        if pointwise is None:
            pointwise = PointwiseConvs(io_channels, hidden_channels, has_residual)
        if has_residual and pointwise.residual_conv is None:
            raise ValueError("Shared pointwise convs lack the residual conv this block needs.")
        if depthwise is None:
            depthwise = nn.Conv1d(
                hidden_channels, hidden_channels, kernel_size, groups=hidden_channels
            )
        self.pointwise = pointwise
        self.depthwise = depthwise
        self.input_prelu = nn.PReLU()
        self.input_norm = make_norm(norm_type, hidden_channels)
        self.depthwise_prelu = nn.PReLU()
        self.depthwise_norm = make_norm(norm_type, hidden_channels)
        self.scale = None if scale_init is None else nn.Parameter(torch.tensor(float(scale_init)))

    def _pad(self, x: Tensor, dilation: int) -> Tensor:
        total = (self.kernel_size - 1) * dilation
        if self.causal:
            return F.pad(x, (total, 0))
        return F.pad(x, (total // 2, total - total // 2))

    def forward(self, x: Tensor, dilation: int | None = None) -> tuple[Tensor | None, Tensor]:
        """Run the block.

        Args:
            x: Tensor of shape ``(batch, io_channels, frames)``.
            dilation: Depthwise dilation for this call; ``None`` uses the block's own.

        Returns:
            ``(residual, skip)``: residual of shape ``(batch, io_channels, frames)`` (``None``
            when the block has no residual output; the caller adds it to ``x``) and skip of
            the same shape.
        """
        dilation = self.dilation if dilation is None else dilation
        hidden = self.input_norm(self.input_prelu(self.pointwise.input_conv(x)))
        # Functional call: the dilation belongs to the call, not to the (maybe shared) weights.
        hidden = F.conv1d(
            self._pad(hidden, dilation),
            self.depthwise.weight,
            self.depthwise.bias,
            dilation=dilation,
            groups=self.hidden_channels,
        )
        hidden = self.depthwise_norm(self.depthwise_prelu(hidden))
        skip = self.pointwise.skip_conv(hidden)
        residual = self.pointwise.residual_conv(hidden) if self.has_residual else None
        if self.scale is not None:
            skip = skip * self.scale
            residual = residual * self.scale if residual is not None else None
        return residual, skip

    def macs_per_frame(self) -> int:
        """Multiply-accumulates of the block's convolutions per frame (norms not counted)."""
        pointwise = self.io_channels * self.hidden_channels * (3 if self.has_residual else 2)
        return pointwise + self.hidden_channels * self.kernel_size
