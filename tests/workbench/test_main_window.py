"""The main window driven through qtbot: open, draw, play, stop, export, settings, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QThreadPool, QUrl
from PySide6.QtGui import QDropEvent

from workbench.app import create_window


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    win = create_window(settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    assert QThreadPool.globalInstance().waitForDone(5000)


def _tone(path: Path, rate: int = 16000, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    data = np.stack([0.5 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], 1)
    sf.write(path, data.astype(np.float32), rate, subtype="PCM_16")
    return data


def _wait_idle(qtbot, window) -> None:
    qtbot.waitUntil(lambda: not window.task_bar.tasks, timeout=20000)


def test_open_draws_waveform_and_spectrogram(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    _tone(path, channels=2)
    window.open_paths([str(path)])
    qtbot.waitUntil(lambda: len(window.session) == 1, timeout=20000)
    _wait_idle(qtbot, window)
    track = window.session.tracks[0]
    assert track.channels == 2 and track.sample_rate == 16000
    view = window.views[track.id]
    xs, ys = view.wave_curve.getData()
    assert len(xs) > 0 and np.max(np.abs(ys)) > 0.3
    assert view.overview is not None
    assert view.spec_image.image is not None and view.spec_image.image.shape[1] == 513
    assert window.recent_files()[0] == str(path)


def test_bad_file_shows_error_and_app_keeps_running(qtbot, window, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    good = tmp_path / "good.wav"
    _tone(good)
    errors: list[str] = []
    import workbench.views.main_window as main_window

    original = main_window.show_error

    def capture(parent, title, error):
        errors.append(str(error))
        return original(parent, title, error)

    main_window.show_error = capture
    try:
        window.open_paths([str(bad), str(good)])
        qtbot.waitUntil(lambda: len(window.session) == 1 and bool(errors), timeout=20000)
    finally:
        main_window.show_error = original
    assert "not an audio file" in errors[0]
    assert bad.read_text() == "not audio"


def test_drop_folder_opens_every_audio_file(qtbot, window, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    _tone(folder / "a.wav")
    _tone(folder / "b.flac")
    (folder / "readme.txt").write_text("x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    qtbot.waitUntil(lambda: len(window.session) == 2, timeout=20000)
    assert sorted(t.name for t in window.session) == ["a", "b"]


def test_zoom_pan_and_seek_keep_views_in_sync(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    _tone(path, seconds=4.0)
    window.open_paths([path])
    qtbot.waitUntil(lambda: len(window.session) == 1, timeout=20000)
    view = next(iter(window.views.values()))
    window.zoom_fit()
    window.zoom(0.5)
    x0, x1 = window._view_range()
    assert x1 - x0 == pytest.approx(2.0, rel=0.05)
    v0, v1 = view.wave_plot.getViewBox().viewRange()[0]
    assert (v0, v1) == pytest.approx((x0, x1), rel=1e-3)
    window.seek(1.5)
    assert view.wave_playhead.value() == pytest.approx(1.5)
    assert window.ruler_playhead.value() == pytest.approx(1.5)


def test_export_all_tracks_through_the_dialog(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "song.wav"
    original = _tone(path, channels=2)
    window.open_paths([path])
    qtbot.waitUntil(lambda: len(window.session) == 1, timeout=20000)
    _wait_idle(qtbot, window)
    out = tmp_path / "out"
    dialog = window.export_dialog()
    dialog.folder_edit.setText(str(out))
    dialog.template_edit.setText("{mixture}_{track}_export")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("flac"))
    dialog.accept()
    qtbot.waitUntil(lambda: (out / "song_song_export.flac").exists(), timeout=20000)
    _wait_idle(qtbot, window)
    back, rate = sf.read(out / "song_song_export.flac", always_2d=True)
    assert rate == 16000 and back.shape == original.shape
    assert np.max(np.abs(back - original)) < 1e-4
    # Exporting again never replaces the first file.
    dialog = window.export_dialog()
    dialog.folder_edit.setText(str(out))
    dialog.template_edit.setText("{mixture}_{track}_export")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("flac"))
    dialog.accept()
    qtbot.waitUntil(lambda: (out / "song_song_export (2).flac").exists(), timeout=20000)


def test_settings_persist(qtbot, settings, tmp_path: Path) -> None:
    win = create_window(settings=settings)
    qtbot.addWidget(win)
    win.set_fft_size(2048)
    win.set_colormap("viridis")
    win.set_theme("light")
    win.close()
    QThreadPool.globalInstance().waitForDone(5000)
    again = create_window(settings=settings)
    qtbot.addWidget(again)
    assert again.fft_size == 2048 and again.colormap == "viridis" and again.theme == "light"
    again.close()
    QThreadPool.globalInstance().waitForDone(5000)


def test_status_bar_shows_compute_device(qtbot, window) -> None:
    qtbot.waitUntil(lambda: "detecting" not in window.compute_label.text(), timeout=60000)
    assert "CPU" in window.compute_label.text() or "GPU" in window.compute_label.text()


@pytest.mark.audio
def test_play_lands_in_the_virtual_output_and_record_opens_a_track(
    qtbot, settings, tmp_path: Path
) -> None:
    from tests.alsa_virtual import RATE, find_signal, installed
    from workbench.audio.engine import AudioEngine, EngineConfig

    card = installed()
    engine = AudioEngine(EngineConfig(latency=0.5))
    win = create_window(settings=settings, engine=engine)
    qtbot.addWidget(win)
    win.show()
    try:
        path = tmp_path / "tone.wav"
        rng = np.random.default_rng(3)
        signal = (rng.integers(-20000, 20000, size=(RATE // 4, 2)) / 32768).astype(np.float32)
        sf.write(path, signal, RATE, subtype="PCM_16")
        win.open_paths([path])
        qtbot.waitUntil(lambda: len(win.session) == 1, timeout=20000)
        win.toggle_play()
        qtbot.waitUntil(lambda: str(engine.playback_state) == "finished", timeout=20000)
        engine.stop()
        played = card.read_playback().astype(np.float32) / 32768
        # The clock-less virtual card outruns the feeder now and then; those underflows are
        # written as silent blocks between the played frames, which are all there, in order.
        played = played[np.any(played != 0.0, axis=1)]
        offset = find_signal(played[:, 0], signal[:2000, 0])
        np.testing.assert_array_equal(played[offset : offset + len(signal)], signal)
        qtbot.waitUntil(lambda: win.playhead == 0.0, timeout=5000)

        known = rng.integers(-20000, 20000, size=RATE // 10).astype(np.int16)
        card.set_capture(known)
        panel = win.record_panel
        panel.output_folder = tmp_path / "recordings"
        panel.rate_box.setCurrentIndex(panel.rate_box.findData(RATE))
        panel.start()
        assert panel.is_recording
        qtbot.waitUntil(lambda: engine.recorder.frames_written >= len(known), timeout=20000)
        panel.stop()
        qtbot.waitUntil(lambda: any(t.kind == "recording" for t in win.session), timeout=20000)
        recording = next(t for t in win.session if t.kind == "recording")
        captured = np.round(recording.samples[:, 0] * 32768).astype(np.int16)
        start = find_signal(captured.astype(np.float32), known[:2000].astype(np.float32))
        np.testing.assert_array_equal(captured[start : start + len(known)], known)
        assert recording.path is not None and recording.path.exists()
    finally:
        win.close()
        engine.close()
        assert QThreadPool.globalInstance().waitForDone(5000)


_NO_AUDIO_SCRIPT = """
import json, sys
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings, QThreadPool
from workbench.app import create_window
app = QApplication([])
window = create_window([sys.argv[1]], settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
window.show()
for _ in range(400):
    app.processEvents()
    QThreadPool.globalInstance().waitForDone(20)
    if len(window.session) == 1 and not window.task_bar.tasks:
        break
window.toggle_play()  # must not crash: shows the reason instead
app.processEvents()
print(json.dumps({"tracks": len(window.session), "audio": window.audio_label.text(),
                  "tip": window.audio_label.toolTip(),
                  "record_enabled": window.record_panel.record_button.isEnabled()}))
window.close()
QThreadPool.globalInstance().waitForDone(5000)
"""


def test_window_starts_and_opens_files_without_portaudio(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    audio = tmp_path / "x.wav"
    _tone(audio)
    repo = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(repo)]), QT_QPA_PLATFORM="offscreen"
    )
    result = subprocess.run(
        [sys.executable, "-c", _NO_AUDIO_SCRIPT, str(audio), str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["tracks"] == 1
    assert state["audio"] == "Audio: unavailable"
    assert "libportaudio2" in state["tip"]
    assert state["record_enabled"] is False
