"""Enrolment clip checks on generated signals."""

from __future__ import annotations

import numpy as np

from workbench.speaker_checks import check_clip

RATE = 16000


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts of harmonic sound separated by quiet gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 3 * t) > 0.0).astype(float)
    return (0.3 * voice * envelope + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


def test_good_clip_passes() -> None:
    check = check_clip(_speechy(5.0), RATE)
    assert check.usable and not check.warnings
    assert 2.0 < check.speech_seconds < 3.5  # half the time is a gap


def test_short_speech_warns() -> None:
    check = check_clip(_speechy(2.0), RATE)
    assert check.usable and "Only" in check.warnings[0]


def test_silence_empty_and_nan_are_problems() -> None:
    assert not check_clip(np.zeros(RATE * 3), RATE).usable
    assert not check_clip(np.zeros(0), RATE).usable
    bad = _speechy(3.0)
    bad[5] = np.nan
    assert "invalid" in check_clip(bad, RATE).problems[0]


def test_clipping_warns_and_stereo_is_accepted() -> None:
    loud = np.clip(_speechy(5.0) * 10, -1, 1)
    check = check_clip(np.stack([loud, loud], 1), RATE)
    assert any("clipped" in w for w in check.warnings)
