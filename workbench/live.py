"""Live mode: scrolling spectrograms, live separation / enhancement and rolling verification.

This module is the non-view half of live mode; :mod:`workbench.views.live_panel` is the
other. The panel never imports this module (views may not reach the model library, not even
indirectly): the app builds a :class:`LivePipeline` and hands it to the panel, which only
calls its methods and reads its plain attributes.

Threads and who owns what::

    PortAudio input callback --copy--> input ring ---------+      (workbench.audio.engine)
            |                                               |
            +--copy--> recorder ring --> recorder writer --> input WAV (always)
                                                            v
    "live-processor" thread: block of B frames -> model (StreamingSeparator) -> output ring
            |        -> spectrogram columns (input, output) -> column rings -> GUI QTimer
            |        -> processed output WAV (optional)
            +--copy--> verification ring --> "live-verifier" thread -> rolling scores
    PortAudio output callback <--copy-- output ring

The callbacks only copy (see :class:`workbench.audio.engine.BlockStream`); models, FFTs and
file writes run on the two threads above; the GUI only drains the column rings and reads
counters from a ``QTimer``. Every ring has one producer and one consumer.

Latency. The output ring starts with ``P`` frames of silence (one block plus a safety margin
for the processing time), and the streaming separator delays its output by exactly ``L``
samples (:attr:`models.inference.StreamingSeparator.latency_samples`: chunking, lookahead,
resampling margins), so an input sample is played ``P + L`` samples after it was captured as
long as nothing drops: that is the *algorithmic latency* reported. The sound card's own
buffers (``device latency``, as PortAudio reports it) come on top.

Dropouts. ``input overflows`` (the device or a full input ring lost input) + ``output
underflows`` (the output callback found too little processed audio) + ``skipped blocks`` (the
processor fell more than ``max_backlog_seconds`` behind and jumped ahead, dropping the backlog
so latency cannot grow without bound) + ``output overflows`` (processed blocks the output
ring had no room for).

Until trained bundles ship, :func:`models.bundles.default_bundle` gives untrained
placeholders; :attr:`LiveStats.trained` says so and the panel marks them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workbench.audio.engine import AudioEngine, BlockStream
from workbench.audio.recorder import StreamingWavWriter
from workbench.audio.ringbuffer import RingBuffer
from workbench.errors import AudioDeviceError, AudioFileError, WorkbenchError
from workbench.paths import recordings_dir
from workbench.separation_request import PROMPTS
from workbench.speaker_scoring import cosine
from workbench.speakers_db import SpeakerDatabase

log = logging.getLogger(__name__)

#: Model families live mode offers: key -> label. ``none`` shows the input spectrogram only.
FAMILIES: dict[str, str] = {
    "none": "Off (spectrogram and recording only)",
    "live": "Live enhancement (causal Conv-TasNet, low latency)",
    "tuss": "TUSS — one prompt",
    "mtass": "MTASS — speech output",
    "speech": "Speech separator (Conv-TasNet family)",
}
#: Outputs of each family's default bundle, the one played first.
FAMILY_OUTPUTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "live": ("speech", "noise"),
    "tuss": (),
    "mtass": ("speech", "music", "noise"),
    "speech": ("speaker1", "speaker2"),
}
#: Threshold used when neither the database nor the bundle has a calibrated one (cosine).
UNCALIBRATED_THRESHOLD = 0.5
#: Left context of causal models in live mode (seconds). Longer is closer to offline output
#: but every chunk re-runs the model over it, so CPU cost grows with it.
LIVE_CAUSAL_CONTEXT_SECONDS = 0.25
#: Spectrogram floor, dB relative to full scale.
FLOOR_DB = -100.0
#: Recent block times kept for the mean and p99.
TIMING_WINDOW = 512
#: Rolling scores kept for the plot.
SCORE_HISTORY = 600
#: Seconds of spectrogram columns the rings hold between two GUI drains.
COLUMN_BUFFER_SECONDS = 4.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LiveModel:
    """Which model processes the live input.

    Attributes:
        family: A key of :data:`FAMILIES`.
        bundle: Bundle name or path; empty for the family's default bundle.
        prompt: TUSS only: the one prompt (a TUSS prompt name).
        output: Output to play and show (``"speech"``, ``"speaker2"``...); empty for the
            family's first output (``speech`` for ``live`` and ``mtass``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        chunk_seconds: Separator chunk length; ``None``: one block for causal models, the
            streaming default (about 2 s) for the others.
        context_seconds: Left context of causal models; ``None``:
            :data:`LIVE_CAUSAL_CONTEXT_SECONDS`.
    """

    family: str = "none"
    bundle: str = ""
    prompt: str = "speech"
    output: str = ""
    device: str = "auto"
    chunk_seconds: float | None = None
    context_seconds: float | None = None


@dataclass(frozen=True)
class LiveVerification:
    """Rolling verification against an enrolled speaker.

    Attributes:
        speaker: Enrolled name; empty turns verification off.
        bundle: Speaker-model bundle name or path; empty for the default. The database must
            hold a voiceprint of ``speaker`` made by this bundle.
        database: Speaker database file; empty for the default location.
        every_seconds: A score every this much audio.
        window_seconds: Each score covers the last this much audio.
        min_seconds: No score before the window holds this much audio.
        source: ``"input"`` (the microphone) or ``"output"`` (the processed audio).
        threshold: Override; ``None`` uses the database's, then the bundle's, then
            :data:`UNCALIBRATED_THRESHOLD`.
    """

    speaker: str = ""
    bundle: str = ""
    database: str = ""
    every_seconds: float = 0.5
    window_seconds: float = 3.0
    min_seconds: float = 1.0
    source: str = "input"
    threshold: float | None = None


@dataclass(frozen=True)
class LiveSettings:
    """Everything one live run uses. Views change it with ``dataclasses.replace``.

    Attributes:
        input_device: Input device index; ``None`` for the default.
        output_device: Output device index; ``None`` for the default.
        play_output: Play the processed audio (ignored for the ``none`` family).
        sample_rate: Rate of the streams, Hz (models resample internally).
        block_seconds: Processing block length.
        safety_seconds: Output margin for processing time; ``None``: one block. The processor
            keeps up without underflows while a block takes less than this.
        max_backlog_seconds: A processor this far behind skips ahead (counted as dropouts).
        input_buffer_seconds: Input ring capacity.
        record_folder: Where the WAV files go; empty for the recordings folder.
        save_output: Also write the processed output to a WAV file.
        latency: PortAudio latency hint; ``None`` uses the engine's.
        model: The model (see :class:`LiveModel`).
        verification: Rolling verification (see :class:`LiveVerification`).
    """

    input_device: int | None = None
    output_device: int | None = None
    play_output: bool = True
    sample_rate: int = 48000
    block_seconds: float = 0.032
    safety_seconds: float | None = None
    max_backlog_seconds: float = 0.25
    input_buffer_seconds: float = 2.0
    record_folder: str = ""
    save_output: bool = False
    latency: str | float | None = None
    model: LiveModel = field(default_factory=LiveModel)
    verification: LiveVerification = field(default_factory=LiveVerification)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if isinstance(self.sample_rate, bool) or int(self.sample_rate) != self.sample_rate:
            raise ValueError(f"sample_rate must be an integer (Hz), got {self.sample_rate!r}")
        if not 4000 <= self.sample_rate <= 384000:
            raise ValueError(f"sample_rate must be 4000..384000 Hz, got {self.sample_rate}")
        if not 0.001 <= self.block_seconds <= 1.0:
            raise ValueError(f"block_seconds must be 0.001..1.0, got {self.block_seconds}")
        for name in ("max_backlog_seconds", "input_buffer_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.safety_seconds is not None and self.safety_seconds < 0:
            raise ValueError(f"safety_seconds must be >= 0, got {self.safety_seconds}")
        model = self.model
        if model.family not in FAMILIES:
            raise ValueError(
                f"Unknown live model family '{model.family}'. Valid: {', '.join(FAMILIES)}."
            )
        if model.family == "tuss" and model.prompt not in PROMPTS:
            raise ValueError(
                f"TUSS in live mode takes one prompt from {', '.join(PROMPTS)}; "
                f"got '{model.prompt}'."
            )
        if model.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got '{model.device}'")
        for name in ("chunk_seconds", "context_seconds"):
            value = getattr(model, name)
            if value is not None and not value >= 0:
                raise ValueError(f"model.{name} must be >= 0 seconds, got {value}")
        check = self.verification
        if check.speaker:
            if not 0 < check.every_seconds <= check.window_seconds:
                raise ValueError(
                    "verification needs 0 < every_seconds <= window_seconds, got "
                    f"{check.every_seconds} and {check.window_seconds}"
                )
            if not 0 < check.min_seconds <= check.window_seconds:
                raise ValueError(
                    "verification needs 0 < min_seconds <= window_seconds, got "
                    f"{check.min_seconds} and {check.window_seconds}"
                )
            if check.source not in ("input", "output"):
                raise ValueError(f"verification source must be input or output, not {check.source}")
            if check.source == "output" and model.family == "none":
                raise ValueError("Verifying the processed output needs a model; choose one.")

    @property
    def block_frames(self) -> int:
        return max(1, round(self.block_seconds * self.sample_rate))


# --------------------------------------------------------------------------- spectrogram


def auto_fft_size(sample_rate: int) -> int:
    """A power of two near 32 ms: 512 at 16 kHz, 2048 at 48 kHz."""
    return int(2 ** round(math.log2(max(sample_rate * 0.032, 64))))


class ColumnSpectrogram:
    """Incremental log-magnitude spectrogram: feed samples, get the finished columns.

    Hann window, hop ``n_fft // 2``; values in dB relative to a full-scale sine, floored at
    :data:`FLOOR_DB`. Columns come out exactly as a whole-signal STFT (no padding) would
    produce them, however the signal is split.

    Args:
        sample_rate: Samples per second.
        n_fft: FFT size; 0 picks :func:`auto_fft_size`.
    """

    def __init__(self, sample_rate: int, n_fft: int = 0) -> None:
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft) or auto_fft_size(self.sample_rate)
        if self.n_fft < 4:
            raise ValueError(f"n_fft must be at least 4, got {self.n_fft}")
        self.hop = self.n_fft // 2
        self.bins = self.n_fft // 2 + 1
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)  # periodic
        self._scale = 2.0 / float(self.window.sum())
        self._pending = np.zeros(0, dtype=np.float32)

    @property
    def columns_per_second(self) -> float:
        return self.sample_rate / self.hop

    @property
    def max_frequency(self) -> float:
        return self.sample_rate / 2

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add mono samples.

        Args:
            samples: Shape ``(frames,)``.

        Returns:
            New columns, shape ``(columns, n_fft // 2 + 1)``, float32 dB (possibly 0 rows).
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must have shape (frames,), got {samples.shape}")
        buffer = np.concatenate((self._pending, samples)) if self._pending.size else samples
        if buffer.size < self.n_fft:
            self._pending = buffer.copy()
            return np.zeros((0, self.bins), dtype=np.float32)
        count = (buffer.size - self.n_fft) // self.hop + 1
        frames = np.lib.stride_tricks.sliding_window_view(buffer, self.n_fft)[:: self.hop][:count]
        magnitude = np.abs(np.fft.rfft(frames * self.window, axis=1)) * self._scale
        self._pending = buffer[count * self.hop :].copy()
        decibels = 20.0 * np.log10(np.maximum(magnitude, 10.0 ** (FLOOR_DB / 20.0)))
        # Clamp after the cast too: float32 rounding must not dip below the floor.
        return np.maximum(decibels.astype(np.float32), np.float32(FLOOR_DB))


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class LoadedProcessor:
    """A streaming model ready for blocks.

    Attributes:
        process: ``process(block (frames,)) -> (num_outputs, frames)``, delayed by
            ``latency_samples``; called from the processing thread only.
        names: Output names in order.
        output_index: The output that is played, shown and saved.
        latency_samples: Delay of the output behind the input at the stream rate.
        label: Bundle name (and preset) for the panel.
        trained: False for an untrained placeholder.
    """

    process: Callable[[np.ndarray], np.ndarray]
    names: tuple[str, ...]
    output_index: int
    latency_samples: int
    label: str
    trained: bool


@dataclass(frozen=True)
class LoadedVerifier:
    """A speaker model ready to embed windows.

    Attributes:
        embed: ``embed(waveform (frames,), sample_rate) -> (embedding_dim,)``.
        model_name: Name the speaker database files voiceprints under (the bundle name).
        label: For the panel.
        trained: False for an untrained placeholder.
        threshold: The bundle's calibrated threshold, if any.
    """

    embed: Callable[[np.ndarray, int], np.ndarray]
    model_name: str
    label: str
    trained: bool
    threshold: float | None


class ModelProvider(Protocol):
    """Loads models for live mode (called on the pipeline's threads, never the GUI's)."""

    def processor(self, model: LiveModel, sample_rate: int, block_frames: int) -> LoadedProcessor:
        """A streaming processor for ``model`` at ``sample_rate``."""
        ...

    def verifier(self, verification: LiveVerification) -> LoadedVerifier:
        """The speaker model for ``verification``."""
        ...


class LibraryModels:
    """The default :class:`ModelProvider`: :mod:`models.bundles` and :mod:`models.inference`.

    The model library is imported on first use, on the pipeline's loading thread, so the
    window opens without importing torch. Built models are cached per bundle and device, so
    starting live mode again does not rebuild them (each run gets a fresh stream state).
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def _bundle_and_model(self, key: str, bundle_name: str, device: str) -> tuple[Any, Any]:
        from models.bundles import default_bundle, get_model, load_bundle, resolve_device

        target = resolve_device(device)
        cache_key = (bundle_name or f"default:{key}", str(target))
        with self._lock:
            cached = self._models.get(cache_key)
        if cached is not None:
            return cached
        bundle = load_bundle(bundle_name) if bundle_name else default_bundle(key)
        built = (bundle, get_model(bundle, target))
        with self._lock:
            self._models[cache_key] = built
        return built

    def processor(self, model: LiveModel, sample_rate: int, block_frames: int) -> LoadedProcessor:
        from models.inference import StreamingSeparator

        bundle, module = self._bundle_and_model(model.family, model.bundle, model.device)
        causal = getattr(module, "algorithmic_latency_samples", None) is not None
        options: dict[str, Any] = {}
        if causal:
            # One chunk per block: each chunk re-runs the model over its left context, so
            # fewer, longer chunks cost less CPU for the same latency budget.
            options["chunk_seconds"] = (
                model.chunk_seconds
                if model.chunk_seconds is not None
                else block_frames / sample_rate
            )
            context = (
                LIVE_CAUSAL_CONTEXT_SECONDS
                if model.context_seconds is None
                else model.context_seconds
            )
            options["context_seconds"] = (context, 0.0)
        elif model.chunk_seconds is not None:
            options["chunk_seconds"] = model.chunk_seconds
        stream = StreamingSeparator(
            module,
            sample_rate,
            prompts=[model.prompt] if hasattr(module, "PROMPTS") else None,
            device=next(module.parameters()).device,
            model_sample_rate=bundle.sample_rate,
            **options,
        )
        names = tuple(stream.names)
        wanted = model.output or (
            "speech" if "speech" in names and model.family in ("live", "mtass") else names[0]
        )
        if wanted not in names:
            raise ValueError(f"The model has no output '{wanted}'. Outputs: {', '.join(names)}.")
        return LoadedProcessor(
            process=stream.process,
            names=names,
            output_index=names.index(wanted),
            latency_samples=int(stream.latency_samples),
            label=bundle.label,
            trained=bool(bundle.trained),
        )

    def verifier(self, verification: LiveVerification) -> LoadedVerifier:
        from models.inference import Verifier

        bundle, module = self._bundle_and_model("speaker", verification.bundle, "auto")
        verifier = Verifier(
            module, device=next(module.parameters()).device, sample_rate=bundle.sample_rate
        )
        return LoadedVerifier(
            embed=verifier.embed,
            model_name=bundle.name,
            label=bundle.label,
            trained=bool(bundle.trained),
            threshold=bundle.threshold,
        )


def catalog() -> list[dict]:
    """Bundles live mode can use: dicts with ``name``, ``family``, ``trained``, ``path``,
    ``description`` (the separation panel's format, plus the ``live`` family). Imports the
    model library: call it from a worker (:func:`catalog_task`)."""
    from models.bundles import default_bundle, list_bundles

    families = {"tuss": "tuss", "mtass": "mtass", "conv_tasnet": "speech", "nas_tasnet": "speech"}
    entries: list[dict] = []
    for bundle in list_bundles():
        family = families.get(bundle.model_name)
        if family is None or bundle.task != "separation":
            continue
        if bundle.config.get("causal"):
            family = "live"
        entries.append(
            {
                "name": bundle.name,
                "family": family,
                "trained": bundle.trained,
                "path": str(bundle.path) if bundle.path else bundle.name,
                "description": bundle.description,
            }
        )
    for family in FAMILIES:
        if family != "none" and not any(entry["family"] == family for entry in entries):
            bundle = default_bundle(family)
            entries.append(
                {
                    "name": bundle.name,
                    "family": family,
                    "trained": bundle.trained,
                    "path": "",
                    "description": bundle.description,
                }
            )
    return entries


def catalog_task() -> Generator[float, None, list[dict]]:
    """Background form of :func:`catalog` for :class:`workbench.workers.Task`."""
    yield 0.0
    return catalog()


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ScorePoint:
    """One rolling verification score.

    Attributes:
        time_seconds: Stream time at the end of the scored window (input seconds since
            start, skipped audio included).
        score: Cosine similarity with the voiceprint, in ``[-1, 1]``.
        accepted: ``score >= threshold``.
        window_seconds: Audio the score covers (less than the window at the start).
    """

    time_seconds: float
    score: float
    accepted: bool
    window_seconds: float


class RollingVerifier:
    """Scores the last ``window_seconds`` against a voiceprint every ``every_seconds``.

    Scores fall on stream times that are multiples of ``every_seconds`` (once at least
    ``min_seconds`` are in the window), whatever the block sizes, so they are reproducible.

    Args:
        embed: ``embed(waveform (frames,), sample_rate) -> (embedding_dim,)``.
        voiceprint: Shape ``(embedding_dim,)``.
        sample_rate: Rate of the pushed samples.
        threshold: Accept threshold on the cosine score.
        every_seconds: Distance between scores.
        window_seconds: Audio each score covers.
        min_seconds: Audio needed before the first score.
    """

    def __init__(
        self,
        embed: Callable[[np.ndarray, int], np.ndarray],
        voiceprint: np.ndarray,
        sample_rate: int,
        threshold: float,
        every_seconds: float = 0.5,
        window_seconds: float = 3.0,
        min_seconds: float = 1.0,
    ) -> None:
        self.embed = embed
        self.voiceprint = np.asarray(voiceprint, dtype=np.float32).reshape(-1)
        self.sample_rate = int(sample_rate)
        self.threshold = float(threshold)
        self.every_frames = max(1, round(every_seconds * sample_rate))
        self.window_frames = max(1, round(window_seconds * sample_rate))
        self.min_frames = max(1, round(min_seconds * sample_rate))
        self.position = 0
        self._next_score = self.every_frames
        self._window = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray, end_position: int | None = None) -> list[ScorePoint]:
        """Add mono samples; return the scores that became due.

        Args:
            samples: Shape ``(frames,)``.
            end_position: Stream position just after the last sample; a jump ahead (skipped
                audio) moves the score schedule on. ``None``: contiguous with the last push.

        Returns:
            New :class:`ScorePoint` objects in time order.
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if end_position is not None:
            start = int(end_position) - samples.size
            if start > self.position:
                self.position = start
                if self._next_score <= start:
                    self._next_score = (start // self.every_frames + 1) * self.every_frames
        points: list[ScorePoint] = []
        offset = 0
        while offset < samples.size:
            take = min(samples.size - offset, self._next_score - self.position)
            self._window = np.concatenate((self._window, samples[offset : offset + take]))[
                -self.window_frames :
            ]
            offset += take
            self.position += take
            if self.position >= self._next_score:
                if self._window.size >= self.min_frames:
                    points.append(self._score())
                self._next_score += self.every_frames
        return points

    def _score(self) -> ScorePoint:
        embedding = self.embed(self._window, self.sample_rate)
        value = cosine(self.voiceprint, np.asarray(embedding))
        return ScorePoint(
            time_seconds=self.position / self.sample_rate,
            score=value,
            accepted=value >= self.threshold,
            window_seconds=self._window.size / self.sample_rate,
        )


@dataclass(frozen=True)
class VerificationStatus:
    """What the panel shows about verification.

    Attributes:
        state: ``"off"``, ``"loading"``, ``"running"`` or ``"failed"``.
        speaker: The claimed speaker.
        threshold: The decision threshold (cosine), once known.
        calibrated: False when :data:`UNCALIBRATED_THRESHOLD` stands in.
        model_label: The speaker model (marks untrained placeholders).
        trained: False for an untrained speaker model.
        error: Why verification stopped, in plain language.
    """

    state: str = "off"
    speaker: str = ""
    threshold: float | None = None
    calibrated: bool = False
    model_label: str = ""
    trained: bool = True
    error: str | None = None


# --------------------------------------------------------------------------- statistics


class BlockTimer:
    """Processing time of the recent blocks (written by one thread, read by the GUI)."""

    def __init__(self, window: int = TIMING_WINDOW) -> None:
        self._times = np.zeros(window, dtype=np.float64)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._times[self._count % self._times.size] = seconds
            self._count += 1

    def summary(self) -> tuple[int, float, float]:
        """``(blocks timed, mean seconds, 99th percentile seconds)`` of the recent blocks."""
        with self._lock:
            count = self._count
            recent = self._times[: min(count, self._times.size)].copy()
        if not recent.size:
            return 0, 0.0, 0.0
        return count, float(recent.mean()), float(np.percentile(recent, 99))


@dataclass(frozen=True)
class LiveStats:
    """A snapshot for the panel (all measured, none estimated).

    Attributes:
        state: ``"idle"``, ``"loading"``, ``"running"``, ``"failed"``.
        sample_rate: Stream rate, Hz.
        block_ms: Processing block length.
        algorithmic_latency_ms: Capture-to-playback delay added by blocking, the model and
            the output safety margin (see the module docstring); block length when no model.
        model_latency_ms: The model's part of it (``latency_samples``).
        device_latency_ms: Input plus output latency PortAudio reports for the devices.
        processing_mean_ms: Mean time the processor spent per block (model, spectrograms,
            file writes) over the recent blocks.
        processing_p99_ms: Its 99th percentile.
        processing_mean_fraction: ``processing_mean_ms / block_ms`` (1.0 = just keeps up).
        processing_p99_fraction: ``processing_p99_ms / block_ms``.
        blocks_processed: Blocks processed.
        late_blocks: Blocks that took longer than a block to process.
        input_overflows: Input lost before the processor saw it.
        output_underflows: Output blocks played short.
        skipped_blocks: Blocks dropped because the processor fell behind.
        output_overflows: Processed blocks the output ring had no room for.
        dropouts: The sum of the four above.
        stream_seconds: Input seconds since start (delivered by the device).
        recorded_seconds: Input seconds written to the WAV file.
        input_path: The input recording.
        output_path: The processed-output recording, if saved.
        model_label: The model in use (marks untrained placeholders), empty when none.
        trained: False for an untrained placeholder.
        output_name: The output that is played and shown.
        error: Why live mode stopped, in plain language.
    """

    state: str
    sample_rate: int
    block_ms: float
    algorithmic_latency_ms: float
    model_latency_ms: float
    device_latency_ms: float
    processing_mean_ms: float
    processing_p99_ms: float
    processing_mean_fraction: float
    processing_p99_fraction: float
    blocks_processed: int
    late_blocks: int
    input_overflows: int
    output_underflows: int
    skipped_blocks: int
    output_overflows: int
    dropouts: int
    stream_seconds: float
    recorded_seconds: float
    input_path: Path | None
    output_path: Path | None
    model_label: str
    trained: bool
    output_name: str
    error: str | None


@dataclass(frozen=True)
class LiveFiles:
    """What a live run saved.

    Attributes:
        input_path: The input as captured (``None`` if nothing was captured).
        output_path: The processed output, when saving it was asked for and a model ran.
        scores_path: The rolling verification scores (CSV), when verification ran.
    """

    input_path: Path | None
    output_path: Path | None
    scores_path: Path | None = None


# --------------------------------------------------------------------------- pipeline


class LivePipeline:
    """Live mode on an :class:`~workbench.audio.engine.AudioEngine` (no Qt in here).

    Use from the GUI thread: ``start(settings)``, then poll ``stats()``,
    ``read_columns("input" | "output")``, ``scores()`` and ``verification`` from a timer;
    ``stop()`` returns the saved files. ``state`` moves ``idle`` -> ``loading`` (model
    loading on the processing thread; nothing captured yet) -> ``running`` -> ``idle`` after
    ``stop()``, or to ``failed`` (``error`` says why; call ``stop()`` to clean up).

    Args:
        engine: The app's audio engine.
        models: Loads the models; defaults to :class:`LibraryModels` (the app's bundles).

    Class attributes for views (which may not import this module): ``FAMILIES``,
    ``FAMILY_OUTPUTS``, ``PROMPTS``.
    """

    FAMILIES = FAMILIES
    FAMILY_OUTPUTS = FAMILY_OUTPUTS
    PROMPTS = PROMPTS

    def __init__(self, engine: AudioEngine, models: ModelProvider | None = None) -> None:
        self.engine = engine
        self.models: ModelProvider = models if models is not None else LibraryModels()
        self.settings = LiveSettings()
        self.state = "idle"
        self.error: str | None = None
        self.verification = VerificationStatus()
        self.processor: LoadedProcessor | None = None
        #: Ident of every thread that ran a block through the processor (one is expected).
        self.processing_threads: set[int] = set()
        self.spectrogram = ColumnSpectrogram(self.settings.sample_rate)
        self._stream: BlockStream | None = None
        self._last_stream: BlockStream | None = None
        self._files = LiveFiles(None, None)
        self._scores_path: Path | None = None
        self._thread: threading.Thread | None = None
        self._verifier_thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._timer = BlockTimer()
        self._columns: dict[str, RingBuffer] = {}
        self._verify_ring: RingBuffer | None = None
        self._output_writer: StreamingWavWriter | None = None
        self._input_path: Path | None = None
        self._output_path: Path | None = None
        self._scores: deque[ScorePoint] = deque(maxlen=SCORE_HISTORY)
        self._scores_lock = threading.Lock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.blocks_processed = 0
        self.late_blocks = 0
        self.skipped_blocks = 0
        self.output_overflows = 0
        self.prefill_frames = 0
        #: Frames the verifier could not take because it was busy embedding.
        self.verification_dropped_frames = 0

    # ------------------------------------------------------------------ control
    @property
    def processing_thread(self) -> threading.Thread | None:
        """The thread that runs the model (``None`` when idle)."""
        return self._thread

    @property
    def is_active(self) -> bool:
        """Loading or running (``stop()`` has not been called)."""
        return self._thread is not None

    def start(self, settings: LiveSettings | None = None) -> None:
        """Open the devices and start live mode; the model loads on the processing thread.

        Args:
            settings: What to run; ``None`` reuses :attr:`settings`.

        Raises:
            ValueError: bad settings (the message names the field).
            AudioDeviceError: live mode already running, or a device refused the settings.
            AudioFileError: the folder or a recording file could not be created.
        """
        settings = settings or self.settings
        settings.validate()
        if self.is_active:
            raise AudioDeviceError("Live mode is already running; stop it first.")
        family = settings.model.family
        folder = Path(settings.record_folder) if settings.record_folder else recordings_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AudioFileError(
                f"Cannot use “{folder}” for live recordings: {exc.strerror or exc}. "
                "Choose another folder.",
                str(folder),
            ) from exc
        input_path, output_path, scores_path = _new_paths(folder, family)
        rate = settings.sample_rate
        block = settings.block_frames
        backlog = max(round(settings.max_backlog_seconds * rate), 2 * block)
        stream = self.engine.open_block_stream(
            rate,
            input_device=settings.input_device,
            output_device=settings.output_device,
            play_output=settings.play_output and family != "none",
            input_buffer_seconds=max(settings.input_buffer_seconds, 4 * backlog / rate),
            output_buffer_seconds=max(1.0, 8 * settings.block_seconds),
            record_path=input_path,
            latency=settings.latency,
        )
        writer = None
        if settings.save_output and family != "none":
            try:
                writer = StreamingWavWriter(output_path, rate, 1)
            except Exception:
                stream.stop()
                raise
        self.settings = settings
        self.state = "loading"
        self.error = None
        self.processor = None
        self.processing_threads = set()
        self._reset_counters()
        self._timer = BlockTimer()
        self._stream = stream
        self._output_writer = writer
        self._input_path = input_path
        self._output_path = output_path if writer is not None else None
        self.spectrogram = ColumnSpectrogram(rate)
        capacity = max(1, round(COLUMN_BUFFER_SECONDS * self.spectrogram.columns_per_second))
        self._columns = {
            "input": RingBuffer(capacity, self.spectrogram.bins),
            "output": RingBuffer(capacity, self.spectrogram.bins),
        }
        with self._scores_lock:
            self._scores.clear()
        self._scores_path = None
        self._stop_event = threading.Event()
        check = settings.verification
        self._verify_ring = None
        self.verification = VerificationStatus()
        if check.speaker:
            self._verify_ring = RingBuffer(
                max(round(2 * check.window_seconds * rate), 1), 1, with_positions=True
            )
            self.verification = VerificationStatus(state="loading", speaker=check.speaker)
            self._verifier_thread = threading.Thread(
                target=self._verify_loop,
                args=(settings, self._verify_ring, self._stop_event, scores_path),
                name="live-verifier",
                daemon=True,
            )
        self._thread = threading.Thread(
            target=self._process_loop,
            args=(settings, stream, self._stop_event),
            name="live-processor",
            daemon=True,
        )
        self._thread.start()
        if self._verifier_thread is not None:
            self._verifier_thread.start()

    def stop(self) -> LiveFiles:
        """Stop live mode, close the devices and the files (idempotent).

        Blocks until the threads have ended: at most one block's processing, or the rest of
        a model load that is under way.

        Returns:
            The files this run wrote (the last run's again when called twice).
        """
        if self._thread is None and self._stream is None:
            return self._files
        self._stop_event.set()
        for attribute in ("_thread", "_verifier_thread"):
            thread = getattr(self, attribute)
            if thread is not None:
                thread.join()
                setattr(self, attribute, None)
        stream, self._stream = self._stream, None
        input_path = stream.stop() if stream is not None else None
        writer, self._output_writer = self._output_writer, None
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
            if writer.frames == 0:  # the model never ran: no empty file left behind
                writer.path.unlink(missing_ok=True)
                self._output_path = None
        if self.state != "failed":
            self.state = "idle"
        if self.verification.state in ("loading", "running"):
            self.verification = dataclasses.replace(self.verification, state="off")
        scores_path = self._scores_path
        self._files = LiveFiles(
            input_path=input_path if input_path is not None and input_path.exists() else None,
            output_path=self._output_path,
            scores_path=scores_path if scores_path is not None and scores_path.exists() else None,
        )
        self._last_stream = stream
        return self._files

    def close(self) -> None:
        """Stop (app exit)."""
        self.stop()

    # ------------------------------------------------------------------ GUI polling
    def read_columns(self, which: str = "input") -> np.ndarray:
        """New spectrogram columns since the last call (one reader: the GUI timer).

        Args:
            which: ``"input"`` or ``"output"`` (the processed audio).

        Returns:
            Shape ``(columns, bins)``, float32 dB, oldest first; bins span 0 to
            ``spectrogram.max_frequency``.
        """
        if which not in ("input", "output"):
            raise ValueError(f"which must be 'input' or 'output', got {which!r}")
        ring = self._columns.get(which)
        if ring is None:
            return np.zeros((0, self.spectrogram.bins), dtype=np.float32)
        return ring.read(ring.readable)

    def scores(self) -> list[ScorePoint]:
        """The recent rolling verification scores, oldest first."""
        with self._scores_lock:
            return list(self._scores)

    def stats(self) -> LiveStats:
        """Counters and timings now (cheap; call it from a timer)."""
        settings = self.settings
        rate = settings.sample_rate
        stream = self._stream if self._stream is not None else self._last_stream
        block_seconds = settings.block_frames / rate
        count, mean, p99 = self._timer.summary()
        overflows = stream.input_overflows if stream is not None else 0
        underflows = stream.output_underflows if stream is not None else 0
        processor = self.processor
        recorder = stream.recorder if stream is not None else None
        if processor is not None:
            latency = (self.prefill_frames + processor.latency_samples) / rate
        else:
            latency = block_seconds
        device_latency = (
            (stream.input_latency + (stream.output_latency if stream.has_output else 0.0))
            if stream is not None
            else 0.0
        )
        return LiveStats(
            state=self.state,
            sample_rate=rate,
            block_ms=1000 * block_seconds,
            algorithmic_latency_ms=1000 * latency,
            model_latency_ms=1000 * processor.latency_samples / rate if processor else 0.0,
            device_latency_ms=1000 * device_latency,
            processing_mean_ms=1000 * mean,
            processing_p99_ms=1000 * p99,
            processing_mean_fraction=mean / block_seconds,
            processing_p99_fraction=p99 / block_seconds,
            blocks_processed=count,
            late_blocks=self.late_blocks,
            input_overflows=overflows,
            output_underflows=underflows,
            skipped_blocks=self.skipped_blocks,
            output_overflows=self.output_overflows,
            dropouts=overflows + underflows + self.skipped_blocks + self.output_overflows,
            stream_seconds=(stream.input_frames / rate) if stream is not None else 0.0,
            recorded_seconds=recorder.elapsed_seconds if recorder is not None else 0.0,
            input_path=self._input_path,
            output_path=self._output_path,
            model_label=processor.label if processor is not None else "",
            trained=processor.trained if processor is not None else True,
            output_name=processor.names[processor.output_index] if processor else "",
            error=self.error,
        )

    # ------------------------------------------------------------------ processing thread
    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.state = "failed"
        log.error("live mode: %s", message)

    def _process_loop(
        self, settings: LiveSettings, stream: BlockStream, stop: threading.Event
    ) -> None:
        try:
            self._run(settings, stream, stop)
        except WorkbenchError as exc:
            self._fail(exc.message)
        except Exception as exc:  # the thread must never die silently
            log.exception("live processing failed")
            self._fail(f"Live processing stopped: {exc}")
        if self.state == "failed":
            # Stop capturing at once: a failed live mode must not go on recording unseen.
            stream.stop()

    def _run(self, settings: LiveSettings, stream: BlockStream, stop: threading.Event) -> None:
        rate = settings.sample_rate
        block = settings.block_frames
        family = settings.model.family
        processor = None
        if family != "none":
            try:
                processor = self.models.processor(settings.model, rate, block)
            except Exception as exc:
                log.exception("live model failed to load")
                raise WorkbenchError(
                    f"The live model could not be loaded: {exc}", repr(exc)
                ) from exc
        if stop.is_set():
            return
        safety = block if settings.safety_seconds is None else round(settings.safety_seconds * rate)
        self.prefill_frames = block + safety if stream.has_output else 0
        self.processor = processor
        output_ring = stream.output_ring
        if output_ring is not None and self.prefill_frames:
            output_ring.write(np.zeros((self.prefill_frames, stream.output_channels), np.float32))
        stream.start()
        self.state = "running"
        input_ring = stream.input_ring
        backlog_limit = max(round(settings.max_backlog_seconds * rate), 2 * block)
        idle_wait = min(0.005, block / rate / 4)
        position = 0  # input frames consumed or skipped
        spectrogram_in = self.spectrogram
        spectrogram_out = ColumnSpectrogram(rate, spectrogram_in.n_fft)
        column_in, column_out = self._columns["input"], self._columns["output"]
        verify_ring = self._verify_ring
        verify_output = settings.verification.source == "output"
        writer = self._output_writer
        block_seconds = block / rate
        me = threading.get_ident()
        while not stop.is_set():
            if stream.input_finished:
                raise WorkbenchError(
                    f"Live mode stopped: {stream.device_name} stopped delivering audio "
                    "(was it unplugged?). What was captured is saved."
                )
            if stream.recorder is not None and stream.recorder.error:
                raise WorkbenchError(stream.recorder.error)
            if not stream.is_running:
                raise WorkbenchError(
                    "Live mode stopped: the audio devices were closed (device rescan or exit)."
                )
            waiting = input_ring.readable
            if waiting > backlog_limit:
                # Behind by more than the limit: drop whole blocks, keep the newest one.
                skipped = input_ring.discard((waiting - block) // block * block)
                self.skipped_blocks += skipped // block
                position += skipped
                continue
            if waiting < block:
                stop.wait(idle_wait)
                continue
            frames = input_ring.read(block)
            started = time.perf_counter()
            mono = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1)
            columns = spectrogram_in.push(mono)
            if columns.shape[0]:
                column_in.write(columns)
            played = None
            if processor is not None:
                self.processing_threads.add(me)
                outputs = processor.process(mono)
                played = np.asarray(outputs[processor.output_index], dtype=np.float32)
                columns = spectrogram_out.push(played)
                if columns.shape[0]:
                    column_out.write(columns)
                if output_ring is not None:
                    tiled = np.repeat(played[:, None], stream.output_channels, axis=1)
                    if output_ring.write(tiled) == 0:
                        self.output_overflows += 1
                if writer is not None:
                    writer.append(played[:, None])
            position += block
            if verify_ring is not None:
                source = played if verify_output and played is not None else mono
                if verify_ring.write(source[:, None], start_position=position - block) == 0:
                    self.verification_dropped_frames += block
            elapsed = time.perf_counter() - started
            self._timer.add(elapsed)
            self.blocks_processed += 1
            if elapsed > block_seconds:
                self.late_blocks += 1

    # ------------------------------------------------------------------ verifier thread
    def _verify_loop(
        self, settings: LiveSettings, ring: RingBuffer, stop: threading.Event, scores_path: Path
    ) -> None:
        check = settings.verification
        scores_file = None
        try:
            loaded = self.models.verifier(check)
            database = SpeakerDatabase(check.database or None)
            try:
                voiceprint = database.voiceprint(check.speaker, loaded.model_name)
                stored = database.threshold(loaded.model_name)
            finally:
                database.close()
            threshold = next(
                (t for t in (check.threshold, stored, loaded.threshold) if t is not None),
                UNCALIBRATED_THRESHOLD,
            )
            calibrated = any(t is not None for t in (check.threshold, stored, loaded.threshold))
            rolling = RollingVerifier(
                loaded.embed,
                voiceprint,
                settings.sample_rate,
                threshold,
                check.every_seconds,
                check.window_seconds,
                check.min_seconds,
            )
            self.verification = VerificationStatus(
                state="running",
                speaker=check.speaker,
                threshold=float(threshold),
                calibrated=calibrated,
                model_label=loaded.label,
                trained=loaded.trained,
            )
            # Every score goes to a CSV file as it comes (the plot keeps only the recent ones).
            scores_file = open(scores_path, "x", encoding="utf-8")  # noqa: SIM115 (kept open)
            self._scores_path = scores_path
            scores_file.write(
                f"# speaker={check.speaker} model={loaded.model_name} threshold={threshold:.6f}"
                f" calibrated={calibrated}\ntime_seconds,score,accepted,window_seconds\n"
            )
            scores_file.flush()
            # Audio that piled up while the model loaded is stale: start from now.
            ring.discard(ring.readable)
            chunk = max(rolling.every_frames // 2, 1)
            while not stop.is_set():
                if ring.readable == 0:
                    stop.wait(0.01)
                    continue
                samples = ring.read(min(ring.readable, chunk))
                points = rolling.push(samples[:, 0], ring.last_position)
                if points:
                    with self._scores_lock:
                        self._scores.extend(points)
                    scores_file.writelines(
                        f"{p.time_seconds:.3f},{p.score:.6f},{int(p.accepted)},"
                        f"{p.window_seconds:.3f}\n"
                        for p in points
                    )
                    scores_file.flush()
        except WorkbenchError as exc:
            self.verification = dataclasses.replace(
                self.verification, state="failed", error=exc.message
            )
        except Exception as exc:  # verification failing must not stop live mode
            log.exception("live verification failed")
            self.verification = dataclasses.replace(
                self.verification,
                state="failed",
                error=f"Live verification stopped: {exc}",
            )
        finally:
            if scores_file is not None:
                scores_file.close()


def _new_paths(folder: Path, family: str) -> tuple[Path, Path, Path]:
    """Fresh ``live-<time>-input.wav``, ``-<family>.wav`` and ``-scores.csv`` in ``folder``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        paths = (
            folder / f"live-{stamp}{suffix}-input.wav",
            folder / f"live-{stamp}{suffix}-{family}.wav",
            folder / f"live-{stamp}{suffix}-scores.csv",
        )
        if not any(path.exists() for path in paths):
            return paths
    raise AudioDeviceError(f"Too many live recordings named live-{stamp} in {folder}.")
