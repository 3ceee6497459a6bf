"""Log-magnitude spectrograms in NumPy for the views (no torch in the display path).

Long files are not transformed frame by frame at full resolution: the overview uses at most
``max_columns`` frames spread over the requested range (a hop larger than the FFT simply
skips audio between frames, which is invisible at that zoom), and the view asks for a detailed
spectrogram of the visible range when the user zooms in. Frames are processed in blocks so
memory stays bounded whatever the length.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

FFT_SIZES: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
FLOOR_DB = -100.0


@dataclass
class Spectrogram:
    """A spectrogram image.

    Attributes:
        image: ``float32`` dB values, shape ``(columns, bins)`` (pyqtgraph's x-major order).
        start_time: Time of the first column's centre, seconds.
        stop_time: Time just past the last column, seconds.
        max_frequency: Frequency of the top bin (Nyquist), Hz.
        n_fft: FFT size used.
    """

    image: np.ndarray
    start_time: float
    stop_time: float
    max_frequency: float
    n_fft: int


def iter_spectrogram(
    mono: np.ndarray,
    sample_rate: int,
    n_fft: int = 1024,
    start: int = 0,
    stop: int | None = None,
    max_columns: int = 4000,
    block_columns: int = 256,
) -> Generator[float, None, Spectrogram]:
    """Compute a spectrogram of ``mono[start:stop]`` block by block.

    Args:
        mono: Signal, shape ``(frames,)``.
        sample_rate: Samples per second.
        n_fft: FFT size (also the Hann window length).
        start, stop: Range in samples.
        max_columns: Upper bound on time columns; the hop grows for long ranges.
        block_columns: Frames transformed per step (bounds memory, sets progress granularity).

    Yields:
        Fraction done, between blocks.

    Returns:
        The :class:`Spectrogram`.
    """
    if n_fft < 16:
        raise ValueError(f"n_fft must be at least 16, got {n_fft}")
    stop = len(mono) if stop is None else min(int(stop), len(mono))
    start = max(0, int(start))
    span = max(stop - start, 0)
    hop = max(n_fft // 4, -(-span // max_columns)) if span else n_fft // 4
    columns = max(1, -(-span // hop))
    window = np.hanning(n_fft).astype(np.float32)
    scale = 2.0 / window.sum()
    image = np.empty((columns, n_fft // 2 + 1), dtype=np.float32)
    padded_start = start - n_fft // 2
    for first in range(0, columns, block_columns):
        last = min(columns, first + block_columns)
        offsets = padded_start + np.arange(first, last) * hop
        frames = np.zeros((last - first, n_fft), dtype=np.float32)
        for row, offset in enumerate(offsets):
            lo, hi = max(offset, 0), min(offset + n_fft, len(mono))
            if hi > lo:
                frames[row, lo - offset : hi - offset] = mono[lo:hi]
        magnitude = np.abs(np.fft.rfft(frames * window, axis=1)) * scale
        image[first:last] = 20.0 * np.log10(np.maximum(magnitude, 10 ** (FLOOR_DB / 20)))
        yield last / columns
    return Spectrogram(
        image=image,
        start_time=start / sample_rate,
        stop_time=(start + columns * hop) / sample_rate,
        max_frequency=sample_rate / 2.0,
        n_fft=n_fft,
    )


def compute_spectrogram(mono: np.ndarray, sample_rate: int, **kwargs: int) -> Spectrogram:
    """Blocking form of :func:`iter_spectrogram`."""
    gen = iter_spectrogram(mono, sample_rate, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
