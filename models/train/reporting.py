"""What a running job tells the world: JSON progress lines, ``status.json``, ``metrics.jsonl``.

Any launcher (the app's Jobs panel, a shell script, a cluster scheduler) follows a job by
reading stdout lines of the form ``{"event": "progress", "fraction": .., "eta_seconds": ..,
"message": ..}`` or the files in the run folder. The file names are mirrored in
``workbench/jobs/runs.py`` (a test keeps the two in step; ``models`` cannot import the app).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so that readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (checkpoint, exit 0)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequested:
        for sig in (signal.SIGTERM, signal.SIGINT):
            # signal() raises ValueError outside the main thread (e.g. in a test thread).
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, _frame: object) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class JobReporter:
    """Writes progress for one job into its run folder and stdout.

    Args:
        run_dir: The run folder.
        total: Units of work (steps, trials) for the fraction and ETA.
        stream: Where JSON progress lines go (stdout by default).
        enabled: Only rank 0 of a distributed job reports.
    """

    def __init__(
        self, run_dir: Path, total: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.run_dir = Path(run_dir)
        self.total = max(int(total), 1)
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.start_time = time.monotonic()
        self.start_done = 0
        self._last_status = 0.0

    def begin(self, done: int, message: str = "") -> None:
        """Mark the start (or resume) point; ETA is measured from here."""
        self.start_time = time.monotonic()
        self.start_done = done
        self.status("running", done, message, force=True)

    def eta(self, done: int) -> float:
        rate_done = done - self.start_done
        if rate_done <= 0:
            return -1.0
        elapsed = time.monotonic() - self.start_time
        return elapsed / rate_done * max(self.total - done, 0)

    def progress(self, done: int, message: str = "") -> None:
        if not self.enabled:
            return
        fraction = min(done / self.total, 1.0)
        line = {
            "event": "progress",
            "fraction": round(fraction, 5),
            "done": done,
            "total": self.total,
            "eta_seconds": round(self.eta(done), 1),
            "message": message,
        }
        print(json.dumps(line), file=self.stream, flush=True)
        self.status("running", done, message)

    def status(
        self, state: str, done: int, message: str = "", force: bool = False, **extra: Any
    ) -> None:
        """Rewrite ``status.json`` (at most twice a second unless ``force``)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_status < 0.5:
            return
        self._last_status = now
        eta = self.eta(done)
        write_json_atomic(
            self.run_dir / STATUS_FILE,
            {
                "state": state,
                "pid": os.getpid(),
                "step": done,
                "total": self.total,
                "fraction": min(done / self.total, 1.0),
                "eta_seconds": None if math.isinf(eta) else eta,
                "message": message,
                "updated": _dt.datetime.now().isoformat(timespec="seconds"),
                **extra,
            },
        )

    def metrics(self, row: dict[str, Any]) -> None:
        """Append one row to ``metrics.jsonl`` (flushed, so a reader sees it at once)."""
        if not self.enabled:
            return
        with open(self.run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(row, default=_jsonable) + "\n")

    def finish(self, state: str, done: int, message: str = "", **extra: Any) -> None:
        if not self.enabled:
            return
        print(
            json.dumps({"event": state, "done": done, "message": message}),
            file=self.stream,
            flush=True,
        )
        self.status(state, done, message, force=True, **extra)
