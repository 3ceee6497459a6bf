"""The speaker database: an embedded SQLite file of voiceprints (no torch, no Qt).

Voiceprints are biometric data, so the file is created readable and writable by its owner
only (mode 0600). Every change runs in one transaction: a crash mid-enrolment leaves either
the old state or the new one, never half a speaker. The schema is versioned in ``meta``.

Embeddings are stored per clip and per model (``model_name`` is the bundle name), so a
speaker can be re-enrolled with another model without losing the first enrolment, and
scores are only ever computed between embeddings of the same model.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.paths import data_dir

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    id INTEGER PRIMARY KEY,
    speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,
    embedding BLOB NOT NULL,
    dimension INTEGER NOT NULL,
    source TEXT NOT NULL,
    duration REAL NOT NULL,
    speech_seconds REAL NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_by_speaker ON clips(speaker_id, model_name);
CREATE TABLE IF NOT EXISTS thresholds (
    model_name TEXT PRIMARY KEY,
    threshold REAL NOT NULL,
    target_false_accept REAL,
    eer REAL,
    updated TEXT NOT NULL
);
"""


class SpeakerDatabaseError(WorkbenchError):
    """A speaker-database operation the user asked for cannot be done."""


def default_path() -> Path:
    """``<user data folder>/speakers.sqlite3`` (``$WORKBENCH_SPEAKERS_DB`` overrides)."""
    override = os.environ.get("WORKBENCH_SPEAKERS_DB")
    return Path(override) if override else data_dir() / "speakers.sqlite3"


@dataclass(frozen=True)
class EnrollmentClip:
    """One clip's embedding and where it came from.

    Attributes:
        embedding: Shape ``(embedding_dim,)``.
        source: File path or ``"microphone"``.
        duration: Seconds of audio.
        speech_seconds: Seconds judged to be speech.
    """

    embedding: np.ndarray
    source: str
    duration: float
    speech_seconds: float


@dataclass(frozen=True)
class SpeakerSummary:
    name: str
    clips: int
    models: tuple[str, ...]
    speech_seconds: float
    updated: str


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _normalise(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise SpeakerDatabaseError("The voiceprint is empty or invalid (zero or NaN).")
    return vector / norm


class SpeakerDatabase:
    """Speakers, their enrolment embeddings and the per-model decision thresholds.

    Args:
        path: SQLite file; created (mode 0600) with its folder if missing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Create the file with owner-only permissions before SQLite opens it.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        try:
            self._connection = sqlite3.connect(self.path, timeout=10.0)
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._connection.execute("PRAGMA journal_mode = WAL")
            with self._connection:
                self._connection.executescript(_SCHEMA)
                row = self._connection.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                if row is None:
                    self._connection.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise SpeakerDatabaseError(
                        f"The speaker database {self.path} was written by a newer version of "
                        "the workbench. Update the app to open it."
                    )
        except sqlite3.DatabaseError as exc:
            raise SpeakerDatabaseError(
                f"{self.path} is not a speaker database or it is damaged.", str(exc)
            ) from exc

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SpeakerDatabase:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection:
            yield self._connection

    # ------------------------------------------------------------------ speakers
    def _speaker_id(self, name: str) -> int:
        row = self._connection.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none yet"
            raise SpeakerDatabaseError(f"No speaker called “{name}”. Enrolled: {known}.")
        return int(row[0])

    def names(self) -> list[str]:
        return [r[0] for r in self._connection.execute("SELECT name FROM speakers ORDER BY name")]

    def list_speakers(self) -> list[SpeakerSummary]:
        rows = self._connection.execute(
            """SELECT s.name, COUNT(c.id), GROUP_CONCAT(DISTINCT c.model_name),
                      COALESCE(SUM(c.speech_seconds), 0), s.updated
               FROM speakers s LEFT JOIN clips c ON c.speaker_id = s.id
               GROUP BY s.id ORDER BY s.name"""
        ).fetchall()
        return [
            SpeakerSummary(
                name=r[0],
                clips=int(r[1]),
                models=tuple(sorted(r[2].split(","))) if r[2] else (),
                speech_seconds=float(r[3]),
                updated=r[4],
            )
            for r in rows
        ]

    def enroll(
        self,
        name: str,
        model_name: str,
        clips: Sequence[EnrollmentClip],
        replace: bool = False,
    ) -> None:
        """Create ``name`` (or add clips to it) with embeddings from ``model_name``.

        Args:
            replace: Drop the speaker's existing clips for this model first (re-enrol).

        Raises:
            SpeakerDatabaseError: empty name, no clips, or invalid embeddings. Nothing is
                written in that case.
        """
        name = name.strip()
        if not name:
            raise SpeakerDatabaseError("A speaker needs a name.")
        if not clips:
            raise SpeakerDatabaseError("Enrolment needs at least one clip.")
        vectors = [_normalise(clip.embedding) for clip in clips]
        if len({v.shape[0] for v in vectors}) != 1:
            raise SpeakerDatabaseError("The clips' voiceprints have different sizes.")
        now = _now()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO speakers(name, created, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
                (name, now, now),
            )
            speaker_id = self._speaker_id(name)
            existing = db.execute(
                "SELECT dimension FROM clips WHERE speaker_id = ? AND model_name = ? LIMIT 1",
                (speaker_id, model_name),
            ).fetchone()
            if replace:
                db.execute(
                    "DELETE FROM clips WHERE speaker_id = ? AND model_name = ?",
                    (speaker_id, model_name),
                )
            elif existing is not None and existing[0] != vectors[0].shape[0]:
                raise SpeakerDatabaseError(
                    f"“{name}” was enrolled with {existing[0]}-dimensional voiceprints from "
                    f"{model_name}; these have {vectors[0].shape[0]}. Re-enrol instead."
                )
            for clip, vector in zip(clips, vectors):
                db.execute(
                    "INSERT INTO clips(speaker_id, model_name, embedding, dimension, source, "
                    "duration, speech_seconds, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        speaker_id,
                        model_name,
                        vector.astype("<f4").tobytes(),
                        int(vector.shape[0]),
                        clip.source,
                        float(clip.duration),
                        float(clip.speech_seconds),
                        now,
                    ),
                )

    def rename(self, old: str, new: str) -> None:
        new = new.strip()
        if not new:
            raise SpeakerDatabaseError("A speaker needs a name.")
        with self._transaction() as db:
            speaker_id = self._speaker_id(old)
            if db.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone():
                raise SpeakerDatabaseError(f"There is already a speaker called “{new}”.")
            db.execute(
                "UPDATE speakers SET name = ?, updated = ? WHERE id = ?", (new, _now(), speaker_id)
            )

    def remove(self, name: str) -> None:
        """Delete a speaker and all their voiceprints."""
        with self._transaction() as db:
            speaker_id = self._speaker_id(name)
            db.execute("DELETE FROM speakers WHERE id = ?", (speaker_id,))

    # ------------------------------------------------------------------ embeddings
    def embeddings(self, name: str, model_name: str) -> np.ndarray:
        """All enrolment embeddings of ``name`` for ``model_name``, shape ``(clips, dim)``."""
        speaker_id = self._speaker_id(name)
        rows = self._connection.execute(
            "SELECT embedding FROM clips WHERE speaker_id = ? AND model_name = ? ORDER BY id",
            (speaker_id, model_name),
        ).fetchall()
        if not rows:
            raise SpeakerDatabaseError(
                f"“{name}” has no voiceprint from the model {model_name}. Enrol them with it."
            )
        return np.stack([np.frombuffer(r[0], dtype="<f4") for r in rows])

    def voiceprint(self, name: str, model_name: str) -> np.ndarray:
        """The speaker model: the normalised mean of the enrolment embeddings."""
        return _normalise(self.embeddings(name, model_name).mean(axis=0))

    def voiceprints(self, model_name: str) -> dict[str, np.ndarray]:
        rows = self._connection.execute(
            "SELECT DISTINCT s.name FROM speakers s JOIN clips c ON c.speaker_id = s.id "
            "WHERE c.model_name = ? ORDER BY s.name",
            (model_name,),
        ).fetchall()
        return {r[0]: self.voiceprint(r[0], model_name) for r in rows}

    # ------------------------------------------------------------------ thresholds
    def set_threshold(
        self,
        model_name: str,
        threshold: float,
        target_false_accept: float | None = None,
        eer: float | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO thresholds VALUES (?, ?, ?, ?, ?) ON CONFLICT(model_name) DO UPDATE "
                "SET threshold = excluded.threshold, target_false_accept = "
                "excluded.target_false_accept, eer = excluded.eer, updated = excluded.updated",
                (model_name, float(threshold), target_false_accept, eer, _now()),
            )

    def threshold(self, model_name: str) -> float | None:
        row = self._connection.execute(
            "SELECT threshold FROM thresholds WHERE model_name = ?", (model_name,)
        ).fetchone()
        return None if row is None else float(row[0])
