"""Recording to disk as the audio arrives: a crash-safe streaming WAV writer and the recorder.

:class:`StreamingWavWriter` writes 32-bit float WAV (``WAVE_FORMAT_IEEE_FLOAT``, format 3,
with the ``fact`` chunk that non-PCM WAV requires). After every append it rewrites the RIFF,
``fact`` and ``data`` sizes and flushes, samples first and sizes second, so the file on disk
is at every moment a valid WAV holding at least what its header announces: if the app
crashes, is killed or loses its device mid-recording, the file opens with everything captured
up to the last write (at most one writer period, ~20 ms, is lost). ``os.fsync`` runs about
once a second so a power cut loses little more. A ``JUNK`` chunk reserves room for a ``ds64``
chunk: past 4 GiB the file turns into RF64 in place instead of overflowing the 32-bit sizes.

:class:`Recorder` is one recording. Its ``callback`` runs on the PortAudio thread and only
copies each block into a preallocated :class:`~workbench.audio.ringbuffer.RingBuffer` (a full
buffer drops the block and counts an overflow). A writer thread drains the buffer every
``poll_seconds``, appends to the WAV and updates the plain attributes a GUI timer reads:

* ``frames_written``, ``elapsed_seconds`` (what is on disk), ``overflows`` (dropped blocks,
  plus device-reported input overflows), ``dropped_frames``;
* ``peak`` (per channel, linear, falling back at ``PEAK_FALL_DB_PER_SECOND`` so short
  transients stay visible between GUI polls), ``rms`` (per channel, last chunk),
  ``max_peak`` (per channel, whole recording; 1.0 means it clipped);
* ``state`` (``"recording"``, ``"stopped"``, ``"failed"``) and ``error`` (plain language, or
  ``None``).

If the stream ends on its own (device unplugged: PortAudio's finished callback fires while
nobody asked to stop), stops delivering audio for ``stall_seconds``, or the disk fails, the
recorder stops writing cleanly, keeps the file and sets ``error``. :meth:`Recorder.stop` (via
``AudioEngine.stop_recording``) always returns the path.

The stream itself is opened by ``workbench.audio.engine.AudioEngine``; this module never
imports sounddevice, so it works (and is tested) without PortAudio.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from workbench.audio.ringbuffer import RingBuffer
from workbench.errors import AudioFileError

#: Largest RIFF size a plain WAV can state; beyond it the file becomes RF64.
RIFF_LIMIT = 0xFFFFFFFF
#: Peak meter fall-back speed.
PEAK_FALL_DB_PER_SECOND = 20.0

_FORMAT_IEEE_FLOAT = 3
_BYTES_PER_SAMPLE = 4
# Byte offsets in the header this writer produces.
_RIFF_SIZE_AT = 4
_JUNK_AT = 12  # "JUNK" (later "ds64") + size 28 + 28 bytes
_DS64_BODY_AT = 20
_FACT_LENGTH_AT = 82
_DATA_SIZE_AT = 90
_HEADER_BYTES = 94
_FSYNC_SECONDS = 1.0


class StreamingWavWriter:
    """Append-only float32 WAV file that is valid after every :meth:`append`.

    Args:
        path: File to create; it must not exist (recordings never overwrite).
        sample_rate: Samples per second.
        channels: Channels per frame.
        riff_limit: RIFF size above which the file switches to RF64 (lowered in tests).

    Raises:
        AudioFileError: the file exists or cannot be created.
        ValueError: ``sample_rate`` or ``channels`` is not positive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        riff_limit: int = RIFF_LIMIT,
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(
                f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
            )
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.riff_limit = int(riff_limit)
        self.frames = 0
        self.is_rf64 = False
        self._last_sync = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 (kept open)
        except FileExistsError as exc:
            raise AudioFileError(
                f"“{self.path.name}” already exists; a recording never replaces a file. "
                "Choose another name.",
                str(self.path),
            ) from exc
        except OSError as exc:
            raise AudioFileError(
                f"Cannot create the recording file “{self.path.name}”: {exc.strerror or exc}.",
                str(self.path),
            ) from exc
        self._file.write(self._header())
        self._file.flush()

    def _header(self) -> bytes:
        block_align = self.channels * _BYTES_PER_SAMPLE
        fmt = struct.pack(
            "<HHIIHHH",
            _FORMAT_IEEE_FLOAT,
            self.channels,
            self.sample_rate,
            self.sample_rate * block_align,
            block_align,
            8 * _BYTES_PER_SAMPLE,
            0,  # cbSize: no extension
        )
        header = (
            b"RIFF"
            + struct.pack("<I", _HEADER_BYTES - 8)
            + b"WAVE"
            + b"JUNK"
            + struct.pack("<I", 28)
            + bytes(28)
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"fact"
            + struct.pack("<II", 4, 0)
            + b"data"
            + struct.pack("<I", 0)
        )
        if len(header) != _HEADER_BYTES:
            raise RuntimeError("WAV header layout changed; update the offsets")
        return header

    @property
    def data_bytes(self) -> int:
        return self.frames * self.channels * _BYTES_PER_SAMPLE

    def append(self, block: np.ndarray) -> None:
        """Write frames, then the sizes that announce them, then flush.

        Args:
            block: Shape ``(frames, channels)``, any float type (stored as float32).

        Raises:
            ValueError: wrong shape.
            OSError: the disk refused the write (full, removed, read-only).
        """
        if self._file is None:
            raise ValueError("the WAV writer is closed")
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(
                f"block must be (frames, {self.channels}), got shape {tuple(block.shape)}"
            )
        if block.shape[0] == 0:
            return
        handle = self._file
        handle.seek(0, os.SEEK_END)
        handle.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        # The samples must reach the file before the header claims them.
        handle.flush()
        self.frames += int(block.shape[0])
        self._write_sizes()
        handle.flush()
        now = time.monotonic()
        if now - self._last_sync >= _FSYNC_SECONDS:
            os.fsync(handle.fileno())
            self._last_sync = now

    def _put(self, offset: int, data: bytes) -> None:
        assert self._file is not None
        self._file.seek(offset)
        self._file.write(data)

    def _write_sizes(self) -> None:
        riff_size = _HEADER_BYTES - 8 + self.data_bytes
        if not self.is_rf64 and riff_size > self.riff_limit:
            self._become_rf64()
        if self.is_rf64:
            # ds64: RIFF size, data size, sample count (64-bit), table length 0.
            self._put(
                _DS64_BODY_AT, struct.pack("<QQQI", riff_size, self.data_bytes, self.frames, 0)
            )
            return
        self._put(_RIFF_SIZE_AT, struct.pack("<I", riff_size))
        self._put(_FACT_LENGTH_AT, struct.pack("<I", self.frames))
        self._put(_DATA_SIZE_AT, struct.pack("<I", self.data_bytes))

    def _become_rf64(self) -> None:
        # Fill the reserved chunk while it is still called JUNK (readers skip it), then
        # rename it and the RIFF tag, then mark the 32-bit sizes as "see ds64".
        riff_size = _HEADER_BYTES - 8 + self.data_bytes
        self._put(_DS64_BODY_AT, struct.pack("<QQQI", riff_size, self.data_bytes, self.frames, 0))
        self._put(_JUNK_AT, b"ds64")
        self._put(0, b"RF64")
        for offset in (_RIFF_SIZE_AT, _FACT_LENGTH_AT, _DATA_SIZE_AT):
            self._put(offset, struct.pack("<I", 0xFFFFFFFF))
        self.is_rf64 = True

    def close(self) -> None:
        """Flush, sync and close (idempotent)."""
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()


class Recorder:
    """One recording: ring buffer filled by the PortAudio callback, drained to a WAV file.

    Created by ``AudioEngine.start_recording``; the GUI reads its attributes (see the module
    docstring) from a timer and never calls into it except :meth:`stop` (through the engine).

    Args:
        path: WAV file to create (must not exist).
        sample_rate: Samples per second.
        channels: Channels captured.
        buffer_seconds: Ring buffer length: how long the writer may fall behind before
            blocks are dropped.
        poll_seconds: How often the writer drains the buffer.
        stall_seconds: No audio for this long while running counts as a lost device.
        device_name: For messages.
        riff_limit: See :class:`StreamingWavWriter`.

    Raises:
        AudioFileError: the file exists or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        buffer_seconds: float = 2.0,
        poll_seconds: float = 0.02,
        stall_seconds: float = 3.0,
        device_name: str = "the input device",
        riff_limit: int = RIFF_LIMIT,
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(
                f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
            )
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.device_name = device_name
        self.poll_seconds = float(poll_seconds)
        self.stall_seconds = float(stall_seconds)
        self.frames_written = 0
        self.overflows = 0
        self.dropped_frames = 0
        self.peak = [0.0] * self.channels
        self.rms = [0.0] * self.channels
        self.max_peak = [0.0] * self.channels
        self.state = "recording"
        self.error: str | None = None
        self._ring = RingBuffer(max(int(buffer_seconds * sample_rate), 1), self.channels)
        self._writer = StreamingWavWriter(self.path, sample_rate, channels, riff_limit)
        self._stream: Any = None
        self._stream_finished = False
        self._stop_requested = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._write_loop, name=f"recorder-writer:{self.path.name}", daemon=True
        )

    # -- read by the GUI -----------------------------------------------------------------
    @property
    def elapsed_seconds(self) -> float:
        """Seconds of audio on disk."""
        return self.frames_written / self.sample_rate

    @property
    def is_recording(self) -> bool:
        return self.state == "recording"

    # -- PortAudio thread ----------------------------------------------------------------
    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio input callback: copy the block into the ring buffer, nothing else."""
        if status and status.input_overflow:
            self.overflows += 1
        if self._ring.write(indata) == 0 and frames:
            self.overflows += 1
            self.dropped_frames += frames

    def finished_callback(self) -> None:
        """PortAudio calls this when the stream stops, asked or not (e.g. unplugged)."""
        self._stream_finished = True

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, stream: Any | None) -> None:
        """Start the writer thread, then the (already opened) input stream.

        Args:
            stream: An opened ``sounddevice.InputStream`` whose ``callback`` and
                ``finished_callback`` are this recorder's (or call them); ``None`` when the
                caller starts and stops the stream itself (live mode's block stream) and
                only wants the writer running.

        Raises:
            Exception: whatever ``stream.start()`` raises; the recorder is then stopped and
                its (empty) file removed.
        """
        self._stream = stream
        self._thread.start()
        if stream is None:
            return
        try:
            stream.start()
        except BaseException:
            self._stop_requested.set()
            self._thread.join()
            _close_quietly(stream)
            self.discard()
            raise

    def discard(self) -> None:
        """Give up before :meth:`start` (the stream could not be opened): remove the file."""
        self._stopped = True
        self.state = "failed"
        with contextlib.suppress(OSError):
            self._writer.close()
        self.path.unlink(missing_ok=True)

    def stop(self, timeout: float = 10.0) -> Path:
        """Stop capturing, write what is buffered, close the file (idempotent).

        Returns:
            The path of the WAV file (valid even if the recording failed).
        """
        with self._stop_lock:
            if self._stopped:
                self._thread.join(timeout)
                return self.path
            self._stopped = True
        if self._stream is not None:
            # Stop first so the final drain below sees every captured block.
            _close_quietly(self._stream)
        self._stop_requested.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.state == "recording":
            self.state = "stopped"
        return self.path

    # -- writer thread -------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.state = "failed"

    def _drain(self, max_frames: int) -> int:
        # Only what is there now: a source faster than the disk must not keep us here.
        remaining = self._ring.readable
        total = 0
        while remaining > 0:
            block = self._ring.read(min(max_frames, remaining))
            if block.shape[0] == 0:
                break
            remaining -= block.shape[0]
            self._writer.append(block)
            total += block.shape[0]
            self._update_meters(block)
            self.frames_written = self._writer.frames
        return total

    def _update_meters(self, block: np.ndarray) -> None:
        seconds = block.shape[0] / self.sample_rate
        fall = 10.0 ** (-PEAK_FALL_DB_PER_SECOND * seconds / 20.0)
        block_peak = np.abs(block).max(axis=0)
        block_rms = np.sqrt(np.mean(np.square(block, dtype=np.float64), axis=0))
        self.peak = [max(float(p), old * fall) for p, old in zip(block_peak, self.peak)]
        self.rms = [float(r) for r in block_rms]
        self.max_peak = [max(float(p), old) for p, old in zip(block_peak, self.max_peak)]

    def _write_loop(self) -> None:
        chunk = max(self.sample_rate // 2, 1)
        last_audio = time.monotonic()
        try:
            while True:
                stopping = self._stop_requested.wait(self.poll_seconds)
                if self._drain(chunk):
                    last_audio = time.monotonic()
                if stopping:
                    break
                if self._stream_finished and not self._stopped:
                    self._drain(chunk)  # anything that arrived before it ended
                    self._fail(
                        f"Recording stopped: {self.device_name} stopped delivering audio "
                        "(was it unplugged?)."
                    )
                    break
                if time.monotonic() - last_audio > self.stall_seconds:
                    self._fail(
                        f"Recording stopped: no audio arrived from {self.device_name} for "
                        f"{self.stall_seconds:.0f} seconds (was it unplugged?)."
                    )
                    break
        except OSError as exc:
            self._fail(
                f"Recording stopped: writing “{self.path.name}” failed "
                f"({exc.strerror or exc}). Check the free disk space."
            )
        except Exception as exc:  # the thread must never die silently
            self._fail(f"Recording stopped by an internal error: {exc}")
        finally:
            try:
                self._writer.close()
            except OSError as exc:
                self._fail(f"Recording stopped: closing “{self.path.name}” failed ({exc}).")


def _close_quietly(stream: Any) -> None:
    """Stop and close a stream whose device may already be gone."""
    # PortAudio errors from a vanished device are expected here and carry no news.
    for action in ("stop", "close"):
        with contextlib.suppress(Exception):
            getattr(stream, action)()
