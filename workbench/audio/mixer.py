"""Mixing tracks into playback blocks (numpy only; no Qt, no torch, no devices).

:func:`render_mix` is stateless: the block for frames ``[start, start + frames)`` of the
output timeline depends only on those numbers and the tracks, so a playback feeder can render
consecutive blocks, jump after a seek or wrap around a loop, and the joins are seamless (the
block-boundary test renders a range in one piece and in odd-sized pieces and compares).

Rules:

* Each track is multiplied by its ``gain`` and the tracks are summed (no clipping here:
  PortAudio clips when it converts to the device format).
* A track at another sample rate is resampled on the fly with a Kaiser-windowed sinc
  interpolator evaluated at exact rational positions (``frame * track_rate / output_rate``
  in integer arithmetic, so there is no drift over hours). When the track is faster than the
  output the kernel is widened to low-pass at the output's Nyquist frequency.
* Channels: a track with as many channels as the output is copied; with fewer, its channels
  are repeated cyclically (mono goes to every output channel, stereo to 1-2, 3-4, ...); with
  more, output channel ``j`` is the mean of track channels ``j, j + M, j + 2M, ...`` (so
  stereo to mono is the average of left and right).
* Frames before 0 or after a track's end are silence.

Which tracks are passed in is the caller's business (``Session.audible_tracks`` applies
solo, mute and A/B).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from math import gcd
from typing import Protocol

import numpy as np

#: Zero crossings of the sinc on each side of the interpolation point (at the lower rate).
SINC_ZERO_CROSSINGS = 8
#: Kaiser window shape: ~80 dB side lobes with this many zero crossings.
KAISER_BETA = 8.6
#: Blocks this long or longer are interpolated in slices to bound the temporary arrays.
_SLICE_FRAMES = 4096
#: Rate pairs with at most this many interpolation phases get a precomputed weight table.
_MAX_TABLE_PHASES = 4096


class MixTrack(Protocol):
    """What the mixer needs from a track (``workbench.session.Track`` fits)."""

    samples: np.ndarray
    sample_rate: int
    gain: float


def output_length(tracks: Sequence[MixTrack], sample_rate: int) -> int:
    """Frames the longest track lasts on an output timeline at ``sample_rate``."""
    longest = 0
    for track in tracks:
        frames = int(track.samples.shape[0])
        # Ceiling of frames * out / in: the output frame whose time is the track's last.
        longest = max(longest, -(-frames * int(sample_rate) // int(track.sample_rate)))
    return longest


def map_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """Map a ``(frames, C)`` block to ``(frames, channels)`` by repeating or averaging.

    Args:
        block: Shape ``(frames, C)``.
        channels: Output channel count ``M``.

    Returns:
        Shape ``(frames, M)``; ``block`` itself when ``C == M``.

    Raises:
        ValueError: ``block`` is not 2-D or ``channels`` is not positive.
    """
    if block.ndim != 2:
        raise ValueError(f"block must be (frames, channels), got shape {tuple(block.shape)}")
    if channels <= 0:
        raise ValueError(f"channels must be positive, got {channels}")
    source_channels = block.shape[1]
    if source_channels == channels:
        return block
    if source_channels < channels:
        return block[:, np.arange(channels) % source_channels]
    out = np.zeros((block.shape[0], channels), dtype=block.dtype)
    counts = np.zeros(channels)
    for index in range(source_channels):
        out[:, index % channels] += block[:, index]
        counts[index % channels] += 1
    return out / counts.astype(block.dtype)


def _same_rate_block(samples: np.ndarray, start: int, frames: int) -> np.ndarray:
    out = np.zeros((frames, samples.shape[1]), dtype=np.float32)
    lo, hi = max(start, 0), min(start + frames, samples.shape[0])
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    return out


def _kernel_weights(distance: np.ndarray, cutoff: float, half_width: int) -> np.ndarray:
    """Kaiser-windowed sinc at ``distance`` (in track samples) from the interpolation point."""
    window_arg = np.clip(1.0 - (distance / half_width) ** 2, 0.0, None)
    window = np.i0(KAISER_BETA * np.sqrt(window_arg)) / np.i0(KAISER_BETA)
    return cutoff * np.sinc(distance * cutoff) * window


@functools.lru_cache(maxsize=16)
def _kernel(track_rate: int, output_rate: int) -> tuple[int, int, int, np.ndarray | None]:
    """``(up, down, half_width, table)`` for one rate pair.

    The track position of output frame ``k`` is ``k * down / up``; its fractional part is one
    of ``up`` phases, so for ordinary rate pairs the weights of every phase are tabulated once
    (``table`` shape ``(up, 2 * half_width)``). Odd pairs with many phases get ``None`` and are
    computed per block.
    """
    divisor = gcd(track_rate, output_rate)
    up, down = output_rate // divisor, track_rate // divisor
    cutoff = min(1.0, up / down)  # low-pass at the lower Nyquist, relative to the track's
    half_width = int(np.ceil(SINC_ZERO_CROSSINGS / cutoff))
    table = None
    if up <= _MAX_TABLE_PHASES:
        taps = np.arange(-half_width + 1, half_width + 1)
        distance = taps[None, :] - (np.arange(up) / up)[:, None]  # (up, T)
        table = _kernel_weights(distance, cutoff, half_width)
    return up, down, half_width, table


def _resampled_block(
    samples: np.ndarray, track_rate: int, output_rate: int, start: int, frames: int
) -> np.ndarray:
    """Windowed-sinc interpolation of ``samples`` at output frames ``start..start+frames``."""
    up, down, half_width, table = _kernel(track_rate, output_rate)
    cutoff = min(1.0, up / down)
    taps = np.arange(-half_width + 1, half_width + 1)  # (T,)
    num_frames = samples.shape[0]
    out = np.zeros((frames, samples.shape[1]), dtype=np.float32)
    for offset in range(0, frames, _SLICE_FRAMES):
        count = min(_SLICE_FRAMES, frames - offset)
        k = np.arange(start + offset, start + offset + count, dtype=np.int64)
        # Exact integer positions: no drift however long the track.
        base, phase = np.divmod(k * down, up)  # (N,), (N,)
        # Skip output frames whose kernel cannot touch the track at all.
        touching = (base + half_width >= 0) & (base - half_width < num_frames)
        if not touching.any():
            continue
        base, phase = base[touching], phase[touching]
        index = base[:, None] + taps[None, :]  # (N, T) track frames under the kernel
        if table is not None:
            weights = table[phase]  # (N, T)
        else:
            weights = _kernel_weights(index - (base + phase / up)[:, None], cutoff, half_width)
        weights = np.where((index >= 0) & (index < num_frames), weights, 0.0)
        gathered = samples[np.clip(index, 0, num_frames - 1)]  # (N, T, C)
        out[offset : offset + count][touching] = np.einsum("nt,ntc->nc", weights, gathered)
    return out


def render_track(
    track: MixTrack, start: int, frames: int, channels: int, sample_rate: int
) -> np.ndarray:
    """One track's contribution to output frames ``[start, start + frames)``, gain applied.

    Returns:
        ``float32`` array, shape ``(frames, channels)``.
    """
    samples = track.samples
    if samples.ndim == 1:
        samples = samples[:, None]
    if int(track.sample_rate) == int(sample_rate):
        block = _same_rate_block(samples, start, frames)
    else:
        block = _resampled_block(samples, int(track.sample_rate), int(sample_rate), start, frames)
    block = map_channels(block, channels)
    gain = float(track.gain)
    return block if gain == 1.0 else block * np.float32(gain)


def render_mix(
    tracks: Sequence[MixTrack], start: int, frames: int, channels: int, sample_rate: int
) -> np.ndarray:
    """Mix output frames ``[start, start + frames)`` of the given tracks.

    Args:
        tracks: The tracks to hear (already filtered for solo/mute/A-B); each has
            ``samples`` shaped ``(track_frames, track_channels)``, ``sample_rate`` and
            ``gain``.
        start: First output frame (at ``sample_rate``); may be negative or past the end.
        frames: Block length in frames (>= 0).
        channels: Output channels.
        sample_rate: Output rate; tracks at other rates are resampled.

    Returns:
        ``float32`` array, shape ``(frames, channels)``.

    Raises:
        ValueError: ``frames`` is negative, or ``channels`` or ``sample_rate`` is not
            positive, or a track has a non-positive rate.
    """
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    if channels <= 0 or sample_rate <= 0:
        raise ValueError(
            f"channels and sample_rate must be positive, got {channels} and {sample_rate}"
        )
    mix = np.zeros((frames, channels), dtype=np.float32)
    for track in tracks:
        if int(track.sample_rate) <= 0:
            raise ValueError(f"track sample_rate must be positive, got {track.sample_rate}")
        if frames:
            mix += render_track(track, start, frames, channels, sample_rate)
    return mix
