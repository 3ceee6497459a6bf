"""Optuna study plumbing: storages, retries of killed and failed trials, the trial table.

The killed-trial test runs a real worker process, kills it with SIGKILL in the middle of a
trial and checks that the next worker fails the silent trial and re-runs its parameters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from models.search import optuna_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[3]

# A worker whose only trial sleeps until it is killed.
HANGING_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from models.search import optuna_study

    run_dir, url, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    storage = optuna_study.open_storage(url, run_dir, heartbeat_seconds=1, grace_seconds=2)
    sampler = optuna_study.make_sampler("random", 1, seed=0)
    study = optuna_study.open_study("killed", storage, ["minimize"], sampler)

    def objective(trial):
        optuna_study.claim_trial(trial, "worker")
        trial.suggest_float("x", -1.0, 1.0)
        trial.suggest_categorical("width", [8, 16, 32])
        marker.write_text(str(trial.number))
        time.sleep(120)
        return 0.0

    optuna_study.run_trials(study, objective, max_trials=1)
    """
)


def quick_objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1.0, 1.0) ** 2 + trial.suggest_categorical(
        "width", [8, 16, 32]
    )


@pytest.mark.parametrize(
    ("kind", "detection"),
    [("journal", "heartbeat"), ("sqlite", "heartbeat"), ("journal", "dead-pid")],
)
def test_killed_trial_is_retried_with_its_parameters(
    tmp_path: Path, kind: str, detection: str
) -> None:
    """A trial whose worker got SIGKILL is failed and its parameters run again.

    ``heartbeat``: found by its silence after the grace period (any machine). ``dead-pid``:
    found at once because its process on this machine is gone.
    """
    url = "journal:study.journal" if kind == "journal" else None  # None: SQLite in the folder
    marker = tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, "-c", HANGING_WORKER, str(tmp_path), url or "", str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert worker.poll() is None, worker.stderr.read().decode()
            assert time.monotonic() < deadline, "the worker never started its trial"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()

    storage = optuna_study.open_storage(url or None, tmp_path, heartbeat_seconds=1, grace_seconds=2)
    sampler = optuna_study.make_sampler("random", 1, seed=1)
    study = optuna_study.open_study("killed", storage, ["minimize"], sampler)
    (killed,) = study.get_trials()
    assert killed.state == TrialState.RUNNING  # what kill -9 leaves behind
    assert killed.user_attrs["pid"] == worker.pid
    if detection == "heartbeat":
        # Hide the dead pid so only the heartbeat can tell, then wait past the grace period.
        study._storage.set_trial_user_attr(killed._trial_id, "host", "elsewhere")
        time.sleep(2.5)
    optuna_study.run_trials(study, quick_objective, max_trials=1)

    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params
    assert optuna_study.counted_trials(study) == 1

    optuna_study.export_trials(study, tmp_path / "trials.jsonl", ["value"])
    rows = optuna_study.read_trials(tmp_path / "trials.jsonl")
    assert [row["state"] for row in rows][:2] == ["FAIL", "COMPLETE"]
    assert rows[1]["retry_of"] == killed.number and rows[1]["params"] == killed.params


def test_a_trial_that_raises_is_retried_then_counted(tmp_path: Path) -> None:
    storage = optuna_study.open_storage("journal:j.log", tmp_path, heartbeat_seconds=5)
    study = optuna_study.open_study(
        "flaky", storage, ["minimize"], optuna_study.make_sampler("random", 1, seed=0)
    )
    calls: list[dict] = []

    def flaky(trial: optuna.Trial) -> float:
        value = trial.suggest_float("x", 0.0, 1.0)
        calls.append(dict(trial.params))
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        return value

    optuna_study.run_trials(study, flaky, max_trials=2)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert calls[1] == calls[0]  # the retry ran the failed parameters again
    assert study.get_trials()[1].system_attrs["failed_trial"] == 0


def test_persistent_failures_stop_with_a_clear_error(tmp_path: Path) -> None:
    storage = optuna_study.open_storage(None, tmp_path)
    study = optuna_study.open_study(
        "broken", storage, ["minimize"], optuna_study.make_sampler("random", 1, seed=0)
    )

    def broken(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("error", "ValueError: always")
        raise ValueError("always")

    with pytest.raises(RuntimeError, match="in a row"):
        optuna_study.run_trials(study, broken, max_trials=3)
    assert optuna_study.counted_trials(study) == 0


def test_study_directions_must_match_on_reopen(tmp_path: Path) -> None:
    storage = optuna_study.open_storage(None, tmp_path)
    sampler = optuna_study.make_sampler("tpe", 1, seed=0)
    optuna_study.open_study("s", storage, ["minimize"], sampler)
    with pytest.raises(ValueError, match="optimises"):
        optuna_study.open_study("s", storage, ["minimize", "minimize"], sampler)


def test_bad_storage_and_sampler_names_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown storage"):
        optuna_study.open_storage("study.db", tmp_path)
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        optuna_study.open_storage(None, tmp_path, heartbeat_seconds=0)
    with pytest.raises(ValueError, match="valid: tpe"):
        optuna_study.make_sampler("cma", 1, seed=0)
    with pytest.raises(ValueError, match="multi-objective"):
        optuna_study.make_sampler("nsga2", 1, seed=0)
    assert optuna_study.default_storage_url(tmp_path).endswith("study.db")


def test_pareto_front_keeps_non_dominated_points() -> None:
    def row(number: int, eer: float, parameters: int, state: str = "COMPLETE") -> dict:
        return {
            "number": number,
            "state": state,
            "objectives": {"eer": eer, "parameters": parameters},
        }

    rows = [
        row(0, 0.10, 900),
        row(1, 0.20, 500),
        row(2, 0.15, 950),  # dominated by 0
        row(3, 0.30, 300),
        row(4, 0.05, 100, state="PRUNED"),  # not evaluated
        row(5, 0.20, 500),  # duplicate point of 1
    ]
    front = optuna_study.pareto_front(rows, ["eer", "parameters"])
    assert [r["number"] for r in front] == [0, 1, 3]


def test_trials_file_is_rewritten_atomically(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    optuna_study.write_trials(path, [{"number": 0, "state": "COMPLETE"}])
    optuna_study.write_trials(path, [{"number": 0}, {"number": 1}])
    assert [json.loads(line)["number"] for line in path.read_text().splitlines()] == [0, 1]
    assert not list(tmp_path.glob(".*.tmp"))
    assert optuna_study.read_trials(tmp_path / "missing.jsonl") == []
