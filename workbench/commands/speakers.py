"""``workbench speakers``: enrol, verify, identify, list, rename, remove, score, calibrate.

Every action goes through :class:`workbench.speakers.SpeakerService`, the same code the
Speakers panel runs. Results go to stdout (``--json`` for one JSON document); warnings, such
as an untrained placeholder model, go to stderr; errors are one plain line on stderr and a
non-zero exit status (1 for a refused operation, 2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

PROGRAM = "workbench speakers"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="PATH",
        help="speaker database file (default: $WORKBENCH_SPEAKERS_DB or "
        "~/.local/share/audio-workbench/speakers.sqlite3)",
    )
    common.add_argument(
        "--bundle",
        metavar="NAME_OR_PATH",
        help="speaker model bundle: name, folder or checkpoint (default: the shipped speaker "
        "model, or an untrained placeholder)",
    )
    common.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    common.add_argument(
        "--as-norm",
        action="store_true",
        help="AS-normalise scores against a cohort (other enrolled speakers and --cohort); "
        "thresholds are then in normalised units",
    )
    common.add_argument(
        "--cohort",
        metavar="NPY",
        help="extra AS-norm cohort: a .npy array of embeddings (see 'workbench speakers embed')",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document")
    return common


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    help_text = "enroll, verify and identify speakers"
    parser = subparsers.add_parser(
        "speakers",
        help=help_text,
        description=f"{help_text.capitalize()}; score and calibrate on trial lists. The "
        "database holds voiceprints (biometric data) in an owner-only SQLite file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    common = _common_options()

    enroll = actions.add_parser(
        "enroll",
        parents=[common],
        help="enrol a speaker from audio files (or add clips to them)",
        description="Enrol NAME from audio files. Each clip is checked for speech and "
        "clipping; unusable clips are skipped with the reason. Nothing is written when a file "
        "cannot be read or no clip is usable.",
    )
    enroll.add_argument("name", metavar="NAME")
    enroll.add_argument("files", metavar="FILE", nargs="+")
    enroll.add_argument(
        "--replace", action="store_true", help="drop the speaker's earlier clips of this model"
    )

    verify = actions.add_parser(
        "verify", parents=[common], help="check a clip against a claimed speaker"
    )
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("file", metavar="FILE")

    identify = actions.add_parser(
        "identify", parents=[common], help="rank enrolled speakers against a clip"
    )
    identify.add_argument("file", metavar="FILE")
    identify.add_argument("--top", type=int, default=5, help="how many to list (default 5)")

    actions.add_parser("list", parents=[common], help="list enrolled speakers")

    remove = actions.add_parser(
        "remove", parents=[common], help="delete a speaker and all their voiceprints"
    )
    remove.add_argument("name", metavar="NAME")

    rename = actions.add_parser("rename", parents=[common], help="rename a speaker")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")

    score = actions.add_parser(
        "score",
        parents=[common],
        help="score a trial list: per-trial scores, EER and minDCF",
        description="Score a VoxCeleb-format trial list ('label enroll_path test_path' per "
        "line, 1 = same speaker, paths relative to the list's folder).",
    )
    score.add_argument("--trials", metavar="LIST", required=True)

    calibrate = actions.add_parser(
        "calibrate",
        parents=[common],
        help="set this model's threshold from a trial list and a target false-accept rate",
    )
    calibrate.add_argument("--trials", metavar="LIST", required=True)
    calibrate.add_argument(
        "--target-far",
        type=float,
        default=0.01,
        metavar="RATE",
        help="false-accept rate to operate at, as a fraction (default 0.01 = 1 %%)",
    )

    embed = actions.add_parser(
        "embed",
        parents=[common],
        help="embed audio files into a .npy array (an AS-norm cohort file)",
    )
    embed.add_argument("files", metavar="FILE", nargs="+")
    embed.add_argument("--out", metavar="NPY", required=True, help="output .npy file")

    parser.set_defaults(run=run, speakers_parser=parser)


# ---------------------------------------------------------------------------- running


def _fail(message: str, status: int = 1) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return status


def _warn(message: str) -> None:
    print(f"{PROGRAM}: warning: {message}", file=sys.stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _model_info(service: Any) -> dict[str, Any]:
    return {"model": service.bundle_name, "trained": service.trained}


def _warn_if_untrained(service: Any) -> None:
    if not service.trained:
        _warn(
            f"the speaker model '{service.bundle_name}' is an UNTRAINED placeholder (random "
            "weights): its scores and decisions are not meaningful. Choose a trained model "
            "with --bundle."
        )


def _load(path: str) -> tuple[Any, int]:
    from workbench.audio import io

    audio = io.load(path)
    for note in audio.warnings:
        _warn(f"{path}: {note}")
    return audio.samples, audio.sample_rate


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        args.speakers_parser.print_help(sys.stderr)
        return 2
    from workbench.errors import WorkbenchError
    from workbench.speakers import SpeakerService

    try:
        service = SpeakerService(args.db, args.bundle, args.device, cohort=args.cohort)
        return _ACTIONS[args.action](service, args)
    except WorkbenchError as exc:
        return _fail(exc.message)
    except (ValueError, KeyError) as exc:
        return _fail(str(exc.args[0]) if exc.args else repr(exc))
    except OSError as exc:
        return _fail(str(exc))


def _enroll(service: Any, args: argparse.Namespace) -> int:
    from workbench.speakers import EnrollmentRefused

    try:
        report = service.enroll_files(args.name, args.files, replace=args.replace)
    except EnrollmentRefused as exc:
        for clip in exc.report.clips:
            print(f"  ✗ {clip.source}: {' '.join(clip.problems)}", file=sys.stderr)
        return _fail("no clip was usable; nothing was enrolled.")
    _warn_if_untrained(service)
    if args.json:
        _print_json(report.as_dict())
        return 0
    print(report.message)
    for clip in report.clips:
        mark = "✓" if clip.used and not clip.warnings else ("!" if clip.used else "✗")
        notes = "; ".join(clip.problems + clip.warnings) or "good"
        print(f"  {mark} {clip.source}: {clip.speech_seconds:.1f} s speech; {notes}")
    return 0


def _verify(service: Any, args: argparse.Namespace) -> int:
    samples, rate = _load(args.file)
    for note in service.check(samples, rate).warnings:
        _warn(f"{args.file}: {note}")
    decision = service.verify(args.name, samples, rate, as_norm=args.as_norm)
    _, source = service.threshold(args.as_norm)
    _warn_if_untrained(service)
    result = {
        "speaker": args.name,
        "file": args.file,
        **decision.as_dict(),
        "threshold_source": source,
        **_model_info(service),
    }
    if args.json:
        _print_json(result)
        return 0
    units = "AS-norm" if decision.normalised else "cosine"
    print(
        f"{result['decision'].upper()}: “{args.name}” score {decision.score:.4f}, threshold "
        f"{decision.threshold:.4f} ({units}, {source}), margin {decision.margin:+.4f}"
    )
    return 0


def _identify(service: Any, args: argparse.Namespace) -> int:
    if args.top < 1:
        return _fail(f"--top must be at least 1, got {args.top}.", 2)
    samples, rate = _load(args.file)
    ranking = service.identify(samples, rate, top=args.top, as_norm=args.as_norm)
    _warn_if_untrained(service)
    if not ranking:
        _warn(f"nobody is enrolled with the model '{service.bundle_name}'.")
    if args.json:
        _print_json(
            {
                "file": args.file,
                "normalised": args.as_norm,
                **_model_info(service),
                "ranking": [{"name": name, "score": value} for name, value in ranking],
            }
        )
        return 0
    for place, (name, value) in enumerate(ranking, start=1):
        print(f"{place:>3}. {name}  {value:.4f}")
    return 0


def _list(service: Any, args: argparse.Namespace) -> int:
    speakers = service.list()
    if args.json:
        _print_json(
            [
                {
                    "name": speaker.name,
                    "clips": speaker.clips,
                    "models": list(speaker.models),
                    "speech_seconds": speaker.speech_seconds,
                    "updated": speaker.updated,
                }
                for speaker in speakers
            ]
        )
        return 0
    if not speakers:
        print(f"No speakers enrolled in {service.db_path}.")
    for speaker in speakers:
        print(
            f"{speaker.name}: {speaker.clips} clip(s), {speaker.speech_seconds:.1f} s speech, "
            f"models {', '.join(speaker.models) or 'none'}"
        )
    return 0


def _remove(service: Any, args: argparse.Namespace) -> int:
    service.remove(args.name)
    if args.json:
        _print_json({"removed": args.name})
    else:
        print(f"Removed “{args.name}” and all their voiceprints.")
    return 0


def _rename(service: Any, args: argparse.Namespace) -> int:
    service.rename(args.old, args.new)
    if args.json:
        _print_json({"renamed": args.old, "to": args.new.strip()})
    else:
        print(f"Renamed “{args.old}” to “{args.new.strip()}”.")
    return 0


def _summary(scores: Any) -> str:
    return (
        f"{scores.labels.size} trials ({scores.num_targets} target, {scores.num_nontargets} "
        f"non-target): EER {100 * scores.eer:.2f} % at {scores.eer_threshold:.4f}, "
        f"minDCF(p=0.01) {scores.min_dcf:.4f}"
    )


def _score(service: Any, args: argparse.Namespace) -> int:
    scores = service.score_trials(args.trials, as_norm=args.as_norm)
    _warn_if_untrained(service)
    if args.json:
        _print_json({**scores.as_dict(), "trained": service.trained})
        return 0
    for label, enroll, test, value in zip(scores.labels, scores.enroll, scores.test, scores.scores):
        print(f"{int(label)} {enroll} {test} {value:.6f}")
    print(_summary(scores))
    return 0


def _calibrate(service: Any, args: argparse.Namespace) -> int:
    calibration = service.calibrate(
        args.trials, target_false_accept=args.target_far, as_norm=args.as_norm
    )
    _warn_if_untrained(service)
    for note in calibration.warnings:
        _warn(note)
    if args.json:
        _print_json({**calibration.as_dict(include_trials=True), "trained": service.trained})
        return 0
    print(_summary(calibration.scores))
    units = "AS-norm" if calibration.normalised else "cosine"
    print(
        f"Threshold {calibration.threshold:.4f} ({units}) for '{calibration.model}': "
        f"{100 * calibration.false_accept:.2f} % false accepts (target "
        f"{100 * calibration.target_false_accept:g} %), {100 * calibration.false_reject:.2f} % "
        f"false rejects on this list. Stored in {service.db_path}."
    )
    return 0


def _embed(service: Any, args: argparse.Namespace) -> int:
    import numpy as np

    from workbench.speakers import SpeakerServiceError

    if not args.out.endswith(".npy"):
        raise SpeakerServiceError("--out must name a .npy file.")
    embeddings = service.embed_files(args.files)
    _warn_if_untrained(service)
    out = Path(args.out)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp.npy")
    try:  # atomic: a crash never leaves a truncated cohort file under the final name
        np.save(temporary, embeddings.astype(np.float32))
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    if args.json:
        _print_json({"out": args.out, "shape": list(embeddings.shape), **_model_info(service)})
    else:
        print(
            f"Wrote {embeddings.shape[0]} embedding(s) of size {embeddings.shape[1]} to {args.out}."
        )
    return 0


_ACTIONS = {
    "enroll": _enroll,
    "verify": _verify,
    "identify": _identify,
    "list": _list,
    "remove": _remove,
    "rename": _rename,
    "score": _score,
    "calibrate": _calibrate,
    "embed": _embed,
}
