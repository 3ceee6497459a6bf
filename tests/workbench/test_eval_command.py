"""``workbench eval`` through real subprocesses, checked against independent NumPy numbers.

Each evaluating process imports torch (seconds on a busy machine), so the separation and the
speaker evaluation run side by side in one module fixture; bad-input cases fail before torch
is imported and return at once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from models.evaluation import METRICS, StftSettings
from models.inference import Separator
from tests.models.test_evaluation import (
    RATE,
    independent_eer,
    numpy_ideal_ratio_mask,
    numpy_si_sdr,
    tiny_frozen_set,
    tiny_speaker_bundle,
    tiny_tuss_bundle,
    write_trial_list,
)
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench", "eval", *args]


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_environment(),
    )


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    paths = {
        "set": tiny_frozen_set(root / "set", count=3),
        "tuss": tiny_tuss_bundle(root / "tuss").path,
        "speaker": tiny_speaker_bundle(root / "speaker").path,
        "trials": write_trial_list(root / "voices"),
    }
    common = ("--device", "cpu", "--threads", "1")
    separation = _start(
        "separation",
        "--bundle",
        str(paths["tuss"]),
        "--set",
        str(paths["set"]),
        "--json",
        "--per-item",
        *common,
    )
    speakers = _start(
        "speakers",
        "--bundle",
        str(paths["speaker"]),
        "--trials",
        str(paths["trials"]),
        "--per-trial",
        *common,
    )
    return {**paths, "separation": _finish(separation), "speakers": _finish(speakers)}


@pytest.fixture(scope="module")
def report(workspace: dict[str, Any]) -> dict[str, Any]:
    result = workspace["separation"]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_separation_json_has_every_field(report: dict[str, Any]) -> None:
    assert report["command"] == "eval separation"
    assert report["bundle"]["model_name"] == "tuss" and report["bundle"]["trained"]
    assert report["set"]["layout"] == "frozen" and report["set"]["dataset"] == "prompted"
    assert report["counts"]["items"] == 3 and report["counts"]["skipped"] == 0
    assert report["counts"]["sources"] == sum(len(i["sources"]) for i in report["items"])
    stats_keys = {*METRICS, "num_sources"}
    assert set(report["overall"]) == stats_keys
    assert all(set(stats) == stats_keys for stats in report["per_source"].values())
    assert sum(info["num_items"] for info in report["per_task"].values()) == 3
    assert set(report["per_task"]) == {item["task"] for item in report["items"]}
    for info in report["per_task"].values():
        assert set(info["mean"]) == stats_keys and info["per_source"]
    assert report["mixture_baseline"]["si_sdri"] == 0.0
    assert report["mixture_baseline"]["si_sdr"] == report["overall"]["mixture_si_sdr"]
    assert report["oracle_irm"]["si_sdri"] > 0
    assert report["oracle_irm"]["stft"] == [StftSettings.for_rate(RATE).as_dict()]
    assert report["wall_seconds"] > 0 and report["audio_seconds"] == pytest.approx(1.5)
    assert report["settings"]["sdr_filter_length"] == 512
    for item in report["items"]:
        for source in item["sources"]:
            assert source["oracle_irm_si_sdri"] > 0
            assert source["si_sdri"] == pytest.approx(
                source["si_sdr"] - source["mixture_si_sdr"], abs=1e-9
            )


def test_separation_values_match_numpy_for_one_item(
    workspace: dict[str, Any], report: dict[str, Any]
) -> None:
    folder = workspace["set"]
    item = report["items"][0]
    files = sorted((folder / "items" / f"{int(item['id']):06d}").glob("s*_*.wav"))
    names = [source["name"] for source in item["sources"]]
    mixture = sf.read(folder / "items" / f"{int(item['id']):06d}" / "mixture.wav")[0]
    references = np.stack([sf.read(path)[0] for path in files])
    assert np.abs(references.sum(axis=0) - mixture).max() < 1e-6
    outputs = Separator(workspace["tuss"], device="cpu").separate(
        mixture.astype(np.float32), RATE, prompts=names
    )
    orders = [
        order
        for order in itertools.permutations(range(len(names)))
        if all(names[o] == names[j] for j, o in enumerate(order))
    ]
    best = max(
        orders,
        key=lambda order: sum(
            numpy_si_sdr(outputs.arrays[o], references[j]) for j, o in enumerate(order)
        ),
    )
    settings = StftSettings.for_rate(RATE)
    oracle = numpy_ideal_ratio_mask(references, settings.n_fft, settings.hop_length)
    for j, source in enumerate(item["sources"]):
        mixture_si_sdr = numpy_si_sdr(mixture, references[j])
        assert source["si_sdr"] == pytest.approx(
            numpy_si_sdr(outputs.arrays[best[j]], references[j]), abs=1e-3
        )
        assert source["mixture_si_sdr"] == pytest.approx(mixture_si_sdr, abs=1e-6)
        assert source["oracle_irm_si_sdri"] == pytest.approx(
            numpy_si_sdr(oracle[j], references[j]) - mixture_si_sdr, abs=1e-6
        )


def test_speakers_printed_eer_matches_the_printed_scores(workspace: dict[str, Any]) -> None:
    result = workspace["speakers"]
    assert result.returncode == 0, result.stderr
    trials = re.findall(r"^([01])  ([+-]\d+\.\d+)  (\S+)  (\S+)$", result.stdout, re.MULTILINE)
    assert len(trials) == 36
    labels = np.array([int(label) for label, *_ in trials])
    scores = np.array([float(score) for _, score, *_ in trials])
    printed = re.search(r"^EER: (\d+\.\d+) % at threshold (\S+)$", result.stdout, re.MULTILINE)
    assert printed is not None, result.stdout
    assert float(printed.group(1)) == pytest.approx(100 * independent_eer(scores, labels), abs=1e-3)
    assert "Trials: 36 (9 target, 27 non-target), 9 files" in result.stdout
    assert re.search(r"^minDCF \(p_target 0\.01\): \d\.\d{4}", result.stdout, re.MULTILINE)


def test_bad_input_fails_at_once_with_a_clear_message(tmp_path: Path) -> None:
    cases = [
        (("separation", "--bundle", "tuss", "--set", str(tmp_path / "none")), "does not exist"),
        (("speakers", "--bundle", "x", "--trials", str(tmp_path / "none.txt")), "does not exist"),
        (("separation", "--set", str(tmp_path)), "--bundle"),
        (("speakers", "--bundle", "x", "--trials", "t", "--p-target", "2"), "probability"),
    ]
    for args, message in cases:
        result = subprocess.run(
            _command(*args),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=_environment(),
        )
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and not result.stdout


def test_text_table_json_speakers_and_wrong_kinds_in_process(
    workspace: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--device", "cpu", "--threads", "1"]
    code = main(
        ["eval", "separation", "--bundle", str(workspace["tuss"]), "--set", str(workspace["set"])]
        + ["--max-items", "1", "--sdr-filter-length", "0", *common]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^all\s+\d+\s", out, re.MULTILINE) and "Oracle ideal ratio mask" in out
    assert "Evaluated 1 items" in out and "512-point hann window, hop 128 at 8000 Hz" in out
    code = main(
        ["eval", "speakers", "--bundle", str(workspace["speaker"])]
        + ["--trials", str(workspace["trials"]), "--json", *common]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["num_trials"] == 36 and "trials" not in data
    assert 0 <= data["eer"] <= 1 and data["eer_percent"] == pytest.approx(100 * data["eer"])
    assert {"min_dcf", "min_dcf_threshold", "eer_threshold", "p_target"} <= set(data)
    code = main(
        ["eval", "speakers", "--bundle", str(workspace["tuss"])]
        + ["--trials", str(workspace["trials"]), *common]
    )
    assert code == 2 and "not a speaker model" in capsys.readouterr().err
    code = main(
        ["eval", "separation", "--bundle", str(workspace["speaker"])]
        + ["--set", str(workspace["set"]), *common]
    )
    assert code == 2 and "not a separation model" in capsys.readouterr().err
    code = main(
        ["eval", "separation", "--bundle", "no-such-bundle", "--set", str(workspace["set"])]
    )
    assert code == 2 and "Unknown bundle 'no-such-bundle'" in capsys.readouterr().err
