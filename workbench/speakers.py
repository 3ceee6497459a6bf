"""The speaker service: enrol, verify, identify and calibrate (shared by the window and the CLI).

:class:`SpeakerService` joins the speaker database (:mod:`workbench.speakers_db`), the clip
checks (:mod:`workbench.speaker_checks`), the scoring rules (:mod:`workbench.speaker_scoring`)
and a speaker encoder (:class:`models.inference.Verifier`). It has no Qt in it, so the
Speakers panel, ``workbench speakers`` and the tests all go through the same code.

Thread safety: every method opens the SQLite file for the duration of the call and closes
it again, so no connection ever crosses threads; the model is built once per service on
first use (under a lock) and only read afterwards.

The model library (and with it torch) is imported on first use, not on import: listing,
renaming and removing speakers never need the model, so those commands answer at once.

Voiceprints and thresholds are filed under the bundle's name (the database's
``model_name``), so a clip is only ever compared with voiceprints made by the same model.
Raw cosine thresholds are stored under that name; thresholds calibrated on AS-normalised
scores (different units) under ``"<name> (as-norm)"``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.speaker_checks import ClipCheck, check_clip
from workbench.speaker_scoring import AdaptiveSNorm, Decision
from workbench.speaker_scoring import identify as rank_speakers
from workbench.speaker_scoring import score as score_pair
from workbench.speaker_scoring import verify as decide
from workbench.speakers_db import EnrollmentClip, SpeakerDatabase, SpeakerSummary, default_path

if TYPE_CHECKING:
    from models.bundles import Bundle
    from models.inference import Verifier

__all__ = [
    "AS_NORM_SUFFIX",
    "DEFAULT_AS_NORM_THRESHOLD",
    "DEFAULT_COSINE_THRESHOLD",
    "Calibration",
    "ClipReport",
    "EnrollReport",
    "EnrollmentRefused",
    "SpeakerService",
    "SpeakerServiceError",
    "SpeakerSummary",
    "TrialScores",
    "read_trials",
]

#: Cosine threshold used when neither the database nor the bundle has a calibrated one. It
#: matches the live view's; it is only a starting point: calibrate on your own trials.
DEFAULT_COSINE_THRESHOLD = 0.5
#: AS-norm threshold used when none is calibrated: the score must stand two deviations above
#: the claimed speaker's and the clip's closest cohort impostors.
DEFAULT_AS_NORM_THRESHOLD = 2.0
#: Suffix of the database key under which AS-norm thresholds are stored.
AS_NORM_SUFFIX = " (as-norm)"
#: Bins of the score histograms returned with trial scores.
HISTOGRAM_BINS = 30
#: Prior of a target trial for minDCF (the VoxCeleb / NIST SRE 2016 operating point).
MIN_DCF_P_TARGET = 0.01

ProgressCallback = Callable[[float, str], None]


class SpeakerServiceError(WorkbenchError):
    """A speaker operation cannot be done (the message says why and what to do)."""


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClipReport:
    """What happened to one enrolment clip.

    Attributes:
        source: File path, ``"microphone"`` or another label.
        duration: Seconds of audio.
        speech_seconds: Seconds judged to be speech.
        clipped_fraction: Share of samples at full scale.
        problems: Why the clip was skipped (empty when it was used).
        warnings: Why it may give a weaker voiceprint (short speech, clipping).
        used: Whether its embedding went into the voiceprint.
    """

    source: str
    duration: float
    speech_seconds: float
    clipped_fraction: float
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    used: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": self.duration,
            "speech_seconds": self.speech_seconds,
            "clipped_fraction": self.clipped_fraction,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "used": self.used,
        }


@dataclass(frozen=True)
class EnrollReport:
    """The outcome of an enrolment.

    Attributes:
        name: The speaker.
        model: The bundle the voiceprint was made with.
        trained: False for an untrained placeholder model.
        clips: One report per clip, in the order given.
        replaced: Whether earlier clips of this model were dropped first.
    """

    name: str
    model: str
    trained: bool
    clips: tuple[ClipReport, ...]
    replaced: bool

    @property
    def used(self) -> int:
        """How many clips went into the voiceprint."""
        return sum(clip.used for clip in self.clips)

    @property
    def skipped(self) -> int:
        return len(self.clips) - self.used

    @property
    def message(self) -> str:
        """One line for people."""
        text = f"Enrolled “{self.name}” with {self.used} of {len(self.clips)} clip(s)"
        text += f" ({self.model})."
        if self.replaced:
            text += " Earlier clips from this model were replaced."
        if self.skipped:
            text += f" {self.skipped} clip(s) skipped."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "trained": self.trained,
            "replaced": self.replaced,
            "used": self.used,
            "skipped": self.skipped,
            "message": self.message,
            "clips": [clip.as_dict() for clip in self.clips],
        }


class EnrollmentRefused(SpeakerServiceError):
    """No clip was usable, so nothing was written; ``report`` says why for each clip."""

    def __init__(self, message: str, report: EnrollReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class TrialScores:
    """Scores of a trial list and what they add up to.

    Attributes:
        model: The bundle that embedded the clips.
        normalised: Whether the scores are AS-normalised.
        labels: Shape ``(trials,)``, True for target trials (same speaker).
        scores: Shape ``(trials,)``.
        enroll: Enrolment-side path of each trial, as written in the list.
        test: Test-side path of each trial, as written in the list.
        eer: Equal error rate, a fraction.
        eer_threshold: The score threshold where it occurs.
        min_dcf: Minimum normalised detection cost at ``p_target`` =
            :data:`MIN_DCF_P_TARGET`.
        min_dcf_threshold: The threshold that reaches it.
        det_thresholds: Shape ``(points,)``, ascending; the last is ``+inf``.
        det_false_accept: False-accept rate at each DET threshold, shape ``(points,)``.
        det_false_reject: False-reject rate at each DET threshold, shape ``(points,)``.
        histogram_edges: Shape ``(bins + 1,)``, shared by both histograms.
        target_counts: Target trials per bin, shape ``(bins,)``.
        nontarget_counts: Non-target trials per bin, shape ``(bins,)``.
    """

    model: str
    normalised: bool
    labels: np.ndarray
    scores: np.ndarray
    enroll: tuple[str, ...]
    test: tuple[str, ...]
    eer: float
    eer_threshold: float
    min_dcf: float
    min_dcf_threshold: float
    det_thresholds: np.ndarray
    det_false_accept: np.ndarray
    det_false_reject: np.ndarray
    histogram_edges: np.ndarray
    target_counts: np.ndarray
    nontarget_counts: np.ndarray

    @property
    def num_targets(self) -> int:
        return int(self.labels.sum())

    @property
    def num_nontargets(self) -> int:
        return int(self.labels.size - self.labels.sum())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the ``+inf`` end of the DET curve is left out)."""
        finite = np.isfinite(self.det_thresholds)
        return {
            "model": self.model,
            "normalised": self.normalised,
            "num_trials": int(self.labels.size),
            "num_targets": self.num_targets,
            "num_nontargets": self.num_nontargets,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "min_dcf": self.min_dcf,
            "min_dcf_p_target": MIN_DCF_P_TARGET,
            "min_dcf_threshold": _finite_or_none(self.min_dcf_threshold),
            "trials": [
                {"label": int(label), "enroll": enroll, "test": test, "score": float(value)}
                for label, enroll, test, value in zip(
                    self.labels, self.enroll, self.test, self.scores
                )
            ],
            "det": {
                "thresholds": self.det_thresholds[finite].tolist(),
                "false_accept": self.det_false_accept[finite].tolist(),
                "false_reject": self.det_false_reject[finite].tolist(),
            },
            "histogram": {
                "edges": self.histogram_edges.tolist(),
                "target": self.target_counts.tolist(),
                "nontarget": self.nontarget_counts.tolist(),
            },
        }


@dataclass(frozen=True)
class Calibration:
    """An operating threshold chosen from a trial list (and stored for the model).

    Attributes:
        model: The bundle the threshold belongs to.
        normalised: Whether it is in AS-norm units.
        threshold: Accept when ``score >= threshold``.
        target_false_accept: The false-accept rate asked for.
        false_accept: The false-accept rate the threshold reaches on the list.
        false_reject: The false-reject rate it costs on the list.
        eer: Equal error rate of the list.
        min_dcf: Minimum detection cost of the list.
        scores: The trial scores behind it (DET curve, histograms).
        warnings: Caveats, e.g. too few non-target trials to resolve the target rate.
    """

    model: str
    normalised: bool
    threshold: float
    target_false_accept: float
    false_accept: float
    false_reject: float
    eer: float
    min_dcf: float
    scores: TrialScores
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self, include_trials: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "model": self.model,
            "normalised": self.normalised,
            "threshold": self.threshold,
            "target_false_accept": self.target_false_accept,
            "false_accept": self.false_accept,
            "false_reject": self.false_reject,
            "eer": self.eer,
            "min_dcf": self.min_dcf,
            "warnings": list(self.warnings),
        }
        if include_trials:
            result["scores"] = self.scores.as_dict()
        return result


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- inputs


def _as_samples(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Validate a clip: ``(frames,)`` or ``(frames, channels)`` floats at a positive rate."""
    array = np.asarray(samples)
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] == 0):
        raise ValueError(
            f"Audio must have shape (frames,) or (frames, channels), got {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"Audio must hold floats in [-1, 1], got dtype {array.dtype}.")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"The sample rate must be a positive whole number, got {sample_rate}.")
    return array, int(sample_rate)


def read_trials(path: str | Path) -> list[tuple[int, Path, Path, str, str]]:
    """Read a VoxCeleb-style trial list: ``label enroll_path test_path`` per line.

    Relative paths are relative to the list's folder; blank lines and ``#`` comments are
    skipped; paths may not contain spaces (the format has none).

    Args:
        path: The list file.

    Returns:
        ``(label, enroll_file, test_file, enroll_as_written, test_as_written)`` per trial,
        ``label`` 1 for a target trial and 0 for a non-target trial.

    Raises:
        SpeakerServiceError: the file is missing or a line is malformed.
    """
    list_path = Path(path)
    try:
        text = list_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpeakerServiceError(f"The trial list “{list_path}” does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeakerServiceError(
            f"The trial list “{list_path}” cannot be read as text.", str(exc)
        ) from exc
    folder = list_path.parent
    trials = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = content.split()
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise SpeakerServiceError(
                f"Line {number} of “{list_path.name}” is not “label enroll_path test_path” "
                f"with label 1 (same speaker) or 0 (different speakers): {line.strip()!r}."
            )
        label = int(fields[0])
        enroll, test = (folder / fields[1], folder / fields[2])
        trials.append((label, enroll, test, fields[1], fields[2]))
    if not trials:
        raise SpeakerServiceError(f"The trial list “{list_path.name}” has no trials.")
    labels = {trial[0] for trial in trials}
    if labels != {0, 1}:
        raise SpeakerServiceError(
            f"The trial list “{list_path.name}” needs both target (1) and non-target (0) "
            "trials to measure error rates."
        )
    return trials


# ---------------------------------------------------------------------------- the service


class SpeakerService:
    """Enrolment, verification, identification and calibration on one database and model.

    Args:
        db_path: The SQLite file; ``None`` uses :func:`workbench.speakers_db.default_path`
            (``$WORKBENCH_SPEAKERS_DB`` or ``<user data folder>/speakers.sqlite3``).
        bundle: A speaker bundle name, folder or checkpoint; ``None`` is the default speaker
            bundle (an untrained placeholder until a trained one ships: see ``trained``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        cohort: Optional ``.npy`` file of impostor embeddings, shape ``(count,
            embedding_dim)``, added to the AS-norm cohort (the enrolled other speakers).
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        bundle: str | Path | None = None,
        device: str = "auto",
        cohort: str | Path | None = None,
    ) -> None:
        self.db_path = Path(db_path) if db_path is not None else default_path()
        self.bundle_spec = bundle
        self.device = device
        self.cohort_path = Path(cohort) if cohort is not None else None
        self._bundle: Bundle | None = None
        self._verifier: Verifier | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ model
    @property
    def bundle(self) -> Bundle:
        """The speaker bundle (resolved on first use)."""
        with self._lock:
            if self._bundle is None:
                self._bundle = self._resolve_bundle()
            return self._bundle

    def _resolve_bundle(self) -> Bundle:
        from models.bundles import BundleError, default_bundle, load_bundle

        if self.bundle_spec is None:
            bundle = default_bundle("speaker")
        else:
            try:
                bundle = load_bundle(self.bundle_spec)
            except KeyError as exc:
                raise SpeakerServiceError(str(exc.args[0])) from exc
            except BundleError as exc:
                raise SpeakerServiceError(str(exc)) from exc
        if bundle.task != "speaker":
            raise SpeakerServiceError(
                f"“{bundle.name}” is a {bundle.task} model, not a speaker model. Choose a "
                "speaker bundle."
            )
        return bundle

    @property
    def bundle_name(self) -> str:
        """The bundle's name: the key voiceprints and thresholds are stored under."""
        return self.bundle.name

    @property
    def trained(self) -> bool:
        """False for an untrained placeholder: its scores and decisions mean nothing."""
        return bool(self.bundle.trained)

    @property
    def embedding_dim(self) -> int:
        return int(self.bundle.model_config().embedding_dim)

    @property
    def verifier(self) -> Verifier:
        """The speaker encoder facade (built on first use)."""
        bundle = self.bundle
        with self._lock:
            if self._verifier is None:
                from models.inference import Verifier

                self._verifier = Verifier(bundle, device=self.device)
            return self._verifier

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip.

        Args:
            samples: Shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz (resampled to the model's as needed).

        Returns:
            Unit-length embedding, shape ``(embedding_dim,)``.
        """
        array, rate = _as_samples(samples, sample_rate)
        if array.shape[0] == 0:
            raise SpeakerServiceError("The clip is empty.")
        return self.verifier.embed(array, rate)

    def embed_files(
        self, paths: Sequence[str | Path], progress: ProgressCallback | None = None
    ) -> np.ndarray:
        """Embed audio files (e.g. to build an AS-norm cohort file).

        Args:
            paths: Audio files.
            progress: Called with ``(fraction, message)`` after each file.

        Returns:
            Shape ``(len(paths), embedding_dim)``.
        """
        from workbench.audio import io

        if not paths:
            raise SpeakerServiceError("Give at least one audio file to embed.")
        rows = []
        for index, path in enumerate(paths):
            audio = io.load(path)
            rows.append(self.embed(audio.samples, audio.sample_rate))
            if progress is not None:
                progress((index + 1) / len(paths), f"Embedded {Path(path).name}")
        return np.stack(rows)

    # ------------------------------------------------------------------ database
    @contextmanager
    def _database(self) -> Iterator[SpeakerDatabase]:
        database = SpeakerDatabase(self.db_path)
        try:
            yield database
        finally:
            database.close()

    def threshold(self, as_norm: bool = False) -> tuple[float, str]:
        """The operating threshold and where it came from.

        Order: calibrated in the database for this model, then the bundle's
        (``threshold``, or ``as_norm_threshold`` in its metadata for AS-norm), then
        :data:`DEFAULT_COSINE_THRESHOLD` / :data:`DEFAULT_AS_NORM_THRESHOLD`.

        Returns:
            ``(threshold, source)`` with ``source`` one of ``"calibrated"``, ``"bundle"``,
            ``"default"``.
        """
        key = self.bundle_name + (AS_NORM_SUFFIX if as_norm else "")
        with self._database() as database:
            stored = database.threshold(key)
        if stored is not None:
            return stored, "calibrated"
        bundled = self.bundle.extra.get("as_norm_threshold") if as_norm else self.bundle.threshold
        if isinstance(bundled, int | float) and math.isfinite(bundled):
            return float(bundled), "bundle"
        return (DEFAULT_AS_NORM_THRESHOLD if as_norm else DEFAULT_COSINE_THRESHOLD), "default"

    def _cohort_file(self) -> np.ndarray:
        if self.cohort_path is None:
            return np.zeros((0, self.embedding_dim))
        try:
            cohort = np.load(self.cohort_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SpeakerServiceError(
                f"The cohort file “{self.cohort_path}” is not a NumPy .npy array of embeddings.",
                str(exc),
            ) from exc
        if cohort.ndim != 2 or cohort.shape[1] != self.embedding_dim:
            raise SpeakerServiceError(
                f"The cohort file “{self.cohort_path.name}” must hold embeddings shaped "
                f"(count, {self.embedding_dim}) for {self.bundle_name}; it holds {cohort.shape}."
            )
        if not np.isfinite(cohort).all():
            raise SpeakerServiceError(f"The cohort file “{self.cohort_path.name}” holds NaNs.")
        return cohort.astype(np.float64)

    def _enrolled_clips(self, database: SpeakerDatabase) -> dict[str, np.ndarray]:
        """Every enrolled speaker's clip embeddings for this model, ``(clips, dim)`` each."""
        names = database.voiceprints(self.bundle_name)
        return {name: database.embeddings(name, self.bundle_name) for name in names}

    def _norm(self, clips: dict[str, np.ndarray], exclude: str | None) -> AdaptiveSNorm:
        """AS-norm over the other enrolled speakers' clips and the cohort file."""
        parts = [vectors for name, vectors in clips.items() if name != exclude]
        parts.append(self._cohort_file())
        cohort = np.concatenate(parts) if parts else np.zeros((0, self.embedding_dim))
        if cohort.shape[0] < 2:
            raise SpeakerServiceError(
                "AS-norm needs a cohort of at least 2 impostor embeddings: enrol more "
                "speakers with this model or give a cohort file (workbench speakers embed)."
            )
        return AdaptiveSNorm(cohort)

    # ------------------------------------------------------------------ enrolment
    def check(self, samples: np.ndarray, sample_rate: int) -> ClipCheck:
        """Length, speech-activity and clipping checks of one clip (no model needed).

        Args:
            samples: Shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz.
        """
        array, rate = _as_samples(samples, sample_rate)
        return check_clip(array, rate)

    def enroll(
        self,
        name: str,
        clips: Sequence[tuple[np.ndarray, int, str]],
        replace: bool = False,
    ) -> EnrollReport:
        """Enrol ``name`` from clips, or add the clips to their voiceprint.

        Each clip is checked first; unusable ones (silent, no speech) are skipped with their
        reasons, usable ones keep their warnings (short speech, clipping).

        Args:
            name: The speaker.
            clips: ``(samples, sample_rate, source_label)`` each, samples ``(frames,)`` or
                ``(frames, channels)``.
            replace: Drop this speaker's earlier clips of this model first (re-enrol).

        Returns:
            The report, one entry per clip.

        Raises:
            EnrollmentRefused: no clip was usable; nothing was written.
            SpeakerServiceError: no name or no clips.
        """
        name = name.strip()
        if not name:
            raise SpeakerServiceError("A speaker needs a name.")
        if not clips:
            raise SpeakerServiceError("Enrolment needs at least one clip (three are better).")
        checked = []
        for samples, rate, source in clips:
            array, rate = _as_samples(samples, rate)
            checked.append((array, rate, str(source), check_clip(array, rate)))
        stored: list[EnrollmentClip] = []
        reports: list[ClipReport] = []
        for array, rate, source, result in checked:
            if result.usable:
                stored.append(
                    EnrollmentClip(
                        self.embed(array, rate), source, result.duration, result.speech_seconds
                    )
                )
            reports.append(
                ClipReport(
                    source=source,
                    duration=result.duration,
                    speech_seconds=result.speech_seconds,
                    clipped_fraction=result.clipped_fraction,
                    problems=tuple(result.problems),
                    warnings=tuple(result.warnings),
                    used=result.usable,
                )
            )
        report = EnrollReport(name, self.bundle_name, self.trained, tuple(reports), replace)
        if not stored:
            reasons = "; ".join(
                f"{Path(clip.source).name}: {' '.join(clip.problems)}" for clip in reports
            )
            raise EnrollmentRefused(f"No clip was usable, nothing was enrolled. {reasons}", report)
        with self._database() as database:
            database.enroll(name, self.bundle_name, stored, replace=replace)
        return report

    def enroll_files(
        self, name: str, paths: Sequence[str | Path], replace: bool = False
    ) -> EnrollReport:
        """:meth:`enroll` from audio files.

        Every file is decoded before anything is embedded or written, so a missing or
        unreadable file refuses the whole enrolment (it is a mistake to fix, unlike a
        silent clip, which is skipped).

        Raises:
            AudioFileError: a file is missing, unreadable or not audio; nothing was written.
        """
        from workbench.audio import io

        if not paths:
            raise SpeakerServiceError("Enrolment needs at least one audio file.")
        clips = []
        for path in paths:
            audio = io.load(path)
            clips.append((audio.samples, audio.sample_rate, str(path)))
        return self.enroll(name, clips, replace=replace)

    # ------------------------------------------------------------------ decisions
    def _test_embedding(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        array, rate = _as_samples(samples, sample_rate)
        result = check_clip(array, rate)
        if not result.usable:
            raise SpeakerServiceError(f"The test clip cannot be used: {' '.join(result.problems)}")
        return self.embed(array, rate)

    def verify(
        self, name: str, samples: np.ndarray, sample_rate: int, as_norm: bool = False
    ) -> Decision:
        """Is this clip the claimed speaker?

        Args:
            name: The claimed (enrolled) speaker.
            samples: Shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz.
            as_norm: AS-normalise the score against the cohort (the other enrolled speakers'
                clips and the cohort file); the threshold is then in normalised units.

        Returns:
            Score, threshold (see :meth:`threshold`), decision and margin.
        """
        with self._database() as database:
            voiceprint = database.voiceprint(name, self.bundle_name)
            clips = self._enrolled_clips(database) if as_norm else {}
        norm = self._norm(clips, exclude=name) if as_norm else None
        threshold, _ = self.threshold(as_norm)
        test = self._test_embedding(samples, sample_rate)
        return decide(voiceprint, test, threshold, norm)

    def identify(
        self, samples: np.ndarray, sample_rate: int, top: int = 5, as_norm: bool = False
    ) -> list[tuple[str, float]]:
        """Enrolled speakers ranked by score against the clip, best first.

        Args:
            samples: Shape ``(frames,)`` or ``(frames, channels)``, float.
            sample_rate: Its rate in Hz.
            top: How many to return.
            as_norm: AS-normalise each candidate's score (its cohort leaves it out).

        Returns:
            ``(name, score)`` pairs; empty when nobody is enrolled with this model.
        """
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}.")
        with self._database() as database:
            voiceprints = database.voiceprints(self.bundle_name)
            clips = self._enrolled_clips(database) if as_norm else {}
        if not voiceprints:
            return []
        test = self._test_embedding(samples, sample_rate)
        if not as_norm:
            return rank_speakers(voiceprints, test)[:top]
        ranked = [
            (name, score_pair(vector, test, self._norm(clips, exclude=name)))
            for name, vector in voiceprints.items()
        ]
        return sorted(ranked, key=lambda item: item[1], reverse=True)[:top]

    # ------------------------------------------------------------------ trial lists
    def score_trials(
        self,
        trials: str | Path,
        as_norm: bool = False,
        progress: ProgressCallback | None = None,
    ) -> TrialScores:
        """Score a VoxCeleb-format trial list and measure EER, minDCF and the DET curve.

        Each distinct file is embedded once. With ``as_norm`` the cohort is every enrolled
        speaker's clips plus the cohort file.

        Args:
            trials: ``label enroll_path test_path`` per line, paths relative to its folder.
            as_norm: AS-normalise the scores.
            progress: Called with ``(fraction, message)`` as files are embedded.

        Returns:
            Per-trial scores and their statistics.
        """
        entries = read_trials(trials)  # before importing the model library: fail fast

        from models import metrics
        from workbench.audio import io

        norm = None
        if as_norm:
            with self._database() as database:
                clips = self._enrolled_clips(database)
            norm = self._norm(clips, exclude=None)
        files = sorted({path for entry in entries for path in entry[1:3]})
        embeddings: dict[Path, np.ndarray] = {}
        for index, path in enumerate(files):
            try:
                audio = io.load(path)
            except WorkbenchError as exc:
                raise SpeakerServiceError(
                    f"A file of the trial list cannot be used: {exc.message}", exc.details
                ) from exc
            embeddings[path] = self.embed(audio.samples, audio.sample_rate)
            if progress is not None:
                progress((index + 1) / len(files), f"Embedded {path.name}")
        labels = np.array([entry[0] for entry in entries], dtype=bool)
        scores = np.array(
            [score_pair(embeddings[entry[1]], embeddings[entry[2]], norm) for entry in entries]
        )
        curve = metrics.det_curve(scores, labels)
        eer, eer_threshold = metrics.eer_with_threshold(scores, labels)
        min_dcf, min_dcf_threshold = metrics.min_dcf_with_threshold(
            scores, labels, p_target=MIN_DCF_P_TARGET
        )
        low, high = float(scores.min()), float(scores.max())
        edges = np.linspace(low, high if high > low else low + 1e-6, HISTOGRAM_BINS + 1)
        return TrialScores(
            model=self.bundle_name,
            normalised=as_norm,
            labels=labels,
            scores=scores,
            enroll=tuple(entry[3] for entry in entries),
            test=tuple(entry[4] for entry in entries),
            eer=eer,
            eer_threshold=eer_threshold,
            min_dcf=min_dcf,
            min_dcf_threshold=min_dcf_threshold,
            det_thresholds=curve.thresholds,
            det_false_accept=curve.false_accept_rates,
            det_false_reject=curve.false_reject_rates,
            histogram_edges=edges,
            target_counts=np.histogram(scores[labels], bins=edges)[0],
            nontarget_counts=np.histogram(scores[~labels], bins=edges)[0],
        )

    def calibrate(
        self,
        trials: str | Path,
        target_false_accept: float = 0.01,
        as_norm: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Calibration:
        """Choose the threshold for a target false-accept rate and store it for this model.

        The threshold is the lowest score whose false-accept rate on the list is at most
        ``target_false_accept`` (accept when ``score >= threshold``). It is stored in the
        database under this model (AS-norm thresholds separately) and :meth:`verify` uses
        it from then on.

        Args:
            trials: A trial list (see :meth:`score_trials`).
            target_false_accept: The false-accept rate to operate at, in ``(0, 1)``.
            as_norm: Calibrate AS-normalised scores.
            progress: Called with ``(fraction, message)`` as files are embedded.

        Returns:
            The threshold, the rates it reaches, EER and minDCF.
        """
        if not 0 < target_false_accept < 1:
            raise ValueError(
                f"The target false-accept rate must lie between 0 and 1 (e.g. 0.01 for 1 %), "
                f"got {target_false_accept}."
            )
        scores = self.score_trials(trials, as_norm=as_norm, progress=progress)
        from models import metrics

        threshold = metrics.threshold_for_false_accept_rate(
            scores.scores, scores.labels, target_false_accept
        )
        if not math.isfinite(threshold):
            raise SpeakerServiceError(
                f"No threshold reaches {100 * target_false_accept:g} % false accepts on this "
                "list: its highest score is a non-target trial. Use a larger trial list."
            )
        false_accept = float(np.mean(scores.scores[~scores.labels] >= threshold))
        false_reject = float(np.mean(scores.scores[scores.labels] < threshold))
        warnings = []
        if scores.num_nontargets * target_false_accept < 1:
            warnings.append(
                f"Only {scores.num_nontargets} non-target trials: a false-accept rate of "
                f"{100 * target_false_accept:g} % cannot be measured finer than "
                f"{100 / scores.num_nontargets:.2g} %, so the threshold is conservative. "
                "Use a larger trial list."
            )
        with self._database() as database:
            database.set_threshold(
                self.bundle_name + (AS_NORM_SUFFIX if as_norm else ""),
                threshold,
                target_false_accept=target_false_accept,
                eer=scores.eer,
            )
        return Calibration(
            model=self.bundle_name,
            normalised=as_norm,
            threshold=threshold,
            target_false_accept=target_false_accept,
            false_accept=false_accept,
            false_reject=false_reject,
            eer=scores.eer,
            min_dcf=scores.min_dcf,
            scores=scores,
            warnings=tuple(warnings),
        )

    # ------------------------------------------------------------------ speakers
    # (``list`` comes last: inside the class body its name shadows the builtin.)
    def rename(self, old: str, new: str) -> None:
        """Rename a speaker (all models' voiceprints follow)."""
        with self._database() as database:
            database.rename(old, new)

    def remove(self, name: str) -> None:
        """Delete a speaker and every voiceprint of theirs."""
        with self._database() as database:
            database.remove(name)

    def list(self) -> list[SpeakerSummary]:
        """Every enrolled speaker (any model), by name."""
        with self._database() as database:
            return database.list_speakers()
