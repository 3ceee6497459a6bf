"""A bounded single-producer, single-consumer ring buffer of audio frames (no locks).

The PortAudio callback is one end and an ordinary Python thread the other. Neither end ever
blocks or allocates: both copy into or out of one preallocated ``(capacity, channels)``
array. Each counter is written by one side only (``_written`` by the producer, ``_read`` by
the consumer) and only ever grows, so under the GIL a reader of the other side's counter sees
either the old or the new value, both safe: the producer may see less free space than there
is, the consumer less data than there is, never the reverse.

Optionally every frame carries its position on the playback timeline (an ``int64`` per
frame), so the callback can report which timeline frame it just played even across loops and
seeks without any bookkeeping of its own.

``flush()`` is called by the producer: it asks the consumer to skip everything written so
far, which the consumer does at its next read. The consumer alone moves ``_read``.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-size frame FIFO for exactly one producer thread and one consumer thread.

    Args:
        capacity: Frames the buffer holds.
        channels: Samples per frame.
        dtype: Sample type, ``float32`` by default.
        with_positions: Also store a timeline position per frame (see :meth:`write`).

    Raises:
        ValueError: ``capacity`` or ``channels`` is not positive.
    """

    def __init__(
        self,
        capacity: int,
        channels: int,
        dtype: np.dtype | type = np.float32,
        with_positions: bool = False,
    ) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError(
                f"RingBuffer needs capacity > 0 and channels > 0, got {capacity}, {channels}"
            )
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._data = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._positions = np.zeros(self.capacity, dtype=np.int64) if with_positions else None
        self._ramp = np.arange(self.capacity, dtype=np.int64) if with_positions else None
        self._written = 0  # producer-owned, monotonic
        self._read = 0  # consumer-owned, monotonic
        self._discard_until = 0  # producer-owned: consumer skips to here
        #: Timeline position just after the last frame the consumer read (-1 before any).
        self.last_position = -1

    # -- either side ---------------------------------------------------------------------
    @property
    def readable(self) -> int:
        """Frames waiting to be read (after any pending flush)."""
        return self._written - max(self._read, self._discard_until)

    @property
    def writable(self) -> int:
        """Frames that can be written without overwriting unread data."""
        return self.capacity - self.readable

    @property
    def frames_written(self) -> int:
        """Frames ever written (monotonic)."""
        return self._written

    @property
    def frames_read(self) -> int:
        """Frames ever consumed or skipped by a flush (monotonic)."""
        return self._read

    # -- producer side -------------------------------------------------------------------
    def write(self, block: np.ndarray, start_position: int | None = None) -> int:
        """Append frames; all of them or none.

        Args:
            block: Shape ``(frames, channels)``.
            start_position: Timeline position of the first frame (with ``with_positions``);
                the following frames get consecutive positions.

        Returns:
            Frames written: ``len(block)``, or 0 when there is not room for all of them.

        Raises:
            ValueError: ``block`` is not ``(frames, channels)`` with this buffer's channels.
        """
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(
                f"block must be (frames, {self.channels}), got shape {tuple(block.shape)}"
            )
        frames = int(block.shape[0])
        if frames == 0 or frames > self.writable:
            return 0
        start = self._written % self.capacity
        first = min(frames, self.capacity - start)
        self._data[start : start + first] = block[:first]
        self._data[: frames - first] = block[first:]
        if self._positions is not None:
            base = 0 if start_position is None else int(start_position)
            self._positions[start : start + first] = self._ramp[:first] + base
            self._positions[: frames - first] = self._ramp[first:frames] + base
        # Publish only after the samples are in place: the consumer trusts _written.
        self._written += frames
        return frames

    def flush(self) -> None:
        """Discard everything written so far (the consumer skips it at its next read)."""
        self._discard_until = self._written

    # -- consumer side -------------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames into ``out`` without allocating.

        Args:
            out: Shape ``(frames, channels)``; frames beyond what was available are left
                untouched (the caller zeroes them).

        Returns:
            Frames copied.
        """
        if self._discard_until > self._read:
            self._read = self._discard_until
        frames = min(int(out.shape[0]), self._written - self._read)
        if frames <= 0:
            return 0
        start = self._read % self.capacity
        first = min(frames, self.capacity - start)
        out[:first] = self._data[start : start + first]
        out[first:frames] = self._data[: frames - first]
        if self._positions is not None:
            self.last_position = int(self._positions[(start + frames - 1) % self.capacity]) + 1
        self._read += frames
        return frames

    def discard(self, max_frames: int) -> int:
        """Skip up to ``max_frames`` unread frames (consumer side: a reader that fell behind
        jumps ahead instead of working through stale audio).

        Returns:
            Frames skipped.
        """
        if self._discard_until > self._read:
            self._read = self._discard_until
        frames = max(min(int(max_frames), self._written - self._read), 0)
        self._read += frames
        return frames

    def read(self, max_frames: int) -> np.ndarray:
        """Take up to ``max_frames`` frames as a new array (for the non-realtime side).

        Returns:
            Shape ``(frames, channels)``, possibly empty.
        """
        out = np.empty(
            (min(int(max_frames), max(self.readable, 0)), self.channels), self._data.dtype
        )
        count = self.read_into(out)
        return out[:count]
