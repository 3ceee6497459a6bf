"""The Jobs panel launches a real `workbench train` process and shows its curve."""

from __future__ import annotations

from pathlib import Path

from workbench.views.jobs_panel import JobsPanel


def test_panel_launches_a_training_job_and_plots_it(qtbot, tmp_path: Path) -> None:
    panel = JobsPanel(tmp_path / "runs")
    qtbot.addWidget(panel)
    panel.set_catalog({"conv_tasnet": {"task": "separation", "presets": ["paper", "small"]}})
    assert panel.preset_box.currentText() == "small"
    panel.steps_box.setValue(2)
    panel.minutes_box.setValue(5)
    run = panel.launch_from_form()
    qtbot.waitUntil(lambda: run.state in ("finished", "failed", "crashed"), timeout=240000)
    assert run.state == "finished", run.log_tail()
    panel.refresh()
    xs, ys = panel.train_curve.getData()
    assert xs is not None and len(xs) >= 1
    assert (run.path / "best.pt").exists()
    assert panel.use_button.isEnabled()
    with qtbot.waitSignal(panel.modelChosen, timeout=5000) as chosen:
        panel.use_button.click()
    assert chosen.args[0].endswith("best.pt")
    panel.timer.stop()
