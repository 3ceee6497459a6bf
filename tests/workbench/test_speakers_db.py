"""The SQLite speaker database on real files: enrol, rename, remove, crash safety, readers."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.speakers_db import EnrollmentClip, SpeakerDatabase, SpeakerDatabaseError


def _clips(seed: int, count: int = 3, dim: int = 16) -> list[EnrollmentClip]:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(dim)
    return [
        EnrollmentClip(centre + 0.1 * rng.standard_normal(dim), f"clip{i}.wav", 4.0, 3.5)
        for i in range(count)
    ]


def test_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "db" / "speakers.sqlite3"
    SpeakerDatabase(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)


def test_enrol_list_voiceprint_rename_remove(tmp_path: Path) -> None:
    with SpeakerDatabase(tmp_path / "s.db") as db:
        db.enroll("alice", "dtdnn", _clips(1))
        db.enroll("bob", "dtdnn", _clips(2, count=2))
        summaries = {s.name: s for s in db.list_speakers()}
        assert summaries["alice"].clips == 3 and summaries["bob"].clips == 2
        assert summaries["alice"].models == ("dtdnn",)
        print_a = db.voiceprint("alice", "dtdnn")
        assert print_a.shape == (16,) and np.linalg.norm(print_a) == pytest.approx(1.0)
        db.enroll("alice", "dtdnn", _clips(1, count=1))
        assert db.embeddings("alice", "dtdnn").shape == (4, 16)
        db.enroll("alice", "dtdnn", _clips(1, count=2), replace=True)
        assert db.embeddings("alice", "dtdnn").shape == (2, 16)
        db.enroll("alice", "ecapa", _clips(5, dim=8))
        assert db.embeddings("alice", "ecapa").shape == (3, 8)
        db.rename("alice", "Alice B.")
        assert db.names() == ["Alice B.", "bob"]
        with pytest.raises(SpeakerDatabaseError, match="already a speaker"):
            db.rename("bob", "Alice B.")
        db.remove("bob")
        assert db.names() == ["Alice B."]
        with pytest.raises(SpeakerDatabaseError, match="No speaker called"):
            db.voiceprint("bob", "dtdnn")
        assert set(db.voiceprints("dtdnn")) == {"Alice B."}


def test_bad_enrolments_write_nothing(tmp_path: Path) -> None:
    with SpeakerDatabase(tmp_path / "s.db") as db:
        with pytest.raises(SpeakerDatabaseError, match="name"):
            db.enroll("  ", "m", _clips(1))
        with pytest.raises(SpeakerDatabaseError, match="at least one clip"):
            db.enroll("x", "m", [])
        bad = _clips(1)
        bad.append(EnrollmentClip(np.full(16, np.nan), "nan.wav", 1.0, 1.0))
        with pytest.raises(SpeakerDatabaseError, match="invalid"):
            db.enroll("x", "m", bad)
        db.enroll("y", "m", _clips(1))
        with pytest.raises(SpeakerDatabaseError, match="dimensional"):
            db.enroll("y", "m", _clips(2, dim=8))
        assert db.names() == ["y"]
        assert db.embeddings("y", "m").shape == (3, 16)


def test_thresholds_are_stored_per_model(tmp_path: Path) -> None:
    with SpeakerDatabase(tmp_path / "s.db") as db:
        assert db.threshold("m") is None
        db.set_threshold("m", 0.42, target_false_accept=0.01, eer=0.03)
        db.set_threshold("m", 0.5)
        db.set_threshold("other", 0.1)
        assert db.threshold("m") == 0.5 and db.threshold("other") == 0.1


_CRASH_SCRIPT = """
import os, sys
import numpy as np
from workbench.speakers_db import SpeakerDatabase
db = SpeakerDatabase(sys.argv[1])
with db._transaction() as conn:
    conn.execute("INSERT INTO speakers(name, created, updated) VALUES ('carol', 'x', 'x')")
    conn.execute(
        "INSERT INTO clips(speaker_id, model_name, embedding, dimension, source, duration, "
        "speech_seconds, created) VALUES ((SELECT id FROM speakers WHERE name='carol'), "
        "'m', ?, 4, 's', 1, 1, 'x')", (np.ones(4, dtype='<f4').tobytes(),))
    os._exit(9)  # the process dies mid-transaction, as on a crash or kill -9
"""


def test_crash_mid_enrolment_leaves_database_consistent(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SpeakerDatabase(path) as db:
        db.enroll("alice", "m", _clips(1, dim=4))
    result = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 9, result.stderr
    with SpeakerDatabase(path) as db:
        assert db.names() == ["alice"]
        assert db.embeddings("alice", "m").shape == (3, 4)
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert raw.execute("SELECT COUNT(*) FROM clips").fetchone() == (3,)


def test_concurrent_readers_see_committed_state(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = SpeakerDatabase(path)
    writer.enroll("alice", "m", _clips(1))
    readers = [SpeakerDatabase(path) for _ in range(3)]
    try:
        for reader in readers:
            assert reader.names() == ["alice"]
        writer.enroll("bob", "m", _clips(2))
        for reader in readers:
            assert reader.names() == ["alice", "bob"]
            np.testing.assert_allclose(reader.voiceprint("bob", "m"), writer.voiceprint("bob", "m"))
    finally:
        for reader in readers:
            reader.close()
        writer.close()


def test_not_a_database_is_a_plain_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(SpeakerDatabaseError, match="not a speaker database"):
        SpeakerDatabase(path)
