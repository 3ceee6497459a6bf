"""Optuna studies for the architecture searches: storage, samplers, retries, the trial table.

A study lives in SQLite inside the run folder unless the user names another storage:

* ``None``: ``sqlite:///RUN/study.db``. SQLite takes one writer at a time; a few workers on
  one machine are fine (we give every connection a long busy timeout), many are not.
* ``journal:PATH``: Optuna's append-only journal file (``JournalFileBackend``), safe for
  several processes on one machine or on a shared file system with working ``fcntl``/symlink
  locks. No database server needed.
* Any SQLAlchemy URL Optuna accepts (``postgresql://user@host/db``, ``mysql+pymysql://..``,
  ``sqlite:///..``): for workers on several machines.

Killed workers must not lose their trial. Each running trial beats a heartbeat into the
storage; a trial whose heartbeat stops for ``grace_seconds`` is failed by the next worker
that starts a trial, and Optuna's ``RetryHeartbeatStaleTrialCallback`` (the successor of
``RetryFailedTrialCallback``) re-enqueues its parameters as a ``WAITING`` trial, which the next
free worker runs first. RDB storages have the heartbeat built in; for the journal file,
:class:`HeartbeatJournalStorage` adds it (Optuna's journal storage has none). Trials that
fail by raising are re-enqueued the same way by :class:`RetryFailedTrials`.

Nothing here imports torch: a study can be inspected, and a worker launched, without it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

STUDY_FILE = "study.db"
TRIALS_FILE = "trials.jsonl"
SAMPLERS = ("tpe", "gp", "nsga2", "random")
#: Heartbeat defaults: a trial is declared dead after two missed beats.
HEARTBEAT_SECONDS = 30
#: Attempts per parameter set: the first run plus this many retries.
MAX_RETRY = 2


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's ``ExperimentalWarning`` (heartbeats, retries, grouped TPE).

    Every worker would print them on every start, and they tell the user nothing to act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# ---------------------------------------------------------------- storage


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal-file storage with the heartbeat protocol of its RDB storage.

    The beat is a trial system attribute holding the wall-clock time, appended to the journal
    like any other write; a ``RUNNING`` trial whose last beat (or start, if it never beat) is
    older than ``grace_seconds`` is stale. Workers on several machines need roughly
    synchronised clocks (NTP), as with the RDB storage.

    Args:
        backend: The journal backend (a ``JournalFileBackend``).
        heartbeat_seconds: Interval between beats.
        grace_seconds: Silence after which a running trial counts as dead.
        stale_trial_callback: Called with ``(study, frozen_trial)`` for every trial failed as
            stale (re-enqueues it).
    """

    _BEAT_KEY = "workbench:heartbeat"

    def __init__(
        self,
        backend: JournalFileBackend,
        heartbeat_seconds: int,
        grace_seconds: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None,
    ) -> None:
        super().__init__(backend)
        self._heartbeat_seconds = heartbeat_seconds
        self._grace_seconds = grace_seconds
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, self._BEAT_KEY, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Part of Optuna's (private) heartbeat protocol, called by fail_stale_trials.
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(self._BEAT_KEY)
            if beat is None and trial.datetime_start is not None:
                beat = trial.datetime_start.timestamp()
            if beat is not None and now - float(beat) > self._grace_seconds:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_seconds

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_trial_callback


def default_storage_url(run_dir: Path) -> str:
    """The SQLite URL of the study inside ``run_dir``."""
    return f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"


def open_storage(
    url: str | None,
    run_dir: Path,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
    grace_seconds: int | None = None,
    max_retry: int = MAX_RETRY,
) -> BaseStorage:
    """The storage for ``url`` with heartbeats and stale-trial retries switched on.

    Args:
        url: ``None`` (SQLite in ``run_dir``), ``journal:PATH`` (journal file; a relative
            path is relative to ``run_dir``) or an SQLAlchemy database URL.
        run_dir: The run folder.
        heartbeat_seconds: Interval between a running trial's heartbeats (integer, >= 1).
        grace_seconds: Silence after which a trial is declared dead (default twice the
            interval).
        max_retry: How many times one parameter set is retried after failing or dying.

    Returns:
        An Optuna storage.
    """
    if heartbeat_seconds < 1:
        raise ValueError(f"heartbeat_seconds must be >= 1, got {heartbeat_seconds}.")
    grace = grace_seconds if grace_seconds is not None else 2 * heartbeat_seconds
    if grace < 1:
        raise ValueError(f"grace_seconds must be >= 1, got {grace}.")
    with _quiet():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    url = url or default_storage_url(run_dir)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if not path.is_absolute():
            path = Path(run_dir) / path
        if not str(path).strip():
            raise ValueError("journal storage needs a file: 'journal:PATH'.")
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(
            JournalFileBackend(str(path)), heartbeat_seconds, grace, retry
        )
    if "://" not in url:
        raise ValueError(
            f"Unknown storage '{url}': use 'journal:PATH' or a database URL such as "
            "'sqlite:///study.db' or 'postgresql://user@host/db'."
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Concurrent workers wait for the write lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    with _quiet():
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_seconds,
            grace_period=grace,
            heartbeat_stale_trial_callback=retry,
        )


# ---------------------------------------------------------------- samplers and studies


def make_sampler(
    name: str,
    num_objectives: int,
    seed: int | None,
    startup_trials: int = 10,
) -> optuna.samplers.BaseSampler:
    """A sampler by name.

    Args:
        name: ``"tpe"`` (multivariate TPE; with two objectives, MOTPE), ``"gp"`` (Gaussian
            process with log expected improvement, or its multi-objective form), ``"nsga2"``
            (NSGA-II, multi-objective) or ``"random"``.
        num_objectives: 1 or more.
        seed: Sampler seed (workers should each get their own).
        startup_trials: Random trials before the model-based samplers take over.

    Returns:
        The sampler.
    """
    if name == "tpe":
        with _quiet():
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup_trials, multivariate=True, group=True
            )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    if name == "nsga2":
        if num_objectives < 2:
            raise ValueError(
                "The nsga2 sampler is for multi-objective searches (--objective multi)."
            )
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"Unknown sampler '{name}'; valid: {', '.join(SAMPLERS)}.")


def open_study(
    study_name: str,
    storage: BaseStorage,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed job, or a second worker).

    Raises:
        ValueError: The stored study optimises other directions than ``directions``.
    """
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        directions=list(directions),
        sampler=sampler,
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != [d.lower() for d in directions]:
        raise ValueError(
            f"Study '{study_name}' optimises {stored}, not {list(directions)}: use another "
            "--study-name or the same objective as the first run."
        )
    return study


def claim_trial(trial: optuna.Trial, role: str) -> str:
    """Record who runs ``trial`` (user attributes ``worker``, ``host``, ``pid``).

    Returns:
        The worker label, ``ROLE@HOST:PID``.
    """
    host, pid = socket.gethostname(), os.getpid()
    label = f"{role}@{host}:{pid}"
    trial.set_user_attr("worker", label)
    trial.set_user_attr("host", host)
    trial.set_user_attr("pid", pid)
    return label


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def fail_dead_local_trials(study: optuna.Study, max_retry: int = MAX_RETRY) -> list[int]:
    """Fail and re-enqueue running trials whose process on this machine no longer exists.

    The heartbeat finds dead workers anywhere, but only after its grace period; a job that
    is simply started again after ``kill -9`` knows at once that the trials its previous
    process claimed (:func:`claim_trial`) on this host are orphans.

    Returns:
        Numbers of the trials failed.
    """
    host, me = socket.gethostname(), os.getpid()
    storage = study._storage
    callback = None
    if isinstance(storage, BaseHeartbeat):
        callback = storage.get_heartbeat_stale_trial_callback()
    if callback is None:
        with _quiet():
            callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or not isinstance(pid, int) or pid == me:
            continue
        if _pid_alive(pid):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        with _quiet():
            callback(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards ``--max-trials``: evaluated or pruned, not failed ones."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class RetryFailedTrials:
    """Optimize callback: re-enqueue a trial that failed by raising (up to ``max_retry``).

    A trial that raised (an out-of-memory error on a big sub-network, a transient I/O error)
    goes back into the queue with its parameters, exactly as a heartbeat-stale trial does, so
    a flaky failure does not remove that architecture from the search. Consecutive failures
    beyond ``max_consecutive`` stop the study: something is broken for every architecture.
    """

    def __init__(self, max_retry: int = MAX_RETRY, max_consecutive: int = 5) -> None:
        with _quiet():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.max_consecutive = max_consecutive
        self.consecutive = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.consecutive = 0
            return
        self.consecutive += 1
        with _quiet():
            self._retry(study, trial)
        if self.consecutive >= self.max_consecutive:
            study.stop()


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    max_trials: int,
    deadline: float | None = None,
    callbacks: Iterable[Callable[[optuna.Study, FrozenTrial], None]] = (),
    max_retry: int = MAX_RETRY,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Run trials until the study holds ``max_trials`` counted trials or time is up.

    The count is over the whole study, so several workers together stop at the budget (each
    may overshoot by the trial it is running). Failed trials do not count and are retried.

    Args:
        study: The study.
        objective: Optuna objective.
        max_trials: Total evaluated (complete or pruned) trials wanted in the study.
        deadline: ``time.monotonic()`` after which no new trial starts.
        callbacks: Further optimize callbacks (trial-table export, progress).
        max_retry: Retries per failed parameter set.
        should_stop: Polled before each trial (a SIGTERM flag): True ends the loop.

    Returns:
        Trials this call ran.
    """
    started = len(study.get_trials(deepcopy=False))
    fail_dead_local_trials(study, max_retry)
    retry = RetryFailedTrials(max_retry)
    stopper = optuna.study.MaxTrialsCallback(
        max_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)
    )
    storage = study._storage

    def beating_objective(trial: optuna.Trial) -> float | Sequence[float]:
        # Optuna's heartbeat thread records its first beat asynchronously, and the RDB
        # storage never declares a trial without any beat stale: a worker killed in that
        # window would leave its trial RUNNING for ever. One synchronous beat closes it.
        if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
            storage.record_heartbeat(trial._trial_id)
        return objective(trial)

    while counted_trials(study) < max_trials:
        if deadline is not None and time.monotonic() >= deadline:
            break
        if should_stop is not None and should_stop():
            break
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        # One trial per optimize call, so the budget is re-read from the storage (other
        # workers add trials) before each start, and a stop from RetryFailedTrials holds.
        study.optimize(
            beating_objective,
            n_trials=1,
            timeout=timeout,
            catch=(Exception,),
            callbacks=[retry, stopper, *callbacks],
            gc_after_trial=False,
        )
        if retry.consecutive >= retry.max_consecutive:
            last = study.trials[-1]
            raise RuntimeError(
                f"{retry.consecutive} trials failed in a row; last: "
                f"{last.user_attrs.get('error', 'see the log')}"
            )
    return len(study.get_trials(deepcopy=False)) - started


# ---------------------------------------------------------------- trial table


def trial_record(trial: FrozenTrial, objective_names: Sequence[str]) -> dict[str, Any]:
    """One row of ``trials.jsonl``: what the app's trial table shows.

    Keys: ``number``, ``state``, ``params`` (Optuna's flat parameters), ``architecture``
    (the search's own description, from the trial's user attributes), ``objectives`` (name
    -> value: the optimised values plus every measured metric stored as a user attribute),
    ``values``, ``duration_seconds``, ``retry_of`` (original trial number of a retry),
    ``started``, ``error``, ``worker`` (who ran it, ``ROLE@HOST:PID``).
    """
    attrs = dict(trial.user_attrs)
    objectives: dict[str, Any] = dict(attrs.pop("objectives", {}) or {})
    if trial.values is not None:
        for name, value in zip(objective_names, trial.values):
            objectives.setdefault(name, value)
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    if duration is None and trial.state == TrialState.RUNNING and trial.datetime_start:
        duration = (_dt.datetime.now() - trial.datetime_start).total_seconds()
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        "architecture": attrs.pop("architecture", None),
        "objectives": {k: _finite(v) for k, v in objectives.items()},
        "values": None if trial.values is None else [_finite(v) for v in trial.values],
        "duration_seconds": None if duration is None else round(duration, 3),
        # What RetryHeartbeatStaleTrialCallback.retried_trial_number reads.
        "retry_of": trial.system_attrs.get("failed_trial"),
        "started": None
        if trial.datetime_start is None
        else trial.datetime_start.isoformat(timespec="seconds"),
        "error": attrs.pop("error", None),
        "worker": attrs.pop("worker", None),
    }


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def export_trials(study: optuna.Study, path: Path, objective_names: Sequence[str]) -> None:
    """Rewrite ``trials.jsonl`` from the storage (atomic; every worker may call it)."""
    write_trials(
        path, [trial_record(trial, objective_names) for trial in study.get_trials(deepcopy=False)]
    )


def write_trials(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``trials.jsonl`` rows atomically (a reader never sees half a table)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    os.replace(tmp, path)


def read_trials(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``trials.jsonl`` file (a missing file has none)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def pareto_front(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The completed rows not dominated on ``keys`` (all minimised), sorted by the first key.

    Args:
        rows: ``trials.jsonl`` rows.
        keys: Objective names inside each row's ``objectives``.
    """
    points = [
        row
        for row in rows
        if row.get("state") == "COMPLETE"
        and all(row["objectives"].get(key) is not None for key in keys)
    ]

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        va = [a["objectives"][k] for k in keys]
        vb = [b["objectives"][k] for k in keys]
        return all(x <= y for x, y in zip(va, vb)) and any(x < y for x, y in zip(va, vb))

    front = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    # Two trials of the same architecture (a retry) give identical points; keep the first.
    unique: dict[tuple, dict[str, Any]] = {}
    for row in front:
        unique.setdefault(tuple(row["objectives"][k] for k in keys), row)
    return sorted(unique.values(), key=lambda row: [row["objectives"][k] for k in keys])
