"""``workbench search``: subcommands, errors, and two real worker processes on one study."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.search import optuna_study
from tests.models.search.tiny_settings import AUTOSPEECH_TINY, SPEECHNAS_TINY, cli_arguments
from workbench.cli import build_parser, main
from workbench.commands.search import _add_not_yet_available

ROOT = Path(__file__).resolve().parents[2]


def test_search_lists_every_search(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    text = capsys.readouterr().out
    for name in ("nas-tasnet", "mitas", "speechnas", "autospeech"):
        assert name in text
    assert main(["search"]) == 2  # no search named: help, usage error


def test_a_search_whose_module_has_not_landed_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="workbench search")
    searches = parser.add_subparsers(dest="search")
    _add_not_yet_available(searches, "future-nas", "a search still to come")
    # The panel's whole command line is accepted, options included.
    args = parser.parse_args(["future-nas", "--run", "somewhere", "--max-minutes", "3"])
    assert args.run(args) == 3
    assert "'workbench search future-nas' is not yet available" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(tmp_path / "run")
    assert main(["search", "speechnas", "--run", run, "--set", "colour=3"]) == 2
    assert "Unknown setting 'colour'" in capsys.readouterr().err
    assert main(["search", "autospeech", "--run", run, "--set", "model.depth=3"]) == 2
    assert "no field 'depth'" in capsys.readouterr().err
    assert main(["search", "speechnas", "--run", run, "--worker", "--sampler", "gp"]) == 2
    assert "takes the search settings from the run folder" in capsys.readouterr().err
    assert main(["search", "speechnas", "--run", run, "--worker"]) == 2
    assert "start the main search job there first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "speechnas", "--run", run, "--max-parameters", "1", "--max-macs", "1"])


def progress_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    return lines


def test_two_worker_processes_contribute_trials_to_one_journal_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny = cli_arguments(SPEECHNAS_TINY)
    # The main job trains the supernet and keeps its study in a journal file.
    assert (
        main(
            [
                "search",
                "speechnas",
                "--run",
                str(run),
                *tiny,
                "--max-steps",
                "2",
                "--max-trials",
                "0",
                "--retrain-steps",
                "0",
                "--storage",
                "journal:study.journal",
            ]
        )  # fmt: skip
        == 0
    )
    assert progress_lines(capsys.readouterr().out)[-1]["event"] == "finished"
    assert (run / "study.journal").is_file()

    # Two real worker processes search side by side until their time share is spent.
    command = [sys.executable, "-m", "workbench", "search", "speechnas", "--run", str(run),
               "--worker", "--max-trials", "500", "--max-minutes", "0.07"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = []
    for worker in workers:
        try:
            stdout, stderr = worker.communicate(timeout=240)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 0, stderr.decode()[-3000:]
        outputs.append(stdout.decode())
    for stdout in outputs:
        lines = progress_lines(stdout)
        assert any(line["event"] == "progress" for line in lines)
        assert lines[-1]["event"] == "finished"

    rows = optuna_study.read_trials(run / "trials.jsonl")
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    by_worker = {row["worker"] for row in complete}
    assert len(by_worker) == 2, by_worker
    assert all(label.startswith("worker@") for label in by_worker)
    assert len({row["number"] for row in rows}) == len(rows)  # no trial written twice
    assert len(list((run / "workers").iterdir())) == 2

    # The main job, resumed with a trial budget the workers already met, retrains the best.
    counted = sum(row["state"] in ("COMPLETE", "PRUNED") for row in rows)
    assert (
        main(
            [
                "search",
                "speechnas",
                "--run",
                str(run),
                *tiny,
                "--max-steps",
                "2",
                "--max-trials",
                str(counted),
                "--retrain-steps",
                "1",
            ]
        )  # fmt: skip
        == 0
    )
    result = json.loads((run / "result.json").read_text())
    assert result["trials"] == counted
    best = min(row["objectives"]["eer"] for row in complete)
    assert result["chosen"][0]["search"]["eer"] == best
    assert (run / result["chosen"][0]["bundle"]).is_file()


def test_autospeech_command_runs_in_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    arguments = ["search", "autospeech", "--run", str(run), *cli_arguments(AUTOSPEECH_TINY),
                 "--max-steps", "1", "--retrain-steps", "1"]  # fmt: skip
    assert main(arguments) == 0
    assert progress_lines(capsys.readouterr().out)[-1]["event"] == "finished"
    result = json.loads((run / "result.json").read_text())
    assert result["chosen"][0]["model_name"] == "autospeech"
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
