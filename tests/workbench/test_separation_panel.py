"""Separation from the window: panel -> worker -> stem tracks; the batch queue writes files.

These run the real (untrained, small) default models through the real facade.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QSettings, QThreadPool

from workbench.app import create_window


@pytest.fixture
def window(qtbot, tmp_path: Path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = create_window(settings=settings)
    qtbot.addWidget(win)
    yield win
    win.close()
    assert QThreadPool.globalInstance().waitForDone(10000)


def _mixture(path: Path, rate: int = 16000, channels: int = 2, seconds: float = 1.0) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    data = np.stack([tone + 0.05 * rng.standard_normal(len(t)) for _ in range(channels)], 1)
    sf.write(path, data.astype(np.float32), rate, subtype="PCM_16")


def test_tuss_prompts_with_repeats_become_stem_tracks(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "mix.wav"
    _mixture(path)
    window.open_paths([path])
    qtbot.waitUntil(lambda: len(window.session) == 1, timeout=20000)
    panel = window.separation_panel
    qtbot.waitUntil(lambda: bool(panel.bundles), timeout=60000)
    panel.family_box.setCurrentIndex(panel.family_box.findData("tuss"))
    panel.set_prompts(["speech", "speech", "sfx"])
    panel.move_selected(0)  # no selection: a no-op
    with qtbot.waitSignal(panel.separateRequested, timeout=5000):
        panel.separate_button.click()
    task = window.separation_task
    with qtbot.waitSignal(task.finished, timeout=120000):
        pass
    assert task.state == "done", task.error
    qtbot.waitUntil(lambda: len(window.session) == 5, timeout=10000)
    mixture = window.session.mixture
    stems = [t for t in window.session if t.kind == "stem"]
    residual = next(t for t in window.session if t.kind == "residual")
    assert [t.name.split(" · ")[1] for t in stems] == ["1_speech", "2_speech", "3_sfx"]
    for track in [*stems, residual]:
        assert track.samples.shape == mixture.samples.shape
        assert track.sample_rate == mixture.sample_rate
        assert track.muted and track.parent_id == mixture.id
    total = sum(t.samples for t in stems) + residual.samples
    np.testing.assert_allclose(total, mixture.samples, atol=1e-5)
    # Solo a stem: playback now hears only it; A/B back to the mixture.
    window.views[stems[0].id].solo_button.click()
    assert window.session.audible_tracks() == [stems[0]]
    window.ab_action.trigger()
    assert window.session.audible_tracks() == [mixture]


def test_mtass_outputs_and_cancel(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "mix.wav"
    _mixture(path, rate=22050, channels=1, seconds=3.0)
    window.open_paths([path])
    qtbot.waitUntil(lambda: len(window.session) == 1, timeout=20000)
    panel = window.separation_panel
    panel.family_box.setCurrentIndex(panel.family_box.findData("mtass"))
    panel.residual_box.setChecked(False)
    request = panel.request()
    task = window.separate(request)
    with qtbot.waitSignal(task.finished, timeout=120000):
        pass
    names = [t.name.split(" · ")[1] for t in window.session if t.kind == "stem"]
    assert names == ["speech", "music", "noise"]
    # A cancelled separation adds nothing.
    before = len(window.session)
    task = window.separate(request)
    task.cancel()
    with qtbot.waitSignal(task.finished, timeout=120000):
        pass
    assert task.state == "cancelled"
    qtbot.wait(200)
    assert len(window.session) == before


def test_batch_queue_writes_every_file(qtbot, window, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _mixture(folder / "a.wav", channels=1)
    _mixture(folder / "b.flac", rate=8000, channels=2)
    (folder / "notes.txt").write_text("skip me")
    panel = window.separation_panel
    panel.family_box.setCurrentIndex(panel.family_box.findData("mtass"))
    batch = window.batch_panel
    out = tmp_path / "out"
    batch.folder_edit.setText(str(out))
    assert batch.add_paths([folder]) == 2
    with qtbot.waitSignal(batch.finished, timeout=180000):
        batch.start()
    assert batch.states == ["done", "done"]
    written_a = sorted(p.name for p in (out / "a").iterdir())
    assert written_a == ["01_speech.wav", "02_music.wav", "03_noise.wav", "04_residual.wav"]
    data, rate = sf.read(out / "b" / "02_music.wav", always_2d=True)
    assert rate == 8000 and data.shape == (8000, 2)
    # Running the same files again never overwrites: new names get a number.
    batch.add_paths([folder / "a.wav"])
    with qtbot.waitSignal(batch.finished, timeout=180000):
        batch.start()
    assert (out / "a" / "01_speech (2).wav").exists()
