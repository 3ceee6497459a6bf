"""``workbench separate``: separate sources (TUSS prompts, MTASS, speech separators) into stem files.

For every input file ``a/b/mix.flac`` it writes ``OUT/mix/<output>.wav``: ``speech.wav``,
``music.wav``, ``noise.wav`` for MTASS, ``1_speech.wav``, ``2_speech.wav``, ``3_sfx.wav`` for
TUSS prompts (repeats allowed), ``speaker1.wav``, ``speaker2.wav`` for a speech separator.
Each stem has the input's sample rate, channel count and exact length (32-bit float WAV, so
nothing clips; RF64 past the 4 GB WAV limit).

Order of work, so that bad input costs nothing and leaves nothing behind:

1. every input is checked from its header (missing, unreadable, not audio, empty; a folder
   without audio files) before the model library is even imported;
2. the model and the prompts are checked, and every output name of every input is checked
   against existing files (refused without ``--overwrite``);
3. each file is decoded block by block (:data:`READ_BLOCK_SECONDS`) and separated by
   :meth:`models.inference.Separator.separate_blocks`; stems are written block by block
   into hidden temporary files next to their final names and renamed only when the whole
   file succeeded. Neither the input nor the stems are ever held whole, so an hour-long file
   needs about the memory of a minute-long one. A block with NaN or infinite samples stops
   that file and removes its temporary files.

Exit status: 0 on success, 2 when the arguments or inputs are refused before any work, 1
when a file fails while being processed (files finished before it keep their stems).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DESCRIPTION = "separate sources (TUSS prompts, MTASS, speech separators) into stem files"
#: ``--model`` values that mean "the default bundle of this family" (see models.bundles).
FAMILY_KEYS: tuple[str, ...] = ("tuss", "mtass", "speech", "live")
#: Input decoded per block: small enough for bounded memory, large enough to be cheap.
READ_BLOCK_SECONDS = 1.0
#: At most one progress line per this many seconds (plus the first and the last).
PROGRESS_INTERVAL_SECONDS = 0.25
#: Stems larger than this go to RF64 (a WAV whose sizes are 64-bit) instead of plain WAV.
_WAV_LIMIT_BYTES = 0xFFFFFFFF - 4096


class SeparateError(Exception):
    """A refusal or failure the user sees as one plain line.

    Args:
        message: What went wrong and what to do.
        status: Exit status (2: refused before any work; 1: failed while processing).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "separate",
        help=DESCRIPTION,
        description=f"{DESCRIPTION[0].upper()}{DESCRIPTION[1:]}. Writes OUT/<input stem>/"
        "<source>.wav (TUSS: <index>_<prompt>.wav) with the input's rate, channels and "
        "length.",
        epilog="Exit status: 0 done, 2 refused before any work (bad arguments or inputs, "
        "existing outputs), 1 a file failed while processing. Nothing partial is ever left "
        "under a final name.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    parser.add_argument(
        "--model",
        default=None,
        metavar="{tuss,mtass,speech,live,NAME}",
        help="a family's default bundle, or a bundle name (see WORKBENCH_BUNDLE_PATH)",
    )
    parser.add_argument(
        "--prompts",
        default=None,
        metavar="P,Q,...",
        help="TUSS prompts in output order, repeats allowed (speech, sfx, sfx-mix, drums, "
        "bass, vocals, other-inst, music-mix)",
    )
    parser.add_argument(
        "--bundle", default=None, metavar="PATH", help="a bundle folder or training checkpoint"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--progress",
        choices=("json",),
        default=None,
        help="print JSON lines {event, file, fraction, eta_seconds, message} on stdout",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="separation chunk length (default: the bundle's, else 10 s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing stem files")
    parser.set_defaults(run=run)


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One checked input: where it is and what its header says."""

    path: Path
    sample_rate: int
    channels: int
    frames: int


def collect_inputs(arguments: Sequence[str]) -> list[InputFile]:
    """Expand folders and check every file from its header (no decoding, no model import).

    Raises:
        SeparateError: For a missing, unreadable, empty or non-audio input, a folder
            without audio files, or two inputs that would share an output folder.
    """
    from workbench.audio import io
    from workbench.errors import AudioFileError

    inputs: list[InputFile] = []
    for argument in arguments:
        path = Path(argument)
        found = io.expand_paths([path])
        if path.is_dir() and not found:
            extensions = ", ".join(io.AUDIO_EXTENSIONS)
            raise SeparateError(f"The folder {path} holds no audio files ({extensions}).")
        for file in found:
            try:
                info = io.probe(file)
            except AudioFileError as exc:
                raise SeparateError(f"{file}: {exc.message}") from exc
            if info.frames == 0:
                raise SeparateError(f"{file}: the file contains no audio (zero length).")
            inputs.append(InputFile(file, info.sample_rate, info.channels, info.frames))
    seen: dict[str, Path] = {}
    for item in inputs:
        stem = item.path.stem
        if stem in seen:
            raise SeparateError(
                f"{seen[stem]} and {item.path} would both write to <out>/{stem}/; rename one "
                "or separate them in two runs."
            )
        seen[stem] = item.path
    return inputs


def _read_blocks(item: InputFile, block_frames: int) -> Iterator[Any]:
    """Decode ``item`` in ``(frames, channels)`` float32 blocks, refusing non-finite samples."""
    import numpy as np
    import soundfile

    position = 0
    with soundfile.SoundFile(str(item.path)) as handle:
        while True:
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise SeparateError(
                    f"{item.path}: the file is damaged after {position / item.sample_rate:.2f} s "
                    f"({exc}); nothing was written for it.",
                    status=1,
                ) from exc
            if block.shape[0] == 0:
                return
            if not np.isfinite(block).all():
                bad = position + int(np.argmax(~np.isfinite(block).all(axis=1)))
                raise SeparateError(
                    f"{item.path}: contains NaN or infinite samples (first at "
                    f"{bad / item.sample_rate:.3f} s); nothing was written for it.",
                    status=1,
                )
            position += block.shape[0]
            yield block


# -- the model -----------------------------------------------------------------------------


def load_separator(args: argparse.Namespace) -> tuple[Any, Any, list[str] | None]:
    """The bundle, a :class:`models.inference.Separator` for it, and the checked prompts.

    Raises:
        SeparateError: Unknown model or bundle, not a separator, CUDA missing, prompts that
            the model does not take or does not know.
    """
    from models.bundles import BundleError, default_bundle, load_bundle
    from models.inference import Separator

    try:
        if args.bundle is not None:
            bundle = load_bundle(args.bundle)
        elif args.model in FAMILY_KEYS:
            bundle = default_bundle(args.model)
        elif args.model is not None:
            bundle = load_bundle(args.model)
        else:
            raise SeparateError(
                f"Choose a model with --model ({', '.join(FAMILY_KEYS)} or a bundle name) or "
                "a bundle with --bundle PATH."
            )
    except KeyError as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        raise SeparateError(f"{message} Families: {', '.join(FAMILY_KEYS)}.") from exc
    except BundleError as exc:
        raise SeparateError(str(exc)) from exc
    if bundle.task != "separation":
        raise SeparateError(
            f"'{bundle.name}' is a {bundle.task} model, not a separator. Use one of "
            f"{', '.join(FAMILY_KEYS)} or a separation bundle."
        )
    try:
        separator = Separator(bundle, device=args.device, chunk_seconds=args.chunk_seconds)
    except (ValueError, BundleError) as exc:
        raise SeparateError(str(exc)) from exc
    prompts = _parse_prompts(args.prompts)
    if separator.prompted:
        valid = ", ".join(separator.model.PROMPTS)
        if not prompts:
            raise SeparateError(
                f"'{bundle.name}' separates by prompts: give --prompts, e.g. speech,speech,sfx "
                f"(valid: {valid})."
            )
        unknown = [prompt for prompt in prompts if prompt not in separator.model.PROMPTS]
        if unknown:
            raise SeparateError(f"Unknown prompt(s) {', '.join(unknown)}. Valid prompts: {valid}.")
    elif prompts:
        raise SeparateError(
            f"'{bundle.name}' has fixed outputs ({', '.join(bundle.sources)}) and takes no "
            "--prompts."
        )
    return bundle, separator, prompts if separator.prompted else None


def _parse_prompts(text: str | None) -> list[str]:
    if text is None:
        return []
    prompts = [prompt.strip() for prompt in text.split(",")]
    if any(not prompt for prompt in prompts):
        raise SeparateError(f"--prompts has an empty entry: '{text}'. Separate names by commas.")
    return prompts


# -- writing -------------------------------------------------------------------------------


class ProgressPrinter:
    """JSON progress lines on stdout (``--progress json``), at most a few per second."""

    def __init__(self, enabled: bool, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self._last = 0.0

    def emit(self, event: dict[str, Any]) -> None:
        if self.enabled:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()

    def callback(self, file: Path, started: float) -> Callable[[dict[str, Any]], None]:
        """A :meth:`Separator.separate_blocks` progress callback for ``file``."""

        def report(info: dict[str, Any]) -> None:
            now = time.monotonic()
            # 1.0 is kept for "stems written": the tail is still separated after the input
            # has all been read.
            fraction = min(float(info.get("fraction", 0.0)), 0.99)
            if now - self._last < PROGRESS_INTERVAL_SECONDS:
                return
            self._last = now
            self.progress(file, fraction, now - started, str(info.get("message", "")))

        return report

    def progress(self, file: Path, fraction: float, elapsed: float, message: str) -> None:
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else None
        self.emit(
            {
                "event": "progress",
                "file": str(file),
                "fraction": round(fraction, 6),
                "eta_seconds": None if eta is None else round(eta, 3),
                "message": message,
            }
        )


def output_paths(out_dir: Path, item: InputFile, names: Sequence[str]) -> list[Path]:
    """Final stem paths of ``item``: ``out_dir/<stem>/<name>.wav``."""
    return [out_dir / item.path.stem / f"{name}.wav" for name in names]


def _create_temporary(target: Path) -> Path:
    """A new hidden file next to ``target``, with the permissions a plain new file gets.

    ``tempfile.mkstemp`` would make it owner-only (0600), and the rename would carry that
    over to the stem.
    """
    while True:
        path = target.with_name(f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.wav.part")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path


def separate_file(
    item: InputFile,
    separator: Any,
    prompts: list[str] | None,
    targets: list[Path],
    overwrite: bool,
    printer: ProgressPrinter,
) -> None:
    """Separate one file into ``targets`` through temporary files, renamed at the end."""
    import soundfile

    folder = targets[0].parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    stem_bytes = item.frames * item.channels * 4
    file_format = "RF64" if stem_bytes > _WAV_LIMIT_BYTES else "WAV"
    temporaries: list[Path] = []
    writers: list[Any] = []
    try:
        for target in targets:
            name = _create_temporary(target)
            temporaries.append(name)
            writers.append(
                soundfile.SoundFile(
                    name,
                    "w",
                    samplerate=item.sample_rate,
                    channels=item.channels,
                    format=file_format,
                    subtype="FLOAT",
                )
            )
        started = time.monotonic()
        printer.progress(item.path, 0.0, 0.0, f"Separating {item.path.name}")
        block_frames = max(1, round(READ_BLOCK_SECONDS * item.sample_rate))
        written = 0
        for output in separator.separate_blocks(
            _read_blocks(item, block_frames),
            item.sample_rate,
            channels=item.channels,
            prompts=prompts,
            total_frames=item.frames,
            progress=printer.callback(item.path, started),
        ):
            for writer, stem in zip(writers, output):  # output: S, frames, C
                writer.write(stem)
            written += output.shape[1]
        for writer in writers:
            writer.close()
        if not overwrite:
            existing = [target for target in targets if target.exists()]
            if existing:
                raise SeparateError(
                    f"{existing[0]} appeared while separating; it was not replaced.", status=1
                )
        for temporary, target in zip(temporaries, targets):
            os.replace(temporary, target)
        printer.progress(
            item.path,
            1.0,
            time.monotonic() - started,
            f"Wrote {len(targets)} stems of {written / item.sample_rate:.2f} s",
        )
    finally:
        for writer in writers:
            if not writer.closed:
                writer.close()
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()


# -- the command ---------------------------------------------------------------------------


def _fail(message: str) -> None:
    print(f"workbench separate: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SeparateError as exc:
        _fail(str(exc))
        return exc.status
    except KeyboardInterrupt:
        _fail("interrupted; no partial files were kept.")
        return 130
    except Exception as exc:  # noqa: BLE001 - one plain line, not a traceback, for users
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc} (set WORKBENCH_DEBUG=1 for the traceback)")
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.model is None and args.bundle is None:
        raise SeparateError(
            f"Choose a model with --model ({', '.join(FAMILY_KEYS)} or a bundle name) or a "
            "bundle with --bundle PATH."
        )
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise SeparateError(f"--out {out_dir} exists and is not a folder.")
    inputs = collect_inputs(args.inputs)
    bundle, separator, prompts = load_separator(args)
    planned: list[tuple[InputFile, list[Path]]] = []
    for item in inputs:
        names = separator.engine(item.sample_rate, prompts).names
        planned.append((item, output_paths(out_dir, item, names)))
    if not args.overwrite:
        for _, targets in planned:
            existing = [target for target in targets if target.exists()]
            if existing:
                raise SeparateError(
                    f"{existing[0]} already exists; pass --overwrite to replace it, or choose "
                    "another --out."
                )
    if not bundle.trained:
        print(
            f"workbench separate: warning: '{bundle.name}' is an UNTRAINED placeholder with "
            "random weights; its output is not meaningful until a trained bundle ships or "
            "you pass --bundle.",
            file=sys.stderr,
        )
    printer = ProgressPrinter(args.progress == "json")
    for item, targets in planned:
        separate_file(item, separator, prompts, targets, args.overwrite, printer)
        if printer.enabled:
            printer.emit(
                {"event": "done", "file": str(item.path), "outputs": [str(t) for t in targets]}
            )
        else:
            names = ", ".join(target.name for target in targets)
            print(f"{item.path} -> {targets[0].parent}/ ({names})")
    return 0
