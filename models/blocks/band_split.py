"""Band-split encoder and band-wise mask decoder (BSRNN / BS-RoFormer style).

The spectrum is cut into sub-bands that are narrow at low frequencies and wide at high ones;
each band gets its own normalisation and linear projection to ``emb_dim`` channels, so a
``(frames, bins)`` spectrogram becomes a ``(frames, bands, emb_dim)`` feature. The decoder
mirrors it with one small MLP per band that predicts a complex mask for that band's bins.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.blocks.norms import TimeChannelNorm

#: BS-RoFormer's layout (Lu et al. 2023), as used by TUSS: (low Hz, high Hz, bins per band).
#: Bins above the last range are split into ``num_top_bands`` bands.
BS_ROFORMER_BAND_LAYOUT: tuple[tuple[int, int, int], ...] = (
    (0, 1000, 2),
    (1000, 2000, 4),
    (2000, 4000, 12),
    (4000, 8000, 24),
    (8000, 16000, 48),
)


def _split_evenly(num_bins: int, num_bands: int) -> list[int]:
    """``num_bands`` widths summing to ``num_bins``; the remainder goes to the last band."""
    width = num_bins // num_bands
    return [width] * (num_bands - 1) + [num_bins - width * (num_bands - 1)]


def band_widths(
    sample_rate: int,
    n_fft: int,
    layout: tuple[tuple[int, int, int], ...] = BS_ROFORMER_BAND_LAYOUT,
    num_top_bands: int = 4,
) -> tuple[int, ...]:
    """Number of STFT bins in each band, for any sample rate and FFT size.

    Each ``(low_hz, high_hz, width)`` range is covered by ``ceil(range / (width * bin_hz))``
    bands of ``width`` bins, as in BS-RoFormer. Where a range would run past the Nyquist bin
    (low sample rates) its bins are clipped and split evenly over as many bands as fit.
    The bins above the last range go into ``num_top_bands`` bands, or are merged into the last
    band when fewer than that band's width remain (a lone Nyquist bin is not worth a band).

    At 48 kHz with ``n_fft=2048`` this gives TUSS's 61 bands:
    ``[2]*22 + [4]*11 + [12]*8 + [24]*8 + [48]*8 + [66, 66, 66, 67]``.

    Args:
        sample_rate: Sampling rate in Hz.
        n_fft: FFT size (``n_fft // 2 + 1`` bins).
        layout: ``(low_hz, high_hz, bins_per_band)`` ranges in increasing order.
        num_top_bands: Bands for the bins above the last range.

    Returns:
        Band widths in bins, low to high, summing to ``n_fft // 2 + 1``.
    """
    num_bins = n_fft // 2 + 1
    bin_hz = sample_rate / n_fft
    widths: list[int] = []
    used = 0
    for low_hz, high_hz, width in layout:
        if width < 1 or high_hz <= low_hz:
            raise ValueError(f"Bad band range {(low_hz, high_hz, width)}.")
        if used >= num_bins:
            break
        count = math.ceil((high_hz - low_hz) / (width * bin_hz))
        span = count * width
        if used + span <= num_bins:
            widths.extend([width] * count)
        else:
            span = num_bins - used
            widths.extend(_split_evenly(span, math.ceil(span / width)))
        used += span
    rest = num_bins - used
    if rest > 0:
        if widths and (rest < widths[-1] or num_top_bands < 1):
            widths[-1] += rest
        else:
            widths.extend(_split_evenly(rest, min(max(num_top_bands, 1), rest)))
    return tuple(widths)


def band_edges(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(first_bin, end_bin)`` of each band (end exclusive)."""
    edges, start = [], 0
    for width in widths:
        edges.append((start, start + width))
        start += width
    return edges


class BandSplitEncoder(nn.Module):
    """Per-band normalisation and projection of a complex spectrogram.

    Each band's ``2 * width`` real values (real and imaginary parts of its bins) are
    normalised over (time, values) like ``GroupNorm(1, 2 * width)`` and mapped to ``emb_dim``
    channels by a band-specific linear layer.

    Args:
        widths: Bins per band (see :func:`band_widths`).
        emb_dim: Output channels per band.
    """

    def __init__(self, widths: tuple[int, ...], emb_dim: int) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.edges = band_edges(self.widths)
        self.norms = nn.ModuleList(TimeChannelNorm(2 * width) for width in self.widths)
        self.projections = nn.ModuleList(nn.Linear(2 * width, emb_dim) for width in self.widths)

    def forward(self, spectrum: Tensor) -> Tensor:
        """Encode.

        Args:
            spectrum: Real view of the STFT, ``(batch, frames, bins, 2)``.

        Returns:
            Band features, ``(batch, frames, bands, emb_dim)``.
        """
        batch, frames = spectrum.shape[:2]
        bands = []
        for (start, end), norm, projection in zip(self.edges, self.norms, self.projections):
            band = spectrum[:, :, start:end].reshape(batch, frames, 2 * (end - start))
            bands.append(projection(norm(band)))
        return torch.stack(bands, dim=2)


class BandSplitDecoder(nn.Module):
    """One MLP per band mapping its feature to a complex mask over the band's bins.

    ``norm -> Linear(emb, h) -> tanh -> Linear(h, h) -> tanh -> Linear(h, 4 * width) -> GLU``
    with ``h = hidden_multiplier * emb_dim``; the GLU halves ``4 * width`` to the real and
    imaginary mask values of ``width`` bins.

    Args:
        widths: Bins per band.
        emb_dim: Input channels per band.
        hidden_multiplier: Hidden width as a multiple of ``emb_dim``.
    """

    def __init__(self, widths: tuple[int, ...], emb_dim: int, hidden_multiplier: int = 4) -> None:
        super().__init__()
        self.widths = tuple(widths)
        hidden = hidden_multiplier * emb_dim
        self.mlps = nn.ModuleList(
            nn.Sequential(
                TimeChannelNorm(emb_dim),
                nn.Linear(emb_dim, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, 4 * width),
                nn.GLU(dim=-1),
            )
            for width in self.widths
        )

    def forward(self, features: Tensor) -> Tensor:
        """Decode.

        Args:
            features: ``(batch, frames, bands, emb_dim)``.

        Returns:
            Mask as real and imaginary parts, ``(batch, frames, bins, 2)``.
        """
        batch, frames = features.shape[:2]
        masks = [
            mlp(features[:, :, index]).reshape(batch, frames, width, 2)
            for index, (mlp, width) in enumerate(zip(self.mlps, self.widths))
        ]
        return torch.cat(masks, dim=2)
