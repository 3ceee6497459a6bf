"""Level, SNR and reverb helpers shared by the mixing datasets.

All functions work on 1-D ``float32`` tensors ``(time,)`` unless said otherwise. Power is the mean
square over the whole clip, so a ratio in dB is ``10 * log10(power_a / power_b)``; the datasets
set ratios on the sources exactly as they enter the mixture (after reverb), so the ratios a test
measures on the returned references are the drawn ones.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

EPSILON = 1e-12


def power(signal: Tensor) -> Tensor:
    """Mean square over the last dimension. ``(..., time) -> (...)``."""
    return signal.pow(2).mean(dim=-1)


def ratio_db(first: Tensor, second: Tensor) -> float:
    """``10 log10(power(first) / power(second))`` in dB, for two ``(time,)`` signals."""
    return float(10.0 * torch.log10((power(first) + EPSILON) / (power(second) + EPSILON)))


def db_to_gain(decibels: float) -> float:
    """Amplitude gain for a level change in dB."""
    return 10.0 ** (decibels / 20.0)


def scale_to_ratio(reference: Tensor, signal: Tensor, target_db: float) -> Tensor:
    """Scale ``signal`` so that ``ratio_db(reference, signal) == target_db``.

    Args:
        reference: ``(time,)``; must not be silent.
        signal: ``(time,)``; must not be silent.
        target_db: Wanted reference-to-signal ratio in dB (an SNR when ``signal`` is noise).

    Returns:
        The scaled ``signal``, ``(time,)``.
    """
    if reference.dim() != 1 or signal.dim() != 1:
        raise ValueError(
            f"expected two (time,) signals, got {tuple(reference.shape)} and {tuple(signal.shape)}"
        )
    wanted = power(reference) / (10.0 ** (target_db / 10.0))
    return signal * torch.sqrt(wanted / (power(signal) + EPSILON))


def set_level(signal: Tensor, level_db: float) -> Tensor:
    """Scale ``(time,)`` to an RMS level of ``level_db`` dB full scale."""
    rms = torch.sqrt(power(signal) + EPSILON)
    return signal * (db_to_gain(level_db) / rms)


def avoid_clipping(sources: Tensor, peak: float = 0.99) -> Tensor:
    """Scale all sources by one factor so that their sum peaks at most at ``peak``.

    Args:
        sources: ``(num_sources, time)``.

    Returns:
        ``(num_sources, time)``; ratios between sources are unchanged.
    """
    mixture_peak = float(sources.sum(dim=0).abs().max()) if sources.numel() else 0.0
    if mixture_peak > peak:
        return sources * (peak / mixture_peak)
    return sources


def convolve(signal: Tensor, response: Tensor, align: bool = True) -> Tensor:
    """Reverberate ``signal`` with a room impulse response, keeping its length.

    Args:
        signal: ``(time,)``.
        response: ``(taps,)``.
        align: Shift by the direct-path delay (the response's peak), so the reverberant
            source lines up with the dry one and a model is not asked to predict a delay.

    Returns:
        ``(time,)``.
    """
    if signal.dim() != 1 or response.dim() != 1:
        raise ValueError(
            f"expected (time,) and (taps,), got {tuple(signal.shape)} and {tuple(response.shape)}"
        )
    length = signal.shape[0]
    delay = int(response.abs().argmax()) if align else 0
    size = 1 << math.ceil(math.log2(length + response.shape[0]))
    spectrum = torch.fft.rfft(signal.double(), n=size) * torch.fft.rfft(response.double(), n=size)
    wet = torch.fft.irfft(spectrum, n=size)[delay : delay + length]
    return wet.to(signal.dtype)


@lru_cache(maxsize=32)
def _resampler(orig: int, new: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


def resample(signal: Tensor, orig: int, new: int) -> Tensor:
    """Band-limited resampling of ``(..., time)`` (kernels cached per rate pair)."""
    if orig == new:
        return signal
    return _resampler(int(orig), int(new))(signal)


def speed(signal: Tensor, factor: float, sample_rate: int) -> Tensor:
    """Speed and pitch change by ``factor`` (> 1 faster and higher), as tape speed.

    Implemented as resampling by a ratio of small integers, so it stays cheap.
    """
    if abs(factor - 1.0) < 1e-3:
        return signal
    step = 100
    return resample(signal, int(round(sample_rate * factor / step)) * step, sample_rate)


def fit_length(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop of ``(time,)`` to ``length``, or zero-pad at a random offset."""
    if signal.shape[0] == length:
        return signal
    if signal.shape[0] > length:
        start = int(rng.integers(0, signal.shape[0] - length + 1))
        return signal[start : start + length]
    out = np.zeros(length, dtype=signal.dtype)
    start = int(rng.integers(0, length - signal.shape[0] + 1))
    out[start : start + signal.shape[0]] = signal
    return out
