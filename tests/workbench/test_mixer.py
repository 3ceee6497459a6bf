"""The playback mixer: solo/mute/A-B through the session, gain, channel maps, rates, blocks."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.audio.mixer import map_channels, output_length, render_mix
from workbench.session import Session, Track


def _noise(frames: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)


def _sine(frequency: float, rate: int, frames: int) -> np.ndarray:
    return np.sin(2 * np.pi * frequency * np.arange(frames) / rate)


@pytest.fixture
def session() -> Session:
    session = Session()
    session.add(Track("mix", _noise(4000, 2, 0), 16000))
    session.add(Track("vocals", _noise(4000, 2, 1), 16000, kind="stem", muted=True))
    session.add(Track("drums", _noise(3000, 2, 2), 16000, kind="stem", muted=True))
    return session


def test_solo_mute_gain_and_ab_select_what_is_mixed(session: Session) -> None:
    mix, vocals, drums = session.tracks

    def render() -> np.ndarray:
        return render_mix(session.audible_tracks(), 0, 4000, 2, 16000)

    np.testing.assert_array_equal(render(), mix.samples)
    session.set_flags(vocals, solo=True, gain=0.5)
    np.testing.assert_array_equal(render(), vocals.samples * np.float32(0.5))
    session.set_flags(drums, solo=True)
    expected = vocals.samples * np.float32(0.5)
    expected[:3000] += drums.samples
    np.testing.assert_allclose(render(), expected, atol=1e-7)
    session.set_ab(True)  # A: the mixture alone, flags untouched
    np.testing.assert_array_equal(render(), mix.samples)
    session.set_ab(False)
    session.set_flags(vocals, solo=False)
    session.set_flags(drums, solo=False)
    session.set_flags(mix, muted=True)
    assert not render().any()


def test_channel_mapping_repeats_up_and_averages_down() -> None:
    block = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    np.testing.assert_array_equal(map_channels(block[:, :1], 3), [[1, 1, 1], [4, 4, 4]])
    np.testing.assert_array_equal(map_channels(block[:, :2], 4), [[1, 2, 1, 2], [4, 5, 4, 5]])
    np.testing.assert_array_equal(map_channels(block[:, :2], 1), [[1.5], [4.5]])
    np.testing.assert_array_equal(map_channels(block, 2), [[2, 2], [5, 5]])  # (1+3)/2, 2
    assert map_channels(block, 3) is block


def test_mono_track_reaches_every_output_channel_with_its_gain() -> None:
    track = Track("mono", _noise(500, 1, 3), 8000, gain=2.0)
    out = render_mix([track], 0, 500, 4, 8000)
    assert out.shape == (500, 4) and out.dtype == np.float32
    for channel in range(4):
        np.testing.assert_array_equal(out[:, channel], track.samples[:, 0] * 2)


def test_same_rate_blocks_join_exactly_and_pad_with_silence() -> None:
    track = Track("t", _noise(1000, 2, 4), 16000)
    whole = render_mix([track], -100, 1300, 2, 16000)
    assert not whole[:100].any() and not whole[1100:].any()
    np.testing.assert_array_equal(whole[100:1100], track.samples)
    pieces, start = [], -100
    for size in (7, 256, 1, 333, 703):
        pieces.append(render_mix([track], start, size, 2, 16000))
        start += size
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize(("track_rate", "output_rate"), [(44100, 48000), (48000, 16000)])
def test_resampled_blocks_are_continuous(track_rate: int, output_rate: int) -> None:
    track = Track("t", _noise(track_rate // 10, 2, 5), track_rate)
    frames = output_length([track], output_rate) + 50
    whole = render_mix([track], 0, frames, 2, output_rate)
    pieces, start = [], 0
    for size in (1, 999, 64, 3, frames):
        size = min(size, frames - start)
        pieces.append(render_mix([track], start, size, 2, output_rate))
        start += size
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6, rtol=0)


def test_resampling_keeps_a_tone_and_removes_what_the_output_cannot_hold() -> None:
    # 1 kHz at 44.1 kHz played at 48 kHz: the same 1 kHz sine, to -80 dB away from the edges.
    tone = Track("tone", _sine(1000, 44100, 44100)[:, None].astype(np.float32), 44100)
    out = render_mix([tone], 0, 48000, 1, 48000)[:, 0]
    expected = _sine(1000, 48000, 48000)
    assert np.max(np.abs(out[200:-200] - expected[200:-200])) < 1e-4
    # 3 kHz + 12 kHz at 96 kHz played at 16 kHz: 12 kHz is above the new Nyquist (8 kHz)
    # and must not fold back to 4 kHz; 3 kHz survives.
    both = (_sine(3000, 96000, 96000) + _sine(12000, 96000, 96000)).astype(np.float32)
    out = render_mix([Track("two", both[:, None], 96000)], 0, 16000, 1, 16000)[500:-500, 0]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    bin_hz = 16000 / out.size
    assert spectrum[round(4000 / bin_hz)] < 1e-3 * spectrum[round(3000 / bin_hz)]
    # Resampling keeps the timeline: the track lasts as long in output frames.
    assert output_length([tone], 48000) == 48000


def test_tracks_at_different_rates_mix_on_one_timeline() -> None:
    slow = Track("slow", np.full((8000, 1), 0.25, np.float32), 8000)
    fast = Track("fast", np.full((16000, 1), 0.5, np.float32), 16000)
    out = render_mix([slow, fast], 0, 16000, 1, 16000)
    np.testing.assert_allclose(out[100:-100, 0], 0.75, atol=2e-3)  # ringing only at edges


def test_float64_tracks_render_as_float32() -> None:
    track = Track("wide", np.linspace(-1, 1, 100)[:, None], 8000)
    assert track.samples.dtype == np.float64
    out = render_mix([track], 0, 100, 1, 8000)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], np.linspace(-1, 1, 100), atol=1e-7)


def test_bad_arguments_raise_value_errors_naming_the_problem() -> None:
    track = Track("t", np.zeros((10, 1), np.float32), 8000)
    with pytest.raises(ValueError, match="frames"):
        render_mix([track], 0, -1, 1, 8000)
    with pytest.raises(ValueError, match="channels and sample_rate"):
        render_mix([track], 0, 10, 0, 8000)
    with pytest.raises(ValueError, match=r"\(frames, channels\)"):
        map_channels(np.zeros(4, np.float32), 2)
    assert render_mix([], 0, 0, 2, 8000).shape == (0, 2)
