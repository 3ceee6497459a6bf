"""``workbench train`` as a program: JSON progress, SIGTERM stop, resume, clear errors.

The command runs in this process here (a start-up costs seconds); the training tests in
``tests/models/train/test_loop.py`` run it as real subprocesses (``kill -9``, torchrun).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import read_checkpoint
from tests.models.train import tiny
from workbench import cli
from workbench.jobs.runs import MetricsReader, Run


class _StopAfter(io.StringIO):
    """Standard output that sends this process SIGTERM (the app's Stop) after step ``step``.

    The signal is real and handled by the job's own handler; sending it from the progress
    line makes the stop step deterministic instead of a race with a timer.
    """

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def write(self, text: str) -> int:
        for line in filter(None, text.splitlines()):
            event = json.loads(line)
            if event["event"] == "progress" and event["done"] == self.step:
                os.kill(os.getpid(), signal.SIGTERM)
        return super().write(text)


def test_sigterm_checkpoints_stops_and_the_same_command_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    arguments = tiny.cli_arguments("conv_tasnet", str(run_dir), "checkpoint_minutes=60")
    stdout = _StopAfter(step=2)
    handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        assert cli.main([*arguments, "--max-steps", "100000"]) == 0
    assert signal.getsignal(signal.SIGTERM) is handler  # the job put the handler back
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]

    assert lines[0]["event"] == "progress" and 0 < lines[0]["fraction"] < 1
    assert "eta_seconds" in lines[0] and "message" in lines[0]
    assert lines[-1]["event"] == "stopped"
    run = Run(run_dir)
    assert run.state == "stopped"
    stopped_step = run.status["step"]
    # The checkpoint interval is an hour: this checkpoint was written because of the signal.
    assert read_checkpoint(run_dir / "checkpoint.pt").step == stopped_step == 2
    rows = MetricsReader(run_dir / "metrics.jsonl").poll()
    assert [row["step"] for row in rows] == list(range(1, stopped_step + 1))
    assert {"step", "split", "loss", "metrics", "lr", "throughput", "wall_time"} <= set(rows[0])

    # The same command continues from the checkpoint.
    capsys.readouterr()
    assert cli.main([*arguments, "--max-steps", str(stopped_step + 2)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["done"] for e in events] == [stopped_step + 1, stopped_step + 2, stopped_step + 2]
    assert events[-1]["event"] == "finished" and run.state == "finished"
    assert (run_dir / "best.pt").exists() and (run_dir / "config.json").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_steps"] == stopped_step + 2
    assert config["resolved_model_config"]["num_repeats"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "nope"], "Unknown model 'nope'. Valid models: autospeech, conv_tasnet"),
        (["--set", "learning_rate=1"], "Unknown setting 'learning_rate'"),
        (["--set", "lr"], "Expected --set KEY=VALUE"),
        (["--set", "lr=fast"], "Setting 'lr' needs a number, got 'fast'"),
        (["--set", "model.num_blocks=2.5"], "needs an int"),
        (["--set", "model.norm=batch"], "norm must be one of"),
        (["--set", "task.margin=0.3"], "Unknown option task.margin"),
        (["--preset", "huge"], "no preset 'huge'"),
        (["--max-steps", "0"], "max_steps must be >= 1"),
        (["--data", "/no/such/corpus"], "not 'synthetic', a corpus built by"),
        (["--data", "librimix:/no/such/folder"], "check that the folder exists"),
    ],
)
def test_bad_arguments_are_clear_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    run_dir = tmp_path / "run"
    # argparse keeps the last --model, so ["--model", "nope"] replaces conv_tasnet.
    base = ["train", "--model", "conv_tasnet", "--run", str(run_dir)]
    assert cli.main(base + extra) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists() or not (run_dir / "status.json").exists()


def test_data_of_the_wrong_family_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = str(tmp_path / "run")
    assert (
        cli.main(["train", "--model", "conv_tasnet", "--run", run_dir, "--data", str(tmp_path)])
        == 2
    )
    assert "not 'synthetic', a corpus built by" in capsys.readouterr().err  # no manifest
    layout = f"mtass:{tmp_path}"
    assert cli.main(["train", "--model", "conv_tasnet", "--run", run_dir, "--data", layout]) == 2
    assert "mtass holds three_way data; 'conv_tasnet' trains on speech_separation" in (
        capsys.readouterr().err
    )


def test_missing_model_for_a_new_run_and_a_changed_resume_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["train", "--run", str(tmp_path / "empty")]) == 2
    assert "--model is required" in capsys.readouterr().err

    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    arguments = tiny.cli_arguments("conv_tasnet", str(run_dir))
    assert cli.main([*arguments, "--max-steps", "1"]) == 0
    status = (run_dir / "status.json").read_text()
    capsys.readouterr()
    assert cli.main([*arguments, "--set", "batch_size=3"]) == 2
    assert "batch_size: run has 2, command gives 3" in capsys.readouterr().err
    assert (run_dir / "status.json").read_text() == status  # the real run is untouched


def test_missing_run_folder_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--model", "tuss"])
    assert exit_info.value.code == 2
    assert "--run" in capsys.readouterr().err
