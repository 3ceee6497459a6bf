"""Normalisation layers shared by the separation models.

Every layer here works on channels-last tensors (channels on the last axis), which is the
layout the TF-Locoformer blocks and the band-wise encoders keep their features in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RMSGroupNorm(nn.Module):
    """Root-mean-square group norm over the channel axis of each position, without bias.

    The channels are split into ``num_groups`` groups and each group is divided by its own
    RMS, then scaled by a learned per-channel gain. Unlike vision GroupNorm the statistics
    never pool over positions, so every time-frequency point is normalised on its own
    (TF-Locoformer, Saijo et al. 2024): a loud frame cannot change a quiet one.

    Args:
        num_groups: Number of channel groups; must divide ``num_channels``.
        num_channels: Size of the last axis.
        eps: Added to the mean square before the square root.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups != 0:
            raise ValueError(
                f"num_groups ({num_groups}) must be >= 1 and divide num_channels ({num_channels})."
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each group of channels at every position.

        Args:
            x: Tensor of shape ``(..., num_channels)``.

        Returns:
            Tensor of the same shape.
        """
        shape = x.shape
        grouped = x.reshape(*shape[:-1], self.num_groups, self.num_channels // self.num_groups)
        # Statistics in float32 even under autocast: the mean square of bf16 values underflows.
        grouped32 = grouped.float()
        scale = torch.rsqrt(grouped32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        normalised = (grouped32 * scale).to(x.dtype).reshape(shape)
        return normalised * self.weight

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class TimeChannelNorm(nn.Module):
    """Layer norm over (time, channels) jointly, with a per-channel affine transform.

    This is ``nn.GroupNorm(1, num_channels)`` applied to a ``(batch, channels, time)``
    tensor, written for the channels-last layout ``(batch, time, channels)`` so the band
    encoders and decoders need no transposes. Band-split models (BSRNN, BS-RoFormer, TUSS)
    normalise each sub-band this way, which removes the band's overall level.

    Args:
        num_channels: Size of the last axis.
        eps: Added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each example over its time and channel axes.

        Args:
            x: Tensor of shape ``(batch, time, num_channels)``.

        Returns:
            Tensor of the same shape.
        """
        var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
