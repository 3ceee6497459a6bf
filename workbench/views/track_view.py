"""One track on screen: a header (mute, solo, gain, export, close), its waveform and spectrogram.

All plots share the x axis (seconds) with the window's time ruler, so zoom, pan and the
playhead are synced. The waveform redraws from the peak pyramid on every range change (cost
proportional to the pixel width); the spectrogram shows an overview image and, when the user
zooms in, a detailed image of the visible range that the window computes in a worker.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
)

from workbench.dsp.peaks import PeakPyramid
from workbench.dsp.spectrogram import Spectrogram
from workbench.session import Track
from workbench.views.theme import waveform_color

WAVE_HEIGHT = 110
SPECTROGRAM_HEIGHT = 170
#: Left-axis width shared with the window's time ruler so that time lines up on screen.
AXIS_WIDTH = 56
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "CET-L1")


class TrackView(QFrame):
    """Header + waveform + spectrogram of one :class:`~workbench.session.Track`.

    Signals:
        seekRequested(seconds): the user clicked a position.
        muteToggled(bool), soloToggled(bool), gainChanged(linear_gain)
        exportRequested(), closeRequested()
        detailRequested(start_seconds, stop_seconds): the visible range is zoomed in enough
            that a detailed spectrogram would show more than the overview.
    """

    seekRequested = Signal(float)
    muteToggled = Signal(bool)
    soloToggled = Signal(bool)
    gainChanged = Signal(float)
    exportRequested = Signal()
    closeRequested = Signal()
    detailRequested = Signal(float, float)

    def __init__(self, track: Track, pyramid: PeakPyramid, theme: str = "dark") -> None:
        super().__init__()
        self.track = track
        self.pyramid = pyramid
        self.overview: Spectrogram | None = None
        self._colormap = "inferno"
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName(f"track-{track.id}")

        header = QHBoxLayout()
        header.setContentsMargins(4, 2, 4, 2)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.mute_button = self._tool_button("M", "Mute this track", checkable=True)
        self.solo_button = self._tool_button("S", "Solo this track", checkable=True)
        self.gain_box = QDoubleSpinBox()
        self.gain_box.setRange(-60.0, 12.0)
        self.gain_box.setSuffix(" dB")
        self.gain_box.setSingleStep(1.0)
        self.gain_box.setToolTip("Playback and export gain of this track")
        self.gain_box.setValue(20 * np.log10(max(track.gain, 1e-3)))
        self.export_button = self._tool_button("Export…", "Export this track to a file")
        self.close_button = self._tool_button("✕", "Close this track")
        self.mute_button.setChecked(track.muted)
        self.solo_button.setChecked(track.solo)
        self.mute_button.toggled.connect(self.muteToggled)
        self.solo_button.toggled.connect(self.soloToggled)
        self.gain_box.valueChanged.connect(lambda db: self.gainChanged.emit(10 ** (db / 20)))
        self.export_button.clicked.connect(self.exportRequested)
        self.close_button.clicked.connect(self.closeRequested)
        header.addWidget(self.title, 1)
        for widget in (
            self.mute_button,
            self.solo_button,
            QLabel("Gain"),
            self.gain_box,
            self.export_button,
            self.close_button,
        ):
            header.addWidget(widget)

        self.wave_plot = pg.PlotWidget()
        self.wave_plot.setFixedHeight(WAVE_HEIGHT)
        self.wave_plot.setMouseEnabled(x=True, y=False)
        self.wave_plot.setYRange(-1.05, 1.05, padding=0)
        self.wave_plot.hideButtons()
        self.wave_plot.setLabel("left", "amp")
        self.wave_plot.getAxis("bottom").setStyle(showValues=False)
        self.wave_curve = self.wave_plot.plot(pen=pg.mkPen(waveform_color(theme), width=1))
        self.wave_curve.setClipToView(False)

        self.spec_plot = pg.PlotWidget()
        self.spec_plot.setFixedHeight(SPECTROGRAM_HEIGHT)
        self.spec_plot.setMouseEnabled(x=True, y=False)
        self.spec_plot.hideButtons()
        self.spec_plot.setLabel("left", "Hz")
        self.spec_image = pg.ImageItem()
        self.detail_image = pg.ImageItem()
        self.detail_image.setZValue(1)
        self.spec_plot.addItem(self.spec_image)
        self.spec_plot.addItem(self.detail_image)
        for plot in (self.wave_plot, self.spec_plot):
            # Images and curves must not re-fit the vertical axis: it is fixed per plot.
            plot.getViewBox().enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
        self.spec_plot.setYRange(0, track.sample_rate / 2, padding=0)

        duration = max(track.duration, 1e-3)
        for plot in (self.wave_plot, self.spec_plot):
            plot.getAxis("left").setWidth(AXIS_WIDTH)
            plot.setLimits(xMin=0.0, xMax=duration, minXRange=min(0.001, duration))
            plot.getPlotItem().getViewBox().setDefaultPadding(0.0)
            plot.scene().sigMouseClicked.connect(lambda event, p=plot: self._on_click(p, event))
        self.spec_plot.setLimits(yMin=0.0, yMax=track.sample_rate / 2)
        self.wave_playhead = pg.InfiniteLine(0, pen=pg.mkPen("#ff5252", width=1))
        self.spec_playhead = pg.InfiniteLine(0, pen=pg.mkPen("#ff5252", width=1))
        self.wave_plot.addItem(self.wave_playhead)
        self.spec_plot.addItem(self.spec_playhead)

        self._range_timer = QTimer(self)
        self._range_timer.setSingleShot(True)
        self._range_timer.setInterval(200)
        self._range_timer.timeout.connect(self._maybe_request_detail)
        self.wave_plot.getViewBox().sigXRangeChanged.connect(self._on_x_range)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(1)
        layout.addLayout(header)
        layout.addWidget(self.wave_plot)
        layout.addWidget(self.spec_plot)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.update_title()
        self.redraw_waveform()

    @staticmethod
    def _tool_button(text: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(checkable)
        return button

    # -- public -------------------------------------------------------------------------
    def update_title(self) -> None:
        t = self.track
        minutes, seconds = divmod(t.duration, 60)
        self.title.setText(
            f"<b>{t.name}</b> &nbsp; <span style='color:gray'>{t.kind} · {t.sample_rate} Hz · "
            f"{t.channels} ch · {int(minutes)}:{seconds:06.3f}</span>"
        )

    def link_x(self, master: pg.PlotWidget) -> None:
        """Share the x range with ``master`` (the time ruler), both ways, exactly.

        pyqtgraph's own ``setXLink`` lines views up by screen position, which shifts the
        range when the plots' axes differ in width; copying the range keeps every track on
        exactly the same seconds.
        """
        self._master = master
        master.getViewBox().sigXRangeChanged.connect(self._follow_master)
        for plot in (self.wave_plot, self.spec_plot):
            plot.getViewBox().sigXRangeChanged.connect(self._lead_master)
        self._follow_master()

    def _follow_master(self, *_: object) -> None:
        x0, x1 = self._master.getViewBox().viewRange()[0]
        for plot in (self.wave_plot, self.spec_plot):
            v0, v1 = plot.getViewBox().viewRange()[0]
            if abs(v0 - x0) > 1e-9 or abs(v1 - x1) > 1e-9:
                plot.setXRange(x0, x1, padding=0)

    def _lead_master(self, viewbox: object, ranges: object) -> None:
        x0, x1 = ranges
        m0, m1 = self._master.getViewBox().viewRange()[0]
        if abs(m0 - x0) > 1e-9 or abs(m1 - x1) > 1e-9:
            self._master.setXRange(x0, x1, padding=0)

    def set_playhead(self, seconds: float) -> None:
        self.wave_playhead.setValue(seconds)
        self.spec_playhead.setValue(seconds)

    def set_colormap(self, name: str) -> None:
        self._colormap = name
        cmap = pg.colormap.get(name)
        for image in (self.spec_image, self.detail_image):
            image.setColorMap(cmap)

    def set_theme(self, theme: str) -> None:
        background = pg.getConfigOption("background")
        for plot in (self.wave_plot, self.spec_plot):
            plot.setBackground(background)
        self.wave_curve.setPen(pg.mkPen(waveform_color(theme), width=1))

    def set_spectrogram(self, spectrogram: Spectrogram, detail: bool = False) -> None:
        """Show an overview (``detail=False``) or a zoomed-in detail image."""
        image_item = self.detail_image if detail else self.spec_image
        if not detail:
            self.overview = spectrogram
            self.detail_image.clear()
        top = float(np.max(spectrogram.image)) if spectrogram.image.size else 0.0
        image_item.setImage(spectrogram.image, autoLevels=False, levels=(top - 90.0, top))
        image_item.setColorMap(pg.colormap.get(self._colormap))
        image_item.setRect(
            spectrogram.start_time,
            0.0,
            max(spectrogram.stop_time - spectrogram.start_time, 1e-6),
            spectrogram.max_frequency,
        )

    def visible_range(self) -> tuple[float, float]:
        x0, x1 = self.wave_plot.getViewBox().viewRange()[0]
        return max(0.0, x0), min(self.track.duration, x1)

    def redraw_waveform(self) -> None:
        x0, x1 = self.visible_range()
        rate = self.track.sample_rate
        width = max(self.wave_plot.width(), 200)
        positions, values = self.pyramid.envelope(
            int(x0 * rate), int(np.ceil(x1 * rate)) + 1, max_points=width
        )
        self.wave_curve.setData(positions / rate, values)

    # -- internals -------------------------------------------------------------------------
    def _on_x_range(self, *_: object) -> None:
        self.redraw_waveform()
        self._range_timer.start()

    def _maybe_request_detail(self) -> None:
        if self.overview is None:
            return
        x0, x1 = self.visible_range()
        full = self.overview.stop_time - self.overview.start_time
        columns = self.overview.image.shape[0]
        visible_columns = columns * (x1 - x0) / max(full, 1e-9)
        # The overview already has a column per pixel or better: nothing to add.
        if visible_columns >= self.spec_plot.width() or x1 <= x0:
            self.detail_image.clear()
            return
        self.detailRequested.emit(x0, x1)

    def _on_click(self, plot: pg.PlotWidget, event: object) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        point = plot.getViewBox().mapSceneToView(event.scenePos())
        seconds = float(np.clip(point.x(), 0.0, self.track.duration))
        self.seekRequested.emit(seconds)

    def resizeEvent(self, event: object) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self.redraw_waveform()
