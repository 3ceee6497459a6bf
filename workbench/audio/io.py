"""Reading and writing audio files with soundfile, with plain-language errors.

Samples are held as ``float32`` arrays shaped ``(frames, channels)`` everywhere in the app.
Loading is a generator (:func:`iter_load`) so a worker can report progress and stop between
blocks; :func:`load` is the blocking convenience wrapper. Writing is atomic: a temporary file
in the destination folder is renamed over the final name only once it is complete, and an
existing file is never replaced unless the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from workbench.errors import AudioFileError

#: Extensions offered in the open dialog and picked up when a folder is dropped.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")

#: Export formats: extension -> (soundfile format, default subtype).
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
}

#: Subtypes each export format can store losslessly, in order of preference.
_LOSSLESS_SUBTYPES: dict[str, tuple[str, ...]] = {
    "WAV": ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"),
    "FLAC": ("PCM_16", "PCM_24", "PCM_S8"),
}

#: Refuse to decode more than this many bytes of float32 samples into memory.
DEFAULT_MAX_BYTES = 8 * 1024**3

_BLOCK_FRAMES = 1 << 18
_WIDE_SUBTYPES = ("PCM_32", "DOUBLE")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding it."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass
class LoadedAudio:
    """Decoded audio.

    Attributes:
        samples: ``float32`` array, shape ``(frames, channels)`` (``float64`` for 32-bit
            integer and double files, so they round-trip exactly).
        sample_rate: Samples per second, as stored in the file.
        info: The header information.
        warnings: Plain-language notes about what was repaired while loading (NaN samples,
            a truncated file), for the status bar.
    """

    samples: np.ndarray
    sample_rate: int
    info: AudioInfo
    warnings: list[str] = field(default_factory=list)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(f"“{path.name}” does not exist.", str(path))
    if path.is_dir():
        raise AudioFileError(
            f"“{path.name}” is a folder, not an audio file. Open the files inside it instead.",
            str(path),
        )
    if not os.access(path, os.R_OK):
        raise AudioFileError(
            f"You do not have permission to read “{path.name}”. Check the file's permissions.",
            str(path),
        )
    if path.stat().st_size == 0:
        raise AudioFileError(f"“{path.name}” is empty (0 bytes).", str(path))


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header.

    Raises:
        AudioFileError: the file is missing, unreadable, empty, not audio or damaged.
    """
    path = Path(path)
    _check_readable(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(
            f"“{path.name}” is not an audio file this app can read, or it is damaged. "
            "Supported formats are WAV, FLAC, OGG/Vorbis, MP3 and AIFF.",
            f"{path}: {exc}",
        ) from exc
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(f"“{path.name}” has an invalid header.", str(path))
    return AudioInfo(
        path=path,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=max(int(info.frames), 0),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def iter_load(
    path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> Generator[float, None, LoadedAudio]:
    """Decode a file block by block.

    Yields:
        The fraction decoded so far (0..1), between blocks, so a caller can report progress
        and stop early by closing the generator.

    Returns:
        The decoded :class:`LoadedAudio` (as the generator's return value).

    Raises:
        AudioFileError: see :func:`probe`; also for files with no samples or too large to hold.
    """
    info = probe(path)
    path = info.path
    if info.frames == 0:
        raise AudioFileError(f"“{path.name}” contains no audio (zero length).", str(path))
    needed = info.frames * info.channels * (8 if info.subtype in _WIDE_SUBTYPES else 4)
    if needed > max_bytes:
        raise AudioFileError(
            f"“{path.name}” is too long to open here: it needs {needed / 1024**3:.1f} GiB of "
            f"memory and the limit is {max_bytes / 1024**3:.1f} GiB. Split it or use the "
            "command line, which processes long files in chunks.",
            str(path),
        )
    warnings: list[str] = []
    # float32 keeps 24 significant bits; 32-bit integer and double files need float64 to
    # survive a load -> export round trip sample-exactly.
    dtype = "float64" if info.subtype in _WIDE_SUBTYPES else "float32"
    samples = np.empty((info.frames, info.channels), dtype=dtype)
    filled = 0
    try:
        with sf.SoundFile(str(path)) as handle:
            # libsndfile silently shortens a WAV whose header promises more data than the
            # file holds; its log says "(should be N)" then. Tell the user.
            if "(should be" in (handle.extra_info or ""):
                warnings.append(
                    "The file is shorter than its header says; it is probably truncated. "
                    "The readable part was loaded."
                )
            while filled < info.frames:
                want = min(_BLOCK_FRAMES, info.frames - filled)
                block = handle.read(want, dtype=dtype, always_2d=True)
                if block.shape[0] == 0:
                    break
                samples[filled : filled + block.shape[0]] = block
                filled += block.shape[0]
                yield filled / info.frames
    except (sf.LibsndfileError, RuntimeError) as exc:
        if filled == 0:
            raise AudioFileError(
                f"“{path.name}” is damaged: no audio could be decoded from it.", f"{path}: {exc}"
            ) from exc
        warnings.append(
            f"The file is damaged after {filled / info.sample_rate:.2f} s; "
            "the readable part was loaded."
        )
    if filled == 0:
        raise AudioFileError(f"“{path.name}” contains no audio (zero length).", str(path))
    if filled < info.frames:
        if not warnings:
            warnings.append(
                f"The file is shorter than its header says ({filled} of {info.frames} frames); "
                "it is probably truncated. The readable part was loaded."
            )
        samples = samples[:filled].copy()
    bad = ~np.isfinite(samples)
    if bad.any():
        count = int(bad.sum())
        samples[bad] = 0.0
        warnings.append(f"{count} invalid samples (NaN or infinity) were replaced by silence.")
    return LoadedAudio(samples=samples, sample_rate=info.sample_rate, info=info, warnings=warnings)


def load(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedAudio:
    """Decode a whole file (blocking). See :func:`iter_load`."""
    gen = iter_load(path, max_bytes=max_bytes)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def choose_subtype(fmt: str, source_subtype: str | None) -> str:
    """Pick the subtype an export uses: the source's when the format stores it losslessly."""
    extension = {v[0]: k for k, v in EXPORT_FORMATS.items()}[fmt]
    if source_subtype and source_subtype in _LOSSLESS_SUBTYPES.get(fmt, ()):
        return source_subtype
    if fmt == "FLAC" and source_subtype in ("FLOAT", "DOUBLE", "PCM_32"):
        return "PCM_24"
    return EXPORT_FORMATS[extension][1]


def save(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write audio atomically.

    Args:
        path: Destination; its extension (wav, flac, ogg) selects the format.
        samples: Shape ``(frames,)`` or ``(frames, channels)``, float or integer.
        sample_rate: Samples per second.
        subtype: soundfile subtype (``PCM_16``, ``FLOAT``...); default per format.
        overwrite: Replace an existing file. Without it an existing file raises.

    Returns:
        The written path.

    Raises:
        AudioFileError: existing file, unknown extension, empty or invalid samples, disk error.
    """
    path = Path(path)
    extension = path.suffix.lower().lstrip(".")
    if extension not in EXPORT_FORMATS:
        raise AudioFileError(
            f"Cannot save as “.{extension}”. Choose one of: "
            + ", ".join(f".{e}" for e in EXPORT_FORMATS),
            str(path),
        )
    if path.exists() and not overwrite:
        raise AudioFileError(
            f"“{path.name}” already exists. Choose another name or allow overwriting.", str(path)
        )
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioFileError("There is no audio to save.", f"shape {data.shape}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise AudioFileError("The audio contains invalid samples (NaN or infinity).", str(path))
    fmt, default_subtype = EXPORT_FORMATS[extension]
    subtype = subtype or default_subtype
    if not sf.check_format(fmt, subtype):
        raise AudioFileError(f"{fmt} files cannot store {subtype} samples.", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".{extension}.part", dir=path.parent
    )
    os.close(fd)
    try:
        sf.write(tmp_name, data, int(sample_rate), format=fmt, subtype=subtype)
        # mkstemp creates owner-only files; exports get the usual permissions (umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        if not overwrite and path.exists():
            raise AudioFileError(
                f"“{path.name}” appeared while saving; it was not replaced.", str(path)
            )
        os.replace(tmp_name, path)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioFileError(f"Could not save “{path.name}”: {exc}", str(path)) from exc
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Turn dropped files and folders into a sorted list of audio files.

    Folders are searched recursively for :data:`AUDIO_EXTENSIONS`; files are kept as given
    (even with an unknown extension, so that loading can say why it fails).
    """
    result: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            result.extend(
                sorted(
                    f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
                )
            )
        else:
            result.append(p)
    return result
