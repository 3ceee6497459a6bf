"""Display DSP without Qt: peak pyramids and spectrograms."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.dsp.peaks import BASE_BUCKET, build_pyramid
from workbench.dsp.spectrogram import compute_spectrogram, iter_spectrogram


def test_pyramid_envelope_bounds_the_signal_at_every_zoom() -> None:
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(1_000_000).astype(np.float32)
    pyramid = build_pyramid(signal)
    assert len(pyramid.levels) >= 4
    for start, stop, points in [(0, 1_000_000, 800), (1000, 200_000, 500), (5000, 5100, 800)]:
        positions, values = pyramid.envelope(start, stop, points)
        assert len(positions) == len(values)
        assert len(values) <= max(4 * points, stop - start)
        segment = signal[start:stop]
        # The envelope never misses the extremes of the range it covers.
        assert values.max() >= segment.max() - 1e-6
        assert values.min() <= segment.min() + 1e-6


def test_pyramid_fine_zoom_returns_raw_samples() -> None:
    signal = np.linspace(-1, 1, 10_000, dtype=np.float32)
    positions, values = build_pyramid(signal).envelope(100, 100 + BASE_BUCKET, 800)
    np.testing.assert_array_equal(values, signal[100 : 100 + BASE_BUCKET])
    np.testing.assert_array_equal(positions, np.arange(100, 100 + BASE_BUCKET))


def test_pyramid_downmixes_channels_and_handles_tiny_input() -> None:
    stereo = np.stack([np.ones(500), -np.ones(500)], axis=1).astype(np.float32)
    pyramid = build_pyramid(stereo)
    assert np.allclose(pyramid.samples, 0.0)
    assert build_pyramid(np.zeros(3, dtype=np.float32)).envelope(0, 3, 10)[1].shape == (3,)


def test_spectrogram_peak_at_the_tone_frequency() -> None:
    rate, freq = 16000, 1000.0
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)
    spec = compute_spectrogram(tone, rate, n_fft=1024)
    assert spec.image.shape[1] == 513
    peak_bin = int(np.argmax(spec.image[spec.image.shape[0] // 2]))
    assert abs(peak_bin * rate / 1024 - freq) <= rate / 1024
    # A full-scale sine reads close to 0 dBFS with the window's amplitude correction.
    assert spec.image.max() == pytest.approx(0.0, abs=1.5)
    assert spec.max_frequency == rate / 2


def test_spectrogram_columns_are_bounded_for_long_input() -> None:
    signal = np.random.default_rng(1).standard_normal(16000 * 600).astype(np.float32)
    gen = iter_spectrogram(signal, 16000, n_fft=512, max_columns=1000)
    steps = 0
    while True:
        try:
            next(gen)
            steps += 1
        except StopIteration as stop:
            spec = stop.value
            break
    assert spec.image.shape[0] <= 1000
    assert steps >= 2
    assert spec.stop_time == pytest.approx(600, rel=0.01)


def test_spectrogram_of_a_range() -> None:
    rate = 8000
    signal = np.zeros(rate * 4, dtype=np.float32)
    signal[rate * 2 : rate * 3] = 0.5
    spec = compute_spectrogram(signal, rate, n_fft=256, start=rate * 2, stop=rate * 3)
    assert spec.start_time == pytest.approx(2.0)
    assert spec.stop_time == pytest.approx(3.0, abs=0.05)
