"""Generator functions the window runs as background :class:`~workbench.workers.Task` s.

Each yields :class:`~workbench.workers.Progress` between chunks (where a cancel takes effect)
and returns its result. They hold no Qt objects, so they are tested directly as plain
generators too.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.audio import io
from workbench.dsp.peaks import PeakPyramid, build_pyramid, downmix
from workbench.dsp.spectrogram import Spectrogram, iter_spectrogram
from workbench.workers import Progress


@dataclass
class LoadedTrack:
    """What a load task hands back: the audio plus its waveform pyramid."""

    audio: io.LoadedAudio
    pyramid: PeakPyramid


def load_track(path: str | Path) -> Generator[Progress, None, LoadedTrack]:
    """Decode ``path`` (90 % of the progress bar) and build its peak pyramid (10 %)."""
    name = Path(path).name
    yield Progress(0.0, f"Opening {name}")
    gen = io.iter_load(path)
    while True:
        try:
            fraction = next(gen)
        except StopIteration as stop:
            audio: io.LoadedAudio = stop.value
            break
        yield Progress(0.9 * fraction, f"Decoding {name}")
    yield Progress(0.9, f"Drawing {name}")
    pyramid = build_pyramid(audio.samples)
    yield Progress(1.0, f"Loaded {name}")
    return LoadedTrack(audio=audio, pyramid=pyramid)


def spectrogram_task(
    samples: np.ndarray,
    sample_rate: int,
    n_fft: int,
    start: int = 0,
    stop: int | None = None,
    max_columns: int = 4000,
    label: str = "",
) -> Generator[Progress, None, Spectrogram]:
    """Spectrogram of the downmixed ``samples`` (``(frames, channels)``) over a range."""
    mono = downmix(samples)
    gen = iter_spectrogram(
        mono, sample_rate, n_fft=n_fft, start=start, stop=stop, max_columns=max_columns
    )
    while True:
        try:
            fraction = next(gen)
        except StopIteration as result:
            return result.value
        yield Progress(fraction, f"Spectrogram {label}".strip())


@dataclass
class ExportItem:
    """One file to write: samples ``(frames, channels)`` at ``sample_rate`` to ``path``."""

    path: Path
    samples: np.ndarray
    sample_rate: int
    subtype: str | None = None
    overwrite: bool = False


def export_tracks(items: Sequence[ExportItem]) -> Generator[Progress, None, list[Path]]:
    """Write several files, one after the other; each write is atomic."""
    written: list[Path] = []
    for number, item in enumerate(items):
        yield Progress(number / max(len(items), 1), f"Saving {item.path.name}")
        written.append(
            io.save(item.path, item.samples, item.sample_rate, item.subtype, item.overwrite)
        )
    yield Progress(1.0, f"Saved {len(written)} file(s)")
    return written
