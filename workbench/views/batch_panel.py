"""Batch queue: many files (or folders) separated one after the other with the same settings.

Each row shows its status and progress; the queue can be paused (between chunks) and
cancelled, and the window stays usable while it runs. Files are written to
``<output folder>/<input name>/<template>.<ext>`` and never replace existing files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.io import EXPORT_FORMATS, expand_paths
from workbench.separation_request import SeparationRequest
from workbench.views.task_bar import format_eta
from workbench.workers import Task

COLUMNS = ("File", "Status", "Progress")


class BatchPanel(QWidget):
    """Signals:
    finished(): the queue ran out (done, failed or cancelled rows included).
    """

    finished = Signal()

    def __init__(
        self,
        batch_item: Callable[..., Any],
        request_provider: Callable[[], SeparationRequest],
        output_folder: Path,
    ) -> None:
        super().__init__()
        self.batch_item = batch_item
        self.request_provider = request_provider
        self.paths: list[Path] = []
        self.states: list[str] = []
        self.outputs: list[list[str]] = []
        self.current: Task | None = None
        self.current_row = -1
        self.running = False

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAcceptDrops(True)
        self.add_files_button = QPushButton("Add files…")
        self.add_folder_button = QPushButton("Add folder…")
        self.clear_button = QPushButton("Clear finished")
        self.add_files_button.clicked.connect(self._add_files_dialog)
        self.add_folder_button.clicked.connect(self._add_folder_dialog)
        self.clear_button.clicked.connect(self.clear_finished)
        self.folder_edit = QLineEdit(str(output_folder))
        self.template_edit = QLineEdit("{index}_{track}")
        self.format_box = QComboBox()
        for extension in EXPORT_FORMATS:
            self.format_box.addItem(extension.upper(), extension)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)

        adders = QHBoxLayout()
        for button in (self.add_files_button, self.add_folder_button, self.clear_button):
            adders.addWidget(button)
        form = QFormLayout()
        form.addRow("Output folder", self.folder_edit)
        form.addRow("Name", self.template_edit)
        form.addRow("Format", self.format_box)
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.cancel_button):
            controls.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(adders)
        layout.addWidget(self.table, 1)
        layout.addLayout(form)
        layout.addLayout(controls)
        self._update_buttons()

    # ------------------------------------------------------------------ queue
    def add_paths(self, paths: list[str] | list[Path]) -> int:
        """Queue audio files (folders are searched); returns how many were added."""
        added = 0
        for path in expand_paths(paths):
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.table.setItem(row, 0, QTableWidgetItem(str(path)))
            self.table.setItem(row, 1, QTableWidgetItem("waiting"))
            bar = QProgressBar()
            bar.setRange(0, 1000)
            self.table.setCellWidget(row, 2, bar)
            self.paths.append(path)
            self.states.append("waiting")
            self.outputs.append([])
            added += 1
        self._update_buttons()
        return added

    def _add_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add files to the batch")
        self.add_paths(files)

    def _add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to the batch")
        if folder:
            self.add_paths([folder])

    def clear_finished(self) -> None:
        for row in reversed(range(len(self.paths))):
            if self.states[row] in ("done", "failed", "cancelled"):
                self.table.removeRow(row)
                del self.paths[row], self.states[row], self.outputs[row]
        self._update_buttons()

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self._next()

    def toggle_pause(self) -> None:
        if self.current is not None:
            self.current.toggle_pause()
            paused = not self.current.is_paused  # the request takes effect at the next chunk
            self.pause_button.setText("Resume" if paused else "Pause")
            self._set_status(self.current_row, "paused" if paused else "running")

    def cancel(self) -> None:
        """Stop the running row and leave the rest waiting."""
        self.running = False
        if self.current is not None:
            self.current.cancel()
        self._update_buttons()

    def _next(self) -> None:
        if not self.running:
            self._update_buttons()
            return
        row = next((i for i, s in enumerate(self.states) if s == "waiting"), -1)
        if row < 0:
            self.running = False
            self.current = None
            self._update_buttons()
            self.finished.emit()
            return
        self.current_row = row
        task = Task(
            self.batch_item,
            str(self.paths[row]),
            self.request_provider(),
            self.folder_edit.text(),
            self.template_edit.text(),
            self.format_box.currentData(),
            name=f"Batch {self.paths[row].name}",
        )
        task.progress.connect(lambda f, m, eta, r=row: self._on_progress(r, f, m, eta))
        task.returned.connect(lambda out, r=row: self._on_done(r, out))
        task.errored.connect(lambda exc, r=row: self._on_failed(r, exc))
        task.aborted.connect(lambda r=row: self._set_status(r, "cancelled"))
        task.finished.connect(self._on_task_finished)
        self.current = task
        self._set_status(row, "running")
        self._update_buttons()
        task.start()

    def _on_progress(self, row: int, fraction: float, message: str, eta: float) -> None:
        bar = self.table.cellWidget(row, 2)
        if isinstance(bar, QProgressBar):
            bar.setValue(int(fraction * 1000))
            bar.setFormat(f"{message}  {format_eta(eta)}")
            bar.setTextVisible(True)

    def _on_done(self, row: int, written: list[str]) -> None:
        self.outputs[row] = list(written)
        self._set_status(row, "done")
        item = self.table.item(row, 1)
        item.setToolTip("\n".join(written))

    def _on_failed(self, row: int, error: object) -> None:
        message = getattr(error, "message", None) or str(error)
        self._set_status(row, "failed")
        self.table.item(row, 1).setToolTip(message)
        self.table.item(row, 1).setText(f"failed: {message}")

    def _on_task_finished(self) -> None:
        self.current = None
        self.pause_button.setText("Pause")
        self._next()

    def _set_status(self, row: int, state: str) -> None:
        if 0 <= row < len(self.states):
            self.states[row] = state
            self.table.item(row, 1).setText(state)

    def _update_buttons(self) -> None:
        waiting = any(s == "waiting" for s in self.states)
        self.start_button.setEnabled(waiting and not self.running)
        self.pause_button.setEnabled(self.current is not None)
        self.cancel_button.setEnabled(self.current is not None)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)
