"""Jobs panel: launch training and search jobs as processes, watch their curves, stop, resume.

Jobs are followed through their run folders (``status.json``, ``metrics.jsonl``,
``log.txt``), polled by a QTimer, so a job started in an earlier session of the app shows up
again when the app reopens, and a crashing job can never take the window down.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workbench.jobs.runs import MetricsReader, Run, job_command, launch, list_runs
from workbench.views.task_bar import format_eta

#: Job kinds offered: label -> (subcommand, extra arguments before the common ones).
JOB_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Train a model": ("train", ()),
    "NAS-TasNet search": ("search", ("nas-tasnet",)),
    "MiTAS sharing comparison": ("search", ("mitas",)),
    "SpeechNAS search": ("search", ("speechnas",)),
    "AutoSpeech search": ("search", ("autospeech",)),
}


TRIAL_COLUMNS = ("#", "State", "Objectives", "Architecture", "Seconds")
#: Objectives where lower is better; every other quality objective is maximised.
_LOWER_IS_BETTER = ("eer", "min_dcf", "loss")
_SIZE_KEYS = ("parameters", "params", "macs", "macs_per_second")


def read_trials(path: Path) -> list[dict]:
    """Rows of a search's ``trials.jsonl`` (missing or half-written lines are skipped)."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def pareto_points(rows: list[dict]) -> tuple[str, str, np.ndarray, np.ndarray]:
    """``(quality key, size key, all points, front)`` for completed trials.

    Points are ``(size, quality)``; the front holds the trials no other trial beats on both
    (smaller or equal size and better or equal quality), sorted by size.
    """
    done = [r for r in rows if r.get("state") == "COMPLETE" and r.get("objectives")]
    if not done:
        return "", "", np.zeros((0, 2)), np.zeros((0, 2))
    objectives = done[0]["objectives"]
    size_key = next((k for k in _SIZE_KEYS if k in objectives), "")
    quality_key = next((k for k in objectives if k not in _SIZE_KEYS), "")
    if not size_key or not quality_key:
        return quality_key, size_key, np.zeros((0, 2)), np.zeros((0, 2))
    points = np.array(
        [
            (r["objectives"].get(size_key), r["objectives"].get(quality_key))
            for r in done
            if r["objectives"].get(size_key) is not None
            and r["objectives"].get(quality_key) is not None
        ],
        dtype=float,
    ).reshape(-1, 2)
    sign = 1.0 if quality_key in _LOWER_IS_BETTER else -1.0
    front = [
        p
        for p in points
        if not any(
            q[0] <= p[0] and sign * q[1] <= sign * p[1] and (q[0] < p[0] or q[1] != p[1])
            for q in points
        )
    ]
    front_array = np.array(sorted(front, key=lambda p: p[0])).reshape(-1, 2)
    return quality_key, size_key, points, front_array


class JobsPanel(QWidget):
    """Signals:
    modelChosen(path): "Use this model" on a finished run (``best.pt``).
    """

    modelChosen = Signal(str)

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = Path(runs_root)
        self.catalog: dict[str, dict] = {}
        self._readers: dict[Path, MetricsReader] = {}
        self._shown: Path | None = None

        self.kind_box = QComboBox()
        self.kind_box.addItems(list(JOB_KINDS))
        self.model_box = QComboBox()
        self.model_box.currentIndexChanged.connect(self._fill_presets)
        self.preset_box = QComboBox()
        self.data_edit = QLineEdit("synthetic")
        self.data_edit.setToolTip(
            "'synthetic', a corpus folder from 'workbench data build', or a folder in a "
            "standard layout (LibriMix, MUSDB18, VoxCeleb, ...)"
        )
        self.minutes_box = QSpinBox()
        self.minutes_box.setRange(1, 7 * 24 * 60)
        self.minutes_box.setValue(60)
        self.minutes_box.setSuffix(" min")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(0, 10_000_000)
        self.steps_box.setSpecialValueText("no limit")
        self.launch_button = QPushButton("Launch")
        self.launch_button.clicked.connect(self.launch_from_form)
        form = QFormLayout()
        form.addRow("Job", self.kind_box)
        form.addRow("Model", self.model_box)
        form.addRow("Preset", self.preset_box)
        form.addRow("Data", self.data_edit)
        form.addRow("Time budget", self.minutes_box)
        form.addRow("Step budget", self.steps_box)
        form.addRow(self.launch_button)
        launch_box = QGroupBox("New job")
        launch_box.setLayout(form)

        self.run_list = QListWidget()
        self.run_list.currentItemChanged.connect(lambda *_: self._show_selected())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.state_label = QLabel()
        self.loss_plot = pg.PlotWidget(title="Loss")
        self.loss_plot.addLegend()
        self.train_curve = self.loss_plot.plot(pen=pg.mkPen("#4fc3f7"), name="train")
        self.valid_curve = self.loss_plot.plot(
            pen=pg.mkPen("#ffb74d"), symbol="o", symbolSize=5, name="valid"
        )
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(500)
        self.checkpoint_label = QLabel()
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use this model")
        self.stop_button.clicked.connect(self.stop_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.use_button.clicked.connect(self._use_selected)
        buttons = QHBoxLayout()
        for button in (self.stop_button, self.resume_button, self.use_button):
            buttons.addWidget(button)
        self.trial_table = QTableWidget(0, len(TRIAL_COLUMNS))
        self.trial_table.setHorizontalHeaderLabels(TRIAL_COLUMNS)
        self.trial_table.horizontalHeader().setStretchLastSection(True)
        self.trial_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.pareto_plot = pg.PlotWidget(title="Quality vs size (Pareto front in orange)")
        self.pareto_plot.setLabel("bottom", "parameters")
        self.all_points = pg.ScatterPlotItem(size=7, brush=pg.mkBrush("#4fc3f7"))
        self.front_curve = self.pareto_plot.plot(
            pen=pg.mkPen("#ffb74d", width=2), symbol="o", symbolBrush="#ffb74d", symbolSize=9
        )
        self.pareto_plot.addItem(self.all_points)
        trials = QWidget()
        trials_layout = QVBoxLayout(trials)
        trials_layout.addWidget(self.trial_table, 1)
        trials_layout.addWidget(self.pareto_plot, 1)
        self.detail_tabs = QTabWidget()
        self.detail_tabs.addTab(self.loss_plot, "Curves")
        self.detail_tabs.addTab(trials, "Trials")
        detail = QWidget()
        grid = QGridLayout(detail)
        grid.addWidget(self.state_label, 0, 0)
        grid.addWidget(self.progress, 0, 1)
        grid.addWidget(self.detail_tabs, 1, 0, 1, 2)
        grid.addWidget(self.checkpoint_label, 2, 0, 1, 2)
        grid.addLayout(buttons, 3, 0, 1, 2)
        grid.addWidget(self.log_view, 4, 0, 1, 2)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(launch_box)
        left_layout.addWidget(QLabel("Runs"))
        left_layout.addWidget(self.run_list, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(detail)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ------------------------------------------------------------------ catalog
    def set_catalog(self, catalog: dict[str, dict]) -> None:
        """Model names -> {"task": ..., "presets": [...]} (read off the registry by the app)."""
        self.catalog = catalog
        self.model_box.clear()
        for name in sorted(catalog):
            self.model_box.addItem(name)
        self._fill_presets()

    def _fill_presets(self, *_: object) -> None:
        self.preset_box.clear()
        info = self.catalog.get(self.model_box.currentText(), {})
        presets = list(info.get("presets", []))
        self.preset_box.addItems(presets)
        if "small" in presets:
            self.preset_box.setCurrentText("small")

    # ------------------------------------------------------------------ launching
    def command_for_form(self, run_dir: Path) -> tuple[list[str], str, str]:
        subcommand, extra = JOB_KINDS[self.kind_box.currentText()]
        model = self.model_box.currentText()
        arguments = [*extra, "--run", str(run_dir), "--data", self.data_edit.text().strip()]
        if subcommand == "train":
            arguments += ["--model", model, "--preset", self.preset_box.currentText() or "small"]
        arguments += ["--max-minutes", str(self.minutes_box.value())]
        if self.steps_box.value():
            arguments += ["--max-steps", str(self.steps_box.value())]
        return job_command(subcommand, arguments), subcommand, model

    def launch_from_form(self) -> Run:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        label = self.model_box.currentText() or "job"
        kind = JOB_KINDS[self.kind_box.currentText()]
        if kind[0] == "search":
            label = kind[1][0]
        run_dir = self.runs_root / f"{label}-{stamp}"
        argv, subcommand, model = self.command_for_form(run_dir)
        run = launch(run_dir, argv, kind=subcommand, model=model)
        self.refresh()
        self._select(run.path)
        return run

    def selected_run(self) -> Run | None:
        item = self.run_list.currentItem()
        return Run(Path(item.data(Qt.ItemDataRole.UserRole))) if item else None

    def stop_selected(self) -> None:
        run = self.selected_run()
        if run is not None:
            run.stop()

    def resume_selected(self) -> Run | None:
        run = self.selected_run()
        if run is None or run.is_running:
            return None
        argv = run.job.get("argv")
        if not argv:
            return None
        launch(run.path, argv, kind=run.job.get("kind", "train"), model=run.job.get("model", ""))
        self.refresh()
        return run

    def _use_selected(self) -> None:
        run = self.selected_run()
        if run is not None and (run.path / "best.pt").exists():
            self.modelChosen.emit(str(run.path / "best.pt"))

    # ------------------------------------------------------------------ polling
    def _select(self, path: Path) -> None:
        for row in range(self.run_list.count()):
            if self.run_list.item(row).data(Qt.ItemDataRole.UserRole) == str(path):
                self.run_list.setCurrentRow(row)
                return

    def refresh(self) -> None:
        runs = list_runs(self.runs_root)
        current = self.selected_run()
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run in runs:
            status = run.status
            fraction = float(status.get("fraction") or 0.0)
            item = QListWidgetItem(f"{run.name}   {run.state}   {100 * fraction:.0f} %")
            item.setData(Qt.ItemDataRole.UserRole, str(run.path))
            self.run_list.addItem(item)
        self.run_list.blockSignals(False)
        if current is not None:
            self._select(current.path)
        elif runs and self.run_list.currentRow() < 0:
            self.run_list.setCurrentRow(0)
        self._show_selected()

    def _show_selected(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if self._shown != run.path:
            self._shown = run.path
            self._readers[run.path] = MetricsReader(run.path / "metrics.jsonl")
        reader = self._readers[run.path]
        reader.poll()
        train = [
            (r["step"], r["loss"])
            for r in reader.rows
            if r.get("split") == "train" and r.get("loss") is not None
        ]
        valid = [
            (r["step"], r["loss"])
            for r in reader.rows
            if r.get("split") == "valid" and r.get("loss") is not None
        ]
        self.train_curve.setData([s for s, _ in train], [v for _, v in train])
        self.valid_curve.setData([s for s, _ in valid], [v for _, v in valid])
        status = run.status
        state = run.state
        fraction = float(status.get("fraction") or 0.0)
        self.progress.setValue(int(1000 * fraction))
        eta = status.get("eta_seconds")
        eta_text = format_eta(float(eta)) if state == "running" and eta is not None else ""
        self.state_label.setText(f"{state}  ·  step {status.get('step', 0)}  {eta_text}")
        self.log_view.setPlainText(run.log_tail())
        self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())
        checkpoints = ", ".join(p.name for p in run.checkpoints()) or "none yet"
        self.checkpoint_label.setText(f"Checkpoints: {checkpoints}")
        self.stop_button.setEnabled(run.is_running)
        self.resume_button.setEnabled(not run.is_running and state != "finished")
        self.use_button.setEnabled((run.path / "best.pt").exists())
        self._show_trials(run)

    def _show_trials(self, run: Run) -> None:
        rows = read_trials(run.path / "trials.jsonl")
        self.trial_table.setRowCount(len(rows))
        for row, trial in enumerate(rows):
            objectives = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}"
                for k, v in (trial.get("objectives") or {}).items()
            )
            architecture = json.dumps(trial.get("architecture") or trial.get("params") or {})
            duration = trial.get("duration_seconds")
            values = (
                str(trial.get("number", row)),
                str(trial.get("state", "")),
                objectives,
                architecture[:200],
                "" if duration is None else f"{duration:.1f}",
            )
            for column, text in enumerate(values):
                self.trial_table.setItem(row, column, QTableWidgetItem(text))
        quality, size, points, front = pareto_points(rows)
        self.pareto_plot.setLabel("left", quality or "quality")
        self.pareto_plot.setLabel("bottom", size or "size")
        self.all_points.setData(pos=points if len(points) else [])
        if len(front):
            self.front_curve.setData(front[:, 0], front[:, 1])
        else:
            self.front_curve.setData([], [])
