"""The audio engine: devices, playback and recording through PortAudio (no Qt in here).

The app creates ONE :class:`AudioEngine` and passes it to whoever needs it; there is no
module-level instance. Everything here is safe to call from the GUI thread: no call blocks
for longer than it takes to open, start or stop a stream, and the GUI learns about progress
by polling plain attributes from a ``QTimer`` (``position_frames()``, ``status()``, the
:class:`~workbench.audio.recorder.Recorder` fields).

Construction never raises. ``sounddevice`` is imported lazily; if PortAudio is missing or
fails to start, ``available`` is ``False``, ``unavailable_reason`` says why in plain language
and every method that needs a device raises :class:`~workbench.errors.AudioDeviceError`
with that reason, while the rest (``status()``, ``stop()``, device lists, which are empty)
keeps working.

API (the ``MainWindow``/``RecordPanel`` contract)::

    engine = AudioEngine(config=EngineConfig())
    engine.available: bool;  engine.unavailable_reason: str  (why PortAudio is missing)
    engine.availability_message: str   what is missing (PortAudio, output, input), or ""
    engine.input_devices() / output_devices() -> list[DeviceInfo]   (cached; see rescan)
    engine.default_input() / default_output() -> DeviceInfo | None
    engine.rescan() -> None            stops streams, restarts PortAudio, re-queries devices

    engine.play(tracks_provider, sample_rate, channels, start_frame=0, device=None,
                loop=None, end_frame=None) -> None
    engine.pause(); engine.resume(); engine.stop(); engine.seek(frame)
    engine.set_loop(loop | None)
    engine.position_frames() -> int    the playhead, in frames at the play() sample_rate
    engine.is_playing: bool;  engine.playback_state: PlaybackState;  engine.playback_error

    engine.start_recording(path, device=None, sample_rate=48000, channels=1) -> Recorder
    engine.stop_recording() -> Path;  engine.recorder;  engine.is_recording
    engine.open_block_stream(sample_rate, input_device=None, output_device=None, ...)
        -> BlockStream                 live mode: rings for a processing thread (see below)
    engine.status() -> EngineStatus    counters for the status bar
    engine.close()                     stop everything (app exit)

Playback. ``tracks_provider()`` (e.g. ``session.audible_tracks``) is called by a feeder
thread for every block, so solo/mute/A-B changes are heard within one ring buffer
(``EngineConfig.playback_buffer_seconds``). The feeder renders blocks with
:func:`workbench.audio.mixer.render_mix` (gain, resampling, channel mapping) into a
:class:`~workbench.audio.ringbuffer.RingBuffer` that also carries each frame's timeline
position. ``play()`` fills the buffer before it starts the stream, so playback never begins
with a dropout. The PortAudio callback only copies from the buffer into ``outdata``, writes
zeros and counts an underflow when the buffer runs dry, and records the timeline position of
the last frame it handed over (that is the playhead: frames handed to the device, which the
listener hears one output latency later). When the content (or ``end_frame``) is exhausted
and no loop is set, the callback stops the stream, the feeder closes it and
``playback_state`` becomes ``FINISHED``. A loop ``(start, end)`` wraps the render position
from ``end`` back to ``start``. If the device cannot run at the requested rate the engine
opens it at the device's default rate and resamples; positions stay in requested-rate frames.

Recording. ``start_recording`` opens an input stream whose callback copies each block into a
bounded ring buffer; the recorder's writer thread appends it to a float32 WAV that is valid
after every write (see :mod:`workbench.audio.recorder`). The returned
:class:`~workbench.audio.recorder.Recorder` exposes ``peak``, ``rms``, ``max_peak``,
``elapsed_seconds``, ``frames_written``, ``overflows`` and ``error`` for the GUI.

Live blocks. ``open_block_stream`` opens an input stream (and optionally an output stream at
the same rate) whose callbacks only move frames between the device and two ring buffers: the
processing thread of :mod:`workbench.live` reads captured blocks from ``input_ring`` and
writes processed ones to ``output_ring``; an optional recorder writes the input to a WAV file
as it arrives. Models never run in a callback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

from workbench.audio.mixer import MixTrack, output_length, render_mix
from workbench.audio.recorder import Recorder
from workbench.audio.ringbuffer import RingBuffer
from workbench.errors import AudioDeviceError, AudioFileError

log = logging.getLogger(__name__)

PORTAUDIO_MISSING = (
    "Audio devices are unavailable: the PortAudio library (libportaudio2) is not installed. "
    "Install it with 'sudo apt-get install libportaudio2'."
)
SOUNDDEVICE_MISSING = (
    "Audio devices are unavailable: the sounddevice Python package is not installed. "
    "Reinstall the app with 'make install'."
)
NO_OUTPUT = (
    "No audio output device was found. Plug one in and use Audio ▸ Rescan devices, or check "
    "that your sound server is running."
)
NO_INPUT = "No audio input device was found. Plug in a microphone and use Audio ▸ Rescan devices."

TracksProvider = Callable[[], Sequence[MixTrack]]


class PlaybackState(StrEnum):
    """Where playback is. ``FINISHED``: reached the end by itself; ``FAILED``: see
    ``AudioEngine.playback_error``."""

    STOPPED = "stopped"
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device.

    Attributes:
        index: PortAudio device index (pass it as ``device=``); valid until ``rescan()``.
        name: Device name as the host API reports it.
        hostapi: Host API name (``ALSA``, ``Core Audio``, ``WASAPI``...).
        max_input_channels: 0 for output-only devices.
        max_output_channels: 0 for input-only devices.
        default_sample_rate: The rate the device prefers.
    """

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float


@dataclass(frozen=True)
class EngineConfig:
    """Buffering and timing of the engine.

    Attributes:
        playback_buffer_seconds: How far the feeder renders ahead. Larger survives longer
            GUI stalls; smaller makes solo/mute changes audible sooner.
        playback_block_frames: Frames the feeder renders per block.
        latency: PortAudio latency hint for both directions: ``"low"``, ``"high"`` or
            seconds.
        record_buffer_seconds: How long the recorder's writer may fall behind the device
            before blocks are dropped (counted as overflows).
        record_poll_seconds: How often the recorder's writer drains its buffer to disk.
        record_stall_seconds: Silence from the device (no callbacks) for this long while
            recording is treated as a lost device.
    """

    playback_buffer_seconds: float = 0.25
    playback_block_frames: int = 1024
    latency: str | float = "high"
    record_buffer_seconds: float = 2.0
    record_poll_seconds: float = 0.02
    record_stall_seconds: float = 3.0


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for the status bar.

    Attributes:
        available: PortAudio loaded.
        playing: Playback running (not paused).
        recording: A recording is capturing.
        playback_state: See :class:`PlaybackState`.
        position_frames: The playhead (see ``AudioEngine.position_frames``).
        underflows: Output blocks that found no audio ready (heard as dropouts), since the
            engine was created or ``reset_counters()``.
        overflows: Input blocks dropped or reported lost by the device, same span.
        error: The latest playback or recording error, if any.
    """

    available: bool
    playing: bool
    recording: bool
    playback_state: PlaybackState
    position_frames: int
    underflows: int
    overflows: int
    error: str | None


class _Playback:
    """One ``play()``: ring buffer, feeder thread, stream, and the callback between them.

    Frames on the "timeline" are at the rate the caller asked for; "output" frames are at
    the rate the stream runs at. They are the same unless the device forced another rate.
    """

    def __init__(
        self,
        engine: AudioEngine,
        sd: ModuleType,
        provider: TracksProvider,
        timeline_rate: int,
        output_rate: int,
        channels: int,
        start_frame: int,
        loop: tuple[int, int] | None,
        end_frame: int | None,
    ) -> None:
        config = engine.config
        self.engine = engine
        self.provider = provider
        self.timeline_rate = timeline_rate
        self.output_rate = output_rate
        self.channels = channels
        self.block_frames = max(int(config.playback_block_frames), 16)
        capacity = max(int(config.playback_buffer_seconds * output_rate), 2 * self.block_frames)
        self.ring = RingBuffer(capacity, channels, with_positions=True)
        self.render_position = self.to_output(start_frame)
        self.loop = self._loop_to_output(loop)
        if self.loop is not None and not self.loop[0] <= self.render_position < self.loop[1]:
            self.render_position = self.loop[0]
        self.end_frame = None if end_frame is None else self.to_output(end_frame)
        self.longest_seen = 0
        self.position = self.render_position  # output frames; written by the callback
        self.end_mark = -1  # ring write count after the last block; -1 while not at the end
        self.complete = False  # set by the callback when it has played up to end_mark
        self.underflows = 0
        # (request number, output frame): replaced whole by seek(), so the feeder can never
        # lose a second seek that arrives while it applies the first.
        self.seek_request: tuple[int, int] = (0, 0)
        self.seeks_applied = 0
        self.error: str | None = None
        self.stream: Any = None
        self.closed = False
        self.lock = threading.Lock()  # serialises stream start/stop/close across threads
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.callback_stop = sd.CallbackStop
        self.idle_wait = max(0.002, min(0.02, self.block_frames / output_rate / 4))
        self.thread = threading.Thread(target=self._run, name="playback-feeder", daemon=True)

    # -- rate conversion between the caller's timeline and the stream ---------------------
    def to_output(self, frame: int) -> int:
        if self.timeline_rate == self.output_rate:
            return int(frame)
        return int(frame) * self.output_rate // self.timeline_rate

    def to_timeline(self, frame: int) -> int:
        if self.timeline_rate == self.output_rate:
            return int(frame)
        return int(frame) * self.timeline_rate // self.output_rate

    def _loop_to_output(self, loop: tuple[int, int] | None) -> tuple[int, int] | None:
        if loop is None:
            return None
        return self.to_output(loop[0]), max(self.to_output(loop[1]), self.to_output(loop[0]) + 1)

    # -- PortAudio thread: copy, count, nothing else ---------------------------------------
    def callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status and status.output_underflow:
            self.underflows += 1
        copied = self.ring.read_into(outdata)
        if copied:
            self.position = self.ring.last_position
        if copied < frames:
            outdata[copied:] = 0
            end_mark = self.end_mark
            if end_mark >= 0 and self.ring.frames_read >= end_mark:
                self.complete = True
                self.wake.set()
                raise self.callback_stop
            self.underflows += 1

    # -- feeder thread ---------------------------------------------------------------------
    def _tracks(self) -> Sequence[MixTrack]:
        tracks = list(self.provider())
        self.longest_seen = max(self.longest_seen, output_length(tracks, self.output_rate))
        return tracks

    def render_one(self) -> bool:
        """Render one block into the ring if there is room. Returns whether it did."""
        if self.end_mark >= 0 or self.ring.writable < self.block_frames:
            return False
        tracks = self._tracks()
        position = self.render_position
        loop = self.loop
        if loop is not None:
            loop_start, loop_end = loop
            if position >= loop_end or position < loop_start:
                position = loop_start
            frames = min(self.block_frames, loop_end - position)
        else:
            end = self.end_frame if self.end_frame is not None else self.longest_seen
            frames = min(self.block_frames, end - position)
            if frames <= 0:
                self.end_mark = self.ring.frames_written
                return False
        block = render_mix(tracks, position, frames, self.channels, self.output_rate)
        self.ring.write(block, position)
        self.render_position = position + frames
        return True

    def prefill(self) -> None:
        while self.render_one():
            pass

    def request_seek(self, target: int) -> None:
        """Ask the feeder to continue from output frame ``target`` (any thread)."""
        self.position = target
        self.seek_request = (self.seek_request[0] + 1, target)
        self.wake.set()

    def _apply_seek(self) -> None:
        number, target = self.seek_request
        if number == self.seeks_applied:
            return
        self.seeks_applied = number
        self.end_mark = -1
        self.ring.flush()
        self.render_position = target
        self.position = target

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._apply_seek()
                if self.render_one():
                    continue
                if self.complete:
                    break
                self.wake.wait(self.idle_wait)
                self.wake.clear()
        except Exception as exc:  # a bad track must not kill playback silently
            log.exception("playback feeder failed")
            self.error = f"Playback stopped because a track could not be mixed: {exc}"
        if not self.stop_event.is_set():
            self.engine._playback_ended(self)

    # -- stream control (any thread) -------------------------------------------------------
    def start_stream(self) -> None:
        with self.lock:
            if not self.closed:
                self.stream.start()

    def pause_stream(self) -> None:
        with self.lock:
            if not self.closed and self.stream.active:
                self.stream.stop()

    def close(self, drain: bool = False) -> None:
        """Release the stream: ``drain`` lets queued audio play out (natural end); otherwise
        it is cut at once (the user said stop)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.stream is not None:
                for action in ("stop" if drain else "abort", "close"):
                    with contextlib.suppress(Exception):
                        getattr(self.stream, action)()

    def shutdown(self) -> None:
        """Stop the feeder and the stream (from a thread other than the feeder)."""
        self.stop_event.set()
        self.wake.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(5.0)
        self.close()


class BlockStream:
    """Live audio for a processing thread: an input stream and an optional output stream.

    Made by :meth:`AudioEngine.open_block_stream`. Both PortAudio callbacks only copy: the
    input callback appends each block to :attr:`input_ring` (and hands it to the optional
    :class:`~workbench.audio.recorder.Recorder`, which copies it into its own ring for its
    writer thread); the output callback copies from :attr:`output_ring` into ``outdata`` and
    writes zeros (counting an underflow) when the processing thread has not delivered in
    time. No Qt, logging, locks or model code runs in either callback.

    Ring roles (each ring has exactly one producer and one consumer thread):

    * ``input_ring``: producer the input callback, consumer the processing thread;
    * ``output_ring``: producer the processing thread, consumer the output callback.

    The counters are plain attributes for a GUI timer. ``input_callback_thread`` /
    ``output_callback_thread`` hold the ident of the thread that last ran each callback, so
    callers (and tests) can verify that their processing runs elsewhere.

    Attributes:
        sample_rate: Rate of both streams, Hz.
        input_channels: Channels captured.
        output_channels: Channels played (0 without output).
        input_ring: Captured frames, ``(frames, input_channels)``.
        output_ring: Frames to play, ``(frames, output_channels)``; ``None`` without output.
        recorder: Writes the input to a WAV file as it arrives; ``None`` if not recording.
        input_overflows: Input blocks lost: reported by the device or dropped because the
            processing thread left ``input_ring`` full.
        output_underflows: Output blocks that found too little audio ready (or that the
            device reported late).
        input_frames: Frames the input device delivered.
        output_frames: Frames handed to the output device from ``output_ring``.
        input_latency: Input device latency PortAudio reports, seconds.
        output_latency: Output device latency PortAudio reports, seconds (0 without output).
        input_finished: The input stream ended without being asked to (device lost).
        input_callback_thread: ``threading.get_ident()`` of the last input callback (0 before).
        output_callback_thread: Same for the output callback.
    """

    def __init__(
        self,
        sample_rate: int,
        input_channels: int,
        output_channels: int,
        input_buffer_frames: int,
        output_buffer_frames: int,
        recorder: Recorder | None,
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.input_channels = int(input_channels)
        self.output_channels = int(output_channels)
        self.input_ring = RingBuffer(max(int(input_buffer_frames), 1), self.input_channels)
        self.output_ring = (
            RingBuffer(max(int(output_buffer_frames), 1), self.output_channels)
            if self.output_channels
            else None
        )
        self.recorder = recorder
        self.input_overflows = 0
        self.output_underflows = 0
        self.input_frames = 0
        self.output_frames = 0
        self.input_latency = 0.0
        self.output_latency = 0.0
        self.input_finished = False
        self.input_callback_thread = 0
        self.output_callback_thread = 0
        self.device_name = "the input device"
        self._input_stream: Any = None
        self._output_stream: Any = None
        self._engine: AudioEngine | None = None
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    # -- PortAudio threads: copy and count, nothing else -----------------------------------
    def input_callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        self.input_callback_thread = threading.get_ident()
        recorder = self.recorder
        if recorder is not None:
            recorder.callback(indata, frames, time_info, status)
        if status and status.input_overflow:
            self.input_overflows += 1
        if self.input_ring.write(indata) == 0 and frames:
            self.input_overflows += 1
        self.input_frames += frames

    def input_finished_callback(self) -> None:
        if self._closed:
            return  # asked to stop: not a lost device
        self.input_finished = True
        recorder = self.recorder
        if recorder is not None:
            recorder.finished_callback()

    def output_callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        self.output_callback_thread = threading.get_ident()
        if status and status.output_underflow:
            self.output_underflows += 1
        ring = self.output_ring
        copied = ring.read_into(outdata) if ring is not None else 0
        self.output_frames += copied
        if copied < frames:
            outdata[copied:] = 0
            self.output_underflows += 1

    # -- control (any thread but the callbacks) --------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._started and not self._closed

    @property
    def has_output(self) -> bool:
        return self.output_ring is not None

    def start(self) -> None:
        """Start the recorder's writer, then the output and the input stream.

        Whatever is already in :attr:`output_ring` (a safety margin of silence the
        processing thread wrote) plays first.

        Raises:
            AudioDeviceError: a stream refused to start; everything is closed again.
        """
        with self._lock:
            if self._started or self._closed:
                raise AudioDeviceError("This live stream was already started; open a new one.")
            self._started = True
        try:
            if self.recorder is not None:
                self.recorder.start(None)
            if self._output_stream is not None:
                self._output_stream.start()
            self._input_stream.start()
        except Exception as exc:
            self.stop()
            raise AudioDeviceError(
                f"Live mode could not start on {self.device_name}: {_plain(exc)}.",
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def stop(self) -> Path | None:
        """Stop both streams and finish the recording (idempotent, never raises).

        Returns:
            The input recording's path, or ``None`` when there was no recorder.
        """
        with self._lock:
            already = self._closed
            self._closed = True
        recorder = self.recorder
        if not already:
            # The input first, so the recorder's final drain sees every captured block.
            for stream in (self._input_stream, self._output_stream):
                if stream is None:
                    continue
                for action in ("abort", "close"):
                    with contextlib.suppress(Exception):
                        getattr(stream, action)()
            if recorder is not None:
                if self._started:
                    recorder.stop()
                else:
                    recorder.discard()  # never captured anything: leave no empty file
            if self._engine is not None:
                self._engine._block_stream_closed(self)
        return recorder.path if recorder is not None and self._started else None


class AudioEngine:
    """Owns PortAudio, the device lists, the playback stream and the recording stream.

    Args:
        config: Buffer sizes and timing; the defaults suit desktop use.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.available = False
        self.unavailable_reason = ""
        self.unavailable_details = ""
        self.playback_state = PlaybackState.STOPPED
        self.playback_error: str | None = None
        self._sd: ModuleType | None = None
        self._lock = threading.RLock()
        self._playback: _Playback | None = None
        self._recorder: Recorder | None = None
        self._block_stream: BlockStream | None = None
        self._last_position = 0
        self._underflows = 0
        self._overflows = 0
        self._inputs: list[DeviceInfo] = []
        self._outputs: list[DeviceInfo] = []
        self._default_input: int | None = None
        self._default_output: int | None = None
        self._load()

    # ------------------------------------------------------------------ PortAudio
    def _load(self) -> None:
        """Import sounddevice (which starts PortAudio) and read the devices; never raises."""
        try:
            import sounddevice as sd
        except OSError as exc:
            self._set_unavailable(PORTAUDIO_MISSING, exc)
            return
        except ImportError as exc:
            self._set_unavailable(SOUNDDEVICE_MISSING, exc)
            return
        except Exception as exc:  # PortAudioError from Pa_Initialize at import time
            self._set_unavailable(
                f"Audio devices are unavailable: PortAudio could not start ({exc}).", exc
            )
            return
        self._sd = sd
        self.available = True
        self.unavailable_reason = ""
        self.unavailable_details = ""
        self._query_devices()

    def _set_unavailable(self, reason: str, exc: BaseException) -> None:
        self.available = False
        self.unavailable_reason = reason
        self.unavailable_details = f"{type(exc).__name__}: {exc}"
        self._inputs, self._outputs = [], []
        self._default_input = self._default_output = None
        log.warning("%s (%s)", reason, self.unavailable_details)

    def _query_devices(self) -> None:
        sd = self._sd
        assert sd is not None
        try:
            hostapis = {index: str(api["name"]) for index, api in enumerate(sd.query_hostapis())}
            devices = [
                DeviceInfo(
                    index=int(d["index"]),
                    name=str(d["name"]),
                    hostapi=hostapis.get(int(d["hostapi"]), ""),
                    max_input_channels=int(d["max_input_channels"]),
                    max_output_channels=int(d["max_output_channels"]),
                    default_sample_rate=float(d["default_samplerate"]),
                )
                for d in sd.query_devices()
            ]
        except Exception as exc:
            self._set_unavailable(
                f"Audio devices are unavailable: PortAudio could not list them ({exc}).", exc
            )
            return
        self._inputs = [d for d in devices if d.max_input_channels > 0]
        self._outputs = [d for d in devices if d.max_output_channels > 0]
        self._default_input = self._default_index(sd, "input")
        self._default_output = self._default_index(sd, "output")

    @staticmethod
    def _default_index(sd: ModuleType, kind: str) -> int | None:
        try:
            return int(sd.query_devices(kind=kind)["index"])
        except Exception:  # no default device of that kind
            return None

    @property
    def availability_message(self) -> str:
        """What is missing, for the status bar: no PortAudio, no output or no input device;
        empty when everything is there."""
        if not self.available:
            return self.unavailable_reason
        if not self._outputs:
            return NO_OUTPUT
        if not self._inputs:
            return NO_INPUT
        return ""

    def _require(self) -> ModuleType:
        if not self.available or self._sd is None:
            raise AudioDeviceError(
                self.unavailable_reason or "Audio devices are unavailable.",
                self.unavailable_details,
            )
        return self._sd

    def rescan(self) -> None:
        """Stop all streams, restart PortAudio and list the devices again.

        A running recording is stopped (its file is kept; ``stop_recording()`` still returns
        its path). Device indices from before the rescan are no longer valid. Never raises:
        if PortAudio does not come back, ``available`` turns ``False`` with the reason.
        """
        self.stop()
        recorder = self._recorder
        if recorder is not None:
            recorder.stop()
        block_stream = self._block_stream
        if block_stream is not None:
            block_stream.stop()
        with self._lock:
            if self._sd is None:
                self._load()
                return
            sd = self._sd
            # PortAudio only sees hot-plugged devices after a full terminate/initialise.
            with contextlib.suppress(Exception):
                sd._terminate()
            try:
                sd._initialize()
            except Exception as exc:
                self._set_unavailable(
                    f"Audio devices are unavailable: PortAudio could not restart ({exc}). "
                    "Restart the app.",
                    exc,
                )
                return
            self.available = True
            self.unavailable_reason = ""
            self._query_devices()

    # ------------------------------------------------------------------ devices
    def input_devices(self) -> list[DeviceInfo]:
        """Devices that can record (cached since construction or the last ``rescan()``)."""
        return list(self._inputs)

    def output_devices(self) -> list[DeviceInfo]:
        """Devices that can play (cached since construction or the last ``rescan()``)."""
        return list(self._outputs)

    def default_input(self) -> DeviceInfo | None:
        return next((d for d in self._inputs if d.index == self._default_input), None)

    def default_output(self) -> DeviceInfo | None:
        return next((d for d in self._outputs if d.index == self._default_output), None)

    def _check_device(self, device: int | None, output: bool) -> None:
        devices = self._outputs if output else self._inputs
        if device is None:
            default = self._default_output if output else self._default_input
            if default is None:
                raise AudioDeviceError(NO_OUTPUT if output else NO_INPUT)
        elif all(d.index != device for d in devices):
            raise AudioDeviceError(
                "The selected audio device is no longer available. Use Audio ▸ Rescan "
                "devices and choose another one.",
                f"device index {device} not among the {'output' if output else 'input'} devices",
            )

    def _device_name(self, device: int | None, output: bool, capital: bool = False) -> str:
        devices = self._outputs if output else self._inputs
        index = (
            device
            if device is not None
            else (self._default_output if output else self._default_input)
        )
        found = next((d for d in devices if d.index == index), None)
        if found is not None:
            return f"“{found.name}”"
        return "The audio device" if capital else "the audio device"

    # ------------------------------------------------------------------ playback
    @property
    def is_playing(self) -> bool:
        """Playback is running (not paused, stopped or finished)."""
        return self.playback_state == PlaybackState.PLAYING

    def play(
        self,
        tracks_provider: TracksProvider | Sequence[MixTrack],
        sample_rate: int,
        channels: int,
        start_frame: int = 0,
        device: int | None = None,
        loop: tuple[int, int] | None = None,
        end_frame: int | None = None,
    ) -> None:
        """Start playing (stopping any current playback first).

        Args:
            tracks_provider: Called for every block to get the tracks to hear now (e.g.
                ``session.audible_tracks``); a plain sequence of tracks also works.
            sample_rate: Timeline rate: every frame number in this API is at this rate.
            channels: Output channels (tracks are mapped to it).
            start_frame: Where to start. With a loop, a start outside it starts at the loop.
            device: Output device index; ``None`` for the default.
            loop: ``(start, end)`` frames to repeat, ``0 <= start < end``.
            end_frame: Where playback ends by itself; default: the end of the longest track
                the provider has returned.

        Raises:
            ValueError: a non-positive rate or channel count, a negative start, a bad loop.
            AudioDeviceError: no PortAudio, no device, or the device refused the settings.
        """
        sd = self._require()
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(
                f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
            )
        if start_frame < 0:
            raise ValueError(f"start_frame must be >= 0, got {start_frame}")
        loop = _check_loop(loop)
        provider: TracksProvider
        if callable(tracks_provider):
            provider = tracks_provider
        else:
            fixed = list(tracks_provider)
            provider = lambda: fixed  # noqa: E731
        self.stop()
        self._check_device(device, output=True)
        output_rate = self._output_rate(sd, device, sample_rate, channels)
        playback = _Playback(
            self, sd, provider, sample_rate, output_rate, channels, start_frame, loop, end_frame
        )
        try:
            playback.stream = sd.OutputStream(
                samplerate=output_rate,
                channels=channels,
                dtype="float32",
                device=device,
                latency=self.config.latency,
                callback=playback.callback,
            )
        except Exception as exc:
            raise AudioDeviceError(
                f"Playback could not start on {self._device_name(device, True)}: "
                f"{_plain(exc)}. Choose another output device or use Audio ▸ Rescan devices.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        try:
            playback.prefill()
        except Exception as exc:
            playback.close()
            raise AudioDeviceError(
                f"Playback could not start: a track could not be mixed ({exc}).", repr(exc)
            ) from exc
        with self._lock:
            self._playback = playback
            self.playback_error = None
            self.playback_state = PlaybackState.PLAYING
        playback.thread.start()
        try:
            playback.start_stream()
        except Exception as exc:
            self.stop()
            raise AudioDeviceError(
                f"Playback could not start on {self._device_name(device, True)}: {_plain(exc)}.",
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def _output_rate(self, sd: ModuleType, device: int | None, rate: int, channels: int) -> int:
        """The requested rate if the device takes it, else the device's default rate."""
        try:
            sd.check_output_settings(device=device, channels=channels, samplerate=rate)
            return rate
        except Exception as exc:
            try:
                info = (
                    sd.query_devices(device, kind="output")
                    if device is None
                    else (sd.query_devices(device))
                )
                fallback = int(info["default_samplerate"])
                sd.check_output_settings(device=device, channels=channels, samplerate=fallback)
            except Exception:
                raise AudioDeviceError(
                    f"{self._device_name(device, True, capital=True)} cannot play {channels} channel(s) at "
                    f"{rate} Hz: {_plain(exc)}. Choose another output device.",
                    f"{type(exc).__name__}: {exc}",
                ) from exc
            log.info("output device refuses %d Hz; playing at %d Hz", rate, fallback)
            return fallback

    def pause(self) -> None:
        """Pause; ``resume()`` continues from the same frame. No-op unless playing."""
        with self._lock:
            playback = self._playback
            if playback is None or self.playback_state != PlaybackState.PLAYING:
                return
            self.playback_state = PlaybackState.PAUSED
        try:
            playback.pause_stream()
        except Exception as exc:
            self._fail_playback(playback, f"Pausing failed: {_plain(exc)}.")

    def resume(self) -> None:
        """Continue after ``pause()``. No-op unless paused."""
        with self._lock:
            playback = self._playback
            if playback is None or self.playback_state != PlaybackState.PAUSED:
                return
            self.playback_state = PlaybackState.PLAYING
        try:
            playback.start_stream()
        except Exception as exc:
            self._fail_playback(playback, f"Playback could not resume: {_plain(exc)}.")

    def stop(self) -> None:
        """Stop playback now and release the stream (safe to call at any time)."""
        with self._lock:
            playback = self._playback
            self._playback = None
            if playback is not None:
                self._last_position = playback.to_timeline(playback.position)
            if self.playback_state in (PlaybackState.PLAYING, PlaybackState.PAUSED):
                self.playback_state = PlaybackState.STOPPED
        if playback is not None:
            playback.shutdown()
            with self._lock:
                self._underflows += playback.underflows

    def seek(self, frame: int) -> None:
        """Jump to ``frame`` (timeline rate); the buffered audio is dropped.

        Outside a playback this only sets what ``position_frames()`` reports.
        """
        frame = max(int(frame), 0)
        with self._lock:
            playback = self._playback
            if playback is None:
                self._last_position = frame
                return
        playback.request_seek(playback.to_output(frame))

    def set_loop(self, loop: tuple[int, int] | None) -> None:
        """Change or clear the loop region of the current playback (timeline frames)."""
        loop = _check_loop(loop)
        playback = self._playback
        if playback is not None:
            playback.loop = playback._loop_to_output(loop)
            playback.wake.set()

    def position_frames(self) -> int:
        """The playhead: timeline frames handed to the device so far (or where it stopped)."""
        playback = self._playback
        if playback is None:
            return self._last_position
        return playback.to_timeline(playback.position)

    def _playback_ended(self, playback: _Playback) -> None:
        """Called by the feeder thread when the end was played or mixing failed."""
        # At the end the callback has raised CallbackStop; stopping waits for the last
        # buffers to be heard. After a mixing failure there is nothing worth waiting for.
        playback.close(drain=playback.error is None)
        with self._lock:
            if self._playback is not playback:
                return  # stop() got there first
            self._playback = None
            self._last_position = playback.to_timeline(playback.position)
            self._underflows += playback.underflows
            if playback.error:
                self.playback_error = playback.error
                self.playback_state = PlaybackState.FAILED
            else:
                self.playback_state = PlaybackState.FINISHED

    def _fail_playback(self, playback: _Playback, message: str) -> None:
        playback.error = message
        self.stop()
        with self._lock:
            self.playback_error = message
            self.playback_state = PlaybackState.FAILED

    # ------------------------------------------------------------------ recording
    @property
    def recorder(self) -> Recorder | None:
        """The current (or last, until ``stop_recording()``) recording."""
        return self._recorder

    @property
    def is_recording(self) -> bool:
        recorder = self._recorder
        return recorder is not None and recorder.is_recording

    def start_recording(
        self,
        path: str | os.PathLike[str],
        device: int | None = None,
        sample_rate: int = 48000,
        channels: int = 1,
    ) -> Recorder:
        """Start capturing into a new float32 WAV file at ``path``.

        Args:
            path: File to create; an existing file is never replaced.
            device: Input device index; ``None`` for the default.
            sample_rate: Samples per second.
            channels: Channels to capture.

        Returns:
            The :class:`Recorder`, whose attributes the GUI polls.

        Raises:
            ValueError: non-positive rate or channels.
            AudioFileError: the file exists or cannot be created.
            AudioDeviceError: no PortAudio, no input device, a recording already running,
                or the device refused the settings.
        """
        sd = self._require()
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(
                f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
            )
        path = Path(path)
        with self._lock:
            if self._recorder is not None:
                if self._recorder.is_recording:
                    raise AudioDeviceError("A recording is already running; stop it first.")
                self.stop_recording()
        self._check_device(device, output=False)
        name = self._device_name(device, False)
        if path.exists():
            raise AudioFileError(
                f"“{path.name}” already exists; a recording never replaces a file.", str(path)
            )
        try:
            sd.check_input_settings(device=device, channels=channels, samplerate=sample_rate)
        except Exception as exc:
            raise AudioDeviceError(
                f"{name[0].upper()}{name[1:]} cannot record {channels} channel(s) at {sample_rate} Hz: "
                f"{_plain(exc)}. Choose other settings or another input device.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        config = self.config
        recorder = Recorder(
            path,
            sample_rate,
            channels,
            buffer_seconds=config.record_buffer_seconds,
            poll_seconds=config.record_poll_seconds,
            stall_seconds=config.record_stall_seconds,
            device_name=name,
        )
        try:
            stream = sd.InputStream(
                samplerate=sample_rate,
                channels=channels,
                dtype="float32",
                device=device,
                latency=config.latency,
                callback=recorder.callback,
                finished_callback=recorder.finished_callback,
            )
        except Exception as exc:
            recorder.discard()
            raise AudioDeviceError(
                f"Recording could not start on {name}: {_plain(exc)}.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        try:
            recorder.start(stream)
        except Exception as exc:
            raise AudioDeviceError(
                f"Recording could not start on {name}: {_plain(exc)}.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        with self._lock:
            self._recorder = recorder
        return recorder

    def stop_recording(self) -> Path:
        """Stop the recording, finish its file and return the file's path.

        Works after a failed recording too (the file holds what was captured).

        Raises:
            AudioDeviceError: there is no recording.
        """
        with self._lock:
            recorder = self._recorder
            self._recorder = None
        if recorder is None:
            raise AudioDeviceError("No recording is running.")
        path = recorder.stop()
        with self._lock:
            self._overflows += recorder.overflows
        return path

    # ------------------------------------------------------------------ live blocks
    @property
    def block_stream(self) -> BlockStream | None:
        """The open live stream, if any."""
        return self._block_stream

    def open_block_stream(
        self,
        sample_rate: int,
        input_device: int | None = None,
        output_device: int | None = None,
        play_output: bool = True,
        input_channels: int = 1,
        output_channels: int | None = None,
        input_buffer_seconds: float = 2.0,
        output_buffer_seconds: float = 1.0,
        record_path: str | os.PathLike[str] | None = None,
        latency: str | float | None = None,
    ) -> BlockStream:
        """Open (not start) live input, and output if asked, for a processing thread.

        Args:
            sample_rate: Rate of both streams, Hz (the device must accept it).
            input_device: Input device index; ``None`` for the default.
            output_device: Output device index; ``None`` for the default.
            play_output: Open the output stream too.
            input_channels: Channels to capture.
            output_channels: Channels to play; ``None``: two if the device has them, else one.
            input_buffer_seconds: How far the processing thread may fall behind the input
                before blocks are dropped (counted as input overflows).
            output_buffer_seconds: Capacity of the output ring.
            record_path: WAV file that receives the input as it arrives (must not exist);
                ``None`` records nothing.
            latency: PortAudio latency hint; ``None`` uses ``EngineConfig.latency``.

        Returns:
            The :class:`BlockStream`; call ``start()`` on it, and ``stop()`` when done.

        Raises:
            ValueError: non-positive rate or channels.
            AudioFileError: ``record_path`` exists or cannot be created.
            AudioDeviceError: no PortAudio or device, a live stream already open, or a device
                refused the settings.
        """
        sd = self._require()
        if sample_rate <= 0 or input_channels <= 0:
            raise ValueError(
                f"sample_rate and input_channels must be positive, got {sample_rate}, "
                f"{input_channels}"
            )
        if output_channels is not None and output_channels <= 0:
            raise ValueError(f"output_channels must be positive, got {output_channels}")
        with self._lock:
            if self._block_stream is not None and not self._block_stream._closed:
                raise AudioDeviceError("Live mode is already running; stop it first.")
        self._check_device(input_device, output=False)
        input_name = self._device_name(input_device, False)
        try:
            sd.check_input_settings(
                device=input_device, channels=input_channels, samplerate=sample_rate
            )
        except Exception as exc:
            raise AudioDeviceError(
                f"{input_name[0].upper()}{input_name[1:]} cannot capture {input_channels} "
                f"channel(s) at {sample_rate} Hz: {_plain(exc)}. Choose another rate or input.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        channels_out = 0
        if play_output:
            self._check_device(output_device, output=True)
            channels_out = output_channels or self._preferred_output_channels(sd, output_device)
            try:
                sd.check_output_settings(
                    device=output_device, channels=channels_out, samplerate=sample_rate
                )
            except Exception as exc:
                raise AudioDeviceError(
                    f"{self._device_name(output_device, True, capital=True)} cannot play "
                    f"{channels_out} channel(s) at {sample_rate} Hz: {_plain(exc)}. Choose "
                    "another output device or turn playback of the processed audio off.",
                    f"{type(exc).__name__}: {exc}",
                ) from exc
        config = self.config
        recorder = None
        if record_path is not None:
            recorder = Recorder(
                record_path,
                sample_rate,
                input_channels,
                buffer_seconds=config.record_buffer_seconds,
                poll_seconds=config.record_poll_seconds,
                stall_seconds=config.record_stall_seconds,
                device_name=input_name,
            )
        stream = BlockStream(
            sample_rate,
            input_channels,
            channels_out,
            round(input_buffer_seconds * sample_rate),
            round(output_buffer_seconds * sample_rate),
            recorder,
        )
        stream.device_name = input_name
        hint = config.latency if latency is None else latency
        try:
            stream._input_stream = sd.InputStream(
                samplerate=sample_rate,
                channels=input_channels,
                dtype="float32",
                device=input_device,
                latency=hint,
                callback=stream.input_callback,
                finished_callback=stream.input_finished_callback,
            )
            stream.input_latency = float(stream._input_stream.latency)
            if channels_out:
                stream._output_stream = sd.OutputStream(
                    samplerate=sample_rate,
                    channels=channels_out,
                    dtype="float32",
                    device=output_device,
                    latency=hint,
                    callback=stream.output_callback,
                )
                stream.output_latency = float(stream._output_stream.latency)
        except Exception as exc:
            stream.stop()
            raise AudioDeviceError(
                f"Live mode could not open {input_name}"
                f"{' and the output device' if channels_out else ''}: {_plain(exc)}.",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        with self._lock:
            stream._engine = self
            self._block_stream = stream
        return stream

    def _preferred_output_channels(self, sd: ModuleType, device: int | None) -> int:
        index = device if device is not None else self._default_output
        found = next((d for d in self._outputs if d.index == index), None)
        return 2 if found is None or found.max_output_channels >= 2 else 1

    def _block_stream_closed(self, stream: BlockStream) -> None:
        with self._lock:
            if self._block_stream is stream:
                self._block_stream = None
            self._overflows += stream.input_overflows
            self._underflows += stream.output_underflows

    # ------------------------------------------------------------------ status
    def status(self) -> EngineStatus:
        """Counters and flags for the status bar (cheap; call it from a timer)."""
        playback = self._playback
        recorder = self._recorder
        live = self._block_stream
        underflows = self._underflows + (playback.underflows if playback is not None else 0)
        overflows = self._overflows + (recorder.overflows if recorder is not None else 0)
        if live is not None:
            underflows += live.output_underflows
            overflows += live.input_overflows
        error = self.playback_error or (recorder.error if recorder is not None else None)
        return EngineStatus(
            available=self.available,
            playing=self.is_playing,
            recording=self.is_recording,
            playback_state=self.playback_state,
            position_frames=self.position_frames(),
            underflows=underflows,
            overflows=overflows,
            error=error,
        )

    def reset_counters(self) -> None:
        """Zero the underflow and overflow totals shown by ``status()``."""
        with self._lock:
            live = self._block_stream
            self._underflows = -(self._playback.underflows if self._playback else 0) - (
                live.output_underflows if live is not None else 0
            )
            recorder = self._recorder
            self._overflows = -(recorder.overflows if recorder is not None else 0) - (
                live.input_overflows if live is not None else 0
            )

    def close(self) -> None:
        """Stop playback, any recording and any live stream (files are kept). Safe to call
        twice."""
        self.stop()
        if self._recorder is not None:
            self.stop_recording()
        block_stream = self._block_stream
        if block_stream is not None:
            block_stream.stop()

    def __enter__(self) -> AudioEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_loop(loop: tuple[int, int] | None) -> tuple[int, int] | None:
    if loop is None:
        return None
    try:
        start, end = (int(v) for v in loop)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"loop must be (start_frame, end_frame), got {loop!r}") from exc
    if not 0 <= start < end:
        raise ValueError(f"loop must satisfy 0 <= start < end, got ({start}, {end})")
    return start, end


def _plain(exc: BaseException) -> str:
    """PortAudio's message without the error-code noise, lower-cased start."""
    text = str(exc).strip().rstrip(".")
    if " [PaErrorCode " in text:
        text = text.split(" [PaErrorCode ")[0]
    return text or type(exc).__name__
