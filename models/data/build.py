"""The corpus builder behind ``workbench data build``.

It turns what Debian and PyPI ship into a training corpus (``shared/DATA.md``):

1. As root, enables ``contrib``/``non-free`` and installs the tools (sox, espeak-ng, MBROLA
   voices, flite, Pico, Festival, fluidsynth, mma). Without root it uses what is installed.
2. Downloads the data packages with ``apt-get download`` (no dependencies, nothing executed) and
   unpacks only the members a source wants with ``dpkg-deb --fsys-tarfile``; reserved members
   are never written to disk (``models.data.sources``).
3. Decodes every file once to a canonical form: mono FLAC, 16 kHz for speech, sfx and noise,
   44.1 kHz for music and stems; renders TTS speech, MIDI stems (split by channel and program,
   rendered per stem with several soundfonts, a sampled drum kit from Hydrogen or the AVL Red
   Zeppelin kit), coloured noise and simulated room impulse responses.
4. Writes one manifest per source (``manifests/sources/NAME.csv``), then the merged
   ``manifests/corpus.csv`` and a summary (``manifests/summary.json`` and ``summary.md``).

Layout under the corpus root::

    debs/                 downloaded packages (cache)
    unpacked/PACKAGE/     the members in use, as in the package
    audio/SOURCE/...      canonical audio
    manifests/            per-source manifests, corpus.csv, summary

Re-running skips finished sources (their manifest exists) and finished files (their output
exists), so an interrupted build resumes. A source whose package, tool or Python module is
missing is skipped with a message saying what is missing and how to get it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import gettext
import importlib.util
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soundfile as sf

from models.data.manifest import (
    ManifestRow,
    format_summary,
    read_manifest,
    summarize,
    write_manifest,
)
from models.data.sources import (
    GROUPS,
    ROOM_RT60,
    SOURCES,
    ReservedSourceError,
    Source,
    Voice,
    check_member_allowed,
    check_package_allowed,
    check_voice_allowed,
    is_reserved_member,
    validate_table,
)
from models.data.synthetic import coloured_noise

#: Tools every build wants when it can install them (decoders for odd formats).
BASE_APT_TOOLS: tuple[str, ...] = ("sox", "libsox-fmt-all", "flac", "vorbis-tools")
DATA_EXTRA_HINT = "pip install 'audio-workbench[data]'  (pyroomacoustics, mido, music21)"
MANIFEST_DIR = "manifests"
CORPUS_MANIFEST = "corpus.csv"
_SILENCE = 1e-4


class SkipSource(RuntimeError):
    """A source cannot be built here (missing package, tool or module); the build goes on."""


@dataclass(frozen=True)
class BuildOptions:
    """What to build and where.

    Attributes:
        root: Corpus root folder.
        only: ``--only`` groups (see :data:`models.data.sources.GROUPS`).
        names: Build only these source names (empty = all in ``only``).
        jobs: Worker processes for decoding and rendering.
        install: Enable archive components and install tools with apt when running as root.
        sources: The source table (tests pass their own).
        stream: Where progress and messages go.
    """

    root: Path
    only: tuple[str, ...] = GROUPS
    names: tuple[str, ...] = ()
    jobs: int = 1
    install: bool = True
    sources: tuple[Source, ...] = SOURCES
    stream: TextIO | None = None


@dataclass
class BuildReport:
    """What a build did: rows per source, skipped sources with reasons, wall time."""

    rows: dict[str, list[ManifestRow]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def all_rows(self) -> list[ManifestRow]:
        return [row for rows in self.rows.values() for row in rows]


# --------------------------------------------------------------------------- messages


class Progress:
    """A text progress bar: redraws in place on a terminal, prints every 10 % in a log."""

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream
        self.count = 0
        self.start = time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last_decile = -1

    def update(self, step: int = 1) -> None:
        self.count += step
        fraction = min(self.count / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        width = 30
        bar = "#" * int(width * fraction) + "." * (width - int(width * fraction))
        line = f"  {self.label:<24} [{bar}] {self.count}/{self.total}  eta {eta:5.0f} s"
        if self.tty:
            self.stream.write("\r" + line)
            if self.count >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()


def _say(options: BuildOptions, message: str) -> None:
    stream = options.stream or sys.stdout
    stream.write(message + "\n")
    stream.flush()


# --------------------------------------------------------------------------- system steps


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def enable_components(options: BuildOptions) -> None:
    """Add ``contrib non-free`` to the Debian sources (MBROLA voices, Pico) and update."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    classic = Path("/etc/apt/sources.list")
    changed = False
    if deb822.is_file():
        text = deb822.read_text()
        new = re.sub(r"(?m)^Components: main$", "Components: main contrib non-free", text)
        if new != text:
            deb822.write_text(new)
            changed = True
    elif classic.is_file():
        text = classic.read_text()
        new = re.sub(r"(?m)^(deb\s+\S+\s+\S+\s+main)\s*$", r"\1 contrib non-free", text)
        if new != text:
            classic.write_text(new)
            changed = True
    stamp = Path("/var/lib/apt/lists")
    stale = not any(stamp.glob("*contrib*Packages*")) if stamp.is_dir() else True
    if changed or stale:
        _say(options, "apt: enabling contrib and non-free, updating package lists")
        _run(["apt-get", "update", "-qq"], options, check=False)


def install_tools(options: BuildOptions, packages: Sequence[str]) -> None:
    """``apt-get install`` the tool packages that are not installed yet."""
    missing = [package for package in packages if not _dpkg_installed(package)]
    for package in missing:
        check_package_allowed(package)
    if not missing:
        return
    _say(options, f"apt: installing {len(missing)} tool packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        # One unknown package makes apt refuse all; retry one by one so the rest install.
        for package in missing:
            single = subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                capture_output=True,
                text=True,
                env=env,
            )
            if single.returncode != 0:
                _say(options, f"apt: could not install {package}: {single.stderr.strip()[-200:]}")


def _dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


def mbrola_voice_packages() -> list[str]:
    """Every ``mbrola-XX`` voice package the archive offers, minus the reserved ones."""
    if shutil.which("apt-cache") is None:
        return []
    result = subprocess.run(
        ["apt-cache", "search", "--names-only", "^mbrola-"], capture_output=True, text=True
    )
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    allowed = []
    for name in names:
        try:
            check_package_allowed(name)
        except ReservedSourceError:
            continue
        allowed.append(name)
    return allowed


def _run(
    command: Sequence[str], options: BuildOptions, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()[-400:]}")
    return result


def download(options: BuildOptions, package: str) -> Path:
    """The cached ``.deb`` of ``package``, downloading it with ``apt-get download`` if needed.

    Raises:
        ReservedSourceError: the package is reserved.
        SkipSource: it cannot be had (no apt-get, unknown package, no network).
    """
    check_package_allowed(package)
    debs = options.root / "debs"
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    if shutil.which("apt-get") is None:
        raise SkipSource(
            f"package {package} is not in {debs} and apt-get is not on PATH to download it "
            "(on Debian: run as a user with network access, or copy the .deb there)"
        )
    debs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["apt-get", "download", "-qq", package], cwd=debs, capture_output=True, text=True
    )
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not cached:
        raise SkipSource(
            f"apt-get download {package} failed: {result.stderr.strip()[-300:] or 'no file'} "
            "(is contrib/non-free enabled and 'apt-get update' done?)"
        )
    return cached[-1]


def unpack(options: BuildOptions, package: str, patterns: Sequence[str]) -> Path:
    """Extract the members of ``package`` matching ``patterns`` to ``unpacked/PACKAGE``.

    Only regular files are extracted; symbolic links are skipped, which also removes the
    duplicate files some packages expose under several names. Reserved members are never
    written. A marker file records which patterns were extracted so a re-run is free.

    Returns:
        The folder holding the members with their package paths.
    """
    check_package_allowed(package)
    target = options.root / "unpacked" / package
    marker = target / ".unpacked.json"
    done: list[str] = json.loads(marker.read_text()) if marker.is_file() else []
    if "*" in done or set(patterns) <= set(done):
        return target
    deb = download(options, package)
    if shutil.which("dpkg-deb") is None:
        raise SkipSource("dpkg-deb is not on PATH (install dpkg) to unpack " + deb.name)
    target.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    # Stream mode: the tar is read once from the pipe, never written to disk whole.
    with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
        for member in archive:
            name = member.name.lstrip("./")
            if not member.isfile():
                continue
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                continue
            if is_reserved_member(package, name):
                continue
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            handle = archive.extractfile(member)
            if handle is None:
                continue
            tmp = destination.with_name(destination.name + ".part")
            with tmp.open("wb") as out:
                shutil.copyfileobj(handle, out, length=1 << 20)
            os.replace(tmp, destination)
    process.wait()
    if process.returncode != 0:
        raise SkipSource(f"dpkg-deb could not read {deb.name} (exit {process.returncode})")
    marker.write_text(json.dumps(sorted(set(done) | set(patterns))))
    return target


def member_files(tree: Path, package: str, source: Source) -> list[tuple[str, Path]]:
    """``(member path, file)`` for every file under ``tree`` that ``source`` wants."""
    found = []
    for path in sorted(tree.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        member = path.relative_to(tree).as_posix()
        if source.wants(member) and not is_reserved_member(package, member):
            found.append((member, path))
    return found


# --------------------------------------------------------------------------- decoding


def read_audio(data: Path | bytes) -> tuple[np.ndarray, int]:
    """Decode any file soundfile or sox can read to float32 ``(time, channels)``."""
    try:
        source: Any = io.BytesIO(data) if isinstance(data, bytes) else str(data)
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
        return audio, int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    if shutil.which("sox") is None:
        raise RuntimeError("soundfile cannot decode this file and sox is not installed")
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(data, bytes):
            path = Path(folder) / "input"
            path.write_bytes(data)
        else:
            path = Path(data)
        out = Path(folder) / "out.wav"
        result = subprocess.run(["sox", str(path), str(out)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"sox cannot decode: {result.stderr.strip()[-200:]}")
        audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return audio, int(rate)


def to_canonical(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 at ``target_rate``, peak at most 0.99.

    Args:
        audio: ``(time, channels)`` or ``(time,)``.
    """
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    mono = np.asarray(mono, dtype=np.float32)
    if rate != target_rate and mono.size:
        import torch
        import torchaudio.functional as audio_functional

        torch.set_num_threads(1)
        mono = audio_functional.resample(torch.from_numpy(mono), rate, target_rate).numpy()
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak > 0.99:
        mono = mono * (0.99 / peak)
    return mono.astype(np.float32)


def write_flac(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit mono FLAC atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.flac")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


@dataclass(frozen=True)
class DecodeTask:
    """Decode one input (a file, a zip member or a byte range) into one output file."""

    output: str
    rate: int
    path: str = ""
    zip_member: str = ""
    offset: int = -1
    size: int = 0
    row: dict[str, Any] = field(default_factory=dict)


_ZIPS: dict[str, zipfile.ZipFile] = {}


def _open_zip(path: str) -> zipfile.ZipFile:
    """One open handle per archive and process: reading the central directory of a 3 GB zip
    with 50,000 entries costs about half a second, far more than decoding one member."""
    if path not in _ZIPS:
        _ZIPS[path] = zipfile.ZipFile(path)
    return _ZIPS[path]


def run_decode(task: DecodeTask, root: str) -> ManifestRow | None:
    """Run one :class:`DecodeTask`; ``None`` for silent, empty or undecodable inputs."""
    output = Path(root) / task.output
    if not output.is_file():
        try:
            if task.zip_member:
                data: Path | bytes = _open_zip(task.path).read(task.zip_member)
            elif task.offset >= 0:
                with open(task.path, "rb") as handle:
                    handle.seek(task.offset)
                    data = handle.read(task.size)
            else:
                data = Path(task.path)
            audio, rate = read_audio(data)
        except (RuntimeError, OSError, zipfile.BadZipFile):
            return None
        mono = to_canonical(audio, rate, task.rate)
        if mono.size < task.rate // 10 or float(np.max(np.abs(mono))) < _SILENCE:
            return None
        write_flac(output, mono, task.rate)
    info = sf.info(str(output))
    return ManifestRow(
        path=task.output,
        duration=round(info.frames / info.samplerate, 4),
        sample_rate=int(info.samplerate),
        **task.row,
    )


def _run_tasks(
    options: BuildOptions,
    label: str,
    tasks: Sequence[Any],
    function: Callable[[Any, str], ManifestRow | list[ManifestRow] | None],
) -> list[ManifestRow]:
    """Run tasks inline (``jobs == 1``) or in worker processes, with a progress bar."""
    progress = Progress(label, len(tasks), options.stream or sys.stdout)
    rows: list[ManifestRow] = []
    root = str(options.root)

    def collect(result: ManifestRow | list[ManifestRow] | None) -> None:
        if isinstance(result, list):
            rows.extend(result)
        elif result is not None:
            rows.append(result)
        progress.update()

    if options.jobs <= 1 or len(tasks) < 2:
        for task in tasks:
            collect(function(task, root))
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=options.jobs) as pool:
            futures = [pool.submit(function, task, root) for task in tasks]
            for future in concurrent.futures.as_completed(futures):
                collect(future.result())
    rows.sort(key=lambda row: row.path)
    return rows


def _row_fields(source: Source, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": source.kind,
        "source": source.name,
        "identity": "",
        "licence": source.licence,
        "split": source.split,
        "label": source.label,
        "group": "",
        "origin": source.origin,
        "language": source.language,
        "gender": "",
    }
    values.update(overrides)
    return values


def _safe_name(member: str) -> str:
    """A flat, filesystem-safe output name from a member path (keeps it readable)."""
    stem = member.rsplit(".", 1)[0]
    for prefix in ("usr/share/games/", "usr/share/"):
        stem = stem.removeprefix(prefix)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__"))
    if cleaned.strip("_.") == "":
        cleaned = "u" + format(zlib.crc32(member.encode()), "08x")
    elif not stem.isascii():
        cleaned += "_" + format(zlib.crc32(member.encode()), "08x")
    return cleaned + ".flac"


# --------------------------------------------------------------------------- methods


def build_deb(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Files shipped in packages: unpack what the source wants, decode each."""
    tasks = []
    for package in source.packages:
        tree = unpack(options, package, source.include)
        for member, path in member_files(tree, package, source):
            check_member_allowed(package, member)
            tasks.append(
                DecodeTask(
                    output=f"audio/{source.name}/{_safe_name(member)}",
                    rate=source.sample_rate,
                    path=str(path),
                    row=_row_fields(
                        source,
                        identity=source.identity_of(member),
                        group=Path(member).stem if source.kind == "music" else "",
                        label=source.label or _folder_label(source, member),
                    ),
                )
            )
    if source.limit:
        tasks = tasks[: source.limit]
    return _run_tasks(options, source.name, tasks, run_decode)


def _folder_label(source: Source, member: str) -> str:
    if source.kind != "sfx":
        return ""
    parts = member.split("/")
    return parts[-2] if len(parts) >= 2 else ""


def build_deb_zip(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Files inside a zip inside a package (0 A.D. keeps its audio in ``public.zip``)."""
    tasks = []
    for package in source.packages:
        tree = unpack(options, package, (source.inner,))
        archives = [
            p
            for p in tree.rglob("*.zip")
            if fnmatch.fnmatchcase(p.relative_to(tree).as_posix(), source.inner)
        ]
        if not archives:
            raise SkipSource(f"{package} has no member matching {source.inner}")
        for archive_path in archives:
            with zipfile.ZipFile(archive_path) as archive:
                names = sorted(archive.namelist())
            for name in names:
                if not source.wants(name) or name.endswith("/"):
                    continue
                tasks.append(
                    DecodeTask(
                        output=f"audio/{source.name}/{_safe_name(name)}",
                        rate=source.sample_rate,
                        path=str(archive_path),
                        zip_member=name,
                        row=_row_fields(
                            source,
                            identity=source.identity_of(name) if source.kind != "sfx" else "",
                            group=Path(name).stem if source.kind == "music" else "",
                            label=_folder_label(source, name),
                        ),
                    )
                )
    if source.limit:
        tasks = tasks[: source.limit]
    return _run_tasks(options, source.name, tasks, run_decode)


_QUEEN_LINE = re.compile(r"^(\d\d).{4}([JP])(\d)$")


def queen_speech_entries(data: bytes) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every speech line (``.SB``) in a rebuilt ``queen.1c``.

    The ScummVM-rebuilt resource file starts with ``QTBL``, a version string, a flag byte, the
    entry count (big-endian 16 bit at byte 13) and a table of 21-byte entries: 12-byte name,
    bundle byte, 32-bit offset and size.
    """
    if data[:4] != b"QTBL":
        raise ValueError("not a rebuilt Flight of the Amazon Queen resource file (no QTBL)")
    (count,) = struct.unpack(">H", data[13:15])
    entries = []
    for index in range(count):
        base = 15 + 21 * index
        name = data[base : base + 12].split(b"\0")[0].decode("ascii", "replace")
        offset, size = struct.unpack(">II", data[base + 13 : base + 21])
        if name.upper().endswith(".SB"):
            entries.append((name, offset, size))
    return entries


def queen_identity(name: str) -> str:
    """Speaker of a line: ``J`` is Joe; ``Pk`` is person ``k`` of dialogue file ``DD``."""
    match = _QUEEN_LINE.match(name.rsplit(".", 1)[0])
    if not match:
        return ""
    dialogue, who, number = match.groups()
    return "fotaq:joe" if who == "J" else f"fotaq:d{dialogue}-p{number}"


def build_queen(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Speech lines packed in the Flight of the Amazon Queen resource file (MP3 frames)."""
    tasks = []
    for package in source.packages:
        tree = unpack(options, package, source.include)
        for _, path in member_files(tree, package, source):
            entries = queen_speech_entries(path.read_bytes())
            for name, offset, size in entries:
                identity = queen_identity(name)
                if not identity:
                    continue  # narration and effects lines: speaker unknown, maybe not speech
                tasks.append(
                    DecodeTask(
                        output=f"audio/{source.name}/{name.rsplit('.', 1)[0]}.flac",
                        rate=source.sample_rate,
                        path=str(path),
                        offset=offset,
                        size=size,
                        row=_row_fields(source, identity=identity),
                    )
                )
    if source.limit:
        tasks = tasks[: source.limit]
    return _run_tasks(options, source.name, tasks, run_decode)


# ---- TTS

_FORMAT = re.compile(r"%[-+ #0-9.]*[a-zA-Z]|\{[^}]*\}|<[^>]*>|\$\{[^}]*\}|&[a-z]+;|\\[nt]")
_LOCALE_DIRS = {
    "pt-br": ("pt_BR",),
    "pt": ("pt",),
    "fr-ca": ("fr",),
    "fr-be": ("fr",),
    "es-mx": ("es",),
    "es-vz": ("es",),
    "zh": ("zh_CN", "zh_TW"),
}


def sentences(
    language: str, limit: int = 4000, locale_root: Path = Path("/usr/share/locale")
) -> list[str]:
    """Sentence-like strings in ``language`` from the gettext catalogs installed here.

    Translated program messages are the one multilingual text collection every Debian system
    carries; English text comes from the message ids. Formats, markup and accelerators are
    stripped; short or symbol-heavy strings are dropped.
    """
    english = language.split("-")[0] == "en"
    folders = _LOCALE_DIRS.get(language, (language.split("-")[0],))
    catalogs: list[Path] = []
    if english:
        catalogs = sorted(locale_root.glob("de/LC_MESSAGES/*.mo")) + sorted(
            locale_root.glob("fr/LC_MESSAGES/*.mo")
        )
    else:
        for folder in folders:
            catalogs.extend(sorted(locale_root.glob(f"{folder}/LC_MESSAGES/*.mo")))
    found: dict[str, None] = {}
    for catalog in catalogs:
        try:
            with catalog.open("rb") as handle:
                messages = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a malformed catalog must not stop a build
            continue
        for key, value in messages.items():
            text = key if english else value
            if english and isinstance(key, tuple):
                continue
            if not isinstance(text, str):
                continue
            cleaned = _FORMAT.sub(" ", text).replace("_", "").replace("&", "")
            cleaned = " ".join(cleaned.split())
            if not 25 <= len(cleaned) <= 160 or cleaned.count(" ") < 3:
                continue
            letters = sum(character.isalpha() for character in cleaned)
            if letters < 0.75 * len(cleaned.replace(" ", "")):
                continue
            found.setdefault(cleaned, None)
        if len(found) >= limit:
            break
    return list(found)


def _utterances(voice: Voice, count: int, seed: int) -> list[str]:
    """``count`` texts for a voice: 1-3 catalog sentences, or spoken numbers as a fallback."""
    rng = np.random.default_rng(seed)
    pool = sentences(voice.language)
    texts = []
    for _ in range(count):
        if len(pool) >= 20:
            picks = rng.choice(len(pool), size=int(rng.integers(1, 4)), replace=False)
            texts.append(" ".join(pool[int(index)].rstrip(".") + "." for index in picks))
        else:
            # Too little text in this language: espeak-ng reads numbers in the voice's language.
            numbers = rng.integers(1, 100_000, size=int(rng.integers(4, 9)))
            texts.append(", ".join(str(int(number)) for number in numbers) + ".")
    return texts


@dataclass(frozen=True)
class TtsTask:
    engine: str
    voice: str
    text: str
    output: str
    rate: int
    speed: int
    row: dict[str, Any] = field(default_factory=dict)


def run_tts(task: TtsTask, root: str) -> ManifestRow | None:
    """Render one utterance with espeak-ng + MBROLA, flite, pico2wave or Festival."""
    output = Path(root) / task.output
    if not output.is_file():
        with tempfile.TemporaryDirectory() as folder:
            wav = Path(folder) / "tts.wav"
            text_file = Path(folder) / "text.txt"
            text_file.write_text(task.text, encoding="utf-8")
            if task.engine == "espeak":
                command = [
                    "espeak-ng",
                    "-v",
                    f"mb-{task.voice}",
                    "-s",
                    str(task.speed),
                    "-w",
                    str(wav),
                    "-f",
                    str(text_file),
                ]
            elif task.engine == "flite":
                command = ["flite", "-voice", task.voice, "-f", str(text_file), "-o", str(wav)]
            elif task.engine == "pico":
                command = ["pico2wave", "-l", task.voice, "-w", str(wav), task.text]
            elif task.engine == "festival":
                command = [
                    "text2wave",
                    "-eval",
                    f"(voice_{task.voice})",
                    "-o",
                    str(wav),
                    str(text_file),
                ]
            else:
                raise ValueError(f"unknown TTS engine {task.engine!r}")
            try:
                subprocess.run(command, capture_output=True, timeout=120, check=False)
                audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
            except (OSError, subprocess.TimeoutExpired, sf.LibsndfileError, RuntimeError):
                return None
        mono = to_canonical(audio, rate, task.rate)
        if mono.size < task.rate // 2 or float(np.max(np.abs(mono))) < _SILENCE:
            return None
        write_flac(output, mono, task.rate)
    info = sf.info(str(output))
    return ManifestRow(
        path=task.output,
        duration=round(info.frames / info.samplerate, 4),
        sample_rate=int(info.samplerate),
        **task.row,
    )


def build_tts(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Render ``limit`` utterances per voice; a voice the engine lacks is skipped."""
    tasks = []
    missing = []
    for voice_index, voice in enumerate(source.voices):
        if source.method == "espeak":
            check_voice_allowed(voice.name)
            if not Path(f"/usr/share/mbrola/{voice.name}").exists():
                missing.append(voice.name)
                continue
        texts = _utterances(voice, source.limit or 20, source.seed * 1000 + voice_index)
        rng = np.random.default_rng(source.seed * 7919 + voice_index)
        for index, text in enumerate(texts):
            tasks.append(
                TtsTask(
                    engine=source.method,
                    voice=voice.name,
                    text=text,
                    output=f"audio/{source.name}/{voice.name}/{index:04d}.flac",
                    rate=source.sample_rate,
                    speed=int(rng.integers(130, 190)),
                    row=_row_fields(
                        source,
                        identity=source.identity_of(voice.name),
                        group=f"{source.name}:{voice.name}",
                        language=voice.language,
                        gender=voice.gender,
                    ),
                )
            )
    if missing:
        _say(
            options,
            f"  {source.name}: MBROLA voices not installed, skipped: {' '.join(missing)} "
            "(as root: apt-get install mbrola-XX)",
        )
    if not tasks:
        raise SkipSource("none of its voices is installed")
    return _run_tasks(options, source.name, tasks, run_tts)


# ---- noise and rooms


def build_noise(options: BuildOptions, source: Source) -> list[ManifestRow]:
    rows = []
    colors = ("white", "pink", "brown")
    count = source.limit or 30
    progress = Progress(source.name, count, options.stream or sys.stdout)
    for index in range(count):
        color = colors[index % 3]
        relative = f"audio/{source.name}/{color}_{index:04d}.flac"
        output = options.root / relative
        if not output.is_file():
            rng = np.random.default_rng(source.seed * 100_003 + index)
            length = int(source.seconds * source.sample_rate)
            write_flac(output, 0.1 * coloured_noise(color, length, rng), source.sample_rate)
        rows.append(
            ManifestRow(
                path=relative,
                duration=source.seconds,
                sample_rate=source.sample_rate,
                **_row_fields(source, identity=f"noise:{color}", label=color),
            )
        )
        progress.update()
    return rows


@dataclass(frozen=True)
class RoomTask:
    index: int
    seed: int
    split: str
    output: str
    rate: int
    row: dict[str, Any] = field(default_factory=dict)


def simulate_room(seed: int, split: str, rate: int) -> tuple[np.ndarray, dict[str, float]]:
    """One shoebox room impulse response (hybrid image source + ray tracing).

    Pure low-order image sources underestimate RT60, so the hybrid mode is used (DATA.md).
    Rooms are 3-10 x 3-8 x 2.4-4 m; the RT60 range depends on the split.

    Returns:
        The impulse response, float32 ``(taps,)`` with peak 1, and the room parameters.
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    size = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
    low, high = ROOM_RT60[split]
    rt60 = float(rng.uniform(low, high))
    try:
        absorption, max_order = pra.inverse_sabine(rt60, size)
    except ValueError:
        absorption, max_order = 0.99, 2
    room = pra.ShoeBox(
        size,
        fs=rate,
        materials=pra.Material(float(absorption)),
        max_order=min(int(max_order), 3),
        ray_tracing=True,
        air_absorption=True,
    )
    room.set_ray_tracing(receiver_radius=0.5, n_rays=4000, energy_thres=1e-5)

    def inside() -> list[float]:
        return [float(rng.uniform(0.5, extent - 0.5)) for extent in size[:2]] + [
            float(rng.uniform(1.0, min(2.0, size[2] - 0.3)))
        ]

    source_position = inside()
    microphone = inside()
    room.add_source(source_position)
    room.add_microphone(microphone)
    room.compute_rir()
    response = np.asarray(room.rir[0][0], dtype=np.float32)
    response /= float(np.max(np.abs(response))) + 1e-12
    distance = float(np.linalg.norm(np.subtract(source_position, microphone)))
    return response, {"rt60": rt60, "distance": distance}


def run_room(task: RoomTask, root: str) -> ManifestRow | None:
    output = Path(root) / task.output
    if not output.is_file():
        response, _ = simulate_room(task.seed, task.split, task.rate)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.stem}.tmp.wav")
        sf.write(str(tmp), response, task.rate, subtype="FLOAT")
        os.replace(tmp, output)
    info = sf.info(str(output))
    return ManifestRow(
        path=task.output,
        duration=round(info.frames / info.samplerate, 4),
        sample_rate=int(info.samplerate),
        **{**task.row, "label": _room_label(task.seed, task.split)},
    )


def _room_label(seed: int, split: str) -> str:
    """The drawn RT60 of a room (the same draw :func:`simulate_room` makes first)."""
    rng = np.random.default_rng(seed)
    rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)
    low, high = ROOM_RT60[split]
    return f"{float(rng.uniform(low, high)):.3f}"


def build_rooms(options: BuildOptions, source: Source) -> list[ManifestRow]:
    tasks = [
        RoomTask(
            index=index,
            seed=source.seed + index,
            split=source.split,
            output=f"audio/{source.name}/room_{source.seed + index:07d}.wav",
            rate=source.sample_rate,
            row=_row_fields(source, identity=f"room:{source.seed + index}"),
        )
        for index in range(source.limit or 10)
    ]
    return _run_tasks(options, source.name, tasks, run_room)


# ---- MIDI stems

#: General MIDI program ranges per stem. Drums are channel 10 (index 9) whatever the program.
BASS_PROGRAMS = range(32, 40)
VOCAL_PROGRAMS = range(52, 55)


def stem_of(channel: int, program: int) -> str:
    """The stem a MIDI channel belongs to: drums, bass, vocals or other."""
    if channel == 9:
        return "drums"
    if program in BASS_PROGRAMS:
        return "bass"
    if program in VOCAL_PROGRAMS:
        return "vocals"
    return "other"


def split_midi(path: Path, seconds: float) -> dict[str, Any]:
    """Split a MIDI file into one ``mido.MidiFile`` per stem, cut after ``seconds``.

    Every stem keeps all meta events (tempo, time signature) so the stems stay aligned; channel
    events go to the stem of their channel's current program.

    Returns:
        ``{stem: MidiFile}`` for the stems that have at least one note.
    """
    import mido

    source = mido.MidiFile(str(path))
    ticks = source.ticks_per_beat
    # Absolute time in seconds of each merged event, to cut at ``seconds``.
    programs: dict[int, int] = {}
    events: dict[str, list[tuple[int, Any]]] = {"drums": [], "bass": [], "vocals": [], "other": []}
    meta: list[tuple[int, Any]] = []
    notes = {stem: 0 for stem in events}
    elapsed_ticks = 0
    elapsed_seconds = 0.0
    tempo = 500_000
    for message in mido.merge_tracks(source.tracks):
        elapsed_ticks += message.time
        elapsed_seconds += mido.tick2second(message.time, ticks, tempo)
        if message.type == "set_tempo":
            tempo = message.tempo
        if seconds and elapsed_seconds > seconds:
            break
        if message.is_meta:
            if message.type not in ("end_of_track",):
                meta.append((elapsed_ticks, message))
            continue
        if not hasattr(message, "channel"):
            continue
        if message.type == "program_change":
            programs[message.channel] = message.program
        stem = stem_of(message.channel, programs.get(message.channel, 0))
        if message.type == "program_change" and message.channel != 9:
            # Program events are copied to every stem so a channel that changes stem keeps
            # the right sound in each.
            for name in events:
                events[name].append((elapsed_ticks, message))
            continue
        events[stem].append((elapsed_ticks, message))
        if message.type == "note_on" and message.velocity > 0:
            notes[stem] += 1
    end = elapsed_ticks
    stems = {}
    for stem, stem_events in events.items():
        if notes[stem] == 0:
            continue
        merged = sorted(meta + stem_events, key=lambda item: item[0])
        track = mido.MidiTrack()
        last = 0
        for tick, message in merged:
            track.append(message.copy(time=tick - last))
            last = tick
        for channel in range(16):
            track.append(
                mido.Message("control_change", channel=channel, control=123, value=0, time=0)
            )
        track.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
        midi = mido.MidiFile(ticks_per_beat=ticks, type=0)
        midi.tracks.append(track)
        stems[stem] = midi
    return stems


def drums_on_melodic_channel(midi: Any) -> Any:
    """Move channel-10 notes to channel 1 with program 0 (the AVL kits play only there)."""
    import mido

    track = mido.MidiTrack()
    track.append(mido.Message("program_change", channel=0, program=0, time=0))
    for message in midi.tracks[0]:
        if not message.is_meta and hasattr(message, "channel"):
            if message.type == "program_change":
                track.append(mido.MetaMessage("marker", text="", time=message.time))
                continue
            message = message.copy(channel=0)
        track.append(message)
    out = mido.MidiFile(ticks_per_beat=midi.ticks_per_beat, type=0)
    out.tracks.append(track)
    return out


#: General MIDI drum notes and the Hydrogen instrument-name words that play them.
_GM_DRUM_WORDS: dict[int, tuple[str, ...]] = {
    35: ("kick", "bass drum", "bd"),
    36: ("kick", "bass drum", "bd"),
    37: ("stick", "rim", "snare"),
    38: ("snare", "sd"),
    39: ("clap", "snare"),
    40: ("snare", "sd"),
    41: ("tom", "floor"),
    42: ("closed", "hat", "hh", "hihat"),
    43: ("tom", "floor"),
    44: ("pedal", "hat", "hh", "hihat"),
    45: ("tom",),
    46: ("open", "hat", "hh", "hihat"),
    47: ("tom",),
    48: ("tom",),
    49: ("crash", "cymbal"),
    50: ("tom",),
    51: ("ride", "cymbal"),
    52: ("china", "crash", "cymbal"),
    53: ("bell", "ride"),
    54: ("tamb", "shaker"),
    55: ("splash", "crash", "cymbal"),
    56: ("cow", "bell"),
    57: ("crash", "cymbal"),
    59: ("ride", "cymbal"),
}


def hydrogen_kit(folder: Path) -> list[tuple[str, Path]]:
    """``(instrument name, first-layer sample)`` for each instrument of a Hydrogen kit."""
    import xml.etree.ElementTree as ElementTree

    definition = folder / "drumkit.xml"
    if not definition.is_file():
        return []
    tree = ElementTree.parse(definition)
    instruments = []
    for element in tree.iter():
        if not element.tag.endswith("instrument"):
            continue
        name = next((c.text for c in element if c.tag.endswith("name") and c.text), "")
        sample = next((c.text for c in element.iter() if c.tag.endswith("filename") and c.text), "")
        if name and sample and (folder / sample).is_file():
            instruments.append((name, folder / sample))
    return instruments


def render_hydrogen_drums(midi: Any, kit: list[tuple[str, Path]], rate: int) -> np.ndarray:
    """Render a drum stem by placing the kit's samples at each note (velocity-scaled).

    Args:
        midi: A ``mido.MidiFile`` with channel-10 drum notes.
        kit: :func:`hydrogen_kit` of a kit.
        rate: Output rate.

    Returns:
        float32 ``(time,)``.
    """
    samples: dict[int, np.ndarray] = {}
    names = [name.lower() for name, _ in kit]

    def sample_for(note: int) -> np.ndarray:
        if note not in samples:
            choice = None
            for word in _GM_DRUM_WORDS.get(note, ()):
                choice = next((i for i, name in enumerate(names) if word in name), None)
                if choice is not None:
                    break
            if choice is None:
                choice = (note - 35) % len(kit)
            audio, sample_rate = read_audio(kit[choice][1])
            samples[note] = to_canonical(audio, sample_rate, rate)
        return samples[note]

    hits = []
    for time_seconds, message in _timed_messages(midi):
        if message.type == "note_on" and message.velocity > 0:
            hits.append((time_seconds, message.note, message.velocity / 127.0))
    if not hits:
        return np.zeros(0, dtype=np.float32)
    length = int((max(time for time, _, _ in hits) + 2.0) * rate)
    out = np.zeros(length, dtype=np.float32)
    for time_seconds, note, gain in hits:
        sample = sample_for(note)
        start = int(time_seconds * rate)
        stop = min(length, start + sample.size)
        out[start:stop] += gain * sample[: stop - start]
    return out


def _timed_messages(midi: Any) -> Iterable[tuple[float, Any]]:
    now = 0.0
    for message in midi:  # mido yields messages with ``time`` in seconds
        now += message.time
        yield now, message


@dataclass(frozen=True)
class SongTask:
    """Render one MIDI song to stems with one soundfont and one drum renderer."""

    midi_path: str
    song: str
    soundfont: str
    drums: str  # "soundfont", a soundfont path (AVL), or "hydrogen:FOLDER"
    seconds: float
    rate: int
    row: dict[str, Any] = field(default_factory=dict)


def _fluidsynth(midi: Any, soundfont: str, rate: int, folder: Path, name: str) -> np.ndarray:
    midi_path = folder / f"{name}.mid"
    wav_path = folder / f"{name}.wav"
    midi.save(str(midi_path))
    subprocess.run(
        [
            "fluidsynth",
            "-ni",
            "-q",
            "-g",
            "0.6",
            "-R",
            "0",
            "-C",
            "0",
            "-r",
            str(rate),
            "-F",
            str(wav_path),
            soundfont,
            str(midi_path),
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )
    if not wav_path.is_file():
        return np.zeros(0, dtype=np.float32)
    audio, sample_rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    return to_canonical(audio, sample_rate, rate) if audio.size else np.zeros(0, np.float32)


def run_song(task: SongTask, root: str) -> list[ManifestRow]:
    """Render every non-empty stem of one song; all stems get the same length."""
    folder_relative = f"audio/{task.row['source']}/{task.song}"
    folder = Path(root) / folder_relative
    done = folder / ".done.json"
    if done.is_file():
        return [ManifestRow(**row) for row in json.loads(done.read_text())]
    try:
        stems = split_midi(Path(task.midi_path), task.seconds)
    except Exception:  # noqa: BLE001 - a broken MIDI file is skipped, not fatal
        return []
    rendered: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for stem, midi in stems.items():
            if stem == "drums" and task.drums.startswith("hydrogen:"):
                kit = hydrogen_kit(Path(task.drums.split(":", 1)[1]))
                audio = render_hydrogen_drums(midi, kit, task.rate) if kit else np.zeros(0)
            elif stem == "drums" and task.drums != "soundfont":
                audio = _fluidsynth(
                    drums_on_melodic_channel(midi), task.drums, task.rate, Path(scratch), stem
                )
            else:
                audio = _fluidsynth(midi, task.soundfont, task.rate, Path(scratch), stem)
            if audio.size and float(np.max(np.abs(audio))) > _SILENCE:
                rendered[stem] = audio.astype(np.float32)
    rows: list[ManifestRow] = []
    if not rendered:
        folder.mkdir(parents=True, exist_ok=True)
        done.write_text("[]")
        return rows
    length = max(audio.size for audio in rendered.values())
    if task.seconds:
        length = min(length, int((task.seconds + 2.0) * task.rate))
    drums_name = Path(task.drums.split(":", 1)[-1]).stem if task.drums != "soundfont" else ""
    for stem, audio in rendered.items():
        padded = np.zeros(length, dtype=np.float32)
        padded[: min(length, audio.size)] = audio[:length]
        peak = float(np.max(np.abs(padded)))
        if peak > 0.99:
            padded *= 0.99 / peak
        relative = f"{folder_relative}/{stem}.flac"
        write_flac(Path(root) / relative, padded, task.rate)
        identity = drums_name if stem == "drums" and drums_name else Path(task.soundfont).stem
        rows.append(
            ManifestRow(
                path=relative,
                duration=round(length / task.rate, 4),
                sample_rate=task.rate,
                **{**task.row, "label": stem, "identity": identity},
            )
        )
    done.write_text(json.dumps([dataclasses.asdict(row) for row in rows]))
    return rows


def _soundfonts(options: BuildOptions, source: Source) -> list[str]:
    found = []
    for package in source.packages:
        tree = unpack(options, package, ("*.sf2",))
        for pattern in source.soundfonts:
            found.extend(
                str(path)
                for path in sorted(tree.rglob("*.sf2"))
                if fnmatch.fnmatchcase(path.relative_to(tree).as_posix(), pattern)
            )
    unique = list(dict.fromkeys(found))
    if not unique:
        raise SkipSource(f"no soundfont matching {source.soundfonts} could be unpacked")
    return unique


def _drum_renderers(options: BuildOptions, source: Source) -> list[str]:
    """Drum renderers: the soundfont's own GM kit, AVL Red Zeppelin, allowed Hydrogen kits."""
    renderers = ["soundfont"]
    if "avldrums.lv2-soundfont" in source.packages:
        tree = unpack(options, "avldrums.lv2-soundfont", ("*Red_Zeppelin*.sf2",))
        renderers.extend(str(p) for p in sorted(tree.rglob("*Red_Zeppelin*.sf2"))[:1])
    if "hydrogen-drumkits" in source.packages:
        tree = unpack(options, "hydrogen-drumkits", ("usr/share/hydrogen/data/drumkits/*",))
        for kit in sorted(tree.glob("usr/share/hydrogen/data/drumkits/*")):
            member = kit.relative_to(tree).as_posix() + "/"
            if is_reserved_member("hydrogen-drumkits", member) or not hydrogen_kit(kit):
                continue
            renderers.append(f"hydrogen:{kit}")
    return renderers


def _song_tasks(
    source: Source,
    midis: Sequence[tuple[str, Path]],
    soundfonts: Sequence[str],
    drums: Sequence[str],
) -> list[SongTask]:
    tasks = []
    for index, (song, path) in enumerate(midis):
        soundfont = soundfonts[index % len(soundfonts)]
        tasks.append(
            SongTask(
                midi_path=str(path),
                song=re.sub(r"[^A-Za-z0-9._-]+", "_", song),
                soundfont=soundfont,
                drums=drums[(index // len(soundfonts)) % len(drums)] if drums else "soundfont",
                seconds=source.seconds,
                rate=source.sample_rate,
                row=_row_fields(source, group=f"{source.name}:{song}"),
            )
        )
    return tasks


def build_midi(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """MIDI files from packages, split into stems, each rendered with fluidsynth."""
    soundfonts = _soundfonts(options, source)
    drums = _drum_renderers(options, source)
    midis: list[tuple[str, Path]] = []
    for package in source.packages:
        if not package.endswith(("-data", "-openmsx", "-midi")):
            continue
        tree = unpack(options, package, source.include)
        for member, path in member_files(tree, package, source):
            midis.append((f"{package}-{Path(member).stem}", path))
    if not midis:
        raise SkipSource("no MIDI files found in its packages")
    if source.limit:
        # A seeded shuffle before the cut, so every package is represented.
        order = np.random.default_rng(source.seed).permutation(len(midis))[: source.limit]
        midis = [midis[int(index)] for index in sorted(order)]
    tasks = _song_tasks(source, midis, soundfonts, drums)
    return _run_tasks(options, source.name, tasks, run_song)


_PROGRESSIONS = (
    ("C", "Am", "F", "G"),
    ("Dm7", "G7", "Cmaj7", "A7"),
    ("Em", "C", "G", "D"),
    ("F", "Bb", "C7", "F"),
    ("Am", "Dm", "E7", "Am"),
    ("G", "Em", "C", "D7"),
)


def mma_grooves(library: Path = Path("/usr/share/mma/lib/stdlib")) -> list[tuple[str, str]]:
    """``(library file, groove name)`` for every groove in MMA's standard library."""
    grooves = []
    for path in sorted(library.glob("*.mma")):
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"\s*DefGroove\s+(\S+)", line, flags=re.IGNORECASE)
            if match:
                grooves.append((path.stem, match.group(1)))
    return grooves


def _held_out(key: str, modulus: int = 5) -> bool:
    """Whether a composition belongs to validation (stable hash, split by composition)."""
    return zlib.crc32(key.encode()) % modulus == 0


def build_mma(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Accompaniment grooves from MMA: a chord chart per groove, rendered to stems.

    Grooves are split by their library file, so validation grooves come from styles (files)
    that no training groove uses.
    """
    soundfonts = _soundfonts(options, source)
    drums = _drum_renderers(options, source)
    grooves = [
        (file, name)
        for file, name in mma_grooves()
        if _held_out(file) == (source.split == "validation")
    ]
    if not grooves:
        raise SkipSource("no MMA groove library found (apt-get install mma)")
    rng = np.random.default_rng(source.seed)
    order = rng.permutation(len(grooves))[: source.limit or len(grooves)]
    charts = options.root / "unpacked" / "mma-charts" / source.name
    charts.mkdir(parents=True, exist_ok=True)
    midis = []
    progress = Progress(f"{source.name} (mma)", len(order), options.stream or sys.stdout)
    for index in order:
        file, groove = grooves[int(index)]
        song = f"{file}-{groove}"
        midi_path = charts / f"{song}.mid"
        if not midi_path.is_file():
            progression = _PROGRESSIONS[int(index) % len(_PROGRESSIONS)]
            tempo = int(rng.integers(80, 150))
            bars = "\n".join(
                f"{bar + 1} {progression[bar % len(progression)]}" for bar in range(16)
            )
            chart = charts / f"{song}.mma"
            chart.write_text(f"Tempo {tempo}\nGroove {groove}\n{bars}\n")
            subprocess.run(
                ["mma", "-f", str(midi_path), str(chart)],
                capture_output=True,
                timeout=120,
                check=False,
            )
        if midi_path.is_file():
            midis.append((song, midi_path))
        progress.update()
    tasks = _song_tasks(source, midis, soundfonts, drums)
    return _run_tasks(options, source.name, tasks, run_song)


def build_music21(options: BuildOptions, source: Source) -> list[ManifestRow]:
    """Bach chorales from the music21 corpus: soprano as vocals, bass line as bass.

    Chorales are split by BWV number (stable hash), so validation pieces are never trained on.
    """
    import mido
    from music21 import corpus

    soundfonts = _soundfonts(options, source)
    paths = [
        path
        for path in sorted(corpus.getComposer("bach"))
        if _held_out(Path(path).stem, 6) == (source.split == "validation")
    ]
    rng = np.random.default_rng(source.seed)
    order = rng.permutation(len(paths))[: source.limit or len(paths)]
    scores = options.root / "unpacked" / "music21" / source.name
    scores.mkdir(parents=True, exist_ok=True)
    midis = []
    progress = Progress(f"{source.name} (scores)", len(order), options.stream or sys.stdout)
    for index in order:
        path = Path(paths[int(index)])
        song = f"bach-{path.stem}"
        midi_path = scores / f"{song}.mid"
        if not midi_path.is_file():
            try:
                score = corpus.parse(str(path))
                score.write("midi", fp=str(midi_path.with_suffix(".raw.mid")))
                _assign_programs(mido, midi_path.with_suffix(".raw.mid"), midi_path, rng)
            except Exception:  # noqa: BLE001 - a score music21 cannot convert is skipped
                progress.update()
                continue
        midis.append((song, midi_path))
        progress.update()
    tasks = _song_tasks(source, midis, soundfonts, ["soundfont"])
    return _run_tasks(options, source.name, tasks, run_song)


def _assign_programs(mido: Any, raw: Path, out: Path, rng: np.random.Generator) -> None:
    """Give a 4-part chorale GM programs: top part voice, bottom part bass, inner parts other."""
    midi = mido.MidiFile(str(raw))
    note_tracks = [t for t in midi.tracks if any(m.type == "note_on" for m in t)]
    inner_programs = (0, 19, 48, 40, 71, 73)
    for position, track in enumerate(note_tracks):
        channel = position if position < 9 else position + 1
        if position == 0:
            program = int(rng.choice((52, 53)))
        elif position == len(note_tracks) - 1:
            program = int(rng.choice((32, 33, 35)))
        else:
            program = int(rng.choice(inner_programs))
        messages = [m for m in track if m.type != "program_change"]
        track.clear()
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        for message in messages:
            if not message.is_meta and hasattr(message, "channel"):
                message = message.copy(channel=channel)
            track.append(message)
    midi.save(str(out))


METHODS: dict[str, Callable[[BuildOptions, Source], list[ManifestRow]]] = {
    "deb": build_deb,
    "deb-zip": build_deb_zip,
    "queen": build_queen,
    "espeak": build_tts,
    "flite": build_tts,
    "pico": build_tts,
    "festival": build_tts,
    "noise": build_noise,
    "rooms": build_rooms,
    "midi": build_midi,
    "mma": build_mma,
    "music21": build_music21,
}


# --------------------------------------------------------------------------- driver


def selected_sources(options: BuildOptions) -> list[Source]:
    unknown = set(options.only) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown --only groups {sorted(unknown)}; choose from {GROUPS}")
    chosen = [s for s in options.sources if set(s.groups) & set(options.only)]
    if options.names:
        names = set(options.names)
        missing = names - {s.name for s in options.sources}
        if missing:
            raise ValueError(f"unknown source names {sorted(missing)}")
        chosen = [s for s in chosen if s.name in names]
    return chosen


def _check_requirements(source: Source) -> None:
    for tool in source.tools:
        if shutil.which(tool) is None:
            packages = " ".join(source.apt_tools) or tool
            raise SkipSource(
                f"tool '{tool}' is not installed (as root: apt-get install {packages})"
            )
    for module in source.python_modules:
        if importlib.util.find_spec(module) is None:
            raise SkipSource(f"Python module '{module}' is not installed ({DATA_EXTRA_HINT})")


def source_manifest_path(root: Path, name: str) -> Path:
    return Path(root) / MANIFEST_DIR / "sources" / f"{name}.csv"


def build_corpus(options: BuildOptions) -> BuildReport:
    """Build (or resume) the corpus described by ``options``; see the module docstring."""
    start = time.monotonic()
    validate_table(options.sources)
    options = dataclasses.replace(options, root=Path(options.root).expanduser().resolve())
    options.root.mkdir(parents=True, exist_ok=True)
    sources = selected_sources(options)
    report = BuildReport()
    _say(options, f"corpus root: {options.root}  ({len(sources)} sources, jobs {options.jobs})")

    pending = [s for s in sources if not source_manifest_path(options.root, s.name).is_file()]
    if options.install and pending:
        if is_root() and shutil.which("apt-get"):
            enable_components(options)
            tools = list(BASE_APT_TOOLS)
            for source in pending:
                tools.extend(source.apt_tools)
            if any(s.method == "espeak" for s in pending):
                tools.extend(mbrola_voice_packages())
            install_tools(options, list(dict.fromkeys(tools)))
        elif not is_root():
            _say(options, "not root: using the tools already installed (no apt-get install)")
        else:
            _say(options, "apt-get is not on PATH: using the tools already installed")

    for number, source in enumerate(sources, start=1):
        manifest = source_manifest_path(options.root, source.name)
        header = f"[{number}/{len(sources)}] {source.name} ({source.kind}, {source.split})"
        if manifest.is_file():
            report.rows[source.name] = read_manifest(manifest)
            _say(options, f"{header}: done before, {len(report.rows[source.name])} files")
            continue
        _say(options, header)
        began = time.monotonic()
        try:
            _check_requirements(source)
            rows = METHODS[source.method](options, source)
        except SkipSource as error:
            report.skipped[source.name] = str(error)
            _say(options, f"  SKIPPED {source.name}: {error}")
            continue
        except ReservedSourceError as error:
            report.skipped[source.name] = f"reserved: {error}"
            _say(options, f"  REFUSED {source.name}: {error}")
            continue
        write_manifest(manifest, rows)
        report.rows[source.name] = rows
        hours = sum(row.duration for row in rows) / 3600
        _say(options, f"  {len(rows)} files, {hours:.2f} h in {time.monotonic() - began:.0f} s")

    report.seconds = time.monotonic() - start
    write_outputs(options.root, report)
    _say(options, "\n" + summary_text(report, options.root))
    return report


def write_outputs(root: Path, report: BuildReport) -> None:
    """Merge every per-source manifest under ``root`` into ``corpus.csv`` and the summary."""
    manifests = Path(root) / MANIFEST_DIR
    rows: list[ManifestRow] = []
    for path in sorted((manifests / "sources").glob("*.csv")):
        rows.extend(read_manifest(path))
    write_manifest(manifests / CORPUS_MANIFEST, rows)
    table = summarize(rows)
    payload = {
        "table": table,
        "skipped": report.skipped,
        "wall_seconds": round(report.seconds, 1),
        "files": len(rows),
        "identities": identity_counts(rows),
        "licences": sorted({row.licence for row in rows}),
    }
    (manifests / "summary.json").write_text(json.dumps(payload, indent=1))
    (manifests / "summary.md").write_text(
        format_summary(table)
        + f"\n\nWall time of the last build run: {report.seconds / 60:.1f} min\n"
    )


def identity_counts(rows: Iterable[ManifestRow]) -> dict[str, int]:
    """Distinct speech identities per split (speakers and TTS voices)."""
    names: dict[str, set[str]] = {}
    for row in rows:
        if row.kind == "speech" and row.identity:
            names.setdefault(row.split, set()).add(row.identity)
    return {split: len(values) for split, values in sorted(names.items())}


def summary_text(report: BuildReport, root: Path | None = None) -> str:
    """The summary table; with ``root``, of the whole corpus (earlier runs included)."""
    rows = (
        report.all_rows
        if root is None
        else read_manifest(Path(root) / MANIFEST_DIR / CORPUS_MANIFEST)
    )
    lines = [format_summary(summarize(rows))]
    counts = identity_counts(rows)
    if counts:
        lines.append(
            "speech identities: " + ", ".join(f"{split} {count}" for split, count in counts.items())
        )
    if report.skipped:
        lines.append("skipped:")
        lines.extend(f"  {name}: {reason}" for name, reason in sorted(report.skipped.items()))
    lines.append(f"wall time {report.seconds / 60:.1f} min")
    return "\n".join(lines)


def default_root() -> Path:
    """``$WORKBENCH_DATA_DIR/corpus`` (or the per-user data folder's ``corpus``)."""
    data_dir = os.environ.get("WORKBENCH_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "corpus"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "audio-workbench" / "corpus"


__all__ = [
    "BuildOptions",
    "BuildReport",
    "SkipSource",
    "build_corpus",
    "coloured_noise",
    "default_root",
]
