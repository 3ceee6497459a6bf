"""The audio engine through real PortAudio streams on the virtual ALSA card, and without it.

The virtual card (tests/alsa_virtual.py) has no clock: it runs ~1000x faster than real time.
So the known signals sit at the start of the capture file and fit in the engine's buffers,
and playback checks compare what reached the output file with the silence taken out (the
callback writes zeros when it outruns the feeder, and counts them as underflows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import alsa_virtual
from workbench.audio.engine import (
    PORTAUDIO_MISSING,
    SOUNDDEVICE_MISSING,
    AudioEngine,
    EngineConfig,
    PlaybackState,
)
from workbench.audio.ringbuffer import RingBuffer
from workbench.errors import AudioDeviceError, AudioFileError
from workbench.session import Session, Track

REPO = Path(__file__).resolve().parents[2]
RATE = alsa_virtual.RATE
# Large PortAudio buffers: with small ones the clock-less card skips whole periods.
TEST_CONFIG = EngineConfig(latency=0.5, playback_buffer_seconds=0.5)


def _python_threads() -> set[threading.Thread]:
    # PortAudio's own thread shows up as a _DummyThread once it has run Python code.
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    before = _python_threads()
    yield
    deadline = time.monotonic() + 5.0
    while (left := _python_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


@pytest.fixture
def engine() -> Iterator[AudioEngine]:
    engine = AudioEngine(TEST_CONFIG)
    if not engine.available and engine.unavailable_reason == PORTAUDIO_MISSING:
        pytest.skip(engine.unavailable_reason)
    assert engine.available, engine.unavailable_reason
    yield engine
    engine.close()


@pytest.fixture
def card() -> alsa_virtual.VirtualAlsa:
    return alsa_virtual.installed()


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.002)


def _as_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples that are exact multiples of 1/32768 back to their int16 values."""
    scaled = samples * 32768.0
    assert np.array_equal(scaled, np.round(scaled)), "not an exact 16-bit value"
    return scaled.astype(np.int64)


def _nonsilent(out: np.ndarray) -> np.ndarray:
    """Output frames with the zero frames (priming, underflows, tail) removed."""
    return out[out.any(axis=1)]


def _signal_track(
    frames: int, channels: int, seed: int, rate: int = RATE
) -> tuple[Track, np.ndarray]:
    """A track whose samples are exact int16 values with no zero sample anywhere."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(1, 20000, (frames, channels)) * rng.choice([-1, 1], (frames, channels))
    return Track("signal", (ints / 32768).astype(np.float32), rate), ints.astype(np.int64)


# ---------------------------------------------------------------- ring buffer (no device)
def test_ring_buffer_wraps_refuses_partial_writes_and_tracks_positions() -> None:
    ring = RingBuffer(8, 2, with_positions=True)
    block = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert ring.write(block, start_position=100) == 6
    assert ring.write(block, start_position=0) == 0  # all or nothing: only 2 free
    out = np.zeros((4, 2), np.float32)
    assert ring.read_into(out) == 4 and ring.last_position == 104
    np.testing.assert_array_equal(out, block[:4])
    assert ring.write(block, start_position=500) == 6  # wraps around the end
    assert ring.readable == 8 and ring.writable == 0
    np.testing.assert_array_equal(ring.read(3), block[4:6].tolist() + [block[0].tolist()])
    assert ring.last_position == 501
    ring.flush()
    assert ring.readable == 0 and ring.read(10).shape == (0, 2)
    assert ring.frames_read == ring.frames_written == 12
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        ring.write(np.zeros((3, 3), np.float32))


# ---------------------------------------------------------------- without PortAudio
@pytest.mark.parametrize(
    ("raised", "message"),
    [("OSError('PortAudio library not found')", PORTAUDIO_MISSING),
     ("ImportError('No module named _sounddevice')", SOUNDDEVICE_MISSING)],
)  # fmt: skip
def test_engine_without_portaudio_reports_why_and_keeps_working(
    tmp_path: Path, raised: str, message: str
) -> None:
    # A real interpreter in which `import sounddevice` fails the way it does without
    # libportaudio2: a fake sounddevice.py first on the path.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text(f"raise {raised}\n")
    script = textwrap.dedent(
        f"""
        import json
        from workbench.audio.engine import AudioEngine
        from workbench.errors import AudioDeviceError
        from workbench.session import Track
        import numpy as np

        engine = AudioEngine()
        result = {{
            "available": engine.available,
            "reason": engine.unavailable_reason,
            "message": engine.availability_message,
            "details": engine.unavailable_details,
            "devices": [len(engine.input_devices()), len(engine.output_devices())],
            "defaults": [engine.default_input(), engine.default_output()],
            "status": [engine.status().playing, engine.status().underflows],
        }}
        for name, call in [
            ("play", lambda: engine.play([Track("t", np.zeros(8), 8000)], 8000, 1)),
            ("record", lambda: engine.start_recording({str(tmp_path / "r.wav")!r})),
        ]:
            try:
                call()
            except AudioDeviceError as exc:
                result[name] = exc.message
        engine.stop()
        engine.rescan()
        result["after_rescan"] = engine.available
        print(json.dumps(result))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(REPO)]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["available"] is False and result["after_rescan"] is False
    assert result["reason"] == result["message"] == message
    assert raised.split("(")[0] in result["details"]
    assert result["devices"] == [0, 0] and result["defaults"] == [None, None]
    assert result["status"] == [False, 0]
    assert result["play"] == message and result["record"] == message
    assert not (tmp_path / "r.wav").exists()


# ---------------------------------------------------------------- devices
@pytest.mark.audio
def test_devices_are_listed_and_rescan_finds_them_again(engine: AudioEngine) -> None:
    assert engine.availability_message == ""
    output, inputs = engine.default_output(), engine.input_devices()
    assert output is not None and output.name == "default" and output.hostapi == "ALSA"
    assert engine.default_input() in inputs
    assert output.max_output_channels >= alsa_virtual.PLAYBACK_CHANNELS
    names = [d.name for d in engine.output_devices()]
    engine.rescan()
    assert engine.available
    assert [d.name for d in engine.output_devices()] == names
    assert engine.default_output() is not None and engine.default_output().name == "default"


# ---------------------------------------------------------------- recording
@pytest.mark.audio
def test_recording_writes_exactly_what_the_device_captured(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa, tmp_path: Path
) -> None:
    signal = np.random.default_rng(7).integers(-32768, 32768, RATE // 2).astype(np.int16)
    card.set_capture(signal)
    path = tmp_path / "take.wav"
    recorder = engine.start_recording(path, sample_rate=RATE, channels=1)
    assert engine.is_recording and engine.status().recording
    _wait(lambda: recorder.frames_written >= 2 * signal.size)
    # The file is valid while recording: a copy taken now holds what was written so far.
    snapshot = tmp_path / "snapshot.wav"
    snapshot.write_bytes(path.read_bytes())
    assert engine.stop_recording() == path
    assert not engine.is_recording and recorder.state == "stopped" and recorder.error is None

    partial, rate = sf.read(snapshot, dtype="float32")
    recorded, rate = sf.read(path, dtype="float32")
    assert rate == RATE and recorded.ndim == 1
    assert sf.info(path).subtype == "FLOAT"
    assert recorded.size == recorder.frames_written >= partial.size >= 2 * signal.size
    np.testing.assert_array_equal(partial, recorded[: partial.size])
    captured = _as_int16(recorded)
    offset = alsa_virtual.find_signal(captured, signal)
    np.testing.assert_array_equal(captured[offset : offset + signal.size], signal)
    assert recorder.elapsed_seconds == pytest.approx(recorded.size / RATE)
    assert recorder.max_peak[0] == pytest.approx(np.abs(recorded).max())
    assert 0 < recorder.rms[0] <= recorder.max_peak[0]


@pytest.mark.audio
def test_lost_device_stops_the_recording_cleanly_and_keeps_the_file(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa, tmp_path: Path
) -> None:
    signal = np.arange(1, 4801, dtype=np.int16)
    card.set_capture(signal)
    recorder = engine.start_recording(tmp_path / "lost.wav")
    _wait(lambda: recorder.frames_written >= signal.size)
    # What PortAudio does when the device vanishes: the stream ends without being asked.
    recorder._stream.abort()
    _wait(lambda: recorder.error is not None)
    assert "unplugged" in recorder.error and recorder.state == "failed"
    assert not engine.is_recording
    assert engine.status().error == recorder.error
    path = engine.stop_recording()
    recorded, _ = sf.read(path, dtype="float32")
    assert recorded.size == recorder.frames_written >= signal.size
    np.testing.assert_array_equal(_as_int16(recorded[: signal.size]), signal)


@pytest.mark.audio
def test_recording_refuses_bad_requests_without_touching_files(
    engine: AudioEngine, tmp_path: Path
) -> None:
    existing = tmp_path / "keep.wav"
    existing.write_bytes(b"precious")
    with pytest.raises(AudioFileError, match="already exists"):
        engine.start_recording(existing)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(ValueError, match="positive"):
        engine.start_recording(tmp_path / "a.wav", channels=0)
    with pytest.raises(AudioDeviceError, match="no longer available"):
        engine.start_recording(tmp_path / "b.wav", device=10_000)
    with pytest.raises(AudioDeviceError, match="cannot record 999 channel"):
        engine.start_recording(tmp_path / "b.wav", channels=999)
    assert not (tmp_path / "b.wav").exists()
    recorder = engine.start_recording(tmp_path / "c.wav")
    with pytest.raises(AudioDeviceError, match="already running"):
        engine.start_recording(tmp_path / "d.wav")
    assert engine.stop_recording() == recorder.path
    with pytest.raises(AudioDeviceError, match="No recording"):
        engine.stop_recording()


# ---------------------------------------------------------------- playback
@pytest.mark.audio
def test_playback_writes_the_track_to_the_device_and_finishes_by_itself(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa
) -> None:
    track, expected = _signal_track(RATE // 5, 2, seed=1)
    engine.play([track], RATE, 2)
    _wait(lambda: engine.playback_state == PlaybackState.FINISHED)
    assert not engine.is_playing and engine.position_frames() == track.frames
    out = card.read_playback().astype(np.int64)
    played = _nonsilent(out)
    np.testing.assert_array_equal(played, expected)
    # Nothing lost and nothing inserted: it fit in the prefilled buffer.
    first = int(np.flatnonzero(out.any(axis=1))[0])
    np.testing.assert_array_equal(out[first : first + track.frames], expected)
    assert engine.status().underflows == 0


@pytest.mark.audio
def test_underflows_are_counted_and_no_audio_is_lost(
    card: alsa_virtual.VirtualAlsa,
) -> None:
    # A 20 ms buffer cannot keep ahead of a clock-less device: the callback must fill the
    # gaps with silence and count them, and every frame must still arrive, in order.
    track, expected = _signal_track(RATE // 4, 1, seed=2)
    config = EngineConfig(latency=0.5, playback_buffer_seconds=0.02, playback_block_frames=256)
    with AudioEngine(config) as engine:
        engine.play([track], RATE, 2)
        _wait(lambda: engine.playback_state == PlaybackState.FINISHED, timeout=30)
        status = engine.status()
        assert status.underflows > 0 and not status.playing
    played = _nonsilent(card.read_playback().astype(np.int64))
    np.testing.assert_array_equal(played, np.repeat(expected, 2, axis=1))
    engine.reset_counters()
    assert engine.status().underflows == 0


@pytest.mark.audio
def test_provider_is_asked_every_block_so_mute_applies_while_playing(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa
) -> None:
    track, expected = _signal_track(RATE // 5, 1, seed=3)
    session = Session()
    session.add(track)
    calls = []

    def audible() -> list[Track]:
        calls.append(1)
        if len(calls) == 4:  # the user mutes during the fourth block
            session.set_flags(track, muted=True)
        return session.audible_tracks()

    engine.play(audible, RATE, 1)
    _wait(lambda: engine.playback_state == PlaybackState.FINISHED)
    block = TEST_CONFIG.playback_block_frames
    played = _nonsilent(card.read_playback().astype(np.int64))
    np.testing.assert_array_equal(played[:, 0], expected[: 3 * block, 0])
    # Muted, it kept playing silence to the end of the longest track it had heard.
    assert engine.position_frames() == track.frames


@pytest.mark.audio
def test_pause_seek_resume_continue_from_the_new_frame(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa
) -> None:
    track, expected = _signal_track(10 * RATE, 1, seed=4)
    block = TEST_CONFIG.playback_block_frames
    gate = threading.Event()
    calls = []

    def provider() -> list[Track]:
        # Hold the feeder at block 30 so the test knows exactly what has been played.
        calls.append(1)
        if len(calls) == 30:
            gate.wait(10)
        return [track]

    engine.play(provider, RATE, 1, start_frame=1000)
    paused_at = 1000 + 29 * block
    _wait(lambda: engine.position_frames() == paused_at)
    engine.pause()
    assert engine.playback_state == PlaybackState.PAUSED and not engine.is_playing
    assert engine.position_frames() == paused_at
    engine.seek(RATE * 5)
    assert engine.position_frames() == RATE * 5
    gate.set()
    engine.resume()
    _wait(lambda: engine.playback_state == PlaybackState.FINISHED, timeout=60)
    assert engine.position_frames() == track.frames
    played = _nonsilent(card.read_playback().astype(np.int64))[:, 0]
    before = paused_at - 1000
    np.testing.assert_array_equal(played[:before], expected[1000:paused_at, 0])
    np.testing.assert_array_equal(played[before:], expected[RATE * 5 :, 0])


@pytest.mark.audio
def test_loop_region_repeats_until_stopped(
    engine: AudioEngine, card: alsa_virtual.VirtualAlsa
) -> None:
    track, expected = _signal_track(RATE // 10, 1, seed=5)
    loop = (1000, 3000)
    engine.play([track], RATE, 1, start_frame=200, loop=loop)  # outside: starts at 1000
    # The prefilled half second holds a dozen cycles; wait until the device has had them.
    _wait(lambda: engine.status().underflows > 0)
    engine.stop()
    assert engine.playback_state == PlaybackState.STOPPED
    played = _nonsilent(card.read_playback().astype(np.int64))[:, 0]
    cycle = expected[loop[0] : loop[1], 0]
    assert played.size >= 2 * cycle.size
    repeats = played.size // cycle.size
    np.testing.assert_array_equal(played[: repeats * cycle.size], np.tile(cycle, repeats))
    with pytest.raises(ValueError, match="start < end"):
        engine.play([track], RATE, 1, loop=(5, 5))


@pytest.mark.audio
def test_stop_is_immediate_and_everything_is_idempotent(engine: AudioEngine) -> None:
    track, _ = _signal_track(60 * RATE, 1, seed=6)
    engine.stop()
    engine.pause()
    engine.resume()
    engine.play([track], RATE, 2, start_frame=RATE)
    assert engine.is_playing
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 2.0
    assert engine.playback_state == PlaybackState.STOPPED
    assert RATE <= engine.position_frames() < track.frames
    engine.stop()
    engine.close()
    with pytest.raises(AudioDeviceError, match="no longer available"):
        engine.play([track], RATE, 2, device=10_000)
    with pytest.raises(AudioDeviceError, match="cannot play 999 channel"):
        engine.play([track], RATE, 999)
    with pytest.raises(ValueError, match="start_frame"):
        engine.play([track], RATE, 2, start_frame=-1)


@pytest.mark.audio
def test_a_track_that_cannot_be_mixed_fails_playback_in_plain_words(
    engine: AudioEngine,
) -> None:
    track, _ = _signal_track(30 * RATE, 1, seed=8)
    calls = []

    def provider() -> list[Track]:
        calls.append(1)
        if len(calls) > 40:
            raise RuntimeError("the track was unloaded")
        return [track]

    engine.play(provider, RATE, 1)
    _wait(lambda: engine.playback_state == PlaybackState.FAILED)
    assert "could not be mixed" in engine.playback_error
    assert engine.status().error == engine.playback_error
