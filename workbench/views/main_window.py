"""The main window: tracks, transport, recording, export, settings and background tasks.

Heavy work (decoding, spectrograms, saving, later the models) runs as
:class:`~workbench.workers.Task` s; this module only wires signals and keeps the screen in
sync. The audio engine is passed in (one per app) and polled from a QTimer: its PortAudio
callbacks never touch Qt.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.engine import AudioEngine
from workbench.audio.io import AUDIO_EXTENSIONS, expand_paths
from workbench.dsp.spectrogram import FFT_SIZES, Spectrogram
from workbench.export_names import DEFAULT_TEMPLATE
from workbench.jobs.runs import Run
from workbench.paths import data_dir, log_file
from workbench.separation_request import SeparationOutput, SeparationRequest
from workbench.session import Session, Track
from workbench.tasks import LoadedTrack, export_tracks, load_track, spectrogram_task
from workbench.views.batch_panel import BatchPanel
from workbench.views.error_dialog import show_error
from workbench.views.export_dialog import ExportDialog
from workbench.views.jobs_panel import JobsPanel
from workbench.views.live_panel import LivePanel
from workbench.views.record_panel import RecordPanel
from workbench.views.separation_panel import SeparationPanel
from workbench.views.speakers_panel import SpeakersPanel
from workbench.views.task_bar import TaskBar
from workbench.views.theme import THEMES, apply_theme
from workbench.views.track_view import AXIS_WIDTH, COLORMAPS, TrackView
from workbench.workers import Task

log = logging.getLogger(__name__)
MAX_RECENT = 12


class MainWindow(QMainWindow):
    """The workbench window.

    Args:
        engine: The app's single audio engine.
        settings: Where preferences persist (tests pass an INI file).
    """

    def __init__(self, engine: AudioEngine, settings: QSettings, services: Any = None) -> None:
        super().__init__()
        self.engine = engine
        # Model-backed task functions (workbench.services.Services), injected by the app so
        # this module never imports the model library.
        self.services = services
        self.settings = settings
        self.session = Session()
        self.views: dict[int, TrackView] = {}
        self.playhead = 0.0
        self._detail_tasks: dict[int, Task] = {}
        self._dialogs: list[QWidget] = []
        # Results of tasks can arrive after the window closed; they are dropped then.
        self._closed = False
        self._last_playback_state = "stopped"
        self.theme = str(settings.value("theme", "dark"))
        self.fft_size = int(settings.value("fft_size", 1024))
        self.colormap = str(settings.value("colormap", "inferno"))
        self.setWindowTitle("Audio Workbench")
        self.setAcceptDrops(True)
        self.resize(1200, 800)

        self._build_central()
        self._build_status_bar()
        self._build_record_dock()
        self._build_jobs_dock()
        self._build_separation_dock()
        self._build_speakers_dock()
        self._build_live_dock()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._restore_layout()

        self.timer = QTimer(self)
        self.timer.setInterval(30)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._update_audio_status()

    # ---------------------------------------------------------------- construction
    def _build_central(self) -> None:
        self.ruler = pg.PlotWidget()
        self.ruler.setFixedHeight(48)
        self.ruler.setMouseEnabled(x=True, y=False)
        self.ruler.getAxis("left").setWidth(AXIS_WIDTH)
        self.ruler.getAxis("left").setStyle(showValues=False)
        self.ruler.getAxis("left").setPen(pg.mkPen(None))
        self.ruler.hideButtons()
        self.ruler.setLabel("bottom", "time", units="s")
        self.ruler.setYRange(0, 1, padding=0)
        self.ruler.setLimits(xMin=0.0, xMax=1.0)
        self.loop_region = pg.LinearRegionItem(values=(0.0, 0.0), brush=(255, 193, 7, 50))
        self.loop_region.setToolTip("Loop selection: drag the edges")
        self.ruler.addItem(self.loop_region)
        self.ruler_playhead = pg.InfiniteLine(0, pen=pg.mkPen("#ff5252", width=2))
        self.ruler.addItem(self.ruler_playhead)
        self.ruler.scene().sigMouseClicked.connect(self._on_ruler_click)

        self.track_container = QWidget()
        self.track_layout = QVBoxLayout(self.track_container)
        self.track_layout.setContentsMargins(0, 0, 0, 0)
        self.empty_label = QLabel(
            "Open an audio file (Ctrl+O), drop files or folders here, or record (Ctrl+R)."
        )
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.track_layout.addWidget(self.empty_label)
        self.track_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.track_container)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.ruler)
        layout.addWidget(scroll, 1)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        self.compute_label = QLabel("Compute: detecting…")
        self.compute_label.setToolTip("Device the models run on")
        self.audio_label = QLabel()
        self.xrun_label = QLabel()
        self.time_label = QLabel("0:00.000")
        self.task_bar = TaskBar()
        bar = self.statusBar()
        bar.addPermanentWidget(self.task_bar)
        bar.addPermanentWidget(self.xrun_label)
        bar.addPermanentWidget(self.audio_label)
        bar.addPermanentWidget(self.compute_label)

    def _build_record_dock(self) -> None:
        self.record_panel = RecordPanel(self.engine)
        self.record_panel.refresh_devices(str(self.settings.value("input_device", "")))
        self.record_panel.device_box.currentTextChanged.connect(
            lambda name: self.settings.setValue("input_device", name)
        )
        self.record_panel.recordingStopped.connect(self._on_recording_stopped)
        self.record_panel.recordingFailed.connect(
            lambda message: self._report_error("Recording", message)
        )
        self.record_dock = QDockWidget("Record", self)
        self.record_dock.setObjectName("record-dock")
        self.record_dock.setWidget(self.record_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.record_dock)

    def _build_jobs_dock(self) -> None:
        runs_root = Path(str(self.settings.value("runs_root", data_dir() / "runs")))
        self.jobs_panel = JobsPanel(runs_root)
        self.jobs_dock = QDockWidget("Jobs", self)
        self.jobs_dock.setObjectName("jobs-dock")
        self.jobs_dock.setWidget(self.jobs_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_dock)
        self.jobs_dock.hide()
        self.jobs_panel.modelChosen.connect(self.use_trained_model)

    def _build_separation_dock(self) -> None:
        self.separation_panel = SeparationPanel()
        self.separation_panel.separateRequested.connect(self.separate)
        self.batch_panel = BatchPanel(
            self.services.batch_item if self.services is not None else None,
            self.separation_panel.request,
            Path(str(self.settings.value("batch_folder", Path.home() / "separated"))),
        )
        self.batch_panel.folder_edit.textChanged.connect(
            lambda text: self.settings.setValue("batch_folder", text)
        )
        tabs = QTabWidget()
        tabs.addTab(self.separation_panel, "Separate")
        tabs.addTab(self.batch_panel, "Batch")
        self.separation_dock = QDockWidget("Separation", self)
        self.separation_dock.setObjectName("separation-dock")
        self.separation_dock.setWidget(tabs)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.separation_dock)
        self.tabifyDockWidget(self.record_dock, self.separation_dock)
        self.session.subscribe(lambda *_: self._refresh_track_pickers())
        if self.services is None:
            self.separation_panel.separate_button.setEnabled(False)
            self.separation_panel.note.setText("The model library is not available.")
        else:
            task = Task(self.services.separation_catalog, name="List separation models")
            task.returned.connect(self.separation_panel.set_bundles)
            task.errored.connect(lambda exc: log.error("Listing bundles failed: %s", exc))
            self.separation_catalog_task = task.start()

    def _build_speakers_dock(self) -> None:
        db_path = self.settings.value("speakers_db", None)
        self.speakers_panel = SpeakersPanel(
            self.services.speaker_call if self.services is not None else None,
            self.engine,
            self.task_bar,
            str(db_path) if db_path else None,
        )
        self.speakers_panel.error.connect(self._report_error)
        self.speakers_dock = QDockWidget("Speakers", self)
        self.speakers_dock.setObjectName("speakers-dock")
        self.speakers_dock.setWidget(self.speakers_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.speakers_dock)
        self.tabifyDockWidget(self.separation_dock, self.speakers_dock)
        self.record_dock.raise_()

    def _build_live_dock(self) -> None:
        self.live_pipeline = (
            self.services.live_pipeline(self.engine) if self.services is not None else None
        )
        db_path = self.settings.value("speakers_db", None)
        self.live_panel = LivePanel(
            self.engine, self.live_pipeline, str(db_path) if db_path else None
        )
        self.live_panel.liveStopped.connect(self._on_live_stopped)
        self.live_panel.liveFailed.connect(lambda message: self._report_error("Live", message))
        self.live_dock = QDockWidget("Live", self)
        self.live_dock.setObjectName("live-dock")
        self.live_dock.setWidget(self.live_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.live_dock)
        self.tabifyDockWidget(self.jobs_dock, self.live_dock)
        self.live_dock.hide()
        if self.services is not None:
            task = Task(self.services.live_catalog, name="List live models")
            task.returned.connect(self.live_panel.set_bundles)
            task.errored.connect(lambda exc: log.error("Listing live models failed: %s", exc))
            self.live_catalog_task = task.start()

    def _on_live_stopped(self, input_path: str, output_path: str) -> None:
        for path in (input_path, output_path):
            if path and Path(path).exists():
                self._start_load(Path(path), kind="recording")

    def _refresh_track_pickers(self) -> None:
        if self._closed:
            return
        self.separation_panel.set_tracks(
            [(t.id, f"{t.name} ({t.kind})") for t in self.session if t.kind != "residual"]
        )

    # ---------------------------------------------------------------- separation
    def separate(self, request: SeparationRequest) -> Task | None:
        """Separate the request's track in a worker; stems arrive as new tracks."""
        track = self.session.get(request.track_id) if request.track_id is not None else None
        track = track or self.session.mixture
        if track is None or self.services is None:
            self.statusBar().showMessage("Open a track to separate first.", 5000)
            return None
        task = Task(
            self.services.separate,
            track.samples,
            track.sample_rate,
            request,
            name=f"Separate {track.name}",
        )
        task.returned.connect(lambda output, t=track: self._on_separated(t, output))
        task.errored.connect(lambda exc: self._report_error("Separation failed", exc))
        self.task_bar.track(task)
        self.separation_task = task
        return task.start()

    def _on_separated(self, mixture: Track, output: SeparationOutput) -> None:
        if self._closed:
            return
        for name, stem in zip(output.names, output.stems):
            # Stems start muted so playback keeps sounding like the mixture; solo one to
            # hear it, and B/A compares it with the mixture.
            self.add_track(
                Track(
                    name=f"{mixture.name} · {name}",
                    samples=stem,
                    sample_rate=mixture.sample_rate,
                    kind="residual" if name == "residual" else "stem",
                    source_subtype=mixture.source_subtype,
                    muted=True,
                    parent_id=mixture.id,
                    path=mixture.path,
                )
            )
        note = "" if output.trained else " — untrained model: the stems are not meaningful"
        self.statusBar().showMessage(
            f"Separated {mixture.name} into {len(output.names)} tracks on {output.device}{note}",
            10000,
        )

    def use_trained_model(self, path: str) -> None:
        """ "Use this model" in the Jobs panel: offer a run's ``best.pt`` to the pickers."""
        model = Run(Path(path).parent).job.get("model", "")
        family = {
            "tuss": "tuss",
            "mtass": "mtass",
            "conv_tasnet": "speech",
            "nas_tasnet": "speech",
        }.get(model)
        catalog = getattr(self, "model_catalog", {})
        if family is not None:
            entry = {
                "name": Path(path).parent.name,
                "family": family,
                "trained": True,
                "path": path,
            }
            self.separation_panel.set_bundles([*self.separation_panel.bundles, entry])
            self.separation_panel.family_box.setCurrentIndex(
                self.separation_panel.family_box.findData(family)
            )
            self.separation_dock.raise_()
        elif catalog.get(model, {}).get("task") == "speaker":
            self.speakers_panel.bundle = path
            self.speakers_panel.refresh()
            self.speakers_dock.raise_()
        self.statusBar().showMessage(f"Using {path}", 8000)

    def set_model_catalog(self, catalog: dict[str, dict]) -> None:
        """Registry contents (read by the app off the GUI thread) for the model pickers."""
        self.model_catalog = catalog
        self.jobs_panel.set_catalog(catalog)

    def _action(
        self,
        text: str,
        slot,
        shortcut: str | QKeySequence | None = None,
        checkable: bool = False,
        tip: str = "",
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        action.setCheckable(checkable)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action(
            "Open &Folder…", self.open_folder_dialog, "Ctrl+Shift+O"
        )
        self.export_action = self._action("&Export Tracks…", self.export_dialog, "Ctrl+E")
        self.close_all_action = self._action(
            "Close All Tracks", self.close_all_tracks, "Ctrl+Shift+W"
        )
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.play_action = self._action(
            "Play/Pause", self.toggle_play, Qt.Key.Key_Space, tip="Play or pause (Space)"
        )
        self.stop_action = self._action("Stop", self.stop, "Ctrl+.", tip="Stop and rewind")
        self.home_action = self._action("Go to Start", lambda: self.seek(0.0), Qt.Key.Key_Home)
        self.loop_action = self._action(
            "Loop Selection",
            self._on_loop_toggled,
            "L",
            checkable=True,
            tip="Loop the yellow selection (L)",
        )
        self.ab_action = self._action(
            "A/B: Mixture Only",
            self._on_ab_toggled,
            "B",
            checkable=True,
            tip="A/B: hear the mixture alone instead of the selection (B)",
        )
        self.record_action = self._action(
            "&Record", self.record_panel.toggle, "Ctrl+R", tip="Start or stop recording (Ctrl+R)"
        )
        self.zoom_in_action = self._action(
            "Zoom In", lambda: self.zoom(0.5), QKeySequence.StandardKey.ZoomIn
        )
        self.zoom_out_action = self._action(
            "Zoom Out", lambda: self.zoom(2.0), QKeySequence.StandardKey.ZoomOut
        )
        self.zoom_fit_action = self._action("Zoom to Fit", self.zoom_fit, "Ctrl+0")
        self.pan_left_action = self._action("Pan Left", lambda: self.pan(-0.25), Qt.Key.Key_Left)
        self.pan_right_action = self._action("Pan Right", lambda: self.pan(0.25), Qt.Key.Key_Right)
        self.rescan_action = self._action("Rescan Devices", self.rescan_devices, "Ctrl+Shift+R")
        self.cancel_action = self._action(
            "Cancel Task", self.task_bar.cancel_current, Qt.Key.Key_Escape
        )
        self.show_log_action = self._action("Show Log Location", self._show_log)
        self.about_action = self._action("About", self._about)

    def _build_menus_and_toolbar(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._rebuild_recent_menu()
        file_menu.addSeparator()
        file_menu.addAction(self.record_action)
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.close_all_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        view_menu = menu.addMenu("&View")
        for action in (self.zoom_in_action, self.zoom_out_action, self.zoom_fit_action):
            view_menu.addAction(action)
        self.fft_menu = view_menu.addMenu("FFT Size")
        group = QActionGroup(self)
        for size in FFT_SIZES:
            action = QAction(str(size), self, checkable=True)
            action.setChecked(size == self.fft_size)
            action.triggered.connect(lambda _=False, s=size: self.set_fft_size(s))
            group.addAction(action)
            self.fft_menu.addAction(action)
        cmap_menu = view_menu.addMenu("Colour Map")
        group = QActionGroup(self)
        for name in COLORMAPS:
            action = QAction(name, self, checkable=True)
            action.setChecked(name == self.colormap)
            action.triggered.connect(lambda _=False, n=name: self.set_colormap(n))
            group.addAction(action)
            cmap_menu.addAction(action)
        theme_menu = view_menu.addMenu("Theme")
        group = QActionGroup(self)
        for name in THEMES:
            action = QAction(name.title(), self, checkable=True)
            action.setChecked(name == self.theme)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            group.addAction(action)
            theme_menu.addAction(action)
        view_menu.addAction(self.record_dock.toggleViewAction())
        view_menu.addAction(self.jobs_dock.toggleViewAction())
        view_menu.addAction(self.separation_dock.toggleViewAction())
        view_menu.addAction(self.speakers_dock.toggleViewAction())
        view_menu.addAction(self.live_dock.toggleViewAction())

        play_menu = menu.addMenu("&Playback")
        for action in (
            self.play_action,
            self.stop_action,
            self.home_action,
            self.loop_action,
            self.ab_action,
        ):
            play_menu.addAction(action)

        audio_menu = menu.addMenu("&Audio")
        audio_menu.addAction(self.rescan_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.show_log_action)
        help_menu.addAction(self.about_action)

        toolbar = QToolBar("Transport")
        toolbar.setObjectName("transport-toolbar")
        self.addToolBar(toolbar)
        toolbar.addAction(self.open_action)
        toolbar.addSeparator()
        toolbar.addAction(self.play_action)
        toolbar.addAction(self.stop_action)
        toolbar.addAction(self.loop_action)
        toolbar.addAction(self.ab_action)
        toolbar.addWidget(self.time_label)
        toolbar.addSeparator()
        toolbar.addAction(self.record_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Output "))
        self.output_box = QComboBox()
        self.output_box.setMinimumWidth(180)
        self.output_box.currentIndexChanged.connect(self._on_output_changed)
        toolbar.addWidget(self.output_box)
        self._fill_output_devices()

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        state = self.settings.value("window_state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # ---------------------------------------------------------------- status
    def _report_error(self, title: str, error: BaseException | str) -> None:
        """Log and show an error; after the window closed only log it."""
        if self._closed:
            log.error("%s: %s", title, error)
            return
        self.last_error_box = show_error(self, title, error)

    def set_compute_device(self, text: str) -> None:
        self.compute_label.setText(f"Compute: {text}")

    def _update_audio_status(self) -> None:
        if not self.engine.available:
            self.audio_label.setText("Audio: unavailable")
            self.audio_label.setToolTip(self.engine.unavailable_reason)
            self.statusBar().showMessage(self.engine.unavailable_reason, 15000)
            return
        message = self.engine.availability_message
        if message:
            self.audio_label.setText("Audio: no device")
            self.audio_label.setToolTip(message)
            self.statusBar().showMessage(message, 15000)
            return
        self.audio_label.setText(f"Audio: {self.output_box.currentText()}")
        self.audio_label.setToolTip("")

    # ---------------------------------------------------------------- opening files
    def open_dialog(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in AUDIO_EXTENSIONS)
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Open audio",
            str(self.settings.value("last_open_dir", str(Path.home()))),
            f"Audio files ({patterns});;All files (*)",
        )
        if paths:
            self.settings.setValue("last_open_dir", str(Path(paths[0]).parent))
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self,
            "Open every audio file in a folder",
            str(self.settings.value("last_open_dir", str(Path.home()))),
        )
        if folder:
            self.settings.setValue("last_open_dir", folder)
            self.open_paths([folder])

    def open_paths(self, paths: list[str] | list[Path]) -> list[Task]:
        """Load files (folders are searched for audio) in background tasks."""
        files = expand_paths(paths)
        if not files and paths:
            self.statusBar().showMessage("No audio files found there.", 5000)
        return [self._start_load(path) for path in files]

    def _start_load(self, path: Path, kind: str = "mixture") -> Task:
        task = Task(load_track, path, name=f"Open {path.name}")
        task.returned.connect(lambda result, p=path, k=kind: self._on_loaded(p, result, k))
        task.errored.connect(lambda exc: self._report_error("Could not open file", exc))
        self.task_bar.track(task)
        return task.start()

    def _on_loaded(self, path: Path, result: LoadedTrack, kind: str) -> None:
        if self._closed:
            return
        audio = result.audio
        track = Track(
            name=path.stem,
            samples=audio.samples,
            sample_rate=audio.sample_rate,
            path=path,
            kind=kind,
            source_subtype=audio.info.subtype,
        )
        self.add_track(track, result.pyramid)
        self._remember_recent(path)
        for warning in audio.warnings:
            self.statusBar().showMessage(f"{path.name}: {warning}", 10000)
            log.warning("%s: %s", path, warning)

    def add_track(self, track: Track, pyramid=None) -> TrackView:
        """Show ``track`` (with a ready peak pyramid, or one is built here)."""
        if pyramid is None:
            from workbench.dsp.peaks import build_pyramid

            pyramid = build_pyramid(track.samples)
        self.session.add(track)
        view = TrackView(track, pyramid, self.theme)
        view.set_colormap(self.colormap)
        view.link_x(self.ruler)
        view.seekRequested.connect(self.seek)
        view.muteToggled.connect(lambda on, t=track: self.session.set_flags(t, muted=on))
        view.soloToggled.connect(lambda on, t=track: self.session.set_flags(t, solo=on))
        view.gainChanged.connect(lambda gain, t=track: self.session.set_flags(t, gain=gain))
        view.exportRequested.connect(lambda t=track: self.export_dialog([t]))
        view.closeRequested.connect(lambda t=track: self.close_track(t))
        view.detailRequested.connect(lambda x0, x1, t=track: self._request_detail(t, x0, x1))
        self.views[track.id] = view
        self.empty_label.hide()
        self.track_layout.insertWidget(self.track_layout.count() - 1, view)
        self._update_time_limits()
        if len(self.session) == 1:
            self.zoom_fit()
        view.redraw_waveform()
        self._start_spectrogram(track)
        return view

    def close_track(self, track: Track) -> None:
        view = self.views.pop(track.id, None)
        if view is not None:
            view.setParent(None)
            view.deleteLater()
        self.session.remove(track)
        if not len(self.session):
            self.stop()
            self.empty_label.show()
        self._update_time_limits()

    def close_all_tracks(self) -> None:
        for track in self.session.tracks:
            self.close_track(track)

    def _update_time_limits(self) -> None:
        duration = max((t.duration for t in self.session), default=1.0)
        self.ruler.setLimits(xMin=0.0, xMax=duration, minXRange=min(0.001, duration))

    # ---------------------------------------------------------------- spectrograms
    def _start_spectrogram(self, track: Track) -> Task:
        task = Task(
            spectrogram_task,
            track.samples,
            track.sample_rate,
            self.fft_size,
            label=track.name,
            name=f"Spectrogram {track.name}",
        )
        task.returned.connect(lambda spec, t=track: self._on_spectrogram(t, spec, False))
        task.errored.connect(lambda exc: self._report_error("Spectrogram failed", exc))
        self.task_bar.track(task)
        return task.start()

    def _request_detail(self, track: Track, x0: float, x1: float) -> None:
        previous = self._detail_tasks.pop(track.id, None)
        if previous is not None:
            previous.cancel()
        view = self.views.get(track.id)
        if view is None:
            return
        rate = track.sample_rate
        task = Task(
            spectrogram_task,
            track.samples,
            rate,
            self.fft_size,
            start=int(x0 * rate),
            stop=int(x1 * rate) + 1,
            max_columns=max(view.spec_plot.width(), 200),
            label=track.name,
            name=f"Spectrogram detail {track.name}",
        )
        task.returned.connect(lambda spec, t=track: self._on_spectrogram(t, spec, True))
        self._detail_tasks[track.id] = task
        task.start()

    def _on_spectrogram(self, track: Track, spectrogram: Spectrogram, detail: bool) -> None:
        if self._closed:
            return
        view = self.views.get(track.id)
        if view is not None and spectrogram.n_fft == self.fft_size:
            view.set_spectrogram(spectrogram, detail=detail)

    def set_fft_size(self, size: int) -> None:
        self.fft_size = int(size)
        self.settings.setValue("fft_size", self.fft_size)
        for track in self.session:
            self._start_spectrogram(track)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self.settings.setValue("colormap", name)
        for view in self.views.values():
            view.set_colormap(name)

    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        self.theme = apply_theme(app, name) if app is not None else name
        self.settings.setValue("theme", self.theme)
        self.ruler.setBackground(pg.getConfigOption("background"))
        for view in self.views.values():
            view.set_theme(self.theme)

    # ---------------------------------------------------------------- zoom and pan
    def _view_range(self) -> tuple[float, float]:
        x0, x1 = self.ruler.getViewBox().viewRange()[0]
        return x0, x1

    def zoom(self, factor: float) -> None:
        x0, x1 = self._view_range()
        centre = self.playhead if x0 <= self.playhead <= x1 else (x0 + x1) / 2
        half = (x1 - x0) * factor / 2
        self.ruler.setXRange(centre - half, centre + half, padding=0)

    def zoom_fit(self) -> None:
        duration = max((t.duration for t in self.session), default=1.0)
        self.ruler.setXRange(0.0, duration, padding=0)

    def pan(self, fraction: float) -> None:
        x0, x1 = self._view_range()
        shift = (x1 - x0) * fraction
        self.ruler.setXRange(x0 + shift, x1 + shift, padding=0)

    # ---------------------------------------------------------------- transport
    def _fill_output_devices(self) -> None:
        self.output_box.blockSignals(True)
        self.output_box.clear()
        if self.engine.available:
            wanted = str(self.settings.value("output_device", ""))
            default = self.engine.default_output()
            for device in self.engine.output_devices():
                self.output_box.addItem(device.name, device.index)
            names = [self.output_box.itemText(i) for i in range(self.output_box.count())]
            if wanted in names:
                self.output_box.setCurrentIndex(names.index(wanted))
            elif default is not None and default.name in names:
                self.output_box.setCurrentIndex(names.index(default.name))
        else:
            self.output_box.addItem("No audio output available", None)
        self.output_box.setEnabled(self.engine.available and self.output_box.count() > 0)
        self.output_box.blockSignals(False)

    def _on_output_changed(self, _index: int) -> None:
        self.settings.setValue("output_device", self.output_box.currentText())
        self._update_audio_status()
        if self.engine.is_playing:
            self.stop(rewind=False)
            self.play()

    @property
    def is_playing(self) -> bool:
        return bool(self.engine.available and self.engine.is_playing)

    def toggle_play(self) -> None:
        if self.is_playing:
            self.pause()
        elif self.engine.available and str(self.engine.playback_state) == "paused":
            self.engine.resume()
        else:
            self.play()

    def play(self) -> None:
        if not self.engine.available:
            self._report_error("Playback", self.engine.unavailable_reason)
            return
        rate = self.session.sample_rate
        if rate is None:
            return
        channels = max((t.channels for t in self.session), default=1)
        device_index = self.output_box.currentData()
        if device_index is not None:
            info = next((d for d in self.engine.output_devices() if d.index == device_index), None)
            if info is not None and info.max_output_channels:
                channels = min(channels, info.max_output_channels)
        start = int(self.playhead * rate)
        if start >= self.session.frames:
            start = 0
        loop = self._loop_frames(rate)
        if loop is not None and not (loop[0] <= start < loop[1]):
            start = loop[0]
        try:
            self.engine.play(
                self.session.audible_tracks,
                rate,
                channels,
                start_frame=start,
                device=device_index,
                loop=loop,
            )
        except Exception as exc:
            self._report_error("Playback could not start", exc)

    def pause(self) -> None:
        if self.engine.available and self.engine.is_playing:
            self.engine.pause()
            rate = self.session.sample_rate or 1
            self.playhead = self.engine.position_frames() / rate
            self._show_playhead(self.playhead)

    def stop(self, rewind: bool = True) -> None:
        if self.engine.available:
            self.engine.stop()
        if rewind:
            self.seek(0.0)

    def seek(self, seconds: float) -> None:
        self.playhead = max(0.0, float(seconds))
        rate = self.session.sample_rate
        if (
            rate
            and self.engine.available
            and str(self.engine.playback_state)
            in (
                "playing",
                "paused",
            )
        ):
            self.engine.seek(int(self.playhead * rate))
        self._show_playhead(self.playhead)

    def _loop_frames(self, rate: int) -> tuple[int, int] | None:
        if not self.loop_action.isChecked():
            return None
        start, stop = self.loop_region.getRegion()
        if stop - start < 0.01:
            return None
        return int(start * rate), int(stop * rate)

    def _on_loop_toggled(self, checked: bool) -> None:
        start, stop = self.loop_region.getRegion()
        if checked and stop - start < 0.01:
            x0, x1 = self._view_range()
            width = x1 - x0
            self.loop_region.setRegion((x0 + width * 0.25, x0 + width * 0.75))
        if self.is_playing:
            self.pause()
            self.play()

    def _on_ab_toggled(self, checked: bool) -> None:
        self.session.set_ab(checked)
        self.ab_action.setText("A/B: Mixture Only" if not checked else "A/B: Mixture (A)")

    def _on_ruler_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.ruler.getViewBox().mapSceneToView(event.scenePos())
        self.seek(max(0.0, point.x()))

    def _show_playhead(self, seconds: float) -> None:
        self.ruler_playhead.setValue(seconds)
        for view in self.views.values():
            view.set_playhead(seconds)
        minutes, rest = divmod(seconds, 60)
        self.time_label.setText(f" {int(minutes)}:{rest:06.3f} ")

    def _tick(self) -> None:
        if not self.engine.available:
            return
        rate = self.session.sample_rate
        state = str(self.engine.playback_state)
        if rate and (self.engine.is_playing or state != self._last_playback_state):
            if state == "finished":
                # Reached the end by itself: rewind, as most players do.
                self.playhead = 0.0
            elif state != "stopped":
                self.playhead = self.engine.position_frames() / rate
            self._show_playhead(self.playhead)
        if state != self._last_playback_state:
            self._last_playback_state = state
            self.play_action.setText("Pause" if state == "playing" else "Play")
            error = self.engine.playback_error
            if state == "failed" and error:
                self._report_error("Playback stopped", error)
        status = self.engine.status()
        under = int(status.underflows)
        over = int(status.overflows)
        self.xrun_label.setText(f"Dropouts: {under + over}" if under or over else "")

    def rescan_devices(self) -> None:
        if self.record_panel.is_recording:
            self.statusBar().showMessage("Stop recording before rescanning devices.", 5000)
            return
        self.stop(rewind=False)
        self.engine.rescan()
        self._fill_output_devices()
        self.record_panel.refresh_devices(str(self.settings.value("input_device", "")))
        self.live_panel.refresh_devices()
        self._update_audio_status()
        count = len(self.engine.output_devices()) if self.engine.available else 0
        self.statusBar().showMessage(f"Found {count} output device(s).", 5000)

    # ---------------------------------------------------------------- recording
    def _on_recording_stopped(self, path: str) -> None:
        if Path(path).exists():
            self._start_load(Path(path), kind="recording")

    # ---------------------------------------------------------------- export
    def export_dialog(self, selected: list[Track] | None = None) -> ExportDialog | None:
        tracks = self.session.tracks
        if not tracks:
            self.statusBar().showMessage("Nothing to export: open or record something first.", 5000)
            return None
        dialog = ExportDialog(
            tracks,
            selected if selected else tracks,
            Path(str(self.settings.value("export_folder", str(Path.home())))),
            str(self.settings.value("export_template", DEFAULT_TEMPLATE)),
            str(self.settings.value("export_format", "wav")),
            self,
        )
        dialog.accepted.connect(lambda d=dialog: self._run_export(d))
        self._dialogs.append(dialog)
        dialog.finished.connect(lambda _r, d=dialog: self._dialogs.remove(d))
        dialog.open()
        return dialog

    def _run_export(self, dialog: ExportDialog) -> Task | None:
        try:
            items, notes = dialog.plan()
        except ValueError as exc:
            self._report_error("Export", str(exc))
            return None
        self.settings.setValue("export_folder", dialog.folder_edit.text())
        self.settings.setValue("export_template", dialog.template_edit.text())
        self.settings.setValue("export_format", dialog.format_box.currentData())
        for note in notes:
            self.statusBar().showMessage(note, 8000)
        if not items:
            return None
        task = Task(export_tracks, items, name="Export")
        task.returned.connect(
            lambda paths: self.statusBar().showMessage(
                f"Exported {len(paths)} file(s) to {paths[0].parent}", 8000
            )
        )
        task.errored.connect(lambda exc: self._report_error("Export failed", exc))
        self.task_bar.track(task)
        self.last_export_task = task
        return task.start()

    # ---------------------------------------------------------------- recent files
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember_recent(self, path: Path) -> None:
        recent = [p for p in self.recent_files() if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("recent_files", recent[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        menu: QMenu = self.recent_menu
        menu.clear()
        recent = self.recent_files()
        for path in recent:
            action = menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        if not recent:
            menu.addAction("(none)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction(
                "Clear",
                lambda: (self.settings.setValue("recent_files", []), self._rebuild_recent_menu()),
            )

    # ---------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    # ---------------------------------------------------------------- misc
    def _show_log(self) -> None:
        QApplication.clipboard().setText(str(log_file()))
        QMessageBox.information(
            self,
            "Log",
            f"The log is kept in\n{log_file()}\n(the path was copied to the clipboard).",
        )

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "Audio Workbench",
            "Audio Workbench: separation, speaker verification, live demos, "
            "training and architecture search.",
        )

    def closeEvent(self, event) -> None:  # noqa: N802
        self._closed = True
        if self.record_panel.is_recording:
            self.record_panel.stop()
        self.live_panel.shutdown()
        if self.live_pipeline is not None:
            self.live_pipeline.close()
        if self.engine.available:
            self.engine.stop()
        self.task_bar.cancel_all()
        for task in self._detail_tasks.values():
            task.cancel()
        QThreadPool.globalInstance().waitForDone(5000)
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.sync()
        super().closeEvent(event)
