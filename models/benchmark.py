"""Speed measurements: real-time factor against a reference, block latency, peak memory.

Everything here is plain PyTorch and the standard library, so the CLI (``workbench bench``),
the GUI and tests share one implementation.

* :func:`benchmark_models` measures, for registered models at chosen presets, the parameter
  count, MACs per second of audio (:mod:`models.flops`) and the real-time factor (processing
  time / audio duration, median of repeats after warm-up) next to torchaudio's
  ``ConvTasNet`` at the paper configuration measured in the same run. Ratios compare with the
  reference measured on a clip of the same length, so fixed per-call costs cancel.
* :func:`measure_block_processing` times a streaming step block by block (mean, p50, p99 as a
  fraction of the block duration) and states the algorithmic latency;
  :func:`live_block_timing` applies it to a causal model inside the app's live path
  (:class:`models.inference.StreamingSeparator`).
* :func:`peak_rss_of_command` runs a command and returns the peak resident memory of that
  child process tree, for the 60-minute vs 1-minute bounded-memory check.

A forward pass cannot be interrupted from Python, so the per-model time budget is kept by
prediction: untimed runs on growing clips predict the next, and the full clip is only run
when the extrapolated cost fits; otherwise the row says ``"skipped": "too slow"``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.flops import count_macs

#: Sample rate of the reference (the Conv-TasNet paper's WSJ0-2mix rate).
REFERENCE_SAMPLE_RATE: int = 8000
#: Human-readable name of the reference in reports.
REFERENCE_NAME: str = "torchaudio.models.ConvTasNet (paper configuration)"
#: The paper configuration (Luo & Mesgarani 2019, Table II best non-causal), as keyword
#: arguments of ``torchaudio.models.ConvTasNet``.
REFERENCE_CONFIG: Mapping[str, int] = {
    "num_sources": 2,
    "enc_kernel_size": 16,
    "enc_num_feats": 512,
    "msk_kernel_size": 3,
    "msk_num_feats": 128,
    "msk_num_hidden_feats": 512,
    "msk_num_layers": 8,
    "msk_num_stacks": 3,
}
#: Prompts given to prompted models (TUSS): two outputs, as in a speech + effects split.
DEFAULT_PROMPTS: tuple[str, ...] = ("speech", "sfx")
#: Length of the first (cold) run; later untimed runs grow by :data:`PROBE_GROWTH` up to the
#: full clip, each predicting the next from the last (see :func:`measure_rtf`).
PROBE_SECONDS: float = 0.25
PROBE_GROWTH: float = 4.0
SKIPPED_TOO_SLOW: str = "too slow"


@dataclass(frozen=True)
class CommandMemory:
    """Outcome of :func:`peak_rss_of_command`.

    Attributes:
        returncode: Exit status (negative: killed by that signal).
        peak_rss_bytes: Peak resident set size of the child process tree.
        stderr: The last 4000 characters of its standard error.
    """

    returncode: int
    peak_rss_bytes: int
    stderr: str


class TooSlowError(RuntimeError):
    """A measurement would not fit its time budget."""


@dataclass(frozen=True)
class RtfMeasurement:
    """Timing of one model on one clip.

    Attributes:
        clip_seconds: Audio duration of the clip.
        seconds: Median processing time of the timed repeats.
        rtf: Real-time factor, ``seconds / clip_seconds`` (below 1 is faster than real time).
        repeats: Number of timed repeats the median is over (fewer than asked when the time
            budget ran out).
        times: Every timed repeat, in seconds.
        macs_per_second: MACs per second of audio counted on the same clip, or ``None`` when
            not counted.
        reference_rtf: Real-time factor of the reference timed alongside (median of its
            paired runs), or ``None`` without a reference.
    """

    clip_seconds: float
    seconds: float
    rtf: float
    repeats: int
    times: tuple[float, ...]
    macs_per_second: float | None = None
    reference_rtf: float | None = None


@dataclass(frozen=True)
class BlockTiming:
    """Processing time per block of a streaming step.

    Attributes:
        sample_rate: Audio rate (Hz).
        block_size: Samples per block.
        num_blocks: Timed blocks.
        block_ms: Block duration.
        lookahead_samples: Delay of the step's output behind its input (a causal model's
            look-ahead plus any chunk buffering inside the streaming step).
        algorithmic_latency_ms: One block of buffering plus ``lookahead_samples``: the delay
            from a sample entering to it leaving, compute time excluded (reported below).
        mean_ms: Mean processing time per block.
        p50_ms: Median processing time per block.
        p99_ms: 99th-percentile processing time per block.
        max_ms: Slowest block.
        mean_fraction: ``mean_ms / block_ms``.
        p50_fraction: ``p50_ms / block_ms``.
        p99_fraction: ``p99_ms / block_ms`` (the live target is below 0.5).
    """

    sample_rate: int
    block_size: int
    num_blocks: int
    block_ms: float
    lookahead_samples: int
    algorithmic_latency_ms: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_fraction: float
    p50_fraction: float
    p99_fraction: float


# -- small helpers ------------------------------------------------------------------------


def machine_info(threads: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where the numbers were measured: CPU, threads, torch version, device, load.

    The load average matters on a shared machine: other processes slow every number, the
    reference included, which is why ratios are more portable than absolute times.
    """
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "device": str(device),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parameter_count(model: nn.Module) -> int:
    """Number of distinct parameters (shared weights counted once)."""
    return sum(parameter.numel() for parameter in model.parameters())


class ReferenceConvTasNet(nn.Module):
    """torchaudio's ``ConvTasNet`` at the paper configuration, behind our model contract.

    torchaudio's model takes ``(batch, 1, time)``; this wrapper takes ``(batch, time)`` like
    every registered separator, so both are timed through the same call. The unsqueeze is a
    view and costs nothing measurable.
    """

    def __init__(self) -> None:
        super().__init__()
        import torchaudio

        self.model = torchaudio.models.ConvTasNet(**REFERENCE_CONFIG)
        self.source_names: tuple[str, ...] = ("speaker1", "speaker2")

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate.

        Args:
            mixture: Tensor of shape ``(batch, time)``.

        Returns:
            Sources of shape ``(batch, 2, time)``.
        """
        if mixture.dim() != 2:
            raise ValueError(
                f"Expected a mixture of shape (batch, time), got {tuple(mixture.shape)}."
            )
        return self.model(mixture.unsqueeze(1))


def reference_model() -> nn.Module:
    """The reference in eval mode (4.98 M parameters, 8 kHz)."""
    return ReferenceConvTasNet().eval()


def model_call(
    model: nn.Module, prompts: Sequence[str] = DEFAULT_PROMPTS
) -> Callable[[Tensor], Any]:
    """How to run ``model`` on a ``(batch, time)`` waveform, following the shared contract.

    Prompted models (a ``PROMPTS`` attribute, TUSS) get ``prompts``; speaker encoders (an
    ``embed`` method and no ``source_names``) are called through ``embed``, which includes
    their feature front end; every other model is called directly.

    Args:
        model: A registered model or the reference.
        prompts: Prompt names for prompted models.

    Returns:
        A function taking a waveform of shape ``(batch, time)``.
    """
    if hasattr(model, "PROMPTS"):
        chosen = list(prompts)
        return lambda waveform: model(waveform, chosen)
    if hasattr(model, "embed") and not hasattr(model, "source_names"):
        return model.embed
    return model


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable[[Tensor], Any], waveform: Tensor, device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    call(waveform)
    _synchronize(device)
    return time.perf_counter() - start


def _noise(num_samples: int, device: torch.device, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Speech-like level: unit-variance noise would be 0 dBFS RMS, far above real mixtures.
    return (0.1 * torch.randn(1, num_samples, generator=generator)).to(device)


# -- real-time factor ----------------------------------------------------------------------


def measure_rtf(
    model: nn.Module,
    sample_rate: int,
    clip_seconds: float,
    *,
    warmup: int = 1,
    repeats: int = 3,
    max_seconds: float | None = None,
    count_model_macs: bool = True,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    reference: nn.Module | None = None,
    reference_sample_rate: int = REFERENCE_SAMPLE_RATE,
) -> RtfMeasurement:
    """Real-time factor of ``model`` on ``clip_seconds`` of noise, under inference mode.

    Order: untimed probe runs on growing clips (:data:`PROBE_SECONDS`, then
    :data:`PROBE_GROWTH` times longer each, below the full length), the MAC count on the full
    clip, ``warmup`` untimed full-clip runs, then up to ``repeats`` timed runs; the median is
    reported. Growing probes keep the prediction honest: the first run carries one-off costs
    (allocations, kernel selection) that a 40x extrapolation would inflate into minutes, and
    each later run is warm and predicts the next one from a length within a factor of four.
    When ``max_seconds`` is given, a run predicted to overrun it (together with the runs
    still needed after it) is not started: before the full clip that raises
    :class:`TooSlowError`; between repeats it stops early (at least one repeat).

    With a ``reference``, every timed run of the model is followed by a timed run of the
    reference on a clip of the same duration (after one untimed reference run). On a shared
    machine the load changes within seconds; pairing the runs exposes both models to the same
    load, so their ratio stays meaningful where absolute times do not.

    Args:
        model: Model on the device it should run on; switched to eval mode.
        sample_rate: Rate of the clip (the model's own).
        clip_seconds: Duration of the timed clip.
        warmup: Untimed full-clip runs before timing (after the MAC count).
        repeats: Timed runs (at least 1).
        max_seconds: Budget for the whole measurement, or ``None`` for no limit.
        count_model_macs: Count MACs on the clip (:func:`models.flops.count_macs`).
        prompts: Prompt names for prompted models.
        reference: Model timed alongside (``(batch, time) -> ...``), or ``None``.
        reference_sample_rate: Rate of the reference's clip.

    Returns:
        The measurement (with ``reference_rtf`` when a reference was given).

    Raises:
        ValueError: On a non-positive clip, a negative ``warmup`` or ``repeats < 1``.
        TooSlowError: When the predicted cost of the full clip exceeds ``max_seconds``.
    """
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}.")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"Need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    model.eval()
    device = _model_device(model)
    call = model_call(model, prompts)
    num_samples = max(1, round(sample_rate * clip_seconds))
    audio_seconds = num_samples / sample_rate
    clip = _noise(num_samples, device)
    started = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - started

    full_runs_needed = int(count_model_macs) + warmup + 1
    probe_samples = min(num_samples, max(1, round(sample_rate * PROBE_SECONDS)))
    with torch.inference_mode():
        last_time = _timed(call, _noise(probe_samples, device, seed=1), device)
        last_samples = probe_samples
        while True:
            # Linear in length; attention grows faster, which the next rung then reveals.
            predicted = last_time * num_samples / last_samples
            if max_seconds is not None and elapsed() + predicted * full_runs_needed > max_seconds:
                raise TooSlowError(
                    f"predicted {predicted * full_runs_needed:.0f} s for {full_runs_needed} "
                    f"runs of {clip_seconds:g} s audio, over the {max_seconds:g} s budget"
                )
            next_samples = round(last_samples * PROBE_GROWTH)
            if next_samples >= num_samples:
                break
            last_time = _timed(call, _noise(next_samples, device, seed=1), device)
            last_samples = next_samples

    macs_per_second = None
    if count_model_macs:
        # count_macs runs under no_grad (FlopCounterMode needs autograd-visible ops).
        count_start = time.perf_counter()
        macs_per_second = count_macs(model, lambda: call(clip)) / audio_seconds
        predicted = time.perf_counter() - count_start
    reference_clip = None
    with torch.inference_mode():
        for index in range(warmup):
            runs_left = warmup - index + 1  # this warm-up, the rest, one timed run
            if max_seconds is not None and elapsed() + predicted * runs_left > max_seconds:
                raise TooSlowError(
                    f"one run of {clip_seconds:g} s audio takes about {predicted:.0f} s; "
                    f"{runs_left} more would overrun the {max_seconds:g} s budget"
                )
            predicted = _timed(call, clip, device)
        if reference is not None:
            reference.eval()
            reference_clip = _noise(round(reference_sample_rate * audio_seconds), device)
            reference(reference_clip)  # untimed warm-up
        if max_seconds is not None and elapsed() + predicted > max_seconds:
            raise TooSlowError(
                f"one run of {clip_seconds:g} s audio takes about {predicted:.0f} s; "
                f"{elapsed():.0f} s of the {max_seconds:g} s budget already spent"
            )
        times: list[float] = []
        reference_times: list[float] = []
        for _ in range(repeats):
            next_cost = max(times, default=0.0) + max(reference_times, default=0.0)
            if times and max_seconds is not None and elapsed() + next_cost > max_seconds:
                break
            times.append(_timed(call, clip, device))
            if reference is not None and reference_clip is not None:
                reference_times.append(_timed(reference, reference_clip, device))
    seconds = statistics.median(times)
    return RtfMeasurement(
        clip_seconds=audio_seconds,
        seconds=seconds,
        rtf=seconds / audio_seconds,
        repeats=len(times),
        times=tuple(times),
        macs_per_second=macs_per_second,
        reference_rtf=(
            statistics.median(reference_times) / audio_seconds if reference_times else None
        ),
    )


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def clip_seconds_for(preset: str, seconds: float, long_preset_seconds: float) -> float:
    """Clip length for a preset: CPU-sized presets (name containing ``"small"``) get the full
    ``seconds``; paper-sized ones the shorter ``long_preset_seconds`` (their RTF on 2 s is
    within a few percent of 10 s for the convolutional models, at a fifth of the wait)."""
    return seconds if "small" in preset else min(seconds, long_preset_seconds)


def benchmark_models(
    names: Sequence[str] | None = None,
    presets: Sequence[str] = ("small", "paper"),
    *,
    seconds: float = 10.0,
    long_preset_seconds: float = 2.0,
    threads: int = 2,
    warmup: int = 1,
    repeats: int = 3,
    max_seconds_per_model: float | None = 120.0,
    device: torch.device | str = "cpu",
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark registered models against torchaudio's paper ``ConvTasNet``.

    The caller sets the thread count (``torch.set_num_threads``); ``threads`` is recorded.
    The reference is measured once on ``seconds`` of audio for the headline numbers (its
    parameters, MACs and RTF), and again inside every row, paired run by run with the model
    on a clip of the row's length (see :func:`measure_rtf`); a row's ratio divides by that
    paired ``reference_rtf``, so load changes during a long run do not skew later rows.

    Args:
        names: Registry names (default: every registered model).
        presets: Presets per model; a model lacking one gets a row saying so.
        seconds: Clip length for CPU-sized presets and the reference's headline number.
        long_preset_seconds: Clip length for the other presets (see :func:`clip_seconds_for`).
        threads: Thread count in effect, for the report.
        warmup: Untimed runs before timing.
        repeats: Timed runs per measurement (median reported).
        max_seconds_per_model: Time budget per row; over it the row is skipped as too slow.
        device: Where to run (``"cpu"`` for the CPU real-time factor).
        prompts: Prompts for prompted models.
        progress: Called with one line per finished row (for a terminal).

    Returns:
        ``{"machine": ..., "reference": ..., "models": [row, ...]}`` as plain JSON types.
        A row has ``name, preset, task, sample_rate, parameters, macs_per_second, rtf,
        rtf_ratio_to_reference, macs_ratio_to_reference, clip_seconds, repeats,
        reference_rtf`` and, when skipped, ``skipped`` with the reason.

    Raises:
        KeyError: On an unknown model name.
    """
    from models.registry import get_spec, registry

    device = torch.device(device)
    names = list(registry()) if names is None else list(names)
    specs = [get_spec(name) for name in names]  # unknown names fail before any timing
    reference = reference_model().to(device)
    headline = measure_rtf(
        reference, REFERENCE_SAMPLE_RATE, seconds, warmup=warmup, repeats=repeats
    )
    reference_macs = float(headline.macs_per_second or 0.0)
    reference_report = {
        "name": REFERENCE_NAME,
        "config": dict(REFERENCE_CONFIG),
        "sample_rate": REFERENCE_SAMPLE_RATE,
        "parameters": parameter_count(reference),
        "macs_per_second": reference_macs,
        "rtf": headline.rtf,
        "clip_seconds": headline.clip_seconds,
        "repeats": headline.repeats,
    }
    if progress is not None:
        progress(f"reference: rtf {headline.rtf:.4f} on {headline.clip_seconds:g} s")

    rows: list[dict[str, Any]] = []
    for spec in specs:
        for preset in presets:
            row = _benchmark_row(
                spec,
                preset,
                clip_seconds_for(preset, seconds, long_preset_seconds),
                reference,
                reference_macs,
                warmup=warmup,
                repeats=repeats,
                max_seconds=max_seconds_per_model,
                device=device,
                prompts=prompts,
            )
            rows.append(row)
            if progress is not None:
                progress(_progress_line(row))
    return {
        "machine": machine_info(threads, device),
        "reference": reference_report,
        "models": rows,
    }


def _benchmark_row(
    spec: Any,
    preset: str,
    clip: float,
    reference: nn.Module,
    reference_macs: float,
    *,
    warmup: int,
    repeats: int,
    max_seconds: float | None,
    device: torch.device,
    prompts: Sequence[str],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "preset": preset,
        "task": spec.task,
        "sample_rate": None,
        "parameters": None,
        "macs_per_second": None,
        "rtf": None,
        "rtf_ratio_to_reference": None,
        "macs_ratio_to_reference": None,
        "clip_seconds": clip,
        "repeats": 0,
        "reference_rtf": None,
    }
    if preset not in spec.presets:
        row["skipped"] = f"no preset '{preset}'"
        return row
    config = spec.config(preset)
    row["sample_rate"] = config.sample_rate
    model = spec.model_class(config).to(device).eval()
    row["parameters"] = parameter_count(model)
    try:
        run = measure_rtf(
            model,
            config.sample_rate,
            clip,
            warmup=warmup,
            repeats=repeats,
            max_seconds=max_seconds,
            prompts=prompts,
            reference=reference,
        )
    except TooSlowError as exc:
        row["skipped"] = SKIPPED_TOO_SLOW
        row["skipped_detail"] = str(exc)
        return row
    reference_rtf = float(run.reference_rtf or 0.0)  # always measured: a reference was given
    row.update(
        macs_per_second=run.macs_per_second,
        rtf=run.rtf,
        rtf_ratio_to_reference=run.rtf / reference_rtf,
        macs_ratio_to_reference=(run.macs_per_second or 0.0) / reference_macs,
        clip_seconds=run.clip_seconds,
        repeats=run.repeats,
        reference_rtf=reference_rtf,
    )
    return row


def _progress_line(row: Mapping[str, Any]) -> str:
    label = f"{row['name']}/{row['preset']}"
    if "skipped" in row:
        return f"{label}: skipped ({row['skipped']})"
    return f"{label}: rtf {row['rtf']:.4f} ({row['rtf_ratio_to_reference']:.2f}x reference)"


# -- streaming -----------------------------------------------------------------------------


def live_block_timing(
    model: nn.Module,
    block_size: int = 512,
    *,
    num_blocks: int = 200,
    warmup_blocks: int = 10,
    context_seconds: float | None = None,
    device: torch.device | str = "cpu",
) -> BlockTiming:
    """Per-block processing time of a causal model through the app's live path.

    The model runs inside :class:`models.inference.StreamingSeparator`, exactly as the live
    panel runs it (short chunks, a left context, the model's look-ahead as right context),
    fed one block of ``block_size`` samples per call at the model's rate. The latency in the
    result is one block of buffering plus the streamer's stated delay.

    Args:
        model: A causal separation model (``algorithmic_latency_samples`` not ``None``).
        block_size: Samples per block (512 at 16 kHz is 32 ms).
        num_blocks: Timed blocks.
        warmup_blocks: Untimed blocks first.
        context_seconds: Left context of each chunk (``None``: the streamer's default).
        device: Where the model runs.

    Returns:
        The per-block timing.

    Raises:
        ValueError: For a model without a finite algorithmic latency.
    """
    from models.inference import StreamingSeparator

    if getattr(model, "algorithmic_latency_samples", None) is None:
        raise ValueError(
            f"{type(model).__name__} is not causal (algorithmic_latency_samples is None)."
        )
    sample_rate = int(model.config.sample_rate)
    streamer = StreamingSeparator(
        model,
        sample_rate,
        channels=1,
        device=device,
        context_seconds=None if context_seconds is None else (context_seconds, 0.0),
    )
    return measure_block_processing(
        lambda block: streamer.process(block[0]),  # the callback hands it (frames,) audio
        block_size,
        sample_rate,
        num_blocks=num_blocks,
        warmup_blocks=warmup_blocks,
        lookahead_samples=streamer.latency_samples,
        device=device,
    )


def measure_block_processing(
    step: Callable[[Tensor], Any],
    block_size: int,
    sample_rate: int,
    *,
    num_blocks: int = 200,
    warmup_blocks: int = 10,
    lookahead_samples: int = 0,
    device: torch.device | str = "cpu",
) -> BlockTiming:
    """Time a streaming ``step`` on consecutive noise blocks, under inference mode.

    Args:
        step: Processes one block of shape ``(1, block_size)`` (keeping its own state).
        block_size: Samples per block.
        sample_rate: Audio rate (Hz), for the block duration.
        num_blocks: Timed blocks (at least 1; 100 or more for a meaningful p99).
        warmup_blocks: Untimed blocks first (allocator and kernel caches, state fill).
        lookahead_samples: Delay of the step's output behind its input (look-ahead and
            internal buffering), added to the one-block buffering for the algorithmic
            latency.
        device: Device the step computes on (synchronised around each block); the blocks
            themselves stay on the CPU, where audio arrives.

    Returns:
        The per-block timing.

    Raises:
        ValueError: On non-positive sizes or negative counts.
    """
    if block_size < 1 or sample_rate < 1 or num_blocks < 1:
        raise ValueError(
            f"Need block_size, sample_rate and num_blocks >= 1, got {block_size}, "
            f"{sample_rate}, {num_blocks}."
        )
    if warmup_blocks < 0 or lookahead_samples < 0:
        raise ValueError("warmup_blocks and lookahead_samples must be >= 0.")
    device = torch.device(device)
    signal = _noise((warmup_blocks + num_blocks) * block_size, torch.device("cpu"))
    blocks = signal.split(block_size, dim=-1)
    times: list[float] = []
    with torch.inference_mode():
        for index, block in enumerate(blocks):
            elapsed = _timed(step, block, device)
            if index >= warmup_blocks:
                times.append(elapsed)
    block_ms = 1000.0 * block_size / sample_rate
    times_ms = sorted(1000.0 * t for t in times)
    mean_ms = statistics.fmean(times_ms)
    p50_ms = _percentile(times_ms, 50.0)
    p99_ms = _percentile(times_ms, 99.0)
    return BlockTiming(
        sample_rate=sample_rate,
        block_size=block_size,
        num_blocks=num_blocks,
        block_ms=block_ms,
        lookahead_samples=lookahead_samples,
        algorithmic_latency_ms=1000.0 * (block_size + lookahead_samples) / sample_rate,
        mean_ms=mean_ms,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        max_ms=times_ms[-1],
        mean_fraction=mean_ms / block_ms,
        p50_fraction=p50_ms / block_ms,
        p99_fraction=p99_ms / block_ms,
    )


def _percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    position = (len(sorted_values) - 1) * percent / 100.0
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1.0 - weight) + sorted_values[upper] * weight


def block_timing_to_dict(timing: BlockTiming) -> dict[str, Any]:
    """A :class:`BlockTiming` as plain JSON types."""
    return dataclasses.asdict(timing)


# -- memory --------------------------------------------------------------------------------


#: Runs argv[2:], then writes its exit status and peak RSS (KiB on Linux) to argv[1]. A small
#: launcher is needed because a forked child's ``ru_maxrss`` starts at its parent's RSS (the
#: kernel keeps the pre-exec high-water mark), so a child of this torch-laden process could
#: never report less than ours; the launcher's own RSS is a few megabytes.
_MEMORY_LAUNCHER = """
import resource, subprocess, sys
returncode = subprocess.call(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as report:
    report.write(f"{returncode} {peak}")
"""


def peak_rss_of_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
) -> CommandMemory:
    """Run ``argv`` and measure its peak resident memory.

    The peak is the ``ru_maxrss`` of the command as seen by a minimal launcher process, so it
    covers the command and the descendants it waited for, and nothing else. Standard output
    is discarded; standard error is kept in a temporary file (a pipe could fill up and stall
    the child).

    Args:
        argv: Command and arguments.
        env: Environment (default: inherited).
        timeout: Seconds before the command is killed and ``subprocess.TimeoutExpired``
            raised.
        cwd: Working directory.

    Returns:
        Exit status, peak resident memory and the end of standard error.
    """
    import sys

    with tempfile.TemporaryDirectory(prefix="workbench-memory-") as folder:
        report_path = os.path.join(folder, "report")
        stderr_path = os.path.join(folder, "stderr")
        with open(stderr_path, "wb") as stderr_file:
            process = subprocess.Popen(
                [sys.executable, "-c", _MEMORY_LAUNCHER, report_path, *argv],
                env=None if env is None else dict(env),
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                start_new_session=True,  # so a timeout can stop the command with the launcher
            )
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise subprocess.TimeoutExpired(list(argv), timeout or 0.0) from None
        with open(stderr_path, "rb") as stderr_file:
            stderr = stderr_file.read()[-4000:].decode("utf-8", errors="replace")
        if process.returncode != 0 or not os.path.exists(report_path):
            raise RuntimeError(f"The memory launcher failed ({process.returncode}): {stderr}")
        with open(report_path, encoding="utf-8") as report:
            returncode_text, peak_text = report.read().split()
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if platform.system() == "Darwin" else 1024
    return CommandMemory(int(returncode_text), int(peak_text) * scale, stderr)
