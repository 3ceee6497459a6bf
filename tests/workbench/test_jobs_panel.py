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


def test_trial_table_and_pareto_front(qtbot, tmp_path: Path) -> None:
    import json

    from workbench.jobs.runs import write_json_atomic
    from workbench.views.jobs_panel import pareto_points

    rows = [
        {"number": 0, "state": "COMPLETE", "objectives": {"eer": 0.10, "parameters": 3e6}},
        {"number": 1, "state": "COMPLETE", "objectives": {"eer": 0.20, "parameters": 1e6}},
        {"number": 2, "state": "COMPLETE", "objectives": {"eer": 0.25, "parameters": 2e6}},
        {"number": 3, "state": "FAIL", "objectives": {}},
    ]
    quality, size, points, front = pareto_points(rows)
    assert (quality, size) == ("eer", "parameters")
    assert len(points) == 3
    assert front.tolist() == [[1e6, 0.20], [3e6, 0.10]]  # trial 2 is dominated by trial 1

    run = tmp_path / "runs" / "speechnas-1"
    run.mkdir(parents=True)
    write_json_atomic(run / "job.json", {"argv": ["x"], "kind": "search", "pid": 0})
    write_json_atomic(run / "status.json", {"state": "finished", "fraction": 1.0})
    (run / "trials.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    panel = JobsPanel(tmp_path / "runs")
    qtbot.addWidget(panel)
    panel.refresh()
    assert panel.trial_table.rowCount() == 4
    assert panel.trial_table.item(3, 1).text() == "FAIL"
    xs, ys = panel.front_curve.getData()
    assert list(xs) == [1e6, 3e6]
    panel.timer.stop()
