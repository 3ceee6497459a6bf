"""``workbench speakers`` through real subprocesses on real audio and SQLite files.

Each process that embeds audio imports torch (seconds on a busy machine), so independent
commands run side by side: the first enrolment, a trial-list score and a refused enrolment
in one module fixture, then verify and identify together (concurrent readers of one
database). Commands that need no model (list, rename, remove, unreadable files) do not
import torch and return at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from models.bundles import default_bundle
from tests.workbench.test_speakers_service import (
    independent_eer_and_min_dcf,
    write_trials,
    write_voices,
)
from workbench.speakers import SpeakerService

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench", "speakers", *args]


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=_environment(),
    )


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_environment(),
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave a command running after the test
        process.communicate()
        raise
    return process.returncode, stdout, stderr


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        return list(raw.iterdump())


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_voices(tmp_path_factory.mktemp("cli-voices"), ("ann", "amy", "bob", "cid"))


@pytest.fixture(scope="module")
def expected_model() -> tuple[str, bool]:
    bundle = default_bundle("speaker")
    return bundle.name, bundle.trained


@pytest.fixture(scope="module")
def first_runs(voices, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The independent model-loading commands, run side by side; their results by name."""
    folder = tmp_path_factory.mktemp("cli")
    trials = voices["ann"][0].parent / "cli-trials.txt"
    write_trials(trials, voices)
    silent = folder / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)
    enroll_db = folder / "data" / "speakers.sqlite3"
    silent_db = folder / "silent.sqlite3"
    SpeakerService(silent_db).list()  # an existing, empty database
    silent_before = _dump(silent_db)
    processes = {
        "enroll": _start(
            "enroll", "ann", *map(str, voices["ann"][:2]), "--db", str(enroll_db), "--json"
        ),
        "score": _start("score", "--trials", str(trials), "--db", str(folder / "s.db"), "--json"),
        "silent": _start("enroll", "cid", str(silent), "--db", str(silent_db)),
    }
    results = {name: _finish(process) for name, process in processes.items()}
    return {
        **results,
        "enroll_db": enroll_db,
        "silent_db": silent_db,
        "silent_before": silent_before,
        "trials": trials,
    }


def test_enroll_verify_identify_list_rename_remove(voices, expected_model, first_runs) -> None:
    torch.set_num_threads(1)
    model, trained = expected_model
    db = first_runs["enroll_db"]

    code, stdout, stderr = first_runs["enroll"]
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["name"] == "ann" and report["model"] == model and report["used"] == 2
    assert [clip["used"] for clip in report["clips"]] == [True, True]
    assert ("UNTRAINED" in stderr) == (not trained)
    assert db.stat().st_mode & 0o777 == 0o600

    # A second speaker and a calibrated threshold, written by the service in this process:
    # the CLI must find both (same model name, same database).
    service = SpeakerService(db, device="cpu")
    service.enroll_files("bob", voices["bob"][:2])
    trials = voices["ann"][0].parent / "cli-cal.txt"
    write_trials(trials, {name: voices[name] for name in ("ann", "bob")})
    calibration = service.calibrate(trials, target_false_accept=0.1)

    test = str(voices["bob"][2])
    verify = _start("verify", "ann", test, "--db", str(db), "--json")
    identify = _start("identify", test, "--db", str(db), "--json", "--top", "1")
    (verify_code, verify_out, verify_err), (identify_code, identify_out, identify_err) = (
        _finish(verify),
        _finish(identify),
    )
    assert verify_code == 0, verify_err
    assert identify_code == 0, identify_err
    decision = json.loads(verify_out)
    samples, rate = sf.read(test, dtype="float32")
    local = service.verify("ann", samples, rate)
    assert decision["score"] == pytest.approx(local.score, abs=1e-5)
    assert decision["threshold"] == pytest.approx(calibration.threshold)
    assert decision["threshold_source"] == "calibrated"
    assert decision["margin"] == pytest.approx(decision["score"] - decision["threshold"])
    assert decision["decision"] == ("accept" if decision["accepted"] else "reject")
    assert decision["accepted"] == (decision["score"] >= decision["threshold"])
    assert (decision["speaker"], decision["model"], decision["trained"]) == ("ann", model, trained)
    ranking = json.loads(identify_out)["ranking"]
    local_ranking = service.identify(samples, rate, top=1)
    assert [entry["name"] for entry in ranking] == [local_ranking[0][0]]
    assert ranking[0]["score"] == pytest.approx(local_ranking[0][1], abs=1e-5)

    listed = _run("list", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(s["name"], s["clips"], s["models"]) for s in json.loads(listed.stdout)] == [
        ("ann", 2, [model]),
        ("bob", 2, [model]),
    ]
    assert _run("rename", "ann", "Ann B.", "--db", str(db)).returncode == 0
    removed = _run("remove", "bob", "--db", str(db), "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout) == {"removed": "bob"}
    again = _run("remove", "bob", "--db", str(db))
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.startswith("workbench speakers: error: No speaker called “bob”.")
    final = json.loads(_run("list", "--db", str(db), "--json").stdout)
    assert [speaker["name"] for speaker in final] == ["Ann B."]


def test_bad_files_are_refused_and_the_database_is_unchanged(
    voices, first_runs, tmp_path: Path
) -> None:
    db = first_runs["silent_db"]
    before = _dump(db)
    assert before == first_runs["silent_before"]
    code, stdout, stderr = first_runs["silent"]  # only a silent clip: nothing usable
    assert code == 1 and stdout == "", stderr
    assert "silent" in stderr
    assert stderr.strip().splitlines()[-1] == (
        "workbench speakers: error: no clip was usable; nothing was enrolled."
    )

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    good = str(voices["cid"][0])
    cases = {
        "missing": [good, str(tmp_path / "missing.wav")],
        "not audio": [good, str(not_audio)],
        "folder": [str(tmp_path)],
    }
    for case, files in cases.items():
        result = _run("enroll", "cid", *files, "--db", str(db))
        assert result.returncode == 1, case
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("workbench speakers: error: "), (case, result.stderr)
        assert "Traceback" not in result.stderr, case
        assert result.stdout == "", case
        assert _dump(db) == before, case
    usage = _run("enroll", "cid", "--db", str(db))
    assert usage.returncode == 2 and "FILE" in usage.stderr
    far = _run("calibrate", "--trials", str(tmp_path / "none.txt"), "--db", str(db))
    assert far.returncode == 1 and "does not exist" in far.stderr
    assert _dump(db) == before


def test_score_prints_per_trial_scores_and_their_eer(first_runs) -> None:
    code, stdout, stderr = first_runs["score"]
    assert code == 0, stderr
    trials = first_runs["trials"]
    data = json.loads(stdout)
    rows = data["trials"]
    assert len(rows) == data["num_trials"] == 66 and data["num_targets"] == 12
    written = [line.split() for line in trials.read_text().splitlines()[1:]]
    assert [[str(row["label"]), row["enroll"], row["test"]] for row in rows] == written
    scores = np.array([row["score"] for row in rows])
    labels = np.array([row["label"] for row in rows], dtype=bool)
    eer, min_dcf = independent_eer_and_min_dcf(scores, labels)
    assert data["eer"] == pytest.approx(eer, abs=1e-9)
    assert data["min_dcf"] == pytest.approx(min_dcf, abs=1e-9)
    assert len(data["histogram"]["edges"]) == len(data["histogram"]["target"]) + 1
    assert sum(data["histogram"]["target"]) == 12
    det = data["det"]
    assert len(det["false_accept"]) == len(det["false_reject"]) == len(det["thresholds"]) > 1
