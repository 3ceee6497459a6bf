"""Status-bar widget following background tasks: progress, ETA, pause and cancel."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from workbench.workers import Task


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds} s left"


class TaskBar(QWidget):
    """Shows the newest running task; the cancel button stops it cooperatively."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[Task] = []
        self._etas: dict[Task, float] = {}
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running task (Esc)")
        self.cancel_button.clicked.connect(self.cancel_current)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self._refresh()

    def track(self, task: Task) -> Task:
        """Follow ``task`` until it finishes."""
        self.tasks.append(task)
        task.progress.connect(lambda _f, _m, eta, t=task: self._on_progress(t, eta))
        task.finished.connect(lambda t=task: self._forget(t))
        self._refresh()
        return task

    @property
    def current(self) -> Task | None:
        return self.tasks[-1] if self.tasks else None

    def cancel_current(self) -> None:
        if self.current is not None:
            self.current.cancel()

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def _forget(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        self._etas.pop(task, None)
        self._refresh()

    def _on_progress(self, task: Task, eta: float) -> None:
        self._etas[task] = eta
        self._refresh()

    def _refresh(self) -> None:
        task = self.current
        visible = task is not None
        self.bar.setVisible(visible)
        self.cancel_button.setVisible(visible)
        if task is None:
            self.label.setText("")
            return
        more = f" (+{len(self.tasks) - 1} more)" if len(self.tasks) > 1 else ""
        self.bar.setValue(int(task.fraction * 1000))
        eta = format_eta(self._etas.get(task, -1.0))
        self.label.setText(f"{task.message or task.name}{more}  {eta}".strip())
