"""Reading and controlling run folders (no Qt, no torch).

A run folder holds:

- ``job.json``: how the job was launched (``argv``, ``kind``, ``model``, ``created``), written
  by :func:`launch`.
- ``status.json``: written by the job: ``state`` (``running``, ``finished``, ``failed``,
  ``stopped``), ``pid``, ``step``, ``fraction``, ``eta_seconds``, ``message``, ``updated``.
- ``metrics.jsonl``: one JSON object per line: ``step``, ``split`` (``train``/``valid``),
  ``loss``, ``metrics`` (dict), ``lr``, ``throughput``, ``wall_time``.
- ``log.txt``: the job's stdout and stderr.
- ``checkpoint.pt`` (resumable) and ``best.pt`` (inference bundle); searches add
  ``trials.jsonl`` or an Optuna study.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so a reader never sees half a file (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


@dataclass
class MetricsReader:
    """Follows ``metrics.jsonl`` incrementally (only new complete lines are parsed)."""

    path: Path
    offset: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    _identity: tuple[int, int] | None = None

    def poll(self) -> list[dict[str, Any]]:
        """New rows since the last call.

        A resumed job rewrites the file (dropping rows logged after its last checkpoint):
        when the file was replaced or shrank, reading starts over.
        """
        try:
            stat = self.path.stat()
        except OSError:
            return []
        identity = (stat.st_ino, stat.st_dev)
        if identity != self._identity or stat.st_size < self.offset:
            self._identity = identity
            self.offset = 0
            self.rows = []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        new = []
        for line in data[: end + 1].splitlines():
            try:
                new.append(json.loads(line))
            except ValueError:
                continue
        self.rows.extend(new)
        return new


@dataclass
class Run:
    """A run folder and what it says about its job."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def job(self) -> dict[str, Any]:
        return read_json(self.path / JOB_FILE)

    @property
    def status(self) -> dict[str, Any]:
        return read_json(self.path / STATUS_FILE)

    @property
    def state(self) -> str:
        """``running`` only while the process is alive; a dead "running" job crashed."""
        status = self.status
        state = status.get("state", "starting" if self.job else "unknown")
        pid = status.get("pid") or self.job.get("pid")
        if state in ("running", "starting") and not pid_alive(pid):
            return "crashed" if state == "running" else "failed"
        return state

    @property
    def is_running(self) -> bool:
        return self.state in ("running", "starting")

    def checkpoints(self) -> list[Path]:
        return sorted(self.path.glob("*.pt"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.path / LOG_FILE, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 16384))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> bool:
        """Ask the job to checkpoint and exit (SIGTERM). Returns whether a signal was sent."""
        pid = self.status.get("pid") or self.job.get("pid")
        if not pid_alive(pid):
            return False
        os.kill(int(pid), signal.SIGTERM)
        return True


def list_runs(root: Path) -> list[Run]:
    """Every run folder directly under ``root`` (newest first)."""
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and (p / JOB_FILE).exists()]
    return sorted(runs, key=lambda r: (r.path / JOB_FILE).stat().st_mtime, reverse=True)


def job_command(subcommand: str, arguments: Sequence[str]) -> list[str]:
    """``python -m workbench SUBCOMMAND ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "workbench", subcommand, *arguments]


def launch(run_dir: Path, argv: Sequence[str], kind: str, model: str = "") -> Run:
    """Start ``argv`` detached (own session: it outlives the app), logging into ``run_dir``.

    Launching again on an existing folder resumes the job (the job itself finds its
    checkpoint); ``job.json`` keeps the original creation time.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(run_dir / JOB_FILE)
    log = open(run_dir / LOG_FILE, "ab")  # noqa: SIM115 (handed to the child)
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()
    write_json_atomic(
        run_dir / JOB_FILE,
        {
            "argv": list(argv),
            "kind": kind,
            "model": model,
            "created": previous.get("created") or _dt.datetime.now().isoformat(timespec="seconds"),
            "launched": _dt.datetime.now().isoformat(timespec="seconds"),
            "pid": process.pid,
        },
    )
    return Run(run_dir)
