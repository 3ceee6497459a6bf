"""SFC-CA: spectral feature compression by cross-attention (encoder and mask decoder).

A drop-in alternative to :mod:`models.blocks.band_split` (Saijo and Bando, "Input-Adaptive
Spectral Feature Compression by Sequence Modeling for Source Separation", 2026). There is no
public code; this follows the paper's description:

* Encoder: one learned query per compressed band attends over the frequency bins of each
  frame. Which bins a query should look at is not learned from scratch: an ALiBi-style
  additive bias is zero on the bins of the query's band (its band-split range) and falls
  linearly with the distance outside it, with a different slope per head, so some heads stay
  inside the band and others look at neighbouring bands. Unlike band-split, the pooling
  weights depend on the input, and one shared module replaces one projection per band.
* Decoder: the mirror image. One learned query per bin attends over the compressed bands with
  the transposed bias, and a small MLP shared by all bins turns the result into a complex mask.

The output shapes equal band-split's, ``(batch, frames, bands, emb_dim)`` from the encoder and
``(batch, frames, bins, 2)`` from the decoder, so TUSS can swap one for the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks.band_split import band_edges

#: Penalty per band-width of distance for the sharpest head; the others halve it in turn.
_MAX_SLOPE = 8.0


def band_distance(widths: tuple[int, ...]) -> Tensor:
    """How far each bin lies outside each band, in units of that band's width.

    Args:
        widths: Bins per band (see :func:`models.blocks.band_split.band_widths`).

    Returns:
        ``(bands, bins)``; zero for the band's own bins.
    """
    num_bins = sum(widths)
    bins = torch.arange(num_bins, dtype=torch.float32)
    rows = []
    for start, end in band_edges(widths):
        below = (start - bins).clamp(min=0)
        above = (bins - (end - 1)).clamp(min=0)
        rows.append((below + above) / (end - start))
    return torch.stack(rows)


def alibi_slopes(num_heads: int) -> Tensor:
    """Per-head slopes from ``_MAX_SLOPE`` down to ``_MAX_SLOPE / 8``, geometrically spaced.

    With distances measured in band widths, the sharpest head gives a bin one band-width
    outside the band ``exp(-8)`` of the weight of an in-band bin and the widest ``exp(-1)``.
    """
    if num_heads == 1:
        return torch.tensor([_MAX_SLOPE])
    steps = torch.arange(num_heads, dtype=torch.float32) / (num_heads - 1)
    return _MAX_SLOPE * torch.pow(2.0, -3.0 * steps)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(N, S, A)`` -> ``(N, H, S, A / H)``."""
    num, seq, width = x.shape
    return x.reshape(num, seq, num_heads, width // num_heads).transpose(1, 2)


class SFCEncoder(nn.Module):
    """Compress ``bins`` frequency bins into ``bands`` features per frame by cross-attention.

    Args:
        widths: Bins per band; sets the number of queries and the positional bias.
        emb_dim: Output channels per band.
        attention_dim: Width of queries, keys and values over all heads.
        num_heads: Attention heads (each with its own bias slope).
        eps: Added to band energies before normalising.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        emb_dim: int,
        attention_dim: int = 64,
        num_heads: int = 4,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if attention_dim % num_heads != 0:
            raise ValueError(
                f"attention_dim ({attention_dim}) must be divisible by num_heads ({num_heads})."
            )
        self.widths = tuple(widths)
        self.num_heads = num_heads
        self.eps = eps
        num_bins, num_bands = sum(self.widths), len(self.widths)
        self.bin_input = nn.Linear(2, attention_dim)
        # Values must remember which bin they came from, or pooling would lose the band's
        # spectral shape; the bias only decides where to look.
        self.bin_embedding = nn.Parameter(0.02 * torch.randn(num_bins, attention_dim))
        self.key_value = nn.Linear(attention_dim, 2 * attention_dim)
        self.queries = nn.Parameter(torch.randn(num_bands, attention_dim))
        self.out = nn.Linear(attention_dim, emb_dim)
        bias = -alibi_slopes(num_heads)[:, None, None] * band_distance(self.widths)
        self.register_buffer("bias", bias, persistent=False)  # H, K, F
        band_of_bin = torch.repeat_interleave(
            torch.arange(num_bands), torch.tensor(self.widths, dtype=torch.long)
        )
        self.register_buffer("band_of_bin", band_of_bin, persistent=False)
        self.register_buffer(
            "band_width", torch.tensor(self.widths, dtype=torch.float32), persistent=False
        )

    def forward(self, spectrum: Tensor) -> Tensor:
        """Encode.

        Args:
            spectrum: Real view of the STFT, ``(batch, frames, bins, 2)``.

        Returns:
            Band features, ``(batch, frames, bands, emb_dim)``.
        """
        batch, frames, num_bins, _ = spectrum.shape
        num_bands = len(self.widths)
        # Divide every band by its RMS over time, as band-split's per-band GroupNorm does:
        # otherwise the low bands' energy would swamp the shared projections.
        bin_energy = spectrum.pow(2).sum(-1).mean(1)  # B, F
        band_energy = bin_energy.new_zeros(batch, num_bands).index_add(
            1, self.band_of_bin, bin_energy
        )
        scale = torch.rsqrt(band_energy / self.band_width + self.eps)[:, self.band_of_bin]
        normalised = spectrum * scale[:, None, :, None]

        hidden = F.gelu(self.bin_input(normalised) + self.bin_embedding)  # B, T, F, A
        key, value = self.key_value(hidden.reshape(batch * frames, num_bins, -1)).chunk(2, -1)
        key = _split_heads(key, self.num_heads)  # N, H, F, d
        value = _split_heads(value, self.num_heads)
        query = _split_heads(self.queries.unsqueeze(0), self.num_heads)  # 1, H, K, d
        query = query.expand(batch * frames, -1, -1, -1)
        pooled = F.scaled_dot_product_attention(query, key, value, attn_mask=self.bias)
        pooled = pooled.transpose(1, 2).reshape(batch, frames, num_bands, -1)  # B, T, K, A
        return self.out(pooled + self.queries)


class SFCDecoder(nn.Module):
    """Expand band features to a complex mask per bin: bins query the bands.

    Args:
        widths: Bins per band.
        emb_dim: Input channels per band.
        attention_dim: Width of queries, keys and values over all heads.
        num_heads: Attention heads.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        emb_dim: int,
        attention_dim: int = 64,
        num_heads: int = 4,
    ) -> None:
        super().__init__()
        if attention_dim % num_heads != 0:
            raise ValueError(
                f"attention_dim ({attention_dim}) must be divisible by num_heads ({num_heads})."
            )
        self.widths = tuple(widths)
        self.num_heads = num_heads
        num_bins = sum(self.widths)
        self.norm = nn.LayerNorm(emb_dim)
        self.key_value = nn.Linear(emb_dim, 2 * attention_dim)
        self.queries = nn.Parameter(torch.randn(num_bins, attention_dim))
        # Every bin of a band sees the same bias, so the bin's own query is added back after
        # attention (a residual, as in a Transformer decoder) to tell the bins apart.
        self.mask_mlp = nn.Sequential(
            nn.Linear(attention_dim, 2 * attention_dim),
            nn.Tanh(),
            nn.Linear(2 * attention_dim, 4),
            nn.GLU(dim=-1),
        )
        bias = -alibi_slopes(num_heads)[:, None, None] * band_distance(self.widths).T
        self.register_buffer("bias", bias, persistent=False)  # H, F, K

    def forward(self, features: Tensor) -> Tensor:
        """Decode.

        Args:
            features: ``(batch, frames, bands, emb_dim)``.

        Returns:
            Mask as real and imaginary parts, ``(batch, frames, bins, 2)``.
        """
        batch, frames, num_bands, _ = features.shape
        num_bins = sum(self.widths)
        key, value = self.key_value(self.norm(features)).chunk(2, dim=-1)  # B, T, K, A
        key = _split_heads(key.reshape(batch * frames, num_bands, -1), self.num_heads)
        value = _split_heads(value.reshape(batch * frames, num_bands, -1), self.num_heads)
        query = _split_heads(self.queries.unsqueeze(0), self.num_heads)  # 1, H, F, d
        query = query.expand(batch * frames, -1, -1, -1)
        expanded = F.scaled_dot_product_attention(query, key, value, attn_mask=self.bias)
        expanded = expanded.transpose(1, 2).reshape(batch, frames, num_bins, -1)  # B, T, F, A
        return self.mask_mlp(expanded + self.queries)
