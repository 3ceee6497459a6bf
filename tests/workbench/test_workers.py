"""Background tasks: signal order, progress, ETA, cancel, errors, no leftover threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import pytest
from PySide6.QtCore import QThreadPool

from workbench.workers import Progress, Task


@pytest.fixture(autouse=True)
def _no_leftover_workers():
    yield
    assert QThreadPool.globalInstance().waitForDone(5000), "a worker was left running"


def counting(n: int, delay: float = 0.0) -> Generator[Progress, None, int]:
    total = 0
    for i in range(n):
        total += i
        if delay:
            time.sleep(delay)
        yield Progress((i + 1) / n, f"step {i + 1}")
    return total


def failing() -> Generator[float, None, None]:
    yield 0.5
    raise ValueError("bad input, plainly")


def _record(task: Task) -> list[tuple]:
    events: list[tuple] = []
    task.started.connect(lambda: events.append(("started",)))
    task.progress.connect(lambda f, m, eta: events.append(("progress", f, m, eta)))
    task.returned.connect(lambda r: events.append(("returned", r)))
    task.errored.connect(lambda e: events.append(("errored", e)))
    task.aborted.connect(lambda: events.append(("aborted",)))
    task.finished.connect(lambda: events.append(("finished",)))
    return events


def test_signal_order_and_result(qtbot) -> None:
    task = Task(counting, 5)
    events = _record(task)
    with qtbot.waitSignal(task.finished, timeout=5000):
        task.start()
    names = [e[0] for e in events]
    assert names == ["started"] + ["progress"] * 5 + ["returned", "finished"]
    assert events[-2] == ("returned", 10)
    fractions = [e[1] for e in events if e[0] == "progress"]
    assert fractions == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert events[1][2] == "step 1"
    assert all(e[3] >= 0 for e in events if e[0] == "progress")
    assert task.state == "done" and task.result == 10


def test_exception_becomes_errored(qtbot) -> None:
    task = Task(failing)
    events = _record(task)
    with qtbot.waitSignal(task.finished, timeout=5000):
        task.start()
    names = [e[0] for e in events]
    assert "returned" not in names
    assert names[-2:] == ["errored", "finished"]
    assert isinstance(events[-2][1], ValueError)
    assert task.state == "failed"


def test_cancel_emits_aborted_and_never_returned(qtbot) -> None:
    task = Task(counting, 1000, 0.005)
    events = _record(task)
    with qtbot.waitSignal(task.finished, timeout=10000):
        task.start()
        qtbot.waitUntil(lambda: task.fraction > 0.005, timeout=5000)
        task.cancel()
    names = [e[0] for e in events]
    assert "aborted" in names
    assert "returned" not in names
    assert names[-1] == "finished"
    assert task.fraction < 1.0
    assert task.state == "cancelled"


def test_pause_and_resume(qtbot) -> None:
    task = Task(counting, 200, 0.002)
    with qtbot.waitSignal(task.finished, timeout=10000):
        task.start()
        qtbot.waitUntil(lambda: task.fraction > 0.01, timeout=5000)
        task.toggle_pause()
        qtbot.waitUntil(lambda: task.is_paused, timeout=5000)
        paused_at = task.fraction
        qtbot.wait(100)
        assert task.fraction == pytest.approx(paused_at, abs=0.011)
        task.toggle_pause()
    assert task.result == sum(range(200))


def test_work_runs_off_the_gui_thread(qtbot) -> None:
    seen: list[bool] = []

    def where() -> Generator[float, None, bool]:
        seen.append(threading.current_thread() is threading.main_thread())
        yield 1.0
        return True

    task = Task(where)
    with qtbot.waitSignal(task.returned, timeout=5000):
        task.start()
    assert seen == [False]
