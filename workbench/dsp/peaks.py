"""Peak pyramids: min/max envelopes at several resolutions for fast waveform drawing.

Drawing an hour of audio sample by sample is hopeless; drawing one min/max pair per screen
pixel is cheap. The pyramid is built once (in a worker) and every zoom level then reads the
coarsest level that still has at least two buckets per pixel, so redraws cost O(pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Samples per bucket at the finest level, and the factor between levels.
BASE_BUCKET = 64
LEVEL_FACTOR = 8


@dataclass
class PeakPyramid:
    """Min/max envelopes of a (downmixed) signal.

    Attributes:
        samples: The full-resolution mono signal used for close zooms, shape ``(frames,)``.
        levels: ``levels[k]`` is ``(mins, maxs)`` with bucket size
            ``BASE_BUCKET * LEVEL_FACTOR**k`` samples.
    """

    samples: np.ndarray
    levels: list[tuple[np.ndarray, np.ndarray]]

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    def bucket_size(self, level: int) -> int:
        return BASE_BUCKET * LEVEL_FACTOR**level

    def envelope(self, start: int, stop: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample positions and values to draw ``[start, stop)`` with about ``max_points``.

        Returns:
            ``(positions, values)``: float arrays. At coarse zoom the values alternate
            min, max per bucket (drawn as a connected line this fills the envelope); at fine
            zoom they are the samples themselves.
        """
        start = max(0, int(start))
        stop = min(self.frames, int(stop))
        if stop <= start:
            return np.zeros(0), np.zeros(0)
        span = stop - start
        per_point = span / max(max_points, 1)
        if per_point < BASE_BUCKET or not self.levels:
            positions = np.arange(start, stop, dtype=np.float64)
            return positions, self.samples[start:stop].astype(np.float64)
        level = 0
        while level + 1 < len(self.levels) and self.bucket_size(level + 1) * 2 <= per_point:
            level += 1
        size = self.bucket_size(level)
        mins, maxs = self.levels[level]
        first, last = start // size, min(len(mins), -(-stop // size))
        idx = np.arange(first, last)
        positions = np.repeat(idx * size + size / 2.0, 2)
        values = np.empty(2 * len(idx))
        values[0::2] = mins[first:last]
        values[1::2] = maxs[first:last]
        return positions, values


def downmix(samples: np.ndarray) -> np.ndarray:
    """Mono view of ``(frames, channels)`` samples for display (mean of channels)."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    return samples.mean(axis=1, dtype=np.float32)


def build_pyramid(samples: np.ndarray) -> PeakPyramid:
    """Build the pyramid for ``samples`` shaped ``(frames,)`` or ``(frames, channels)``."""
    mono = np.ascontiguousarray(downmix(samples), dtype=np.float32)
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    usable = (len(mono) // BASE_BUCKET) * BASE_BUCKET
    if usable == 0:
        return PeakPyramid(mono, levels)
    blocks = mono[:usable].reshape(-1, BASE_BUCKET)
    mins, maxs = blocks.min(axis=1), blocks.max(axis=1)
    levels.append((mins, maxs))
    while len(mins) >= LEVEL_FACTOR * 2:
        usable = (len(mins) // LEVEL_FACTOR) * LEVEL_FACTOR
        mins = mins[:usable].reshape(-1, LEVEL_FACTOR).min(axis=1)
        maxs = maxs[:usable].reshape(-1, LEVEL_FACTOR).max(axis=1)
        levels.append((mins, maxs))
    return PeakPyramid(mono, levels)
