"""Live mode through real PortAudio streams on the virtual ALSA card, with real (untrained)
models from the bundle library.

The virtual card (tests/alsa_virtual.py) has no clock: input arrives ~1000x faster than real
time, so the processor always falls behind there. That is what these tests rely on to see
the dropout counters move; exact checks (spectrogram columns, rolling scores) are made
without a device, on signals whose result can be computed independently.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests import alsa_virtual
from workbench.audio.engine import PORTAUDIO_MISSING, AudioEngine, EngineConfig
from workbench.audio.ringbuffer import RingBuffer
from workbench.errors import AudioDeviceError
from workbench.live import (
    FLOOR_DB,
    ColumnSpectrogram,
    LibraryModels,
    LiveModel,
    LivePipeline,
    LiveSettings,
    LiveVerification,
    LoadedProcessor,
    RollingVerifier,
)
from workbench.speaker_scoring import cosine
from workbench.speakers_db import EnrollmentClip, SpeakerDatabase

RATE = alsa_virtual.RATE
# Large PortAudio buffers: with small ones the clock-less card skips whole periods.
TEST_CONFIG = EngineConfig(latency=0.5)


def _python_threads() -> set[threading.Thread]:
    # PortAudio's own thread shows up as a _DummyThread once it has run Python code.
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    torch.set_num_threads(1)
    before = _python_threads()
    yield
    deadline = time.monotonic() + 5.0
    while (left := _python_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


class RecordingModels(LibraryModels):
    """The real model library, noting which threads run the processor."""

    def __init__(self) -> None:
        super().__init__()
        self.process_threads: set[int] = set()

    def processor(self, model: LiveModel, sample_rate: int, block_frames: int) -> LoadedProcessor:
        loaded = super().processor(model, sample_rate, block_frames)

        def process(block: np.ndarray) -> np.ndarray:
            self.process_threads.add(threading.get_ident())
            return loaded.process(block)

        return dataclasses.replace(loaded, process=process)


@pytest.fixture(scope="module")
def models() -> RecordingModels:
    return RecordingModels()  # shared: each model is built once for the module


@pytest.fixture
def engine() -> Iterator[AudioEngine]:
    engine = AudioEngine(TEST_CONFIG)
    if not engine.available and engine.unavailable_reason == PORTAUDIO_MISSING:
        pytest.skip(engine.unavailable_reason)
    assert engine.available, engine.unavailable_reason
    yield engine
    engine.close()


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def _speaker_model_name_and_dim() -> tuple[str, int]:
    from models.bundles import default_bundle

    bundle = default_bundle("speaker")
    return bundle.name, int(bundle.config["embedding_dim"])


def _default_trained(family: str) -> bool:
    """Whether the app's default bundle of ``family`` is trained (shipped) or a placeholder."""
    from models.bundles import default_bundle

    return default_bundle(family).trained


# ---------------------------------------------------------------- without a device
def test_a_reader_that_fell_behind_skips_the_oldest_frames() -> None:
    ring = RingBuffer(8, 1)
    ring.write(np.arange(6, dtype=np.float32)[:, None])
    assert ring.discard(4) == 4 and ring.readable == 2 and ring.writable == 6
    np.testing.assert_array_equal(ring.read(8)[:, 0], [4, 5])
    assert ring.discard(5) == 0
    ring.write(np.ones((3, 1), np.float32))
    ring.flush()  # a producer-side flush is honoured first
    assert ring.discard(10) == 0 and ring.frames_read == ring.frames_written == 9


def test_column_spectrogram_equals_a_whole_signal_stft_however_the_signal_is_split() -> None:
    rate = 16000
    rng = np.random.default_rng(1)
    time_axis = np.arange(rate) / rate
    signal = (np.sin(2 * np.pi * 1000 * time_axis) + 0.01 * rng.standard_normal(rate)).astype(
        np.float32
    )
    spectrogram = ColumnSpectrogram(rate)
    assert (spectrogram.n_fft, spectrogram.hop, spectrogram.bins) == (512, 256, 257)
    pieces, start = [], 0
    while start < signal.size:
        size = int(rng.integers(1, 700))
        pieces.append(spectrogram.push(signal[start : start + size]))
        start += size
    columns = np.concatenate(pieces)
    # Independent reference: every full frame at hop 256, periodic Hann, one rfft call.
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    count = (signal.size - 512) // 256 + 1
    frames = np.stack([signal[i * 256 : i * 256 + 512] for i in range(count)])
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)) * 2 / window.sum()
    expected = 20 * np.log10(np.maximum(magnitude, 10 ** (FLOOR_DB / 20)))
    assert columns.shape == (count, 257) and columns.dtype == np.float32
    np.testing.assert_allclose(columns, expected, atol=1e-2)  # float32 FFT near the floor
    # A full-scale sine reads 0 dB at its bin (1000 Hz = bin 32 at 31.25 Hz per bin).
    assert np.all(np.argmax(columns, axis=1) == 32)
    assert np.abs(columns[:, 32]).max() < 0.1
    with pytest.raises(ValueError, match=r"\(frames,\)"):
        spectrogram.push(np.zeros((4, 2), np.float32))


def test_rolling_scores_fall_every_half_second_and_equal_an_independent_computation(
    models: RecordingModels,
) -> None:
    rate = 16000
    loaded = models.verifier(LiveVerification(speaker="x"))
    rng = np.random.default_rng(2)
    signal = (0.1 * rng.standard_normal(int(4.2 * rate))).astype(np.float32)
    voiceprint = rng.standard_normal(_speaker_model_name_and_dim()[1]).astype(np.float32)
    rolling = RollingVerifier(loaded.embed, voiceprint, rate, threshold=0.0)
    points, start = [], 0
    while start < signal.size:
        size = int(rng.integers(100, 5000))
        points += rolling.push(signal[start : start + size])
        start += size
    times = [p.time_seconds for p in points]
    assert times == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]  # from 1 s of audio, every 0.5 s
    for point in points:
        end = round(point.time_seconds * rate)
        window = signal[max(0, end - 3 * rate) : end]
        expected = cosine(voiceprint, loaded.embed(window, rate))
        assert point.score == pytest.approx(expected, abs=1e-5)
        assert point.window_seconds == pytest.approx(window.size / rate)
        assert point.accepted == (point.score >= 0.0) and -1.0 <= point.score <= 1.0
    # Skipped audio moves the schedule on to the next multiple of 0.5 s after the gap.
    after_gap = rolling.push(signal[: rate // 2], end_position=round(10.2 * rate))
    assert [p.time_seconds for p in after_gap] == [10.0]


@pytest.mark.parametrize(
    ("family", "prompt", "expected_names", "played"),
    [
        ("live", "speech", ("speech", "noise"), "speech"),
        ("tuss", "drums", ("1_drums",), "1_drums"),
        ("mtass", "speech", ("speech", "music", "noise"), "speech"),
        ("speech", "speech", ("speaker1", "speaker2"), "speaker1"),
    ],
)
def test_every_live_family_streams_blocks_with_its_stated_delay(
    models: RecordingModels,
    family: str,
    prompt: str,
    expected_names: tuple[str, ...],
    played: str,
) -> None:
    rate, block = 16000, 512
    processor = models.processor(LiveModel(family=family, prompt=prompt), rate, block)
    assert processor.names == expected_names
    assert processor.names[processor.output_index] == played
    trained = _default_trained(family)
    assert processor.trained is trained and ("untrained" in processor.label) is not trained
    if family == "live":
        # Causal and stateful: only the 32-sample encoder window of lookahead.
        assert processor.latency_samples == 32
    else:
        assert processor.latency_samples >= rate  # non-causal: about one 2 s chunk
    # Past the stated delay: 0.5 s for the causal model (CPU-heavy), 3.2 s for the others.
    blocks = 16 if family == "live" else 100
    signal = (0.1 * np.random.default_rng(3).standard_normal(blocks * block)).astype(np.float32)
    outputs = [processor.process(signal[i : i + block]) for i in range(0, signal.size, block)]
    assert all(o.shape == (len(expected_names), block) for o in outputs)
    joined = np.concatenate(outputs, axis=1)
    delay = processor.latency_samples
    assert not joined[:, :delay].any()  # nothing before the stated delay...
    assert joined[:, delay:].any()  # ...and the model's output after it
    with pytest.raises(ValueError, match="no output 'guitar'"):
        models.processor(LiveModel(family=family, prompt=prompt, output="guitar"), rate, block)


def test_bad_settings_are_refused_naming_the_field() -> None:
    for settings, message in [
        (LiveSettings(model=LiveModel(family="karaoke")), "Unknown live model family"),
        (LiveSettings(model=LiveModel(family="tuss", prompt="kazoo")), "one prompt"),
        (LiveSettings(block_seconds=0.0), "block_seconds"),
        (LiveSettings(sample_rate=100), "sample_rate"),
        (LiveSettings(model=LiveModel(device="tpu")), "device"),
        (
            LiveSettings(verification=LiveVerification(speaker="a", every_seconds=5.0)),
            "every_seconds <= window_seconds",
        ),
        (
            LiveSettings(verification=LiveVerification(speaker="a", source="output")),
            "needs a model",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            settings.validate()


# ---------------------------------------------------------------- on the virtual card
@pytest.mark.audio
def test_live_enhancement_runs_off_the_callback_and_reports_sane_numbers(
    engine: AudioEngine, models: RecordingModels, tmp_path: Path
) -> None:
    card = alsa_virtual.installed()
    signal = np.random.default_rng(4).integers(-20000, 20000, RATE // 2).astype(np.int16)
    card.set_capture(signal)
    pipeline = LivePipeline(engine, models)
    settings = LiveSettings(
        sample_rate=RATE,
        record_folder=str(tmp_path),
        save_output=True,
        model=LiveModel(family="live", device="cpu"),
    )
    models.process_threads.clear()
    pipeline.start(settings)
    assert pipeline.state == "loading" and pipeline.is_active
    with pytest.raises(AudioDeviceError, match="already running"):
        pipeline.start(settings)
    input_columns, output_columns = [], []

    def enough() -> bool:
        input_columns.append(pipeline.read_columns("input"))
        output_columns.append(pipeline.read_columns("output"))
        assert pipeline.state != "failed", pipeline.error
        return pipeline.stats().blocks_processed >= 5

    _wait(enough)
    stream = engine.block_stream
    assert stream is not None and stream.is_running
    callback_threads = {stream.input_callback_thread, stream.output_callback_thread}
    processor_thread = pipeline.processing_thread.ident
    files = pipeline.stop()
    stats = pipeline.stats()

    # The model ran on the processing thread only: never in a callback, never on this one.
    assert 0 not in callback_threads
    assert models.process_threads == pipeline.processing_threads == {processor_thread}
    assert not models.process_threads & callback_threads
    assert threading.get_ident() not in models.process_threads

    columns_in, columns_out = np.concatenate(input_columns), np.concatenate(output_columns)
    bins = ColumnSpectrogram(RATE).bins
    assert columns_in.shape[1] == columns_out.shape[1] == bins
    assert columns_in.shape[0] >= 5 and columns_out.shape[0] >= 5
    for columns in (columns_in, columns_out):
        assert np.isfinite(columns).all() and columns.min() >= FLOOR_DB and columns.max() < 20

    block = settings.block_frames
    processor = pipeline.processor
    assert processor is not None and stats.trained is _default_trained("live")
    assert ("untrained" in stats.model_label) is not stats.trained
    assert stats.state == "idle" and stats.error is None and stats.output_name == "speech"
    assert stats.block_ms == pytest.approx(32.0)
    assert stats.model_latency_ms == pytest.approx(1000 * processor.latency_samples / RATE)
    # Output margin = one block + one block of processing allowance, then the model delay.
    assert stats.algorithmic_latency_ms == pytest.approx(
        1000 * (2 * block + processor.latency_samples) / RATE
    )
    assert stats.device_latency_ms == pytest.approx(
        1000 * (stream.input_latency + stream.output_latency)
    )
    assert stats.device_latency_ms > 0
    assert stats.blocks_processed >= 5
    assert 0 < stats.processing_mean_ms <= stats.processing_p99_ms
    assert stats.processing_mean_fraction == pytest.approx(stats.processing_mean_ms / 32.0)
    assert stats.processing_p99_fraction == pytest.approx(stats.processing_p99_ms / 32.0)
    assert 0 <= stats.late_blocks <= stats.blocks_processed
    parts = (
        stats.input_overflows,
        stats.output_underflows,
        stats.skipped_blocks,
        stats.output_overflows,
    )
    assert min(parts) >= 0 and stats.dropouts == sum(parts)
    # The clock-less card delivers input ~1000x faster than real time: the processor must
    # have fallen behind, and that has to show in the counters.
    assert stats.skipped_blocks + stats.input_overflows > 0
    assert stats.stream_seconds > stats.blocks_processed * 0.032

    # Everything captured was saved: the input as it arrived, the processed output per block.
    assert files.input_path is not None and files.input_path.parent == tmp_path
    recorded, rate = sf.read(files.input_path, dtype="float32")
    assert rate == RATE and recorded.ndim == 1 and recorded.size >= signal.size
    captured = np.round(recorded * 32768).astype(np.int64)
    offset = alsa_virtual.find_signal(captured, signal)
    np.testing.assert_array_equal(captured[offset : offset + signal.size], signal)
    assert files.output_path is not None and files.output_path.name.endswith("-live.wav")
    processed, rate = sf.read(files.output_path, dtype="float32")
    assert rate == RATE and processed.size == stats.blocks_processed * block
    assert np.isfinite(processed).all() and processed[processor.latency_samples :].any()
    assert card.read_playback().any()  # processed audio reached the output device
    assert engine.block_stream is None
    assert pipeline.stop().input_path == files.input_path  # idempotent


@pytest.mark.audio
def test_live_verification_scores_an_enrolled_speaker_every_half_second(
    engine: AudioEngine, models: RecordingModels, tmp_path: Path
) -> None:
    model_name, dim = _speaker_model_name_and_dim()
    database_path = tmp_path / "speakers.sqlite3"
    with SpeakerDatabase(database_path) as database:
        voiceprint = np.random.default_rng(5).standard_normal(dim).astype(np.float32)
        database.enroll("ada", model_name, [EnrollmentClip(voiceprint, "synthetic", 3.0, 3.0)])
        database.set_threshold(model_name, 0.1)
    alsa_virtual.installed().set_capture(
        np.random.default_rng(6).integers(-8000, 8000, RATE).astype(np.int16)
    )
    pipeline = LivePipeline(engine, models)
    check = LiveVerification(speaker="ada", database=str(database_path))
    pipeline.start(LiveSettings(sample_rate=16000, record_folder=str(tmp_path), verification=check))
    _wait(lambda: len(pipeline.scores()) >= 3 or pipeline.verification.state == "failed")
    status = pipeline.verification
    points = pipeline.scores()
    files = pipeline.stop()
    assert status.state == "running", status.error
    assert status.speaker == "ada" and status.threshold == pytest.approx(0.1)
    assert status.calibrated and status.trained is _default_trained("speaker")
    times = [p.time_seconds for p in points]
    assert times == sorted(set(times))
    for point in points:
        assert point.time_seconds * 2 == pytest.approx(round(point.time_seconds * 2))
        assert -1.0 <= point.score <= 1.0 and point.accepted == (point.score >= 0.1)
        assert 1.0 <= point.window_seconds <= 3.0
    # Every score was also saved, as it came, next to the input recording.
    assert files.scores_path is not None and files.scores_path.parent == tmp_path
    saved = np.loadtxt(files.scores_path, delimiter=",", comments="#", skiprows=2, ndmin=2)
    assert "speaker=ada" in files.scores_path.read_text().splitlines()[0]
    assert saved.shape[0] >= len(points)
    np.testing.assert_allclose(saved[: len(points), 0], times, atol=1e-3)
    np.testing.assert_allclose(saved[: len(points), 1], [p.score for p in points], atol=1e-6)
    np.testing.assert_array_equal(saved[: len(points), 2], [p.accepted for p in points])

    # A speaker without a voiceprint from this model fails verification, not live mode.
    pipeline.start(
        LiveSettings(
            sample_rate=16000,
            record_folder=str(tmp_path),
            verification=dataclasses.replace(check, speaker="bob"),
        )
    )
    _wait(lambda: pipeline.verification.state == "failed")
    assert "bob" in (pipeline.verification.error or "")
    _wait(lambda: pipeline.stats().blocks_processed > 0)
    assert pipeline.state == "running"
    files = pipeline.stop()
    assert files.input_path is not None and files.output_path is None
    assert files.scores_path is None  # verification never ran: no scores file
    assert sf.info(files.input_path).samplerate == 16000


@pytest.mark.audio
def test_a_model_that_cannot_load_fails_plainly_and_leaves_no_files(
    engine: AudioEngine, models: RecordingModels, tmp_path: Path
) -> None:
    pipeline = LivePipeline(engine, models)
    pipeline.start(
        LiveSettings(
            sample_rate=16000,
            record_folder=str(tmp_path),
            save_output=True,
            model=LiveModel(family="mtass", output="guitar"),
        )
    )
    _wait(lambda: pipeline.state == "failed")
    assert "could not be loaded" in (pipeline.error or "") and "guitar" in pipeline.error
    files = pipeline.stop()
    assert pipeline.state == "failed" and pipeline.stats().error == pipeline.error
    # Nothing was captured or processed, so no (empty) recording is left behind.
    assert files.input_path is None and files.output_path is None
    assert list(tmp_path.iterdir()) == []
    # The devices are free again and a new run starts.
    stream = engine.open_block_stream(16000, play_output=False)
    stream.stop()
