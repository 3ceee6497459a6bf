"""Speakers panel: enrol (files or microphone), rename, delete, verify, identify, calibrate.

Every model call runs as a background task through the injected ``speaker_call`` service
(see :mod:`workbench.speaker_tasks`); this widget only collects inputs and shows results.
Microphone clips are recorded to files by the audio engine and enrolled like files.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.engine import AudioEngine
from workbench.paths import recordings_dir
from workbench.views.task_bar import TaskBar
from workbench.workers import Task

#: Guided microphone enrolment: this many clips of about this many seconds.
GUIDED_CLIPS = 3
CLIP_SECONDS = 5.0


def _probit(values: np.ndarray) -> np.ndarray:
    normal = statistics.NormalDist()
    clipped = np.clip(np.asarray(values, dtype=float), 1e-4, 1 - 1e-4)
    return np.array([normal.inv_cdf(v) for v in clipped])


class SpeakersPanel(QWidget):
    """Signals:
    error(title, message): something failed; the window shows it.
    """

    error = Signal(str, object)

    def __init__(
        self,
        speaker_call: Callable[..., Any] | None,
        engine: AudioEngine,
        task_bar: TaskBar,
        db_path: str | None = None,
    ) -> None:
        super().__init__()
        self.speaker_call = speaker_call
        self.engine = engine
        self.task_bar = task_bar
        self.db_path = db_path
        self.bundle: str | None = None
        self.last_task: Task | None = None
        self.last_result: Any = None
        self._recording_path: Path | None = None

        # -- speakers list
        self.speaker_list = QListWidget()
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete…")
        self.rename_button.clicked.connect(self._rename)
        self.delete_button.clicked.connect(self._delete)
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.rename_button)
        list_buttons.addWidget(self.delete_button)

        # -- enrol
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Speaker name")
        self.clip_list = QListWidget()
        self.clip_paths: list[Path] = []
        self.add_clips_button = QPushButton("Add files…")
        self.record_clip_button = QPushButton("● Record clip")
        self.record_clip_button.setToolTip(
            f"Record a clip of about {CLIP_SECONDS:.0f} s; {GUIDED_CLIPS} clips are recommended"
        )
        self.clear_clips_button = QPushButton("Clear")
        self.replace_box = QCheckBox("Replace existing voiceprint (re-enrol)")
        self.enroll_button = QPushButton("Enrol")
        self.enroll_report = QLabel()
        self.enroll_report.setWordWrap(True)
        self.add_clips_button.clicked.connect(self._add_clip_files)
        self.record_clip_button.clicked.connect(self._toggle_clip_recording)
        self.clear_clips_button.clicked.connect(self.clear_clips)
        self.enroll_button.clicked.connect(self.enroll)
        clip_buttons = QHBoxLayout()
        for button in (self.add_clips_button, self.record_clip_button, self.clear_clips_button):
            clip_buttons.addWidget(button)
        enrol_box = QWidget()
        enrol_layout = QVBoxLayout(enrol_box)
        enrol_layout.addWidget(self.name_edit)
        enrol_layout.addLayout(clip_buttons)
        enrol_layout.addWidget(self.clip_list)
        enrol_layout.addWidget(self.replace_box)
        enrol_layout.addWidget(self.enroll_button)
        enrol_layout.addWidget(self.enroll_report)

        # -- verify / identify
        self.claim_box = QComboBox()
        self.test_edit = QLineEdit()
        self.test_edit.setPlaceholderText("Audio file to test")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_test)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_edit, 1)
        test_row.addWidget(browse)
        self.as_norm_box = QCheckBox("AS-norm (cohort score normalisation)")
        self.verify_button = QPushButton("Verify")
        self.identify_button = QPushButton("Identify")
        self.verify_button.clicked.connect(self.verify)
        self.identify_button.clicked.connect(self.identify)
        self.decision_label = QLabel()
        self.decision_label.setWordWrap(True)
        self.ranking_list = QListWidget()
        verify_box = QWidget()
        verify_form = QFormLayout(verify_box)
        verify_form.addRow("Claimed speaker", self.claim_box)
        verify_form.addRow("Test clip", test_row)
        verify_form.addRow(self.as_norm_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.verify_button)
        buttons.addWidget(self.identify_button)
        verify_form.addRow(buttons)
        verify_form.addRow(self.decision_label)
        verify_form.addRow("Ranking", self.ranking_list)

        # -- calibrate
        self.trials_edit = QLineEdit()
        self.trials_edit.setPlaceholderText("Trial list: label enroll_path test_path")
        trials_browse = QPushButton("Browse…")
        trials_browse.clicked.connect(self._browse_trials)
        trials_row = QHBoxLayout()
        trials_row.addWidget(self.trials_edit, 1)
        trials_row.addWidget(trials_browse)
        self.far_box = QDoubleSpinBox()
        self.far_box.setDecimals(3)
        self.far_box.setRange(0.001, 50.0)
        self.far_box.setValue(1.0)
        self.far_box.setSuffix(" % false accepts")
        self.calibrate_button = QPushButton("Score and set threshold")
        self.calibrate_button.clicked.connect(self.calibrate)
        self.calibration_label = QLabel()
        self.calibration_label.setWordWrap(True)
        self.det_plot = pg.PlotWidget(title="DET curve (probit scale)")
        self.det_plot.setLabel("bottom", "false accept (probit)")
        self.det_plot.setLabel("left", "false reject (probit)")
        self.det_curve = self.det_plot.plot(pen=pg.mkPen("#4fc3f7", width=2))
        self.hist_plot = pg.PlotWidget(title="Scores: targets vs non-targets")
        self.target_hist = pg.BarGraphItem(x=[], height=[], width=0.01, brush="#81c784")
        self.nontarget_hist = pg.BarGraphItem(x=[], height=[], width=0.01, brush="#e57373")
        self.hist_plot.addItem(self.nontarget_hist)
        self.hist_plot.addItem(self.target_hist)
        self.threshold_line = pg.InfiniteLine(0, pen=pg.mkPen("#ffb74d", width=2))
        self.hist_plot.addItem(self.threshold_line)
        calibrate_box = QWidget()
        calibrate_form = QFormLayout(calibrate_box)
        calibrate_form.addRow("Trials", trials_row)
        calibrate_form.addRow("Operating point", self.far_box)
        calibrate_form.addRow(self.calibrate_button)
        calibrate_form.addRow(self.calibration_label)
        calibrate_form.addRow(self.det_plot)
        calibrate_form.addRow(self.hist_plot)

        tabs = QTabWidget()
        tabs.addTab(enrol_box, "Enrol")
        tabs.addTab(verify_box, "Verify / identify")
        tabs.addTab(calibrate_box, "Calibrate")
        self.model_label = QLabel("Speaker model: default")
        speakers_box = QGroupBox("Enrolled speakers")
        speakers_layout = QVBoxLayout(speakers_box)
        speakers_layout.addWidget(self.speaker_list)
        speakers_layout.addLayout(list_buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addWidget(speakers_box)
        layout.addWidget(tabs, 1)

        self.record_timer = QTimer(self)
        self.record_timer.setSingleShot(True)
        self.record_timer.timeout.connect(self._stop_clip_recording)
        if speaker_call is None:
            self.setEnabled(False)
        else:
            self.refresh()

    # ------------------------------------------------------------------ plumbing
    def _run(self, method: str, *args: Any, on_result: Callable[[Any], None], **kwargs: Any):
        if self.speaker_call is None:
            return None
        task = Task(
            self.speaker_call,
            method,
            *args,
            db_path=self.db_path,
            bundle=self.bundle,
            name=f"Speakers: {method}",
            **kwargs,
        )
        task.returned.connect(lambda payload: self._on_result(payload, on_result))
        task.errored.connect(lambda exc: self.error.emit(f"Speakers: {method}", exc))
        self.task_bar.track(task)
        self.last_task = task
        return task.start()

    def _on_result(self, payload: dict, on_result: Callable[[Any], None]) -> None:
        trained = payload.get("trained", True)
        self.model_label.setText(
            f"Speaker model: {payload.get('bundle')}"
            + ("" if trained else "  —  UNTRAINED placeholder: decisions are not meaningful")
        )
        self.last_result = payload["result"]
        on_result(payload["result"])

    # ------------------------------------------------------------------ list
    def refresh(self) -> Task | None:
        return self._run("list", on_result=self._show_speakers)

    def _show_speakers(self, speakers: list[Any]) -> None:
        self.speaker_list.clear()
        current = self.claim_box.currentText()
        self.claim_box.clear()
        for speaker in speakers:
            self.speaker_list.addItem(
                f"{speaker.name}  ·  {speaker.clips} clips  ·  {speaker.speech_seconds:.0f} s "
                f"speech  ·  {', '.join(speaker.models)}"
            )
            self.claim_box.addItem(speaker.name)
        index = self.claim_box.findText(current)
        if index >= 0:
            self.claim_box.setCurrentIndex(index)
        self.names = [s.name for s in speakers]

    def _selected_name(self) -> str | None:
        row = self.speaker_list.currentRow()
        names = getattr(self, "names", [])
        return names[row] if 0 <= row < len(names) else None

    def _rename(self) -> None:
        old = self._selected_name()
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename speaker", "New name", text=old)
        if ok and new.strip() and new != old:
            self._run("rename", old, new.strip(), on_result=lambda _: self.refresh())

    def _delete(self) -> None:
        name = self._selected_name()
        if name is None:
            return
        answer = QMessageBox.question(
            self, "Delete speaker", f"Delete “{name}” and all their voiceprints?"
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(name)

    def remove(self, name: str) -> Task | None:
        return self._run("remove", name, on_result=lambda _: self.refresh())

    # ------------------------------------------------------------------ enrol
    def add_clips(self, paths: list[str] | list[Path]) -> None:
        for path in paths:
            self.clip_paths.append(Path(path))
            self.clip_list.addItem(Path(path).name)
        self._update_guidance()

    def clear_clips(self) -> None:
        self.clip_paths.clear()
        self.clip_list.clear()
        self._update_guidance()

    def _update_guidance(self) -> None:
        missing = GUIDED_CLIPS - len(self.clip_paths)
        self.enroll_report.setText(
            f"Add {missing} more clip(s) for a reliable voiceprint." if missing > 0 else ""
        )

    def _add_clip_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Enrolment clips")
        self.add_clips(files)

    def _toggle_clip_recording(self) -> None:
        if self._recording_path is not None:
            self._stop_clip_recording()
            return
        if not self.engine.available:
            self.error.emit("Recording", self.engine.unavailable_reason)
            return
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = recordings_dir() / f"enrol-{stamp}.wav"
        try:
            self.engine.start_recording(path, sample_rate=16000, channels=1)
        except Exception as exc:
            self.error.emit("Recording", exc)
            return
        self._recording_path = path
        self.record_clip_button.setText("■ Stop clip")
        self.record_timer.start(int(CLIP_SECONDS * 1000))

    def _stop_clip_recording(self) -> None:
        if self._recording_path is None:
            return
        self.record_timer.stop()
        try:
            path = self.engine.stop_recording()
        except Exception as exc:
            self.error.emit("Recording", exc)
            path = self._recording_path
        self._recording_path = None
        self.record_clip_button.setText("● Record clip")
        if path.exists():
            self.add_clips([path])

    def enroll(self) -> Task | None:
        name = self.name_edit.text().strip()
        if not name:
            self.enroll_report.setText("Type the speaker's name first.")
            return None
        if not self.clip_paths:
            self.enroll_report.setText("Add at least one clip (three are recommended).")
            return None
        return self._run(
            "enroll_files",
            name,
            [str(p) for p in self.clip_paths],
            replace=self.replace_box.isChecked(),
            on_result=self._on_enrolled,
        )

    def _on_enrolled(self, report: Any) -> None:
        lines = []
        for clip in getattr(report, "clips", []):
            problems = list(getattr(clip, "problems", []) or [])
            warnings = list(getattr(clip, "warnings", []) or [])
            mark = "✗" if problems else ("!" if warnings else "✓")
            source = Path(str(getattr(clip, "source", ""))).name
            lines.append(f"{mark} {source}: " + ("; ".join(problems + warnings) or "good"))
        summary = str(getattr(report, "message", "") or "Enrolled.")
        self.enroll_report.setText("\n".join([summary, *lines]))
        self.clear_clips_list_only()
        self.refresh()

    def clear_clips_list_only(self) -> None:
        self.clip_paths.clear()
        self.clip_list.clear()

    # ------------------------------------------------------------------ verify / identify
    def _browse_test(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Test clip")
        if path:
            self.test_edit.setText(path)

    def verify(self) -> Task | None:
        name = self.claim_box.currentText()
        path = self.test_edit.text().strip()
        if not name or not path:
            self.decision_label.setText("Choose a claimed speaker and a test clip.")
            return None
        return self._run(
            "verify",
            name,
            ("file", path),
            as_norm=self.as_norm_box.isChecked(),
            on_result=self._show_decision,
        )

    def _show_decision(self, decision: Any) -> None:
        accepted = bool(decision.accepted)
        colour = "#81c784" if accepted else "#e57373"
        units = " (AS-norm units)" if getattr(decision, "normalised", False) else " (cosine)"
        self.decision_label.setText(
            f"<b style='color:{colour}'>{'ACCEPT' if accepted else 'REJECT'}</b> — score "
            f"{decision.score:.3f}, threshold {decision.threshold:.3f}{units}, margin "
            f"{decision.margin:+.3f}"
        )

    def identify(self) -> Task | None:
        path = self.test_edit.text().strip()
        if not path:
            self.decision_label.setText("Choose a test clip.")
            return None
        return self._run(
            "identify",
            ("file", path),
            as_norm=self.as_norm_box.isChecked(),
            on_result=self._show_ranking,
        )

    def _show_ranking(self, ranking: list[tuple[str, float]]) -> None:
        self.ranking_list.clear()
        for place, (name, score) in enumerate(ranking, start=1):
            self.ranking_list.addItem(f"{place}. {name}   {score:.3f}")
        if not ranking:
            self.ranking_list.addItem("No enrolled speakers for this model.")

    # ------------------------------------------------------------------ calibrate
    def _browse_trials(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Trial list")
        if path:
            self.trials_edit.setText(path)

    def calibrate(self) -> Task | None:
        path = self.trials_edit.text().strip()
        if not path:
            self.calibration_label.setText("Choose a trial list.")
            return None
        return self._run(
            "calibrate",
            path,
            target_false_accept=self.far_box.value() / 100.0,
            on_result=self._show_calibration,
        )

    def _show_calibration(self, calibration: Any) -> None:
        self.calibration_label.setText(
            f"EER {100 * calibration.eer:.2f} %  ·  minDCF {calibration.min_dcf:.3f}  ·  "
            f"threshold {calibration.threshold:.3f} at {100 * calibration.target_false_accept:.2f}"
            f" % false accepts (stored for this model)"
        )
        scores = getattr(calibration, "scores", None)
        if scores is None:
            return
        far = np.asarray(scores.det_false_accept, dtype=float)
        frr = np.asarray(scores.det_false_reject, dtype=float)
        if far.size:
            self.det_curve.setData(_probit(far), _probit(frr))
        values = np.asarray(scores.scores, dtype=float)
        labels = np.asarray(scores.labels, dtype=bool)
        if values.size:
            bins = np.linspace(values.min(), values.max() + 1e-9, 30)
            width = float(bins[1] - bins[0])
            for item, mask in ((self.target_hist, labels), (self.nontarget_hist, ~labels)):
                counts, _ = np.histogram(values[mask], bins=bins)
                item.setOpts(x=bins[:-1] + width / 2, height=counts, width=width * 0.9)
        self.threshold_line.setValue(calibration.threshold)
