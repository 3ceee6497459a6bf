"""Live mode panel: devices, model, live spectrograms, latency, dropouts and rolling scores.

The panel drives a live pipeline (:class:`workbench.live.LivePipeline`, built by the app and
passed in; this module never imports it, since views may not reach the model library even
indirectly). It calls ``start(settings)`` / ``stop()`` and, from a ``QTimer`` on the GUI
thread, drains the pipeline's spectrogram columns into two persistent ``ImageItem``s with
``setImage``, reads ``stats()`` for the numbers and ``scores()`` for the verification plot.
Nothing here runs in an audio callback or touches a model.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.engine import AudioEngine
from workbench.errors import WorkbenchError
from workbench.speakers_db import SpeakerDatabase, SpeakerDatabaseError
from workbench.speakers_db import default_path as default_speakers_path

SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
#: Seconds of spectrogram the scrolling images show.
HISTORY_SECONDS = 8.0
#: Colour range of the spectrograms, dB relative to full scale.
LEVELS = (-100.0, -10.0)
#: How often the panel repaints while live (ms): about 30 frames per second.
REFRESH_MS = 33
#: Model families that produce something to play or show.
_NO_MODEL = "none"


class LivePipelineLike(Protocol):
    """What the panel uses of :class:`workbench.live.LivePipeline`."""

    FAMILIES: dict[str, str]
    FAMILY_OUTPUTS: dict[str, tuple[str, ...]]
    PROMPTS: tuple[str, ...]
    settings: Any
    state: str
    spectrogram: Any
    verification: Any

    @property
    def is_active(self) -> bool: ...

    def start(self, settings: Any = None) -> None: ...

    def stop(self) -> Any: ...

    def stats(self) -> Any: ...

    def read_columns(self, which: str = "input") -> np.ndarray: ...

    def scores(self) -> list[Any]: ...


class LivePanel(QWidget):
    """Live mode: pick devices and a model, start, watch, stop.

    Args:
        engine: The app's audio engine (for the device lists).
        pipeline: The live pipeline the app built (``workbench.live.LivePipeline(engine)``);
            ``None`` disables the panel with a note.
        speakers_db: The speaker database file for the verification picker; ``None`` for the
            default location. The file is only read, and only if it exists.
        output_folder: Where the live WAV files go; ``None`` for the recordings folder.

    Signals:
        liveStarted(): live mode began (devices open; the model may still be loading).
        liveStopped(input_path, output_path): live mode ended (by the user or after a
            failure); the saved input WAV and processed-output WAV, ``""`` when absent.
        liveFailed(message): live mode stopped on an error (device lost, model failed,
            disk full) or could not start; ``liveStopped`` follows when files were made.
    """

    liveStarted = Signal()
    liveStopped = Signal(str, str)
    liveFailed = Signal(str)

    def __init__(
        self,
        engine: AudioEngine,
        pipeline: LivePipelineLike | None,
        speakers_db: str | Path | None = None,
        output_folder: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.pipeline = pipeline
        self.speakers_db = Path(speakers_db) if speakers_db is not None else None
        self.output_folder = Path(output_folder) if output_folder is not None else None
        self.bundles: list[dict] = []
        #: How many times each image was repainted with new columns (tests read it).
        self.image_updates = {"input": 0, "output": 0}
        self._images: dict[str, np.ndarray] = {}
        self._threshold: float | None = None

        families = pipeline.FAMILIES if pipeline is not None else {_NO_MODEL: "Off"}
        prompts = pipeline.PROMPTS if pipeline is not None else ()
        self.input_box = QComboBox()
        self.output_box = QComboBox()
        self.play_box = QCheckBox("Play the processed audio")
        self.play_box.setChecked(True)
        self.rate_box = QComboBox()
        for rate in SAMPLE_RATES:
            self.rate_box.addItem(f"{rate} Hz", rate)
        self.rate_box.setCurrentIndex(SAMPLE_RATES.index(48000))
        self.family_box = QComboBox()
        for key, label in families.items():
            self.family_box.addItem(label, key)
        self.bundle_box = QComboBox()
        self.bundle_box.setToolTip("Shipped bundles, and models you trained in the Jobs panel")
        self.prompt_box = QComboBox()
        self.prompt_box.addItems(list(prompts))
        self.prompt_box.setToolTip("TUSS extracts what this one prompt names")
        self.source_box = QComboBox()
        self.source_box.setToolTip("The model output that is played, shown and saved")
        self.compute_box = QComboBox()
        for label, key in (
            ("Automatic (GPU if present)", "auto"),
            ("CPU", "cpu"),
            ("GPU (CUDA)", "cuda"),
        ):
            self.compute_box.addItem(label, key)
        self.save_output_box = QCheckBox("Also save the processed audio")
        self.speaker_box = QComboBox()
        self.speaker_box.setToolTip("Score the live audio against this enrolled speaker")
        self.verify_source_box = QComboBox()
        self.verify_source_box.addItem("Microphone", "input")
        self.verify_source_box.addItem("Processed audio", "output")
        self.start_button = QPushButton("▶ Start live")
        self.start_button.setToolTip("Start or stop live mode")
        self.start_button.clicked.connect(self.toggle)

        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.latency_label = QLabel("Latency —")
        self.latency_label.setToolTip(
            "Algorithmic latency: block, model lookahead/chunking and the output safety margin, "
            "from capture to playback. The sound card's own buffers (device) come on top."
        )
        self.processing_label = QLabel("Processing —")
        self.processing_label.setToolTip(
            "Time the processor needs per block (model, spectrograms, file writes), mean and "
            "99th percentile, and as a share of the block: above 100 % it cannot keep up."
        )
        self.dropouts_label = QLabel("Dropouts 0")
        self.recording_label = QLabel()
        self.recording_label.setWordWrap(True)
        self.verify_label = QLabel()
        self.verify_label.setWordWrap(True)
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)

        self.input_plot, self.input_image = self._spectrogram_plot("Input")
        self.output_plot, self.output_image = self._spectrogram_plot("Processed")
        self.score_plot = pg.PlotWidget()
        self.score_plot.setMinimumHeight(110)
        self.score_plot.hideButtons()
        self.score_plot.setLabel("left", "score")
        self.score_plot.setLabel("bottom", "s")
        self.score_plot.setYRange(-1.0, 1.0, padding=0.02)
        self.score_plot.getViewBox().enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
        self.score_curve = self.score_plot.plot(
            pen=pg.mkPen("#4fc3f7", width=2), symbol="o", symbolSize=4
        )
        self.threshold_line = pg.InfiniteLine(
            pos=0.5, angle=0, pen=pg.mkPen("#ff5252", width=1, style=Qt.PenStyle.DashLine)
        )
        self.threshold_line.setVisible(False)
        self.score_plot.addItem(self.threshold_line)

        devices = QFormLayout()
        devices.addRow("Input", self.input_box)
        devices.addRow("Rate", self.rate_box)
        devices.addRow("Output", self.output_box)
        devices.addRow("", self.play_box)
        model = QFormLayout()
        model.addRow("Model", self.family_box)
        model.addRow("Bundle", self.bundle_box)
        model.addRow("Prompt", self.prompt_box)
        model.addRow("Output", self.source_box)
        model.addRow("Device", self.compute_box)
        model.addRow("", self.save_output_box)
        verify = QFormLayout()
        verify.addRow("Speaker", self.speaker_box)
        verify.addRow("Score", self.verify_source_box)
        self.model_form = model
        settings_row = QHBoxLayout()
        for title, form in (("Devices", devices), ("Model", model), ("Verification", verify)):
            group = QGroupBox(title)
            group.setLayout(form)
            settings_row.addWidget(group)
        numbers = QHBoxLayout()
        for label in (self.latency_label, self.processing_label, self.dropouts_label):
            numbers.addWidget(label)
        numbers.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(settings_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.model_label, 1)
        layout.addLayout(buttons)
        layout.addLayout(numbers)
        layout.addWidget(self.input_plot, 2)
        layout.addWidget(self.output_plot, 2)
        layout.addWidget(self.score_plot, 1)
        layout.addWidget(self.verify_label)
        layout.addWidget(self.recording_label)
        layout.addWidget(self.info_label)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.family_box.currentIndexChanged.connect(self._on_family)
        self.bundle_box.currentIndexChanged.connect(self._on_bundle)
        self.refresh_devices()
        self.refresh_speakers()
        self._on_family()
        if pipeline is None:
            self.start_button.setEnabled(False)
            self.info_label.setText("Live mode is unavailable: the model library did not load.")

    def _spectrogram_plot(self, title: str) -> tuple[pg.PlotWidget, pg.ImageItem]:
        plot = pg.PlotWidget(title=title)
        plot.setMinimumHeight(120)
        plot.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        plot.setLabel("left", "Hz")
        plot.setLabel("bottom", "s")
        image = pg.ImageItem()
        image.setColorMap(pg.colormap.get("inferno"))
        plot.addItem(image)
        return plot, image

    # ------------------------------------------------------------------ choices
    def refresh_devices(self) -> None:
        """Re-read the engine's device lists (after Audio ▸ Rescan devices)."""
        for box, devices, default in (
            (self.input_box, self.engine.input_devices(), self.engine.default_input()),
            (self.output_box, self.engine.output_devices(), self.engine.default_output()),
        ):
            current = box.currentData()
            box.clear()
            for device in devices:
                box.addItem(device.name, device.index)
            index = box.findData(current) if current is not None else -1
            if index < 0 and default is not None:
                index = box.findData(default.index)
            if index >= 0:
                box.setCurrentIndex(index)
        usable = self.engine.available and self.input_box.count() > 0
        self.start_button.setEnabled(usable and self.pipeline is not None)
        if not self.engine.available:
            self.info_label.setText(self.engine.unavailable_reason)
        elif self.input_box.count() == 0:
            self.info_label.setText(
                "No input device found. Plug one in and use Audio ▸ Rescan devices."
            )

    def refresh_speakers(self) -> None:
        """Re-read the enrolled speakers (the database is opened only if it exists)."""
        current = self.speaker_box.currentData()
        self.speaker_box.clear()
        self.speaker_box.addItem("Off", "")
        path = self.speakers_db or default_speakers_path()
        if path.exists():
            try:
                with SpeakerDatabase(path) as database:
                    names = database.names()
            except SpeakerDatabaseError as exc:
                names = []
                self.verify_label.setText(exc.message)
            for name in names:
                self.speaker_box.addItem(name, name)
        index = self.speaker_box.findData(current) if current else -1
        self.speaker_box.setCurrentIndex(max(index, 0))

    def set_bundles(self, bundles: list[dict]) -> None:
        """Available bundles: dicts with ``name``, ``family``, ``trained``, ``path`` (as
        :func:`workbench.live.catalog` returns them)."""
        self.bundles = list(bundles)
        self._on_family()

    def _on_family(self, *_: object) -> None:
        family = self.family_box.currentData() or _NO_MODEL
        self._set_row_visible(self.prompt_box, family == "tuss")
        has_model = family != _NO_MODEL
        for widget in (self.bundle_box, self.source_box, self.compute_box):
            self._set_row_visible(widget, has_model)
        self.save_output_box.setVisible(has_model)
        self.output_plot.setVisible(has_model)
        self.bundle_box.clear()
        for bundle in self.bundles:
            if bundle.get("family") == family:
                label = bundle["name"] + ("" if bundle.get("trained", True) else " (untrained)")
                self.bundle_box.addItem(label, bundle.get("path") or "")
        if self.bundle_box.count() == 0:
            self.bundle_box.addItem("default", "")
        self.source_box.clear()
        outputs = self.pipeline.FAMILY_OUTPUTS.get(family, ()) if self.pipeline else ()
        self.source_box.addItem("default", "")
        for name in outputs:
            self.source_box.addItem(name, name)
        if "speech" in outputs:
            self.source_box.setCurrentIndex(self.source_box.findData("speech"))
        self._on_bundle()

    def _on_bundle(self, *_: object) -> None:
        untrained = self.bundle_box.currentText().endswith("(untrained)")
        if self.family_box.currentData() != _NO_MODEL and untrained:
            self.model_label.setText(
                "<b>Untrained model</b>: its output is not meaningful until a trained bundle "
                "is shipped or selected."
            )
        elif not self.is_live:
            self.model_label.setText("")

    def _set_row_visible(self, widget: QWidget, visible: bool) -> None:
        widget.setVisible(visible)
        label = self.model_form.labelForField(widget)
        if label is not None:
            label.setVisible(visible)

    def settings(self) -> Any:
        """The pipeline settings the controls describe (``dataclasses.replace`` of the
        pipeline's current ones, so this module needs no import of their class)."""
        if self.pipeline is None:
            raise WorkbenchError("Live mode is unavailable: the model library did not load.")
        base = self.pipeline.settings
        family = self.family_box.currentData() or _NO_MODEL
        speaker = self.speaker_box.currentData() or ""
        database = self.speakers_db or default_speakers_path()
        return dataclasses.replace(
            base,
            input_device=self.input_box.currentData(),
            output_device=self.output_box.currentData(),
            play_output=self.play_box.isChecked() and self.output_box.count() > 0,
            sample_rate=int(self.rate_box.currentData()),
            record_folder=str(self.output_folder) if self.output_folder else "",
            save_output=self.save_output_box.isChecked() and family != _NO_MODEL,
            model=dataclasses.replace(
                base.model,
                family=family,
                bundle=self.bundle_box.currentData() or "",
                prompt=self.prompt_box.currentText() or base.model.prompt,
                output=self.source_box.currentData() or "",
                device=self.compute_box.currentData(),
            ),
            verification=dataclasses.replace(
                base.verification,
                speaker=speaker,
                database=str(database),
                source=self.verify_source_box.currentData() if family != _NO_MODEL else "input",
            ),
        )

    # ------------------------------------------------------------------ live control
    @property
    def is_live(self) -> bool:
        return self.pipeline is not None and self.pipeline.is_active

    def toggle(self) -> None:
        if self.is_live:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        """Start live mode with the chosen settings. Returns whether it started."""
        if self.pipeline is None or self.is_live:
            return False
        try:
            self.pipeline.start(self.settings())
        except (ValueError, WorkbenchError) as exc:
            message = exc.message if isinstance(exc, WorkbenchError) else str(exc)
            self.info_label.setText(message)
            self.liveFailed.emit(message)
            return False
        except Exception as exc:  # PortAudio raises its own types
            message = f"Live mode could not start: {exc}"
            self.info_label.setText(message)
            self.liveFailed.emit(message)
            return False
        self._reset_displays()
        self._set_controls_enabled(False)
        self.start_button.setText("■ Stop live")
        self.info_label.setText("Loading the model…")
        self.timer.start()
        self.liveStarted.emit()
        return True

    def stop(self) -> None:
        """Stop live mode and report the saved files (no-op when not live)."""
        if not self.is_live or self.pipeline is None:
            return
        self.refresh()  # show what arrived since the last tick (may finish a failed run)
        if self.is_live:
            self._finish(None)

    def shutdown(self) -> None:
        """Stop live mode before the window closes (safe to call at any time)."""
        if self.is_live:
            self._finish(None)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    def _finish(self, failure: str | None) -> None:
        assert self.pipeline is not None
        self.timer.stop()
        files = self.pipeline.stop()
        self._set_controls_enabled(True)
        self.start_button.setText("▶ Start live")
        input_path = str(files.input_path) if files.input_path else ""
        output_path = str(files.output_path) if files.output_path else ""
        saved = ", ".join(p for p in (input_path, output_path) if p)
        self.recording_label.setText(f"Saved: {saved}" if saved else "")
        if failure:
            self.info_label.setText(failure)
            self.liveFailed.emit(failure)
        else:
            self.info_label.setText("")
        self.liveStopped.emit(input_path, output_path)

    def _set_controls_enabled(self, enabled: bool) -> None:
        for widget in (
            self.input_box,
            self.output_box,
            self.play_box,
            self.rate_box,
            self.family_box,
            self.bundle_box,
            self.prompt_box,
            self.source_box,
            self.compute_box,
            self.save_output_box,
            self.speaker_box,
            self.verify_source_box,
        ):
            widget.setEnabled(enabled)

    # ------------------------------------------------------------------ display
    def _reset_displays(self) -> None:
        assert self.pipeline is not None
        spectrogram = self.pipeline.spectrogram
        columns = max(1, math.ceil(HISTORY_SECONDS * spectrogram.columns_per_second))
        for which, item in (("input", self.input_image), ("output", self.output_image)):
            image = np.full((columns, spectrogram.bins), LEVELS[0], dtype=np.float32)
            self._images[which] = image
            item.setImage(image, autoLevels=False, levels=LEVELS)
            item.setRect(QRectF(-HISTORY_SECONDS, 0.0, HISTORY_SECONDS, spectrogram.max_frequency))
        for plot in (self.input_plot, self.output_plot):
            plot.setXRange(-HISTORY_SECONDS, 0.0, padding=0)
            plot.setYRange(0.0, spectrogram.max_frequency, padding=0)
        self.image_updates = {"input": 0, "output": 0}
        self.score_curve.setData([], [])
        self.threshold_line.setVisible(False)
        self._threshold = None
        self.verify_label.setText("")

    def refresh(self) -> None:
        """One timer tick: drain new columns into the images, update numbers and scores."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        for which, item in (("input", self.input_image), ("output", self.output_image)):
            columns = pipeline.read_columns(which)
            image = self._images.get(which)
            if image is None or not columns.shape[0]:
                continue
            count = min(columns.shape[0], image.shape[0])
            image[:-count] = image[count:]  # scroll left
            image[-count:] = columns[-count:]
            item.setImage(image, autoLevels=False, levels=LEVELS)
            self.image_updates[which] += 1
        stats = pipeline.stats()
        self._show_stats(stats)
        self._show_scores(pipeline)
        if stats.state == "failed" and self.is_live:
            self._finish(stats.error or "Live mode stopped.")

    def _show_stats(self, stats: Any) -> None:
        if stats.state == "loading":
            self.info_label.setText("Loading the model…")
        elif stats.state == "running" and self.info_label.text() == "Loading the model…":
            self.info_label.setText("")
        if stats.model_label:
            note = "" if stats.trained else " — <b>UNTRAINED</b>: the output is not meaningful"
            self.model_label.setText(
                f"Model: {stats.model_label}, output “{stats.output_name}”{note}"
            )
        self.latency_label.setText(
            f"Latency {stats.algorithmic_latency_ms:.0f} ms"
            f" + device {stats.device_latency_ms:.0f} ms"
        )
        if stats.blocks_processed:
            self.processing_label.setText(
                f"Processing {stats.processing_mean_ms:.1f} ms mean "
                f"({stats.processing_mean_fraction:.0%}), {stats.processing_p99_ms:.1f} ms p99 "
                f"({stats.processing_p99_fraction:.0%}) of a {stats.block_ms:.0f} ms block"
            )
        self.dropouts_label.setText(f"Dropouts {stats.dropouts}")
        self.dropouts_label.setToolTip(
            f"Input overflows {stats.input_overflows}, output underflows "
            f"{stats.output_underflows}, blocks skipped (processor behind) "
            f"{stats.skipped_blocks}, output overflows {stats.output_overflows}"
        )
        if stats.input_path is not None:
            self.recording_label.setText(
                f"Recording the input to {stats.input_path} ({stats.recorded_seconds:.1f} s)"
                + (f" and the output to {stats.output_path}" if stats.output_path else "")
            )

    def _show_scores(self, pipeline: LivePipelineLike) -> None:
        status = pipeline.verification
        if status.state == "off":
            return
        if status.state == "failed":
            self.verify_label.setText(status.error or "Live verification stopped.")
            return
        if status.state == "loading":
            self.verify_label.setText(f"Loading the speaker model for {status.speaker}…")
            return
        if status.threshold is not None and status.threshold != self._threshold:
            self._threshold = status.threshold
            self.threshold_line.setValue(status.threshold)
            self.threshold_line.setVisible(True)
        points = pipeline.scores()
        if not points:
            return
        times = np.fromiter((p.time_seconds for p in points), dtype=np.float64)
        values = np.fromiter((p.score for p in points), dtype=np.float64)
        self.score_curve.setData(times, values)
        last = points[-1]
        decision = "accept" if last.accepted else "reject"
        notes = []
        if not status.calibrated:
            notes.append("threshold not calibrated")
        if not status.trained:
            notes.append("UNTRAINED speaker model")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        self.verify_label.setText(
            f"{status.speaker}: score {last.score:+.3f} vs threshold {status.threshold:.3f} → "
            f"{decision}{suffix}"
        )
