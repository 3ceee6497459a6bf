"""The streaming WAV writer and the recorder: valid files at every moment, even after a kill."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import alsa_virtual
from workbench.audio.recorder import Recorder, StreamingWavWriter
from workbench.errors import AudioFileError

REPO = Path(__file__).resolve().parents[2]


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


def _noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (frames, channels)).astype(np.float32)


def test_file_is_a_complete_wav_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "take.wav"
    data = _noise(5000, 3)
    writer = StreamingWavWriter(path, 44100, 3)
    assert sf.info(path).frames == 0  # valid even before the first sample
    for start in range(0, 5000, 1234):
        writer.append(data[start : start + 1234])
        # Read while the writer still holds the file open, as a crash would leave it.
        read, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == 44100
        np.testing.assert_array_equal(read, data[: start + 1234])
    writer.close()
    writer.close()
    info = sf.info(path)
    assert (info.format, info.subtype, info.channels, info.frames) == ("WAV", "FLOAT", 3, 5000)
    with open(path, "rb") as handle:
        header = handle.read(94)
    # WAVE_FORMAT_IEEE_FLOAT with the fact chunk holding the frame count.
    assert struct.unpack_from("<H", header, 56)[0] == 3
    assert header[74:78] == b"fact" and struct.unpack_from("<I", header, 82)[0] == 5000


def test_samples_written_before_the_header_update_do_not_break_the_file(
    tmp_path: Path,
) -> None:
    # A kill between writing samples and rewriting the sizes leaves extra bytes after the
    # announced data; readers must still get exactly the announced frames.
    path = tmp_path / "cut.wav"
    data = _noise(1000, 2)
    writer = StreamingWavWriter(path, 16000, 2)
    writer.append(data)
    with open(path, "ab") as handle:
        handle.write(_noise(10, 2, seed=1).tobytes()[:-3])  # a torn, unannounced write
    read, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(read, data)
    writer.close()


def test_file_turns_into_rf64_instead_of_overflowing_4_gib(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    data = _noise(3000, 2)
    # The real limit is 4 GiB; lowered so the switch happens after a few KiB.
    writer = StreamingWavWriter(path, 8000, 2, riff_limit=10_000)
    for start in range(0, 3000, 500):
        writer.append(data[start : start + 500])
        read, _ = sf.read(path, dtype="float32")
        np.testing.assert_array_equal(read, data[: start + 500])
    writer.close()
    assert writer.is_rf64 and sf.info(path).format == "RF64"
    assert path.read_bytes()[:4] == b"RF64"


def test_writer_never_overwrites_and_rejects_wrong_shapes(tmp_path: Path) -> None:
    existing = tmp_path / "keep.wav"
    existing.write_bytes(b"precious")
    with pytest.raises(AudioFileError, match="already exists"):
        StreamingWavWriter(existing, 48000, 1)
    assert existing.read_bytes() == b"precious"
    writer = StreamingWavWriter(tmp_path / "new.wav", 48000, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        writer.append(np.zeros((10, 1), np.float32))
    writer.close()
    with pytest.raises(ValueError, match="positive"):
        StreamingWavWriter(tmp_path / "bad.wav", 0, 1)


def test_full_buffer_drops_whole_blocks_and_counts_them(tmp_path: Path) -> None:
    # The callback alone, before any writer drains: 1000 frames of room, 400-frame blocks.
    recorder = Recorder(tmp_path / "r.wav", 1000, 1, buffer_seconds=1.0)
    blocks = [np.full((400, 1), index, np.float32) for index in range(4)]
    for block in blocks:
        recorder.callback(block, 400, None, None)
    assert recorder.overflows == 2 and recorder.dropped_frames == 800
    np.testing.assert_array_equal(recorder._ring.read(1000)[:, 0], [0] * 400 + [1] * 400)
    recorder.discard()
    assert not recorder.path.exists()


@pytest.mark.audio
def test_killed_mid_recording_leaves_a_valid_wav_with_what_was_captured(
    tmp_path: Path,
) -> None:
    card = alsa_virtual.installed()
    captured = np.random.default_rng(9).integers(-32768, 32768, 24000).astype(np.int16)
    card.set_capture(captured)
    path = tmp_path / "killed.wav"
    script = textwrap.dedent(
        f"""
        import sys, time
        from workbench.audio.engine import AudioEngine, EngineConfig

        engine = AudioEngine(EngineConfig(latency=0.5))
        recorder = engine.start_recording({str(path)!r})
        while recorder.frames_written < {2 * captured.size}:
            time.sleep(0.001)
        print(recorder.frames_written, flush=True)
        time.sleep(60)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))  # ALSA_CONFIG_PATH comes from conftest
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        line = child.stdout.readline()
        assert line.strip(), "the recording child printed nothing"
        written_before_kill = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    recorded, rate = sf.read(path, dtype="float32")
    assert rate == 48000 and recorded.size >= written_before_kill
    as_int = recorded * 32768
    offset = alsa_virtual.find_signal(as_int, captured)
    np.testing.assert_array_equal(as_int[offset : offset + captured.size], captured)
