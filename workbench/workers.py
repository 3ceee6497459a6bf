"""The only bridge from the window to heavy work: background tasks with progress and cancel.

A task is a generator function. It yields :class:`Progress` (or a bare fraction) between
chunks of work and returns its result. It runs in a ``QRunnable`` from superqt (napari's
pattern) on the global thread pool; :class:`Task` re-emits superqt's signals with the names
and arguments the views use and adds an ETA. Cancel is cooperative: the generator is
abandoned at the next yield, ``aborted`` is emitted and ``returned`` never is.

Signal order for a task that completes: ``started``, ``progress``..., ``returned``,
``finished``. One that fails: ``started``, ``progress``..., ``errored``, ``finished``.
One that is cancelled: ``started``, ``progress``..., ``aborted``, ``finished``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import GeneratorWorker


@dataclass(frozen=True)
class Progress:
    """A progress report from a task.

    Attributes:
        fraction: Share of the work done, 0..1.
        message: Short text for the status line ("Decoding song.flac").
    """

    fraction: float
    message: str = ""


TaskFunction = Callable[..., Generator[Progress | float, None, Any]]


class Task(QObject):
    """A background task with progress, ETA, pause and cooperative cancel.

    Signals:
        started(): the task began running in its thread.
        progress(fraction, message, eta_seconds): ``eta_seconds`` is ``-1`` while unknown.
        returned(result): the task's return value (never after a cancel).
        errored(exception): the task raised.
        aborted(): the task stopped because :meth:`cancel` was called.
        finished(): emitted last, whatever happened.
    """

    started = Signal()
    progress = Signal(float, str, float)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()

    def __init__(self, function: TaskFunction, *args: Any, name: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.name = name or getattr(function, "__name__", "task")
        self.fraction = 0.0
        self.message = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.state = "pending"  # pending, running, done, failed, cancelled
        self._start_time = 0.0
        self._worker = GeneratorWorker(function, *args, **kwargs)
        self._worker.setAutoDelete(False)
        self._worker.started.connect(self._on_started)
        self._worker.yielded.connect(self._on_yielded)
        self._worker.returned.connect(self._on_returned)
        self._worker.errored.connect(self._on_errored)
        self._worker.aborted.connect(self._on_aborted)
        self._worker.finished.connect(self._on_finished)

    # -- control ------------------------------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> Task:
        """Queue the task on ``pool`` (the global pool by default) and return it."""
        self._start_time = time.monotonic()
        (pool or QThreadPool.globalInstance()).start(self._worker)
        return self

    def cancel(self) -> None:
        """Ask the task to stop at its next yield."""
        if self.state in ("pending", "running"):
            self._worker.quit()

    def toggle_pause(self) -> None:
        """Pause at the next yield, or resume a paused task."""
        self._worker.toggle_pause()

    @property
    def is_paused(self) -> bool:
        return self._worker.is_paused

    @property
    def is_running(self) -> bool:
        return self.state == "running" or self.state == "pending"

    # -- signal plumbing ------------------------------------------------------------------
    def _on_started(self) -> None:
        self.state = "running"
        self._start_time = time.monotonic()
        self.started.emit()

    def _on_yielded(self, value: object) -> None:
        if isinstance(value, Progress):
            fraction, message = value.fraction, value.message
        elif isinstance(value, int | float):
            fraction, message = float(value), self.message
        else:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        self.fraction, self.message = fraction, message
        elapsed = time.monotonic() - self._start_time
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0.0 else -1.0
        self.progress.emit(fraction, message, eta)

    def _on_returned(self, result: object) -> None:
        self.state = "done"
        self.result = result
        self.returned.emit(result)

    def _on_errored(self, exc: object) -> None:
        self.state = "failed"
        self.error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        self.errored.emit(exc)

    def _on_aborted(self) -> None:
        self.state = "cancelled"
        self.aborted.emit()

    def _on_finished(self) -> None:
        if self.state == "running":
            self.state = "done"
        self.finished.emit()


def start_task(function: TaskFunction, *args: Any, name: str = "", **kwargs: Any) -> Task:
    """Create a :class:`Task` for ``function(*args, **kwargs)`` and start it."""
    return Task(function, *args, name=name, **kwargs).start()
