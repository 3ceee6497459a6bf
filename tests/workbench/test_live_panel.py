"""The live panel driving a real pipeline on the virtual ALSA card (pytest-qt).

The card has no clock (tests/alsa_virtual.py), so audio arrives far faster than real time
and the panel's timer sees new spectrogram columns on its first ticks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PySide6.QtCore import Qt

from tests import alsa_virtual
from workbench.audio.engine import PORTAUDIO_MISSING, AudioEngine, EngineConfig
from workbench.live import LibraryModels, LivePipeline
from workbench.speakers_db import EnrollmentClip, SpeakerDatabase
from workbench.views.live_panel import LEVELS, LivePanel

TEST_CONFIG = EngineConfig(latency=0.5)


def _python_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    torch.set_num_threads(1)
    before = _python_threads()
    yield
    deadline = time.monotonic() + 5.0
    while (left := _python_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


@pytest.fixture(scope="module")
def models() -> LibraryModels:
    return LibraryModels()


@pytest.fixture
def engine() -> Iterator[AudioEngine]:
    engine = AudioEngine(TEST_CONFIG)
    if not engine.available and engine.unavailable_reason == PORTAUDIO_MISSING:
        pytest.skip(engine.unavailable_reason)
    assert engine.available, engine.unavailable_reason
    yield engine
    engine.close()


def _panel(qtbot, engine: AudioEngine, models: LibraryModels, folder: Path, **kwargs) -> LivePanel:
    panel = LivePanel(engine, LivePipeline(engine, models), output_folder=folder, **kwargs)
    qtbot.addWidget(panel)
    panel.rate_box.setCurrentIndex(panel.rate_box.findData(16000))
    return panel


@pytest.mark.audio
def test_panel_starts_live_enhancement_updates_the_spectrograms_and_stops(
    qtbot, engine: AudioEngine, models: LibraryModels, tmp_path: Path
) -> None:
    alsa_virtual.installed().set_capture(
        np.random.default_rng(8).integers(-12000, 12000, alsa_virtual.RATE).astype(np.int16)
    )
    panel = _panel(qtbot, engine, models, tmp_path, speakers_db=tmp_path / "absent.sqlite3")
    assert not (tmp_path / "absent.sqlite3").exists()  # listing speakers created nothing
    assert panel.input_box.currentData() == engine.default_input().index
    assert panel.speaker_box.count() == 1 and panel.speaker_box.currentData() == ""
    assert panel.output_plot.isHidden()  # no model: input spectrogram only
    panel.family_box.setCurrentIndex(panel.family_box.findData("live"))
    assert not panel.output_plot.isHidden() and panel.prompt_box.isHidden()
    assert panel.source_box.currentData() == "speech"
    panel.save_output_box.setChecked(True)

    with qtbot.waitSignal(panel.liveStarted, timeout=5000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.is_live and panel.start_button.text().startswith("■")
    assert not panel.family_box.isEnabled() and panel.timer.isActive()
    floor = panel.input_image.image.copy()
    assert floor.shape[1] == 257 and np.all(floor == LEVELS[0])

    # The first processed columns are silent (the model's delay), so wait for sound.
    qtbot.waitUntil(
        lambda: (
            (panel.input_image.image > LEVELS[0]).any()
            and (panel.output_image.image > LEVELS[0]).any()
        ),
        timeout=30000,
    )
    assert panel.image_updates["input"] > 0 and panel.image_updates["output"] > 0
    qtbot.waitUntil(lambda: panel.processing_label.text().startswith("Processing "), timeout=30000)
    for image in (panel.input_image.image, panel.output_image.image):
        assert image.shape == floor.shape and (image > LEVELS[0]).any()
    from models.bundles import default_bundle

    untrained = not default_bundle("live").trained
    assert ("UNTRAINED" in panel.model_label.text()) is untrained
    assert "speech" in panel.model_label.text()
    assert panel.latency_label.text().startswith("Latency ")
    assert panel.dropouts_label.text().startswith("Dropouts ")
    assert "Recording the input to" in panel.recording_label.text()

    with qtbot.waitSignal(panel.liveStopped, timeout=30000) as stopped:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    input_path, output_path = (Path(p) for p in stopped.args)
    assert input_path.parent == tmp_path and sf.info(input_path).samplerate == 16000
    assert output_path.name.endswith("-live.wav") and sf.info(output_path).frames > 0
    assert not panel.is_live and not panel.timer.isActive()
    assert panel.family_box.isEnabled() and panel.start_button.text().startswith("▶")
    assert engine.block_stream is None


@pytest.mark.audio
def test_panel_plots_rolling_scores_with_the_threshold_line(
    qtbot, engine: AudioEngine, models: LibraryModels, tmp_path: Path
) -> None:
    from models.bundles import default_bundle

    speaker_model = default_bundle("speaker")
    database_path = tmp_path / "speakers.sqlite3"
    with SpeakerDatabase(database_path) as database:
        embedding = np.random.default_rng(9).standard_normal(speaker_model.config["embedding_dim"])
        database.enroll("grace", speaker_model.name, [EnrollmentClip(embedding, "synth", 3, 3)])
    panel = _panel(qtbot, engine, models, tmp_path, speakers_db=database_path)
    assert [panel.speaker_box.itemText(i) for i in range(panel.speaker_box.count())] == [
        "Off",
        "grace",
    ]
    panel.speaker_box.setCurrentIndex(1)
    assert panel.start()

    def plotted() -> int:
        times = panel.score_curve.getData()[0]
        return 0 if times is None else len(times)

    qtbot.waitUntil(lambda: plotted() >= 2, timeout=30000)
    assert panel.threshold_line.isVisible()
    # The shipped model's calibrated threshold, or the uncalibrated 0.5 stand-in without one.
    calibrated = speaker_model.threshold
    assert panel.threshold_line.value() == pytest.approx(0.5 if calibrated is None else calibrated)
    assert "grace: score" in panel.verify_label.text()
    assert ("threshold not calibrated" in panel.verify_label.text()) is (calibrated is None)
    times, scores = panel.score_curve.getData()
    assert np.all(np.diff(times) > 0) and np.all(np.abs(scores) <= 1.0)
    panel.stop()
    assert not panel.is_live


@pytest.mark.audio
def test_panel_reports_failures_and_stays_usable(
    qtbot, engine: AudioEngine, models: LibraryModels, tmp_path: Path
) -> None:
    blocker_file = tmp_path / "not-a-folder"
    blocker_file.write_text("x")
    panel = _panel(qtbot, engine, models, blocker_file / "live")
    with qtbot.waitSignal(panel.liveFailed, timeout=5000) as failed:
        assert not panel.start()
    assert "Cannot use" in failed.args[0] and not panel.is_live
    assert panel.info_label.text() == failed.args[0]

    # A bundle that does not exist fails while loading: reported, devices released.
    panel.output_folder = tmp_path
    panel.set_bundles(
        [{"name": "gone", "family": "mtass", "trained": True, "path": str(tmp_path / "gone")}]
    )
    panel.family_box.setCurrentIndex(panel.family_box.findData("mtass"))
    assert panel.bundle_box.currentText() == "gone"
    with (
        qtbot.waitSignal(panel.liveFailed, timeout=30000) as failed,
        qtbot.waitSignal(panel.liveStopped, timeout=30000) as stopped,
    ):
        assert panel.start()
    assert "could not be loaded" in failed.args[0] and "gone" in failed.args[0]
    assert stopped.args == ["", ""]  # nothing captured, nothing left on disk
    assert not panel.is_live and panel.family_box.isEnabled()
    assert engine.block_stream is None and list(tmp_path.glob("live-*")) == []


def test_panel_without_a_pipeline_is_disabled_with_a_reason(qtbot) -> None:
    engine = AudioEngine(TEST_CONFIG)
    panel = LivePanel(engine, None)
    qtbot.addWidget(panel)
    assert not panel.start_button.isEnabled() and not panel.start()
    assert "unavailable" in panel.info_label.text()
    engine.close()
