"""Recording panel: input device, rate, channels, level meter, elapsed time, start/stop.

The audio is written to disk by the engine's recorder as it arrives; this panel only polls
the recorder's counters from a QTimer and, when stopped, hands the finished file to the
window, which opens it as a track.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.engine import AudioEngine
from workbench.errors import WorkbenchError
from workbench.paths import recordings_dir

SAMPLE_RATES = (8000, 16000, 22050, 32000, 44100, 48000, 96000)
METER_FLOOR_DB = -60.0


def level_to_meter(level: float) -> int:
    """Linear peak (0..1) to a 0..1000 meter position on a dB scale."""
    if level <= 0:
        return 0
    db = max(20 * math.log10(level), METER_FLOOR_DB)
    return int(1000 * (db - METER_FLOOR_DB) / -METER_FLOOR_DB)


class RecordPanel(QWidget):
    """Signals:
    recordingStarted(path), recordingStopped(path), recordingFailed(message)
    """

    recordingStarted = Signal(str)
    recordingStopped = Signal(str)
    recordingFailed = Signal(str)

    def __init__(self, engine: AudioEngine, output_folder: Path | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.output_folder = output_folder
        self.recorder = None
        self.device_box = QComboBox()
        self.rate_box = QComboBox()
        for rate in SAMPLE_RATES:
            self.rate_box.addItem(f"{rate} Hz", rate)
        self.rate_box.setCurrentIndex(SAMPLE_RATES.index(48000))
        self.channels_box = QSpinBox()
        self.channels_box.setRange(1, 32)
        self.record_button = QPushButton("● Record")
        self.record_button.setToolTip("Start or stop recording (Ctrl+R)")
        self.record_button.clicked.connect(self.toggle)
        self.meters: list[QProgressBar] = []
        self.meter_box = QVBoxLayout()
        self.elapsed_label = QLabel("0:00.0")
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Input", self.device_box)
        form.addRow("Rate", self.rate_box)
        form.addRow("Channels", self.channels_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.record_button)
        buttons.addWidget(self.elapsed_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(self.meter_box)
        layout.addWidget(self.info_label)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._poll)
        self.refresh_devices()

    # -- devices --------------------------------------------------------------------------
    def refresh_devices(self, selected_name: str | None = None) -> None:
        self.device_box.clear()
        if not self.engine.available:
            self.device_box.addItem("No audio input available", None)
            self.record_button.setEnabled(False)
            self.info_label.setText(self.engine.unavailable_reason)
            return
        devices = self.engine.input_devices()
        default = self.engine.default_input()
        for device in devices:
            self.device_box.addItem(device.name, device.index)
        names = [d.name for d in devices]
        if selected_name in names:
            self.device_box.setCurrentIndex(names.index(selected_name))
        elif default is not None and default.name in names:
            self.device_box.setCurrentIndex(names.index(default.name))
        self.record_button.setEnabled(bool(devices))
        self.info_label.setText(
            "" if devices else "No input device found. Plug one in and use Audio ▸ Rescan devices."
        )

    @property
    def is_recording(self) -> bool:
        return self.recorder is not None

    # -- recording -------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.is_recording:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        folder = self.output_folder or recordings_dir()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(folder) / f"recording-{stamp}.wav"
        channels = self.channels_box.value()
        try:
            self.recorder = self.engine.start_recording(
                path,
                device=self.device_box.currentData(),
                sample_rate=int(self.rate_box.currentData()),
                channels=channels,
            )
        except WorkbenchError as exc:
            self.recorder = None
            self.recordingFailed.emit(exc.message)
            return
        except Exception as exc:  # PortAudio raises its own types
            self.recorder = None
            self.recordingFailed.emit(f"Recording could not start: {exc}")
            return
        self._make_meters(channels)
        self.record_button.setText("■ Stop")
        self.info_label.setText(f"Writing to {path}")
        self.timer.start()
        self.recordingStarted.emit(str(path))

    def stop(self) -> None:
        if self.recorder is None:
            return
        self.timer.stop()
        error = getattr(self.recorder, "error", None)
        try:
            path = self.engine.stop_recording()
        finally:
            self.recorder = None
            self.record_button.setText("● Record")
        if error:
            self.info_label.setText(f"{error} What was captured is kept in {path}")
        self.recordingStopped.emit(str(path))

    def _make_meters(self, channels: int) -> None:
        for meter in self.meters:
            meter.deleteLater()
        self.meters = []
        for number in range(channels):
            meter = QProgressBar()
            meter.setRange(0, 1000)
            meter.setTextVisible(False)
            meter.setMaximumHeight(10)
            meter.setToolTip(f"Channel {number + 1} peak level")
            self.meter_box.addWidget(meter)
            self.meters.append(meter)

    def _poll(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        peaks = list(getattr(recorder, "peak", []) or [])
        for meter, peak in zip(self.meters, peaks):
            meter.setValue(level_to_meter(float(peak)))
        elapsed = float(recorder.elapsed_seconds)
        minutes, seconds = divmod(elapsed, 60)
        overflows = int(getattr(recorder, "overflows", 0))
        extra = f"  ·  {overflows} dropouts" if overflows else ""
        self.elapsed_label.setText(f"{int(minutes)}:{seconds:04.1f}{extra}")
        if getattr(recorder, "error", None):
            # Device lost: stop cleanly, keep what was written.
            self.stop()
