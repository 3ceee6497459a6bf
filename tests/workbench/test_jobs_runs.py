"""Run folders as the app reads them: metrics following, states, launching a real job."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from workbench.jobs.runs import MetricsReader, Run, launch, list_runs


def test_metrics_reader_follows_appends_and_restarts_on_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reader = MetricsReader(path)
    assert reader.poll() == []
    path.write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2')
    assert [r["step"] for r in reader.poll()] == [1]
    with open(path, "a") as handle:
        handle.write("}\n")
    assert [r["step"] for r in reader.poll()] == [2]
    tmp = tmp_path / "m.tmp"
    tmp.write_text(json.dumps({"step": 1}) + "\n")
    os.replace(tmp, path)
    reader.poll()
    assert [r["step"] for r in reader.rows] == [1]


def test_launch_runs_a_detached_process_and_reads_its_state(tmp_path: Path) -> None:
    script = (
        "import json, os, sys, pathlib\n"
        "run = pathlib.Path(sys.argv[1])\n"
        "(run / 'metrics.jsonl').write_text(json.dumps({'step': 1, 'split': 'train', "
        "'loss': 0.5}) + '\\n')\n"
        "(run / 'status.json').write_text(json.dumps({'state': 'finished', "
        "'pid': os.getpid(), 'fraction': 1.0}))\n"
        "print('hello from the job')\n"
    )
    run_dir = tmp_path / "runs" / "job1"
    run = launch(run_dir, [sys.executable, "-c", script, str(run_dir)], kind="train")
    deadline = time.monotonic() + 60
    while run.status.get("state") != "finished" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.state == "finished"
    while "hello" not in run.log_tail() and time.monotonic() < deadline:
        time.sleep(0.1)  # the log is flushed when the process exits
    assert "hello from the job" in run.log_tail()
    assert [r.name for r in list_runs(tmp_path / "runs")] == ["job1"]
    assert MetricsReader(run_dir / "metrics.jsonl").poll()[0]["loss"] == 0.5


def test_a_dead_running_job_reads_as_crashed(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"argv": ["x"], "pid": 999999}))
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "pid": 999999}))
    assert Run(tmp_path).state == "crashed"
    assert not Run(tmp_path).stop()
