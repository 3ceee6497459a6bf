"""A virtual ALSA sound card made of files, for real PortAudio streams in the tests.

:func:`install` writes a test-local asoundrc and points ``ALSA_CONFIG_PATH`` at the system
``alsa.conf`` plus that file. It must run before anything imports ``sounddevice`` (which
starts PortAudio, which reads the ALSA configuration once); ``tests/conftest.py`` calls it
first thing.

The asoundrc defines ``pcm.!default`` as ``type asym``:

* capture: ``type plug`` (to S16_LE, :data:`CAPTURE_CHANNELS` channel(s), :data:`RATE` Hz)
  in front of a ``type file`` PCM whose slave is ``null`` and whose ``infile`` is
  ``capture.raw``. A test writes raw little-endian 16-bit frames there and a recording
  captures exactly those samples (each int16 ``s`` arrives as the float ``s / 32768``).
* playback: ``type plug`` (to S16_LE, :data:`PLAYBACK_CHANNELS` channels, :data:`RATE` Hz)
  in front of a ``type file`` PCM writing ``playback.raw`` (truncated each time a stream
  opens, written as the stream runs, complete once it is closed).

Two hazards of this card, measured on the CI machine:

* ``null`` has no clock: both directions run as fast as the CPU allows (~1000x real time),
  so recordings overflow their buffer after the first couple of seconds of "audio" and
  playback outruns its feeder. Tests put the known signal at the start and keep it shorter
  than the engine's buffers.
* After the end of ``capture.raw`` the file plugin keeps returning the last period again
  (stale data, not silence).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 48000
CAPTURE_CHANNELS = 1
PLAYBACK_CHANNELS = 2
SYSTEM_ALSA_CONF = "/usr/share/alsa/alsa.conf"

_ASOUNDRC = """\
# Written by tests/alsa_virtual.py: a sound card made of files.
pcm.workbench_capture_file {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{capture}"
    format "raw"
}}
pcm.workbench_playback_file {{
    type file
    slave.pcm "null"
    file "{playback}"
    format "raw"
}}
pcm.!default {{
    type asym
    capture.pcm {{
        type plug
        slave {{
            pcm "workbench_capture_file"
            format S16_LE
            channels {capture_channels}
            rate {rate}
        }}
    }}
    playback.pcm {{
        type plug
        slave {{
            pcm "workbench_playback_file"
            format S16_LE
            channels {playback_channels}
            rate {rate}
        }}
    }}
}}
"""


@dataclass(frozen=True)
class VirtualAlsa:
    """Paths of the installed virtual card.

    Attributes:
        directory: Folder holding the files.
        asoundrc: The configuration file.
        capture_path: Raw S16_LE frames a recording reads.
        playback_path: Raw S16_LE frames playback writes.
    """

    directory: Path
    asoundrc: Path
    capture_path: Path
    playback_path: Path

    def set_capture(self, samples: np.ndarray) -> None:
        """Make the next recording capture ``samples``.

        Args:
            samples: ``int16``, shape ``(frames,)`` or ``(frames, CAPTURE_CHANNELS)``.
        """
        data = np.asarray(samples)
        if data.dtype != np.int16:
            raise ValueError(f"capture samples must be int16, got {data.dtype}")
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[1] != CAPTURE_CHANNELS:
            raise ValueError(
                f"capture samples must be (frames, {CAPTURE_CHANNELS}), got {data.shape}"
            )
        data.astype("<i2").tofile(self.capture_path)

    def read_playback(self) -> np.ndarray:
        """What playback wrote: ``int16``, shape ``(frames, PLAYBACK_CHANNELS)``."""
        if not self.playback_path.exists():
            return np.zeros((0, PLAYBACK_CHANNELS), dtype=np.int16)
        raw = np.fromfile(self.playback_path, dtype="<i2")
        frames = raw.size // PLAYBACK_CHANNELS
        return raw[: frames * PLAYBACK_CHANNELS].reshape(frames, PLAYBACK_CHANNELS)


def find_signal(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where ``needle`` starts in ``haystack`` (1-D): the first match of its first 64 samples.

    Devices may deliver a few frames before the signal (priming), hence the search.

    Raises:
        AssertionError: not found.
    """
    head = np.asarray(needle)[:64]
    candidates = np.flatnonzero(haystack[: max(haystack.size - needle.size + 1, 0)] == head[0])
    for offset in candidates:
        if np.array_equal(haystack[offset : offset + head.size], head):
            return int(offset)
    raise AssertionError("the known signal was not found in what the device delivered")


_installed: VirtualAlsa | None = None


def installed() -> VirtualAlsa:
    """The card :func:`install` set up in this process.

    Raises:
        RuntimeError: :func:`install` has not run (``tests/conftest.py`` runs it).
    """
    if _installed is None:
        raise RuntimeError("the virtual ALSA card is not installed; tests/conftest.py does it")
    return _installed


def install(directory: str | os.PathLike[str]) -> VirtualAlsa:
    """Write the asoundrc into ``directory`` and select it for this process and children.

    Call before ``sounddevice`` is imported.

    Returns:
        The card's paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card = VirtualAlsa(
        directory=directory,
        asoundrc=directory / "asoundrc",
        capture_path=directory / "capture.raw",
        playback_path=directory / "playback.raw",
    )
    # Until a test writes its own signal, recordings capture a second of silence.
    card.set_capture(np.zeros(RATE, dtype=np.int16))
    card.asoundrc.write_text(
        _ASOUNDRC.format(
            capture=card.capture_path,
            playback=card.playback_path,
            capture_channels=CAPTURE_CHANNELS,
            playback_channels=PLAYBACK_CHANNELS,
            rate=RATE,
        )
    )
    os.environ["ALSA_CONFIG_PATH"] = f"{SYSTEM_ALSA_CONF}:{card.asoundrc}"
    global _installed
    _installed = card
    return card
