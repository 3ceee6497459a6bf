"""Enrol, verify, identify and calibrate from the Speakers panel (real service, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workbench.test_speakers_service import write_trials, write_voices
from workbench.audio.engine import AudioEngine
from workbench.speaker_tasks import speaker_call
from workbench.speakers_db import SpeakerDatabase
from workbench.views.speakers_panel import SpeakersPanel
from workbench.views.task_bar import TaskBar


@pytest.fixture
def panel(qtbot, tmp_path: Path):
    engine = AudioEngine()
    bar = TaskBar()
    widget = SpeakersPanel(speaker_call, engine, bar, str(tmp_path / "speakers.sqlite3"))
    qtbot.addWidget(widget)
    qtbot.addWidget(bar)
    qtbot.waitUntil(
        lambda: widget.last_task is None or not widget.last_task.is_running, timeout=60000
    )
    yield widget
    engine.close()


def _finish(qtbot, task) -> None:
    with qtbot.waitSignal(task.finished, timeout=120000):
        pass
    assert task.state == "done", task.error


def test_enrol_verify_identify_from_the_panel(qtbot, panel, tmp_path: Path) -> None:
    voices = write_voices(tmp_path / "voices", ("ann", "bob"), count=4)
    for name in ("ann", "bob"):
        panel.name_edit.setText(name)
        panel.add_clips(voices[name][:3])
        _finish(qtbot, panel.enroll())
        assert panel.clip_paths == []
    qtbot.waitUntil(lambda: panel.claim_box.count() == 2, timeout=60000)
    with SpeakerDatabase(tmp_path / "speakers.sqlite3") as db:
        assert db.names() == ["ann", "bob"]
    panel.claim_box.setCurrentText("ann")
    panel.test_edit.setText(str(voices["ann"][3]))
    _finish(qtbot, panel.verify())
    decision = panel.last_result
    assert "score" in panel.decision_label.text()
    assert decision.margin == pytest.approx(decision.score - decision.threshold)
    _finish(qtbot, panel.identify())
    ranking = panel.last_result
    assert ranking[0][0] == "ann" and panel.ranking_list.count() == 2

    trials = tmp_path / "voices" / "trials.txt"
    write_trials(trials, voices)
    panel.trials_edit.setText(str(trials))
    panel.far_box.setValue(10.0)
    _finish(qtbot, panel.calibrate())
    assert "EER" in panel.calibration_label.text()
    xs, _ = panel.det_curve.getData()
    assert xs is not None and len(xs) > 0

    _finish(qtbot, panel.remove("bob"))
    qtbot.waitUntil(lambda: panel.claim_box.count() == 1, timeout=60000)
