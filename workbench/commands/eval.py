"""``workbench eval``: measure a bundle on a validation set.

* ``workbench eval separation --bundle B --set DIR``: SI-SDR, SI-SDRi and SDR(i) per source
  and per task, the mixture baseline and the oracle ideal-ratio-mask ceiling of the same
  items, on a frozen set (``workbench data freeze``) or one split folder of FUSS, DnR,
  MTASS-Dataset or MUSDB18-HQ.
* ``workbench eval speakers --bundle B --trials LIST``: EER, minDCF and the threshold at the
  EER on a VoxCeleb-format trial list (or a frozen speaker set folder).

The loops live in :mod:`models.evaluation`; this module parses, loads the bundle and prints.
Arguments are checked before torch is imported, so a mistyped path fails at once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = "evaluate a bundle on a validation set (separation or speakers)"
#: Exit status for bad input (unknown bundle, missing files, wrong kind of model).
BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help=DESCRIPTION, description=DESCRIPTION)
    parser.set_defaults(run=lambda args: _usage(parser))
    commands = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")

    separation = commands.add_parser(
        "separation",
        help="SI-SDR(i), SDR(i) per source and task, with the oracle ratio-mask ceiling",
        description="Separate every item of a set and report SI-SDR, SI-SDRi, SDR and SDRi "
        "per source and per task, the mixture baseline (its absolute SI-SDR; 0 dB "
        "improvement by definition) and the oracle ideal-ratio-mask SI-SDRi of the same "
        "items, the ceiling of magnitude-mask models. Sets: the frozen layout of "
        "'workbench data freeze', or one split folder of FUSS, DnR, MTASS-Dataset or "
        "MUSDB18-HQ.",
    )
    _add_bundle_options(separation)
    separation.add_argument(
        "--set", dest="set_folder", required=True, metavar="DIR", help="the set folder"
    )
    separation.add_argument(
        "--max-items", type=_positive_int, default=None, metavar="N", help="first N items only"
    )
    separation.add_argument("--per-item", action="store_true", help="also list every item's scores")
    separation.add_argument(
        "--chunk-seconds",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="separation chunk length (default: the bundle's; 0: whole items)",
    )
    separation.add_argument(
        "--sdr-filter-length",
        type=_non_negative_int,
        default=512,
        metavar="TAPS",
        help="BSS-eval SDR distortion filter taps (default 512; 0 skips SDR)",
    )
    separation.set_defaults(run=run_separation)

    speakers = commands.add_parser(
        "speakers",
        help="EER and minDCF on a VoxCeleb-format trial list",
        description="Embed every file of a trial list ('label enroll test' per line, paths "
        "relative to the list's folder) once, score each trial by cosine similarity and "
        "report the EER, the threshold at the EER and the minimum detection cost.",
    )
    _add_bundle_options(speakers)
    speakers.add_argument(
        "--trials",
        required=True,
        metavar="LIST",
        help="trial list file, or a frozen speaker set folder (its trials.txt)",
    )
    speakers.add_argument(
        "--audio-root",
        default=None,
        metavar="DIR",
        help="folder the list's paths are relative to (default: the list's folder, its "
        "utterances/ or wav/)",
    )
    speakers.add_argument(
        "--p-target",
        type=_probability,
        default=0.01,
        metavar="P",
        help="target prior of the minDCF (default 0.01)",
    )
    speakers.add_argument("--per-trial", action="store_true", help="also list every trial's score")
    speakers.set_defaults(run=run_speakers)


def _add_bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        required=True,
        metavar="PATH_OR_NAME",
        help="bundle folder, checkpoint file, bundle name, or a default task key (tuss, "
        "mtass, speech, speaker) for the shipped model or its untrained placeholder",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, metavar="N", help="torch CPU threads"
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return BAD_INPUT


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive whole number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability strictly between 0 and 1: {text}")
    return value


def _error(message: str) -> int:
    print(f"workbench eval: error: {message}", file=sys.stderr)
    return BAD_INPUT


def _progress_printer(enabled: bool) -> Any:
    """Progress on one rewritten stderr line when stderr is a terminal; silence otherwise."""
    if not enabled:
        return None

    def show(info: dict[str, Any]) -> None:
        total = info.get("total")
        count = f"{info['done']}/{total}" if total else str(info["done"])
        print(f"\r[{count}] {info['message']}"[:120].ljust(120), end="", file=sys.stderr)
        if total and info["done"] >= total:
            print(file=sys.stderr)

    return show


def _load_bundle(spec: str, task: str) -> Any:
    """The bundle ``spec`` names; a default task key gives the shipped or placeholder model."""
    from models.bundles import DEFAULT_BUNDLES, default_bundle, load_bundle

    try:
        bundle = load_bundle(spec)
    except KeyError as exc:
        if spec not in DEFAULT_BUNDLES:
            raise ValueError(str(exc.args[0]) if exc.args else str(exc)) from None
        bundle = default_bundle(spec)
    if bundle.task != task:
        kind = "separation" if task == "separation" else "speaker"
        raise ValueError(f"'{bundle.name}' is a {bundle.task} model, not a {kind} model")
    if not bundle.trained:
        print(
            f"workbench eval: warning: '{bundle.name}' is an UNTRAINED placeholder (random "
            "weights); its scores say nothing about the architecture.",
            file=sys.stderr,
        )
    return bundle


def _bundle_info(bundle: Any) -> dict[str, Any]:
    return {
        "name": bundle.name,
        "model_name": bundle.model_name,
        "trained": bool(bundle.trained),
        "sample_rate": int(bundle.sample_rate),
        "sources": list(bundle.sources),
        "prompts": list(bundle.prompts),
        "path": str(bundle.path) if bundle.path else None,
    }


def _setup_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such values become ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# --------------------------------------------------------------------------- separation


def run_separation(args: argparse.Namespace) -> int:
    folder = Path(args.set_folder)
    if not folder.is_dir():
        return _error(f"the set folder {folder} does not exist")
    _setup_threads(args.threads)
    from models.bundles import BundleError
    from models.evaluation import evaluate_separation, open_evaluation_set
    from models.inference import Separator

    try:
        evaluation_set = open_evaluation_set(folder)
        bundle = _load_bundle(args.bundle, "separation")
        separator = Separator(bundle, device=args.device, chunk_seconds=args.chunk_seconds)
    except (FileNotFoundError, ValueError, BundleError) as exc:
        return _error(str(exc))
    count = len(evaluation_set)
    if args.max_items is not None:
        count = min(count, args.max_items)
    items = (evaluation_set.item(index) for index in range(count))
    evaluation = evaluate_separation(
        separator,
        items,
        sdr_filter_length=args.sdr_filter_length,
        total=count,
        progress=_progress_printer(not args.json and sys.stderr.isatty()),
    )
    summary = evaluation.summary()
    report: dict[str, Any] = {
        "command": "eval separation",
        "bundle": _bundle_info(bundle),
        "set": {
            "path": str(folder.resolve()),
            "layout": evaluation_set.layout,
            "dataset": evaluation_set.dataset,
            "sample_rate": evaluation_set.sample_rate,
            "num_items": len(evaluation_set),
            "split": evaluation_set.meta.get("split"),
        },
        "settings": {
            "device": str(separator.device),
            "chunk_seconds": separator.chunk_seconds,
            "overlap_seconds": separator.overlap_seconds,
            "sdr_filter_length": args.sdr_filter_length,
            "max_items": args.max_items,
            "matching": "prompted: best permutation within repeated prompts; fixed outputs: "
            "best permutation within each source kind",
        },
        **summary,
    }
    if args.per_item:
        report["items"] = [item.as_dict() for item in evaluation.items]
    for identifier, reason in evaluation.skipped:
        print(f"workbench eval: skipped item {identifier}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(_finite(report), indent=2))
    elif evaluation.items:
        print(format_separation(report))
    if not evaluation.items:
        return _error("no item of the set could be evaluated with this bundle")
    return 0


def _cell(value: float | None, width: int = 8) -> str:
    return ("-" if value is None else f"{value:.2f}").rjust(width)


def format_separation(report: dict[str, Any]) -> str:
    """A readable table of a separation report."""
    bundle, data_set, counts = report["bundle"], report["set"], report["counts"]
    untrained = "" if bundle["trained"] else "  [UNTRAINED placeholder]"
    lines = [
        f"Bundle: {bundle['name']} ({bundle['model_name']}, {bundle['sample_rate']} Hz){untrained}",
        f"Set: {data_set['path']} ({data_set['layout']}, {data_set['dataset']}, "
        f"{data_set['num_items']} items at {data_set['sample_rate']} Hz)",
        f"Evaluated {counts['items']} items, {counts['sources']} sources; skipped "
        f"{counts['skipped']}. Wall time {report['wall_seconds']:.1f} s"
        + (
            f" ({report['real_time_factor']:.2f} x real time)"
            if report["real_time_factor"] is not None
            else ""
        ),
        "",
    ]
    header = ("task / source", "n", "SI-SDR", "SI-SDRi", "SDR", "SDRi", "mix SI-SDR", "IRM SI-SDRi")
    rows: list[tuple[str, ...]] = [header]

    def row(label: str, stats: dict[str, Any]) -> tuple[str, ...]:
        return (
            label,
            str(stats["num_sources"]),
            *(
                _cell(stats.get(key)).strip()
                for key in (
                    "si_sdr",
                    "si_sdri",
                    "sdr",
                    "sdri",
                    "mixture_si_sdr",
                    "oracle_irm_si_sdri",
                )
            ),
        )

    if report["overall"]:
        rows.append(row("all", report["overall"]))
        for name, stats in report["per_source"].items():
            rows.append(row(f"  {name}", stats))
        for task, info in report["per_task"].items():
            rows.append(row(f"{task} ({info['num_items']} items)", info["mean"]))
            for name, stats in info["per_source"].items():
                rows.append(row(f"  {name}", stats))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for number, cells in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    oracle = report["oracle_irm"]
    stft = ", ".join(
        f"{s['n_fft']}-point {s['window']} window, hop {s['hop_length']} at {s['sample_rate']} Hz"
        for s in oracle["stft"]
    )
    lines += [
        "",
        "Values in dB, means over sources. n = sources. Mixture baseline: SI-SDRi 0 dB by "
        f"definition, absolute SI-SDR {_cell(report['mixture_baseline']['si_sdr'], 0)} dB.",
        f"Oracle ideal ratio mask ({stft}): SI-SDRi {_cell(oracle['si_sdri'], 0)} dB, the "
        "ceiling of magnitude-mask models.",
    ]
    for item in report.get("items", []):
        scores = ", ".join(
            f"{s['name']} {s['si_sdri']:.2f} (IRM {s['oracle_irm_si_sdri']:.2f})"
            for s in item["sources"]
        )
        lines.append(f"item {item['id']} ({item['task']}): SI-SDRi {scores}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- speakers


def run_speakers(args: argparse.Namespace) -> int:
    trials_path = Path(args.trials)
    if not trials_path.exists():
        return _error(f"the trial list {trials_path} does not exist")
    if args.audio_root is not None and not Path(args.audio_root).is_dir():
        return _error(f"the audio folder {args.audio_root} does not exist")
    _setup_threads(args.threads)
    from models.bundles import BundleError
    from models.evaluation import evaluate_speakers, read_trial_list
    from models.inference import Verifier

    try:
        trials = read_trial_list(trials_path, args.audio_root)
        bundle = _load_bundle(args.bundle, "speaker")
        verifier = Verifier(bundle, device=args.device)
    except (FileNotFoundError, ValueError, BundleError) as exc:
        return _error(str(exc))
    try:
        evaluation = evaluate_speakers(
            verifier,
            trials,
            p_target=args.p_target,
            progress=_progress_printer(not args.json and sys.stderr.isatty()),
        )
    except (RuntimeError, ValueError) as exc:  # unreadable audio (soundfile) or bad scores
        return _error(str(exc))
    report = {
        "command": "eval speakers",
        "bundle": {**_bundle_info(verifier.bundle), "threshold": verifier.threshold},
        "trial_list": str(trials_path.resolve()),
        "device": str(verifier.device),
        **evaluation.summary(per_trial=args.per_trial),
    }
    if args.json:
        print(json.dumps(_finite(report), indent=2))
        return 0
    bundle = report["bundle"]
    untrained = "" if bundle["trained"] else "  [UNTRAINED placeholder]"
    if args.per_trial:
        print("label  score      enroll  test")
        for trial in report["trials"]:
            print(f"{trial['label']}  {trial['score']:+.6f}  {trial['enroll']}  {trial['test']}")
        print()
    print(f"Bundle: {bundle['name']} ({bundle['model_name']}){untrained}")
    print(
        f"Trials: {report['num_trials']} ({report['num_target_trials']} target, "
        f"{report['num_nontarget_trials']} non-target), {report['num_files']} files, "
        f"{report['wall_seconds']:.1f} s"
    )
    print(f"EER: {report['eer_percent']:.4f} % at threshold {report['eer_threshold']:.6f}")
    print(
        f"minDCF (p_target {report['p_target']:g}): {report['min_dcf']:.4f} at threshold "
        f"{report['min_dcf_threshold']:.6f}"
    )
    return 0
