"""``workbench bench``: benchmark models (real-time factor, memory) against a reference.

Two subcommands, both measuring in this process next to torchaudio's ``ConvTasNet`` at the
paper configuration (so a loaded or slow machine shows up in both and the ratios stay
meaningful):

* ``workbench bench models``: every registered model at its small and paper presets:
  parameters, MACs per second of audio, CPU real-time factor and the ratios to the reference.
* ``workbench bench bundles`` (also plain ``workbench bench``): the shipped bundles' real-time
  factor, peak memory of separating a 60-minute and a 1-minute file through the CLI, and the
  live model's algorithmic latency and processing time per block.

The measurements live in :mod:`models.benchmark`; this module parses, sets threads and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DESCRIPTION = "benchmark models (real-time factor, memory) against a reference"
NO_BUNDLES = "no shipped bundles yet"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help=DESCRIPTION,
        description=f"{DESCRIPTION[0].upper()}{DESCRIPTION[1:]}. Without a subcommand: bundles.",
    )
    _add_common_options(parser, suppress=False)
    _add_bundle_options(parser, suppress=False)
    parser.set_defaults(run=run_bundles)
    commands = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")

    models = commands.add_parser(
        "models",
        help="registered models at their presets vs torchaudio ConvTasNet",
        description="Parameters, MACs per second of audio and CPU real-time factor of each "
        "registered model at the chosen presets, with ratios to torchaudio's ConvTasNet "
        "(paper configuration, 8 kHz) measured in the same run.",
    )
    _add_common_options(models, suppress=True)
    models.add_argument(
        "--models", default=None, metavar="A,B", help="comma-separated registry names (all)"
    )
    models.add_argument(
        "--presets", default="small,paper", metavar="P,Q", help="comma-separated presets"
    )
    models.add_argument(
        "--paper-seconds",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="shorter clip for presets without 'small' in their name (default 2)",
    )
    models.add_argument(
        "--max-seconds-per-model",
        type=_positive_float,
        default=120.0,
        metavar="S",
        help="time budget per row; a row predicted to exceed it says 'skipped: too slow'",
    )
    models.set_defaults(run=run_models)

    bundles = commands.add_parser(
        "bundles",
        help="shipped bundles: real-time factor, memory, live latency",
        description="Shipped bundles' real-time factor vs torchaudio ConvTasNet, peak memory "
        "of separating a long and a short file through the CLI, and the live model's "
        "latency and processing time per block.",
    )
    _add_common_options(bundles, suppress=True)
    _add_bundle_options(bundles, suppress=True)
    bundles.set_defaults(run=run_bundles)


def _add_common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # Subcommands repeat the options with SUPPRESS defaults so that a value given before the
    # subcommand name (``bench --json models``) is not overwritten by the subparser's default.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON")
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=default(10.0),
        metavar="S",
        help="audio per timed run (default 10)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=default(2),
        metavar="N",
        help="torch threads (default 2)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=default(3),
        metavar="N",
        help="timed runs; the median is reported (default 3)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=default(1),
        metavar="N",
        help="untimed runs before timing (default 1)",
    )
    parser.add_argument(
        "--device",
        default=default("cpu"),
        choices=("cpu", "cuda"),
        help="where to run (default cpu: the targets are CPU real-time factors)",
    )


def _add_bundle_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--bundles",
        default=default(None),
        metavar="A,B",
        help="comma-separated bundle names to measure (default: every shipped bundle)",
    )
    parser.add_argument(
        "--live-model",
        default=default(None),
        metavar="NAME",
        help="time this registered causal model instead of the live bundle",
    )
    parser.add_argument(
        "--live-preset",
        default=default("causal_small"),
        metavar="PRESET",
        help="preset of --live-model (default causal_small)",
    )
    parser.add_argument(
        "--block-size",
        type=_positive_int,
        default=default(512),
        metavar="SAMPLES",
        help="live block size in samples (default 512)",
    )
    parser.add_argument(
        "--blocks",
        type=_positive_int,
        default=default(200),
        metavar="N",
        help="timed live blocks (default 200)",
    )
    parser.add_argument(
        "--context-seconds",
        type=_non_negative_float,
        default=default(None),
        metavar="S",
        help="left context of each live chunk (default: the streaming separator's)",
    )
    parser.add_argument(
        "--memory-minutes",
        default=default("60,1"),
        metavar="A,B",
        help="file lengths for the peak-memory runs (default 60,1)",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _setup_torch(args: argparse.Namespace) -> Any:
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but CUDA is not available.")
    return torch.device(args.device)


def _progress(line: str) -> None:
    # Standard error, so a long run shows life without disturbing the JSON on stdout.
    print(line, file=sys.stderr, flush=True)


# -- bench models ---------------------------------------------------------------------------


def run_models(args: argparse.Namespace) -> int:
    from models.benchmark import benchmark_models
    from models.registry import registry

    names = _split(args.models)
    presets = _split(args.presets) or ["small", "paper"]
    if names is not None:
        unknown = sorted(set(names) - set(registry()))
        if unknown:
            print(
                f"workbench bench: unknown model(s) {', '.join(unknown)}. "
                f"Valid models: {', '.join(sorted(registry()))}.",
                file=sys.stderr,
            )
            return 2
    try:
        device = _setup_torch(args)
    except ValueError as exc:
        print(f"workbench bench: {exc}", file=sys.stderr)
        return 2
    report = benchmark_models(
        names,
        presets,
        seconds=args.seconds,
        long_preset_seconds=args.paper_seconds,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        max_seconds_per_model=args.max_seconds_per_model,
        device=device,
        progress=_progress,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_models_table(report))
    return 0


def format_models_table(report: Mapping[str, Any]) -> str:
    """The ``bench models`` report as a readable table."""
    machine = report["machine"]
    reference = report["reference"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"{machine['device']}, load average {machine['load_average']}",
        f"Reference: {reference['name']}: {reference['parameters'] / 1e6:.2f} M parameters, "
        f"{reference['macs_per_second'] / 1e9:.2f} GMAC/s, RTF {reference['rtf']:.4f} "
        f"on {reference['clip_seconds']:g} s",
        "",
    ]
    header = (
        "model",
        "preset",
        "task",
        "rate",
        "params (M)",
        "GMAC/s",
        "x ref MACs",
        "clip (s)",
        "RTF",
        "ref RTF",
        "x ref RTF",
    )
    rows = [header]
    for row in report["models"]:
        skipped = row.get("skipped")
        rows.append(
            (
                row["name"],
                row["preset"],
                row["task"],
                "-" if row["sample_rate"] is None else f"{row['sample_rate'] // 1000} kHz",
                _number(row["parameters"], 1e6, 2),
                _number(row["macs_per_second"], 1e9, 2),
                _number(row["macs_ratio_to_reference"], 1, 2),
                f"{row['clip_seconds']:g}",
                f"skipped: {skipped}" if skipped else f"{row['rtf']:.4f}",
                "" if skipped else f"{row['reference_rtf']:.4f}",
                "" if skipped else f"{row['rtf_ratio_to_reference']:.3f}",
            )
        )
    lines.extend(_table(rows))
    lines.append("")
    lines.append("RTF: processing time / audio time (median of repeats). ref RTF: the reference")
    lines.append("timed in the same row, run for run, on a clip of the same length; x ref: ratios.")
    return "\n".join(lines)


def _number(value: float | int | None, unit: float, digits: int) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


# -- bench bundles --------------------------------------------------------------------------


def run_bundles(args: argparse.Namespace) -> int:
    try:
        device = _setup_torch(args)
        memory_minutes = [float(value) for value in _split(args.memory_minutes) or []]
        bundles, bundles_note = _shipped_bundles(_split(args.bundles))
    except ValueError as exc:
        print(f"workbench bench: {exc}", file=sys.stderr)
        return 2
    from models.benchmark import machine_info

    report: dict[str, Any] = {"machine": machine_info(args.threads, device)}
    if bundles:
        report.update(_bundle_speed(bundles, args, device, _progress))
        report["memory"] = _bundle_memory(bundles, memory_minutes, args, _progress)
    else:
        report["reference"] = None
        report["bundles"] = []
        report["bundles_note"] = bundles_note
        report["memory"] = {"note": bundles_note}
    report["live"] = _live_latency(args, device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_bundles_report(report))
    return 0


def _shipped_bundles(names: Sequence[str] | None) -> tuple[list[Any], str]:
    """The bundles to measure (every listed bundle, or those named), or why there are none.

    Raises:
        ValueError: For a name that is not among the listed bundles.
    """
    from models.bundles import list_bundles

    bundles = list_bundles()
    if names is not None:
        known = {bundle.name: bundle for bundle in bundles}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"unknown bundle(s) {', '.join(unknown)}. "
                f"Shipped bundles: {', '.join(sorted(known)) or 'none'}."
            )
        bundles = [known[name] for name in names]
    return bundles, "" if bundles else NO_BUNDLES


def _bundle_prompts(bundle: Any) -> list[str]:
    prompts = getattr(bundle, "prompts", None) or ()
    return list(prompts)[:2] or ["speech", "sfx"]


def _bundle_speed(
    bundles: Sequence[Any],
    args: argparse.Namespace,
    device: Any,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    from models import benchmark
    from models.bundles import get_model

    reference = benchmark.reference_model().to(device)
    reference_run = benchmark.measure_rtf(
        reference,
        benchmark.REFERENCE_SAMPLE_RATE,
        args.seconds,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    rows = []
    for bundle in bundles:
        model = get_model(bundle, device)
        run = benchmark.measure_rtf(
            model,
            bundle.sample_rate,
            args.seconds,
            warmup=args.warmup,
            repeats=args.repeats,
            prompts=_bundle_prompts(bundle),
            reference=reference,
        )
        reference_rtf = float(run.reference_rtf or 0.0)
        rows.append(
            {
                "name": bundle.name,
                "sample_rate": bundle.sample_rate,
                "parameters": benchmark.parameter_count(model),
                "macs_per_second": run.macs_per_second,
                "rtf": run.rtf,
                "rtf_ratio_to_reference": run.rtf / reference_rtf,
                "reference_rtf": reference_rtf,
                "faster_than_real_time": 1.0 / run.rtf,
                "clip_seconds": run.clip_seconds,
                "repeats": run.repeats,
            }
        )
        if progress is not None:
            progress(f"{bundle.name}: rtf {run.rtf:.4f}")
    return {
        "reference": {
            "name": benchmark.REFERENCE_NAME,
            "sample_rate": benchmark.REFERENCE_SAMPLE_RATE,
            "rtf": reference_run.rtf,
            "macs_per_second": reference_run.macs_per_second,
            "clip_seconds": reference_run.clip_seconds,
        },
        "bundles": rows,
    }


def _bundle_memory(
    bundles: Sequence[Any],
    minutes: Sequence[float],
    args: argparse.Namespace,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Peak resident memory of ``workbench separate`` on long and short noise files.

    Each run is a fresh ``python -m workbench separate`` process (issue 6's interface), so
    the number is what a user's process peaks at, imports and model included.
    """
    from models.benchmark import peak_rss_of_command

    results: dict[str, Any] = {"minutes": list(minutes), "bundles": []}
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as folder:
        for bundle in bundles:
            if bundle.task != "separation":
                continue
            entry: dict[str, Any] = {"name": bundle.name, "peak_rss_mb": {}}
            for length in minutes:
                path = os.path.join(folder, f"noise_{bundle.sample_rate}_{length:g}min.wav")
                if not os.path.exists(path):
                    _write_noise_file(path, bundle.sample_rate, length * 60.0)
                argv = [sys.executable, "-m", "workbench", "separate", path]
                # One output folder per bundle and length: two 16 kHz bundles would otherwise
                # write the same stem names for the same input, and separate never overwrites.
                out = os.path.join(folder, "out", bundle.name, f"{length:g}")
                argv += ["--model", bundle.name, "--out", out]
                if bundle.path is not None:
                    argv += ["--bundle", str(bundle.path)]
                argv += ["--device", args.device]
                if getattr(bundle, "prompts", None):
                    argv += ["--prompts", ",".join(_bundle_prompts(bundle))]
                outcome = peak_rss_of_command(argv)
                if outcome.returncode != 0:
                    entry["error"] = (outcome.stderr.strip().splitlines() or ["failed"])[-1]
                    break
                peak_mb = outcome.peak_rss_bytes / 2**20
                entry["peak_rss_mb"][f"{length:g}"] = peak_mb
                if progress is not None:
                    progress(f"{bundle.name}: {length:g} min peak {peak_mb:.0f} MB")
            peaks = list(entry["peak_rss_mb"].values())
            if len(peaks) >= 2:
                entry["longest_over_shortest"] = peaks[0] / peaks[-1]
            results["bundles"].append(entry)
    return results


def _write_noise_file(path: str, sample_rate: int, seconds: float) -> None:
    """A 16-bit noise file written in one-minute pieces (an hour never sits in memory)."""
    import numpy as np
    import soundfile

    generator = np.random.default_rng(0)
    remaining = round(sample_rate * seconds)
    with soundfile.SoundFile(
        path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16"
    ) as sound:
        while remaining > 0:
            count = min(remaining, sample_rate * 60)
            sound.write((0.1 * generator.standard_normal(count)).astype(np.float32))
            remaining -= count


def _live_latency(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Latency and per-block processing time of the live model through the streaming path.

    Without ``--live-model`` this is the app's live bundle (its untrained placeholder until
    one ships: random weights time the same as trained ones).
    """
    from models import benchmark
    from models.bundles import default_bundle, get_model
    from models.registry import build_model

    if args.live_model is None:
        bundle = default_bundle("live")
        model = get_model(bundle, device)
        described = {"bundle": bundle.label, "model": bundle.model_name, "trained": bundle.trained}
    else:
        model = build_model(args.live_model, preset=args.live_preset).to(device).eval()
        described = {"bundle": None, "model": args.live_model, "preset": args.live_preset}
    try:
        timing = benchmark.live_block_timing(
            model,
            args.block_size,
            num_blocks=args.blocks,
            warmup_blocks=max(args.warmup, 1) * 5,
            context_seconds=args.context_seconds,
            device=device,
        )
    except ValueError as exc:
        return {**described, "error": str(exc)}
    return {
        **described,
        "streaming": "models.inference.StreamingSeparator",
        "model_latency_ms": 1000.0 * timing.lookahead_samples / timing.sample_rate,
        **benchmark.block_timing_to_dict(timing),
    }


def format_bundles_report(report: Mapping[str, Any]) -> str:
    """The ``bench bundles`` report as readable text."""
    machine = report["machine"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"{machine['device']}, load average {machine['load_average']}",
        "",
    ]
    if report["bundles"]:
        reference = report["reference"]
        lines.append(f"Reference: {reference['name']}: RTF {reference['rtf']:.4f}")
        rows = [("bundle", "rate", "params (M)", "RTF", "x ref RTF", "x real time")]
        for row in report["bundles"]:
            rows.append(
                (
                    row["name"],
                    f"{row['sample_rate'] // 1000} kHz",
                    f"{row['parameters'] / 1e6:.2f}",
                    f"{row['rtf']:.4f}",
                    f"{row['rtf_ratio_to_reference']:.2f}",
                    f"{row['faster_than_real_time']:.1f}",
                )
            )
        lines.extend(_table(rows))
        lines.append("")
        for entry in report["memory"]["bundles"]:
            peaks = ", ".join(f"{k} min {v:.0f} MB" for k, v in entry["peak_rss_mb"].items())
            lines.append(f"Memory {entry['name']}: {peaks or entry.get('error')}")
    else:
        lines.append(f"Bundles: {report['bundles_note']}.")
    live = report["live"]
    lines.append("")
    label = live["bundle"] or f"{live['model']}/{live['preset']}"
    if "error" in live:
        lines.append(f"Live {label}: {live['error']}")
    else:
        lines.append(
            f"Live {label}: block {live['block_size']} samples "
            f"({live['block_ms']:.1f} ms at {live['sample_rate']} Hz), algorithmic latency "
            f"{live['algorithmic_latency_ms']:.1f} ms (block + {live['model_latency_ms']:.1f} ms "
            "streaming delay)"
        )
        lines.append(
            f"  processing per block: mean {live['mean_ms']:.2f} ms "
            f"({100 * live['mean_fraction']:.0f} %), p50 {live['p50_ms']:.2f} ms "
            f"({100 * live['p50_fraction']:.0f} %), p99 {live['p99_ms']:.2f} ms "
            f"({100 * live['p99_fraction']:.0f} % of the block) over {live['num_blocks']} blocks"
        )
        lines.append(f"  streaming through {live['streaming']}")
    return "\n".join(lines)
