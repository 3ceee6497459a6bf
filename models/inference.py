"""Inference facades shared by the GUI, the CLI and the tests: separation and verification.

:class:`Separator` turns any waveform into sources of exactly the input's length, rate and
channel layout:

* every channel is separated on its own (channels travel as the batch axis);
* the signal is cut into chunks of ``chunk`` samples that overlap by ``overlap`` samples;
  consecutive chunks are crossfaded with complementary ``sin^2`` / ``cos^2`` ramps, so the
  weights sum to one everywhere. Each chunk is processed with ``left_context`` /
  ``right_context`` extra input samples that the model sees but whose output is dropped;
* each chunk (with its context) is resampled to the model rate and its outputs back with
  ``torchaudio.functional.resample``. The context covers the resampling filter, and chunk
  boundaries sit on a grid where both rates (and the model's frame hop) have whole samples,
  so chunk-wise resampling equals resampling the whole signal.

Only one chunk is ever resampled or run at a time, so memory is bounded by the chunk size
whatever the length (the caller's input and the returned outputs aside; for files, use
:meth:`Separator.separate_blocks`, which keeps neither). When the contexts cover the model's
receptive field (and its normalisation statistics), chunked output equals unchunked output.

Sources whose order is arbitrary (``speaker1`` / ``speaker2`` outputs, repeated TUSS prompts)
may come out swapped from one chunk to the next; such outputs are re-ordered per chunk to
agree best with the previous chunk over the crossfade.

:class:`StreamingSeparator` runs the same chunk engine block by block as audio arrives and
states its delay, :attr:`StreamingSeparator.latency_samples`: each call returns as many
frames as it was given, delayed by exactly that many samples, and equal to the offline output
with the same chunk settings. For non-causal models that is buffered chunked processing with
lookahead (latency about one chunk); for causal models (``algorithmic_latency_samples`` not
``None``) chunks are short, carry a long left context and a right context of the model's
algorithmic latency. Models that stream themselves (``stream_init`` / ``stream_step``, the
causal Conv-TasNet) skip the chunk engine: each block costs only its new frames and the
output equals the unchunked offline output after the model's latency (streaming resamplers
convert other rates sample-exactly, adding their filters' look-ahead).

:class:`Verifier` embeds speech with a speaker encoder and scores pairs of embeddings.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torchaudio.functional as audio_functional
import torchaudio.transforms as audio_transforms
from torch import Tensor, nn

from models.bundles import Bundle, get_model, load_bundle, resolve_device

#: Offline defaults (seconds): long chunks keep the share of crossfaded audio small.
DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_OVERLAP_SECONDS = 1.0
#: Streaming defaults for non-causal models: latency is about one chunk.
STREAMING_CHUNK_SECONDS = 2.0
STREAMING_OVERLAP_SECONDS = 0.25
#: Streaming defaults for causal models: short chunks, long history.
CAUSAL_CHUNK_SECONDS = 0.016
CAUSAL_CONTEXT_SECONDS = 0.5
#: torchaudio's sinc resampler settings (its defaults), used to size the context margins.
RESAMPLE_LOWPASS_WIDTH = 6
RESAMPLE_ROLLOFF = 0.99
#: Chunk length meaning "the whole signal in one piece".
WHOLE_SIGNAL = 1 << 62
#: Validate long inputs for NaN in blocks of this many samples (no full-size temporary).
_VALIDATION_BLOCK = 1 << 20
#: Output names that mean "these outputs are interchangeable" (permutation-invariant models).
_INTERCHANGEABLE_NAME = re.compile(r"^(speaker|spk|talker|source|src)[ _-]?\d+$", re.IGNORECASE)

ProgressCallback = Callable[[dict[str, Any]], None]


class CancelEvent(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """Separation stopped because its cancel event was set."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class SeparationResult(Mapping[str, np.ndarray]):
    """Separated sources in output order; a read-only mapping from name to array.

    Attributes:
        names: Unique output names in order (``"speech"``; ``"1_speech"`` for prompts).
        labels: What each output is (source names or prompts; may repeat).
        arrays: One array per output, each shaped like the input (``(frames,)`` or
            ``(frames, channels)``), float32, at the input's rate.
        sample_rate: Rate of the arrays (the input's).
    """

    names: tuple[str, ...]
    labels: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]
    sample_rate: int

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[self.names.index(name)]
        except ValueError:
            raise KeyError(f"No output '{name}'. Outputs: {', '.join(self.names)}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


# --------------------------------------------------------------------------- helpers


def _as_input(waveform: np.ndarray | Tensor, name: str = "waveform") -> tuple[np.ndarray, bool]:
    """Validate a ``(frames,)`` or ``(frames, channels)`` float input without copying it.

    Returns:
        ``(array, mono)``: the input as a ``(frames, channels)`` NumPy view and whether it
        was one-dimensional.
    """
    if isinstance(waveform, Tensor):
        waveform = waveform.detach().cpu().numpy()
    if not isinstance(waveform, np.ndarray):
        raise ValueError(
            f"{name} must be a NumPy array or tensor of shape (frames,) or (frames, channels), "
            f"got {type(waveform).__name__}."
        )
    if waveform.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (frames,) or (frames, channels), got {waveform.shape}."
        )
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(
            f"{name} must hold floating-point samples in [-1, 1], got {waveform.dtype} "
            "(convert integer PCM by dividing by its full scale, e.g. 32768 for int16)."
        )
    mono = waveform.ndim == 1
    array = waveform[:, None] if mono else waveform
    frames, channels = array.shape
    if frames == 0 or channels == 0:
        raise ValueError(f"{name} of shape (frames, channels) is empty: {waveform.shape}.")
    if channels > 64 and channels > frames:
        raise ValueError(
            f"{name} has shape {waveform.shape}: expected (frames, channels); this looks like "
            "(channels, frames), transpose it."
        )
    for start in range(0, frames, max(1, _VALIDATION_BLOCK // channels)):
        block = array[start : start + max(1, _VALIDATION_BLOCK // channels)]
        if not np.isfinite(block).all():
            raise ValueError(f"{name} contains NaN or infinite samples.")
    return array, mono


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}.")
    return int(sample_rate)


def _resolve_model(
    bundle_or_model: Bundle | nn.Module | str | os.PathLike[str],
    device: str | torch.device | None,
    sample_rate: int | None,
) -> tuple[nn.Module, int, Bundle | None, torch.device]:
    target = resolve_device(device)
    if isinstance(bundle_or_model, nn.Module):
        model = bundle_or_model.to(target).eval()
        rate = sample_rate or getattr(getattr(model, "config", None), "sample_rate", None)
        if rate is None:
            raise ValueError("Pass sample_rate=...: the model has no config.sample_rate.")
        return model, _check_rate(rate), None, target
    bundle = (
        bundle_or_model if isinstance(bundle_or_model, Bundle) else load_bundle(bundle_or_model)
    )
    return get_model(bundle, target), bundle.sample_rate, bundle, target


def _model_hop(model: nn.Module) -> int:
    """The model's frame hop in samples (chunk starts are kept on multiples of it)."""
    config = getattr(model, "config", None)
    for attribute in ("hop_length", "stride"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def _lookahead(model: nn.Module, input_rate: int, model_rate: int) -> int:
    """Input samples a causal model needs past an output sample to produce it exactly."""
    algorithmic = getattr(model, "algorithmic_latency_samples", None)
    return math.ceil(algorithmic * input_rate / model_rate) if algorithmic else 0


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


@dataclass(frozen=True)
class ChunkPlan:
    """How a signal is cut into chunks, in samples at the input rate.

    Attributes:
        chunk: Chunk length (the part whose output is kept).
        overlap: Crossfade between consecutive chunks (at most half a chunk).
        left_context: Input before each chunk that the model sees, output dropped.
        right_context: Input after each chunk that the model sees, output dropped.
    """

    chunk: int
    overlap: int
    left_context: int
    right_context: int

    @property
    def hop(self) -> int:
        """Distance between chunk starts."""
        return self.chunk - self.overlap

    def num_chunks(self, total: int) -> int:
        """Number of chunks for a signal of ``total`` samples (the last one ends at ``total``).

        ``ceil((total - overlap) / hop)`` leaves the last chunk longer than the overlap, so
        every crossfade lies inside both chunks it joins.
        """
        return max(1, -(-(total - self.overlap) // self.hop))

    def bounds(self, index: int, total: int | None) -> tuple[int, int]:
        """``[start, end)`` of chunk ``index``; ``total=None`` for a stream of unknown length."""
        start = index * self.hop
        if total is not None and index == self.num_chunks(total) - 1:
            return start, total
        return start, start + self.chunk


def _fade_in(length: int) -> np.ndarray:
    ramp = np.sin(0.5 * np.pi * (np.arange(length) + 0.5) / length) ** 2
    return ramp.astype(np.float32)


def _groups(labels: Sequence[str], prompted: bool, align: bool | None) -> tuple[Hashable, ...]:
    """Group id per output; outputs sharing a group may be swapped to align chunks."""
    if align is False:
        return tuple(range(len(labels)))
    if prompted:
        return tuple(labels)  # repeated prompts are interchangeable, distinct ones are not
    if align or all(_INTERCHANGEABLE_NAME.match(label) for label in labels):
        return ("all",) * len(labels)
    return tuple(range(len(labels)))


def _unique_names(labels: Sequence[str], prompted: bool) -> tuple[str, ...]:
    if prompted:
        return tuple(f"{index}_{label}" for index, label in enumerate(labels, start=1))
    if len(set(labels)) == len(labels):
        return tuple(labels)
    return tuple(f"{index}_{label}" for index, label in enumerate(labels, start=1))


class _ChunkEngine:
    """Runs one chunk: read input with context, resample, model, resample back, window."""

    def __init__(
        self,
        model: nn.Module,
        model_rate: int,
        input_rate: int,
        device: torch.device,
        prompts: Sequence[str] | None,
        chunk_seconds: float,
        overlap_seconds: float,
        context_seconds: float | tuple[float, float],
        extra_right_context: int = 0,
        align_permutations: bool | None = None,
    ) -> None:
        self.model = model
        self.model_rate = model_rate
        self.input_rate = input_rate
        self.device = device
        self.prompted = hasattr(model, "PROMPTS")
        if self.prompted:
            if not prompts:
                valid = ", ".join(model.PROMPTS)
                raise ValueError(f"This model needs prompts (one output each), from: {valid}.")
            unknown = [prompt for prompt in prompts if prompt not in model.PROMPTS]
            if unknown:
                raise ValueError(
                    f"Unknown prompt(s) {unknown}. Valid prompts: {', '.join(model.PROMPTS)}."
                )
            self.prompts: list[str] | None = list(prompts)
            self.labels = tuple(prompts)
        else:
            if prompts:
                raise ValueError("This model has fixed outputs and takes no prompts.")
            if not hasattr(model, "source_names"):
                raise ValueError(
                    "The model is not a separator: it has neither PROMPTS nor source_names."
                )
            self.prompts = None
            self.labels = tuple(model.source_names)
        self.names = _unique_names(self.labels, self.prompted)
        self.groups = _groups(self.labels, self.prompted, align_permutations)
        self.plan = self._make_plan(
            chunk_seconds, overlap_seconds, context_seconds, extra_right_context
        )

    # -- geometry

    def _make_plan(
        self,
        chunk_seconds: float,
        overlap_seconds: float,
        context_seconds: float | tuple[float, float],
        extra_right_context: int,
    ) -> ChunkPlan:
        input_rate, model_rate = self.input_rate, self.model_rate
        divisor = math.gcd(input_rate, model_rate)
        input_unit, model_unit = input_rate // divisor, model_rate // divisor
        hop = _model_hop(self.model)
        # Chunk starts on this grid have whole samples at both rates and start a model frame.
        unit = input_unit * (hop // math.gcd(model_unit, hop))
        if input_rate != model_rate:
            base = min(input_unit, model_unit) * RESAMPLE_ROLLOFF
            forward = math.ceil(RESAMPLE_LOWPASS_WIDTH * input_unit / base) + input_unit
            backward = math.ceil(RESAMPLE_LOWPASS_WIDTH * model_unit / base) + model_unit
            margin = forward + math.ceil(backward * input_rate / model_rate)
        else:
            margin = 0
        if isinstance(context_seconds, tuple):
            left_seconds, right_seconds = context_seconds
        else:
            left_seconds = right_seconds = context_seconds
        if min(chunk_seconds, left_seconds, right_seconds, overlap_seconds) < 0:
            raise ValueError("chunk, overlap and context lengths must be >= 0 seconds.")
        if math.isinf(chunk_seconds) or chunk_seconds == 0:
            # One chunk for any length: no seams, so no context either.
            return ChunkPlan(WHOLE_SIGNAL, 0, 0, 0)
        chunk = max(unit, _round_up(round(chunk_seconds * input_rate), unit))
        overlap = _round_up(round(overlap_seconds * input_rate), unit)
        overlap = min(overlap, (chunk // 2) // unit * unit)
        left = _round_up(round(left_seconds * input_rate) + margin, unit)
        right = _round_up(round(right_seconds * input_rate) + margin + extra_right_context, unit)
        return ChunkPlan(chunk, overlap, left, right)

    # -- running

    def run_segment(self, segment: np.ndarray) -> np.ndarray:
        """Separate one segment.

        Args:
            segment: Input, shape ``(channels, length)``, float32, at the input rate.

        Returns:
            Outputs, shape ``(num_outputs, channels, length)``, float32, at the input rate.
        """
        length = segment.shape[-1]
        with torch.inference_mode():
            x = torch.from_numpy(segment).to(self.device)
            if self.input_rate != self.model_rate:
                x = audio_functional.resample(x, self.input_rate, self.model_rate)
            y = self.model(x, self.prompts) if self.prompted else self.model(x)  # C, S, T
            y = y.transpose(0, 1)  # S, C, T
            if self.input_rate != self.model_rate:
                y = audio_functional.resample(y.contiguous(), self.model_rate, self.input_rate)
            if y.shape[-1] < length:
                y = torch.nn.functional.pad(y, (0, length - y.shape[-1]))
            return y[..., :length].float().cpu().numpy()

    def chunk(
        self,
        index: int,
        total: int | None,
        read: Callable[[int, int], np.ndarray],
        available: int,
        previous: Callable[[int, int], np.ndarray] | None,
    ) -> tuple[int, np.ndarray]:
        """Windowed output of chunk ``index``.

        Args:
            index: Chunk number.
            total: Signal length, or ``None`` while streaming (the chunk is then not last).
            read: ``read(start, end)`` -> input ``(channels, end - start)``.
            available: Input samples that exist (clips the right context).
            previous: ``previous(start, end)`` -> accumulated output ``(S, channels, n)``, for
                permutation alignment; ``None`` to skip.

        Returns:
            ``(start, output)``: the chunk start and its weighted output ``(S, channels, n)``,
            ready to be added into the accumulated output.
        """
        plan = self.plan
        start, end = plan.bounds(index, total)
        segment_start = max(0, start - plan.left_context)
        segment_end = min(available, end + plan.right_context)
        output = self.run_segment(read(segment_start, segment_end))
        output = output[:, :, start - segment_start : end - segment_start]
        last = total is not None and index == plan.num_chunks(total) - 1
        # ``output`` is a view of a fresh array, so the fades may work in place.
        if index > 0 and plan.overlap:
            if previous is not None and len(set(self.groups)) < len(self.groups):
                output = self._align(output, previous(start, start + plan.overlap))
            output[..., : plan.overlap] *= _fade_in(plan.overlap)
        if not last and plan.overlap:
            output[..., -plan.overlap :] *= 1.0 - _fade_in(plan.overlap)
        return start, output

    def _align(self, output: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Reorder interchangeable outputs to best match ``reference`` over the crossfade."""
        overlap = reference.shape[-1]
        current = output[..., :overlap].reshape(output.shape[0], -1).astype(np.float64)
        previous = reference.reshape(reference.shape[0], -1).astype(np.float64)
        norms = np.linalg.norm(previous, axis=1)[:, None] * np.linalg.norm(current, axis=1)
        similarity = (previous @ current.T) / (norms + 1e-12)  # previous j vs current i
        count = len(self.groups)
        best, best_score = tuple(range(count)), -np.inf
        for permutation in itertools.permutations(range(count)):
            if any(self.groups[p] != self.groups[j] for j, p in enumerate(permutation)):
                continue
            score = sum(similarity[j, p] for j, p in enumerate(permutation))
            if score > best_score + 1e-9:
                best, best_score = permutation, score
        return output[list(best)]


class _Accumulator:
    """Overlap-add target: ``(outputs, channels)`` signals, optionally a sliding window."""

    def __init__(self, num_outputs: int, channels: int, frames: int | None) -> None:
        self.streaming = frames is None
        if self.streaming:
            self.buffer = np.zeros((num_outputs, channels, 0), dtype=np.float32)
            self.offset = 0
        else:
            # One (frames, channels) array per output, written in place: no final copy.
            self.arrays = [
                np.zeros((frames, channels), dtype=np.float32) for _ in range(num_outputs)
            ]

    def add(self, start: int, data: np.ndarray) -> None:
        if not self.streaming:
            for array, source in zip(self.arrays, data):
                array[start : start + source.shape[-1]] += source.T
            return
        end = start + data.shape[-1] - self.offset
        if end > self.buffer.shape[-1]:
            grown = np.zeros(self.buffer.shape[:2] + (end,), dtype=np.float32)
            grown[..., : self.buffer.shape[-1]] = self.buffer
            self.buffer = grown
        self.buffer[..., start - self.offset : end] += data

    def read(self, start: int, end: int) -> np.ndarray:
        if not self.streaming:
            return np.stack([array[start:end].T for array in self.arrays])
        return self.buffer[..., start - self.offset : end - self.offset]

    def take(self, start: int, end: int) -> np.ndarray:
        """Streaming: output ``[start, end)`` (zeros before 0), then forget what precedes end."""
        out = np.zeros(self.buffer.shape[:2] + (end - start,), dtype=np.float32)
        low = max(start, self.offset)
        high = min(end, self.offset + self.buffer.shape[-1])
        if high > low:
            out[..., low - start : high - start] = self.buffer[
                ..., low - self.offset : high - self.offset
            ]
        drop = max(0, min(end, self.offset + self.buffer.shape[-1]) - self.offset)
        self.buffer = self.buffer[..., drop:].copy() if drop else self.buffer
        self.offset += drop
        return out


def _progress(index: int, total: int, message: str) -> dict[str, Any]:
    return {"fraction": index / total, "chunk": index, "total": total, "message": message}


# --------------------------------------------------------------------------- Separator


class Separator:
    """Offline separation of whole signals or of a stream of file blocks.

    Args:
        bundle_or_model: A :class:`~models.bundles.Bundle`, a bundle name/path, or a model
            following the separation contract (``forward(mixture (batch, time))`` ->
            ``(batch, sources, time)`` with ``source_names``; or TUSS-style with ``PROMPTS``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a device.
        chunk_seconds: Chunk length; ``math.inf`` or 0 processes the signal in one piece.
            Defaults to the bundle's setting, else :data:`DEFAULT_CHUNK_SECONDS`.
        overlap_seconds: Crossfade between chunks (capped at half a chunk). Defaults to the
            bundle's setting, else :data:`DEFAULT_OVERLAP_SECONDS`.
        context_seconds: Extra input on each side of a chunk whose output is dropped (a
            ``(left, right)`` pair for asymmetric context). Resampling margins are added.
        sample_rate: The model's rate, for a bare model without ``config.sample_rate``.
        align_permutations: Re-order interchangeable outputs between chunks; ``None`` decides
            from the output names (``speaker1``, ``speaker2``...) and repeated prompts.
    """

    def __init__(
        self,
        bundle_or_model: Bundle | nn.Module | str | os.PathLike[str],
        device: str | torch.device | None = "auto",
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        context_seconds: float | tuple[float, float] = 0.0,
        sample_rate: int | None = None,
        align_permutations: bool | None = None,
    ) -> None:
        self.model, self.sample_rate, self.bundle, self.device = _resolve_model(
            bundle_or_model, device, sample_rate
        )
        bundle_chunk = self.bundle.chunk_seconds if self.bundle else None
        bundle_overlap = self.bundle.overlap_seconds if self.bundle else None
        self.chunk_seconds = float(
            chunk_seconds if chunk_seconds is not None else bundle_chunk or DEFAULT_CHUNK_SECONDS
        )
        self.overlap_seconds = float(
            overlap_seconds
            if overlap_seconds is not None
            else bundle_overlap
            if bundle_overlap is not None
            else DEFAULT_OVERLAP_SECONDS
        )
        self.context_seconds = context_seconds
        self.align_permutations = align_permutations

    @property
    def prompted(self) -> bool:
        """Whether the model takes prompts (TUSS) instead of having fixed outputs."""
        return hasattr(self.model, "PROMPTS")

    def engine(self, input_rate: int, prompts: Sequence[str] | None) -> _ChunkEngine:
        """The chunk engine for an input rate and prompts (exposes the :class:`ChunkPlan`)."""
        rate = _check_rate(input_rate)
        return _ChunkEngine(
            self.model,
            self.sample_rate,
            rate,
            self.device,
            prompts,
            self.chunk_seconds,
            self.overlap_seconds,
            self.context_seconds,
            extra_right_context=_lookahead(self.model, rate, self.sample_rate),
            align_permutations=self.align_permutations,
        )

    def iter_separate(
        self,
        waveform: np.ndarray | Tensor,
        sample_rate: int,
        prompts: Sequence[str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[dict[str, Any], None, SeparationResult]:
        """Separate step by step: yields a progress dict per chunk, returns the result.

        Closing the generator (as a Qt generator worker does on abort) stops the work after
        the current chunk.

        Args:
            waveform: Mixture, shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz.
            prompts: Prompts for a prompted model (output order; repeats allowed).
            cancel: Checked before every chunk; when set, :class:`Cancelled` is raised.

        Yields:
            ``{"fraction", "chunk", "total", "message"}`` after every chunk (and once at 0).

        Returns:
            The :class:`SeparationResult`.
        """
        array, mono = _as_input(waveform)
        engine = self.engine(sample_rate, prompts)
        frames, channels = array.shape
        total = engine.plan.num_chunks(frames)
        accumulator = _Accumulator(len(engine.names), channels, frames)

        def read(start: int, end: int) -> np.ndarray:
            return np.ascontiguousarray(array[start:end].T, dtype=np.float32)

        yield _progress(0, total, f"Separating {frames / sample_rate:.1f} s in {total} chunks")
        for index in range(total):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Separation cancelled.")
            start, output = engine.chunk(index, frames, read, frames, accumulator.read)
            accumulator.add(start, output)
            yield _progress(index + 1, total, f"Separated chunk {index + 1} of {total}")
        arrays = tuple(a[:, 0] if mono else a for a in accumulator.arrays)
        return SeparationResult(engine.names, engine.labels, arrays, sample_rate)

    def separate(
        self,
        waveform: np.ndarray | Tensor,
        sample_rate: int,
        prompts: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelEvent | None = None,
    ) -> SeparationResult:
        """Separate a whole signal.

        Args:
            waveform: Mixture, shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz.
            prompts: Prompts for a prompted model (output order; repeats allowed).
            progress: Called with ``{"fraction", "chunk", "total", "message"}``.
            cancel: ``threading.Event``-like; when set, :class:`Cancelled` is raised.

        Returns:
            A :class:`SeparationResult`: ``result["speech"]`` etc., each output shaped like
            ``waveform`` at ``sample_rate``.
        """
        steps = self.iter_separate(waveform, sample_rate, prompts, cancel)
        while True:
            try:
                info = next(steps)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(info)

    def stream(
        self, sample_rate: int, channels: int = 1, prompts: Sequence[str] | None = None
    ) -> StreamingSeparator:
        """A :class:`StreamingSeparator` with this separator's (offline) chunk settings.

        It always runs the chunk engine (``stateful=False``), so its output equals
        :meth:`separate` with the same settings, for causal models too.
        """
        return StreamingSeparator(
            self.model,
            sample_rate,
            channels=channels,
            prompts=prompts,
            device=self.device,
            chunk_seconds=self.chunk_seconds,
            overlap_seconds=self.overlap_seconds,
            context_seconds=self.context_seconds,
            model_sample_rate=self.sample_rate,
            align_permutations=self.align_permutations,
            stateful=False,
        )

    def separate_blocks(
        self,
        blocks: Iterable[np.ndarray],
        sample_rate: int,
        channels: int = 1,
        prompts: Sequence[str] | None = None,
        total_frames: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelEvent | None = None,
    ) -> Iterator[np.ndarray]:
        """Separate a long signal given as consecutive blocks, at bounded memory.

        Meant for files (``soundfile.blocks``): neither the input nor the outputs are ever
        held whole. The output equals :meth:`separate` on the concatenated blocks.

        Args:
            blocks: Consecutive input blocks, each ``(frames, channels)`` (or ``(frames,)``
                when ``channels == 1``).
            sample_rate: Input rate in Hz.
            channels: Channels per block.
            prompts: Prompts for a prompted model.
            total_frames: Signal length if known, for progress fractions.
            progress: Called with ``{"fraction", "chunk", "total", "message"}`` per block
                (``chunk`` counts blocks here, ``total`` is 0 when unknown).
            cancel: When set, :class:`Cancelled` is raised before the next block.

        Yields:
            Output blocks ``(num_outputs, frames, channels)`` (``(num_outputs, frames)`` for
            1-D input blocks), in order, together exactly as long as the input.
        """
        stream = self.stream(sample_rate, channels, prompts)
        to_skip = stream.latency_samples
        consumed = 0
        mono = False
        for count, block in enumerate(blocks, start=1):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Separation cancelled.")
            mono = np.ndim(block) == 1
            output = stream.process(block)
            consumed += np.shape(block)[0]
            if progress is not None:
                fraction = min(consumed / total_frames, 1.0) if total_frames else 0.0
                progress(
                    {
                        "fraction": fraction,
                        "chunk": count,
                        "total": 0,
                        "message": f"Separated {consumed / sample_rate:.1f} s",
                    }
                )
            if to_skip:
                dropped = min(to_skip, output.shape[1])
                output, to_skip = output[:, dropped:], to_skip - dropped
            if output.shape[1]:
                yield output
        tail = stream.flush(mono=mono)[:, to_skip:]
        if tail.shape[1]:
            yield tail


# --------------------------------------------------------------------------- streaming


class _StreamResampler:
    """torchaudio's sinc resampling, sample-exact, on a stream.

    ``torchaudio.functional.resample`` computes output block ``q`` (``new`` samples, rates
    reduced by their gcd) from the input window ``[q * orig - width, q * orig + orig + width)``
    with zeros outside the signal. This keeps the input from the next block's window on and
    computes each block once its window is complete, with the same kernel.

    Args:
        orig_rate: Input rate in Hz.
        new_rate: Output rate in Hz.
        rows: Signals resampled side by side.
        device: Where the buffers and the kernel live.
    """

    def __init__(self, orig_rate: int, new_rate: int, rows: int, device: torch.device) -> None:
        transform = audio_transforms.Resample(
            orig_rate,
            new_rate,
            lowpass_filter_width=RESAMPLE_LOWPASS_WIDTH,
            rolloff=RESAMPLE_ROLLOFF,
        )
        divisor = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate // divisor, new_rate // divisor
        self.width = int(transform.width)
        kernel = transform.kernel.to(device)  # new, 1, 2 * width + orig
        self.window = kernel.shape[-1]
        self.kernel = kernel[:, 0].T.contiguous()  # window, new
        self.rows = rows
        # Input from sample index ``next_block * orig - width`` on; before 0 it is zeros.
        self.buffer = torch.zeros(rows, self.width, device=device)
        self.received = 0
        self.next_block = 0

    def push(self, samples: Tensor) -> Tensor:
        """Feed input, shape ``(rows, n)``; returns the outputs it completed, ``(rows, m)``."""
        self.buffer = torch.cat((self.buffer, samples), dim=-1)
        self.received += samples.shape[-1]
        blocks = max(0, (self.received - self.width) // self.orig - self.next_block)
        if blocks == 0:
            return self.buffer.new_zeros(self.rows, 0)
        span = (blocks - 1) * self.orig + self.window
        # Windows times the kernel: the strided convolution of torchaudio as one product.
        windows = self.buffer[:, :span].unfold(-1, self.window, self.orig)  # rows, blocks, K
        output = (windows @ self.kernel).reshape(self.rows, blocks * self.new)
        self.buffer = self.buffer[:, blocks * self.orig :]
        self.next_block += blocks
        return output


class _StatefulStream:
    """A model with ``stream_init`` / ``stream_step`` run on a stream at any rate.

    At the model's rate the model's own delay is the whole delay. At another rate the stream
    is resampled to the model's rate and its outputs back with :class:`_StreamResampler`,
    which adds the resampling filters' look-ahead. Either way the output equals the offline
    (unchunked) :class:`Separator` result on the whole stream, delayed by
    :attr:`latency_samples`.

    Args:
        model: The streaming model (its ``stream_latency_samples`` is its delay).
        model_rate: The model's rate in Hz.
        input_rate: The stream's rate in Hz.
        channels: Channels of the stream (each separated on its own).
        device: Where the model runs.
    """

    def __init__(
        self,
        model: nn.Module,
        model_rate: int,
        input_rate: int,
        channels: int,
        device: torch.device,
    ) -> None:
        self.model = model
        self.model_rate = model_rate
        self.input_rate = input_rate
        self.channels = channels
        self.device = device
        self.num_outputs = len(model.source_names)
        self.model_latency = int(model.stream_latency_samples)
        self.resampling = model_rate != input_rate
        if self.resampling:
            divisor = math.gcd(input_rate, model_rate)
            self.input_unit, self.model_unit = input_rate // divisor, model_rate // divisor
            forward_width = _StreamResampler(input_rate, model_rate, 1, device).width
            backward_width = _StreamResampler(model_rate, input_rate, 1, device).width
            # After n input samples the forward resampler has completed
            # model_unit * floor((n - forward_width) / input_unit) model samples, the model
            # returns all but its own delay, and the backward resampler completes
            # input_unit * floor((m - backward_width) / model_unit) of those m: the worst case
            # over n of n minus that is the delay.
            self.latency_samples = (
                forward_width
                + self.input_unit
                - 1
                + self.input_unit * -(-(self.model_latency + backward_width) // self.model_unit)
            )
        else:
            self.latency_samples = self.model_latency
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far."""
        self.state = self.model.stream_init(self.channels)
        if self.resampling:
            self.forward = _StreamResampler(
                self.input_rate, self.model_rate, self.channels, self.device
            )
            self.backward = _StreamResampler(
                self.model_rate, self.input_rate, self.channels * self.num_outputs, self.device
            )
        self.received = 0
        self.model_fed = 0
        self.model_skip = self.model_latency
        self.produced = 0
        self.queue = torch.zeros(
            self.num_outputs, self.channels, self.latency_samples, device=self.device
        )

    def _run_model(self, samples: Tensor) -> Tensor:
        """Model-rate input ``(channels, n)`` -> the undelayed outputs it completed
        ``(channels, outputs, m)``."""
        output, self.state = self.model.stream_step(samples, self.state)
        self.model_fed += samples.shape[-1]
        dropped = min(self.model_skip, output.shape[-1])
        self.model_skip -= dropped
        return output[..., dropped:]

    def _back(self, separated: Tensor) -> Tensor:
        """Model-rate outputs ``(channels, outputs, m)`` -> stream-rate ``(outputs, channels, k)``."""
        if self.resampling:
            rows = self.backward.push(separated.reshape(self.channels * self.num_outputs, -1))
            separated = rows.view(self.channels, self.num_outputs, -1)
        return separated.transpose(0, 1)

    def _append(self, output: Tensor) -> None:
        self.queue = torch.cat((self.queue, output), dim=-1)
        self.produced += output.shape[-1]

    def _take(self, count: int) -> np.ndarray:
        if self.queue.shape[-1] < count:
            raise RuntimeError(
                f"Streaming delay too short: {self.queue.shape[-1]} of {count} samples ready."
            )
        taken, self.queue = self.queue[..., :count], self.queue[..., count:]
        return taken.float().cpu().numpy()

    def process(self, samples: Tensor) -> np.ndarray:
        """Input ``(channels, n)`` at the stream rate -> output ``(outputs, channels, n)``."""
        self.received += samples.shape[-1]
        model_input = self.forward.push(samples) if self.resampling else samples
        self._append(self._back(self._run_model(model_input)))
        return self._take(samples.shape[-1])

    def flush(self) -> np.ndarray:
        """End the stream: the last ``latency_samples`` output frames ``(outputs, channels, n)``.

        The tail is computed as the offline path computes it: the signal (at the model rate,
        of the length resampling gives it) followed by zeros.
        """
        total = self.received
        zeros = functools.partial(torch.zeros, self.channels, device=self.device)
        if self.resampling:
            model_total = -(-self.model_unit * total // self.input_unit)
            needed = self.input_unit * -(-model_total // self.model_unit) + self.forward.width
            model_input = self.forward.push(zeros(max(0, needed - total)))
            model_input = model_input[:, : max(0, model_total - self.model_fed)]
        else:
            model_total = total
            model_input = zeros(0)
        separated = torch.cat(
            (self._run_model(model_input), self._run_model(zeros(self.model_latency))), dim=-1
        )
        output = self._back(separated)
        if self.resampling:
            needed = self.model_unit * -(-total // self.input_unit) + self.backward.width
            silence = torch.zeros(
                self.channels, self.num_outputs, max(0, needed - model_total), device=self.device
            )
            output = torch.cat((output, self._back(silence)), dim=-1)
        self._append(output[..., : total - self.produced])
        tail = self._take(self.latency_samples)
        self.reset()
        return tail


class StreamingSeparator:
    """Block-by-block separation of a live stream with a fixed, stated delay.

    Every :meth:`process` call returns as many frames as it was given; output frame ``i``
    is the separated input frame ``i - latency_samples`` (zeros before the stream starts).
    :meth:`flush` returns the last ``latency_samples`` frames at the end of the stream.

    Models that can stream themselves (``supports_streaming`` with ``stream_init`` /
    ``stream_step``, e.g. the causal Conv-TasNet) run *stateful*: each block computes only its
    new frames, every layer keeping its own past, so the cost per block does not grow with
    any context, and the output equals the unchunked offline output delayed by the model's
    latency (plus the streaming resamplers' look-ahead when the stream is not at the
    model's rate). The chunk, overlap and context settings then do not apply. Other models
    (and ``stateful=False``) run the chunk engine: buffered chunks with context, equal to
    the offline output with the same chunk settings.

    Args:
        bundle_or_model: As for :class:`Separator`.
        sample_rate: The stream's rate in Hz.
        channels: Channels per block.
        prompts: Prompts for a prompted model.
        device: As for :class:`Separator`.
        chunk_seconds: Chunk length; defaults to :data:`CAUSAL_CHUNK_SECONDS` for causal
            models, :data:`STREAMING_CHUNK_SECONDS` otherwise.
        overlap_seconds: Crossfade; defaults to 0 (causal) or :data:`STREAMING_OVERLAP_SECONDS`.
        context_seconds: Left/right context; defaults to :data:`CAUSAL_CONTEXT_SECONDS` of
            history and no lookahead for causal models (the right context is then the model's
            algorithmic latency), and to 0 for non-causal ones.
        model_sample_rate: The model's rate, for a bare model without ``config.sample_rate``.
        align_permutations: As for :class:`Separator`.
        stateful: ``None`` streams statefully when the model supports it; ``False`` forces
            the chunk engine; ``True`` requires stateful streaming.
    """

    def __init__(
        self,
        bundle_or_model: Bundle | nn.Module | str | os.PathLike[str],
        sample_rate: int,
        channels: int = 1,
        prompts: Sequence[str] | None = None,
        device: str | torch.device | None = "auto",
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        context_seconds: float | tuple[float, float] | None = None,
        model_sample_rate: int | None = None,
        align_permutations: bool | None = None,
        stateful: bool | None = None,
    ) -> None:
        model, model_rate, _, target = _resolve_model(bundle_or_model, device, model_sample_rate)
        self.sample_rate = _check_rate(sample_rate)
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}.")
        self.channels = channels
        supported = bool(getattr(model, "supports_streaming", False)) and hasattr(
            model, "stream_step"
        )
        if stateful and not supported:
            raise ValueError(
                f"{type(model).__name__} cannot stream statefully (it has no stream_step, or "
                "is not causal); use stateful=None or False."
            )
        #: Whether blocks run through the model's own streaming state (see the class notes).
        self.stateful = supported if stateful is None else bool(stateful)
        algorithmic = getattr(model, "algorithmic_latency_samples", None)
        self.causal = algorithmic is not None
        if self.causal:
            chunk = CAUSAL_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
            overlap = 0.0 if overlap_seconds is None else overlap_seconds
            context = (CAUSAL_CONTEXT_SECONDS, 0.0) if context_seconds is None else context_seconds
            extra_right = _lookahead(model, self.sample_rate, model_rate)
        else:
            chunk = STREAMING_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
            overlap = STREAMING_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
            context = 0.0 if context_seconds is None else context_seconds
            extra_right = 0
        if math.isinf(chunk) or chunk == 0:
            raise ValueError("A stream needs a finite chunk length.")
        self.engine = _ChunkEngine(
            model,
            model_rate,
            self.sample_rate,
            target,
            prompts,
            chunk,
            overlap,
            context,
            extra_right_context=extra_right,
            align_permutations=align_permutations,
        )
        plan = self.engine.plan
        self._stateful: _StatefulStream | None = None
        if self.stateful:
            self._stateful = _StatefulStream(model, model_rate, self.sample_rate, channels, target)
            #: Delay of the output behind the input, in samples at the stream rate.
            self.latency_samples = self._stateful.latency_samples
        else:
            self.latency_samples = plan.chunk + max(plan.right_context, 1) - 1
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        """Output names, in output order."""
        return self.engine.names

    @property
    def latency_seconds(self) -> float:
        """:attr:`latency_samples` in seconds."""
        return self.latency_samples / self.sample_rate

    @property
    def plan(self) -> ChunkPlan:
        """The chunk geometry in stream samples (that of the chunk engine, unused when
        :attr:`stateful`)."""
        return self.engine.plan

    def reset(self) -> None:
        """Forget the stream so far."""
        if self._stateful is not None:
            self._stateful.reset()
        self._input = np.zeros((self.channels, 0), dtype=np.float32)
        self._input_offset = 0
        self._received = 0
        self._next_chunk = 0
        self._emitted = 0
        self._output = _Accumulator(len(self.engine.names), self.channels, None)

    def _read(self, start: int, end: int) -> np.ndarray:
        return self._input[:, start - self._input_offset : end - self._input_offset]

    def _run_chunk(self, total: int | None) -> None:
        start, output = self.engine.chunk(
            self._next_chunk, total, self._read, self._received, self._output.read
        )
        self._output.add(start, output)
        self._next_chunk += 1
        # Later chunks never read input before their left context.
        keep_from = max(0, self._next_chunk * self.plan.hop - self.plan.left_context)
        if keep_from > self._input_offset:
            self._input = self._input[:, keep_from - self._input_offset :].copy()
            self._input_offset = keep_from

    def process(self, block: np.ndarray | Tensor) -> np.ndarray:
        """Feed the next block, get the same number of delayed output frames.

        Args:
            block: Input, shape ``(frames, channels)`` (or ``(frames,)`` for one channel).

        Returns:
            Output, shape ``(num_outputs, frames, channels)`` (``(num_outputs, frames)`` for
            a 1-D block), delayed by :attr:`latency_samples`.
        """
        array, mono = _as_input(block, "block")
        if array.shape[1] != self.channels:
            raise ValueError(
                f"block must have shape (frames, {self.channels}), got {np.shape(block)}."
            )
        if self._stateful is not None:
            with torch.inference_mode():
                samples = torch.from_numpy(np.ascontiguousarray(array.T, dtype=np.float32))
                output = self._stateful.process(samples.to(self.engine.device))
            return self._layout(output, mono)
        self._input = np.concatenate(
            (self._input, np.ascontiguousarray(array.T, dtype=np.float32)), axis=1
        )
        self._received += array.shape[0]
        plan = self.plan
        # A chunk runs once its right context exists and at least one sample follows it (so
        # it cannot be the stream's last chunk, which has no fade-out).
        while (
            self._next_chunk * plan.hop + plan.chunk + max(plan.right_context, 1) <= self._received
        ):
            self._run_chunk(None)
        return self._emit(self._received, mono)

    def flush(self, mono: bool = False) -> np.ndarray:
        """End the stream: process what is left and return the last frames, then reset.

        Args:
            mono: Return ``(num_outputs, frames)`` instead of ``(num_outputs, frames, 1)``
                (only for one channel).

        Returns:
            The remaining ``latency_samples`` output frames.
        """
        if self._stateful is not None:
            with torch.inference_mode():
                return self._layout(self._stateful.flush(), mono)
        total = self._received
        if total:
            while self._next_chunk < self.plan.num_chunks(total):
                self._run_chunk(total)
        output = self._emit(total + self.latency_samples, mono)
        self.reset()
        return output

    def _emit(self, end: int, mono: bool) -> np.ndarray:
        start = self._emitted
        self._emitted = end
        out = self._output.take(start - self.latency_samples, end - self.latency_samples)
        return self._layout(out, mono)

    def _layout(self, output: np.ndarray, mono: bool) -> np.ndarray:
        """``(S, C, frames)`` -> ``(S, frames, C)``, or ``(S, frames)`` for a 1-D stream."""
        output = output.transpose(0, 2, 1)  # S, frames, C
        return output[..., 0] if mono and self.channels == 1 else output


# --------------------------------------------------------------------------- Verifier


class Verifier:
    """Speaker embeddings and cosine scores.

    Args:
        bundle_or_model: A speaker bundle (or name/path) or a model with
            ``embed(waveform (batch, time)) -> (batch, embedding_dim)``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a device.
        sample_rate: The model's rate, for a bare model without ``config.sample_rate``.
        max_seconds: Longer clips are embedded in pieces of this length and the normalised
            piece embeddings averaged (weighted by length), bounding memory.
    """

    def __init__(
        self,
        bundle_or_model: Bundle | nn.Module | str | os.PathLike[str],
        device: str | torch.device | None = "auto",
        sample_rate: int | None = None,
        max_seconds: float = 60.0,
    ) -> None:
        self.model, self.sample_rate, self.bundle, self.device = _resolve_model(
            bundle_or_model, device, sample_rate
        )
        if not hasattr(self.model, "embed"):
            raise ValueError("The model is not a speaker encoder: it has no embed() method.")
        self.threshold: float | None = self.bundle.threshold if self.bundle else None
        self.max_samples = max(1, round(max_seconds * self.sample_rate))

    @property
    def embedding_dim(self) -> int:
        """Size of the embeddings."""
        return int(self.model.config.embedding_dim)

    def embed(self, waveform: np.ndarray | Tensor, sample_rate: int) -> np.ndarray:
        """Embed one clip.

        Args:
            waveform: Speech, shape ``(frames,)`` or ``(frames, channels)`` (channels are
                averaged), float.
            sample_rate: Its rate in Hz.

        Returns:
            Unit-length embedding, shape ``(embedding_dim,)``, float32.
        """
        array, _ = _as_input(waveform)
        rate = _check_rate(sample_rate)
        with torch.inference_mode():
            mono = torch.from_numpy(np.ascontiguousarray(array.mean(axis=1), dtype=np.float32))
            mono = mono.to(self.device)
            if rate != self.sample_rate:
                mono = audio_functional.resample(mono, rate, self.sample_rate)
            pieces = list(torch.split(mono, self.max_samples))
            if len(pieces) > 1 and pieces[-1].numel() < self.max_samples // 2:
                pieces[-2] = torch.cat(pieces[-2:])  # no short, noisy last piece
                pieces.pop()
            total = torch.zeros(self.embedding_dim, device=self.device)
            for piece in pieces:
                embedding = self.model.embed(piece.unsqueeze(0))[0].float()
                total += piece.numel() * embedding / (embedding.norm() + 1e-12)
            total = total / (total.norm() + 1e-12)
        return total.cpu().numpy()

    @staticmethod
    def score(first: np.ndarray | Tensor, second: np.ndarray | Tensor) -> float:
        """Cosine similarity of two embeddings, in ``[-1, 1]``.

        Args:
            first: Embedding, shape ``(embedding_dim,)``.
            second: Embedding, shape ``(embedding_dim,)``.

        Returns:
            The cosine score (higher: more likely the same speaker).
        """
        a = np.asarray(first.detach().cpu() if isinstance(first, Tensor) else first, np.float64)
        b = np.asarray(second.detach().cpu() if isinstance(second, Tensor) else second, np.float64)
        if a.ndim != 1 or a.shape != b.shape:
            raise ValueError(
                f"Embeddings must both have shape (embedding_dim,), got {a.shape} and {b.shape}."
            )
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    def accepts(self, score: float) -> bool:
        """Whether ``score`` passes the bundle's calibrated threshold."""
        if self.threshold is None:
            raise ValueError("This speaker model has no calibrated threshold.")
        return score >= self.threshold
