"""The training loop end to end: every family trains, resumes exactly, and scales to 2 ranks."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models import bundles, registry
from models.checkpoint import read_checkpoint
from models.data.freeze import freeze_dataset
from models.train.config import (
    RunFolderError,
    TrainConfig,
    apply_settings,
    model_config,
    resolve_config,
)
from models.train.loop import train
from tests.models.train import tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _config(model: str, *extra: str) -> TrainConfig:
    return apply_settings(TrainConfig(model=model), tiny.settings(model, *extra))


def _rows(run_dir: Path, split: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize(
    ("model", "metric"),
    [
        ("tuss", "si_sdri"),
        ("mtass", "si_sdri/speech"),
        ("conv_tasnet", "si_sdri/speaker1"),
        ("dtdnn", "eer"),
    ],
)
def test_two_steps_per_family(tmp_path: Path, model: str, metric: str) -> None:
    torch.set_num_threads(1)
    stream = io.StringIO()
    state = train(_config(model, "max_steps=2"), tmp_path, stream=stream)

    assert state == "finished"
    progress = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [p["done"] for p in progress if p["event"] == "progress"] == [1, 2]
    assert progress[-1]["event"] == "finished"
    train_rows = _rows(tmp_path, "train")
    assert [r["step"] for r in train_rows] == [1, 2]
    for row in train_rows:
        assert torch.isfinite(torch.tensor(row["loss"]))
        assert row["lr"] > 0 and row["throughput"] > 0 and row["wall_time"] > 0
    (valid,) = _rows(tmp_path, "valid")
    assert valid["step"] == 2 and metric in valid["metrics"]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "finished"
    assert json.loads((tmp_path / "config.json").read_text())["model"] == model

    saved = read_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True inside
    assert saved.step == 2 and saved.optimizer_state and saved.scheduler_state
    assert set(saved.extra["rng"][0]) >= {"python", "numpy_keys", "torch"}
    # best.pt is an inference bundle: it opens through models.bundles and runs.
    bundle = bundles.load_bundle(tmp_path / "best.pt")
    network = bundles.get_model(bundle)
    audio = torch.randn(1, bundle.sample_rate // 4)
    if bundle.task == "speaker":
        assert network.embed(audio).shape == (1, network.config.embedding_dim)
        assert bundle.threshold is not None
    elif bundle.prompts:
        assert network(audio, ["speech", "sfx"]).shape == (1, 2, audio.shape[-1])
    else:
        assert network(audio).shape == (1, len(bundle.sources), audio.shape[-1])


def _librimix_fixture(root: Path) -> None:
    """A tiny Libri2Mix layout (generated tones, not speech): 2 mixtures per subset."""
    rng = np.random.default_rng(0)
    for subset in ("train-100", "dev"):
        base = root / "Libri2Mix" / "wav8k" / "min" / subset
        for index in range(2):
            name = f"{index}_a-{index}_b.wav"
            time_axis = np.arange(4000) / 8000
            signals = [
                0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * time_axis) for _ in range(2)
            ]
            for folder, source in (("s1", signals[0]), ("s2", signals[1])):
                (base / folder).mkdir(parents=True, exist_ok=True)
                sf.write(base / folder / name, source.astype(np.float32), 8000)
            (base / "mix_clean").mkdir(exist_ok=True)
            sf.write(base / "mix_clean" / name, sum(signals).astype(np.float32), 8000)


def test_public_layout_training_with_a_frozen_validation_set(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _librimix_fixture(tmp_path / "librimix")
    frozen = freeze_dataset(
        "speech-separation", tmp_path / "frozen", count=2, seconds=0.25, sample_rate=8000
    )
    config = _config("conv_tasnet", "max_steps=2", "batch_size=3", f"data.valid={frozen}")
    config = dataclasses.replace(config, data=f"librimix:{tmp_path / 'librimix'}")
    assert train(config, tmp_path / "run", stream=io.StringIO()) == "finished"
    (valid,) = _rows(tmp_path / "run", "valid")
    assert set(valid["metrics"]) == {"si_sdri", "si_sdri/speaker1", "si_sdri/speaker2"}
    assert valid["throughput"] > 0


def test_speaker_validation_on_a_frozen_trial_list(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    frozen = freeze_dataset(
        "speakers", tmp_path / "frozen", count=8, seconds=0.5, sample_rate=16000, seed=3
    )
    trials = (frozen / "trials.txt").read_text().splitlines()
    config = _config("dtdnn", "max_steps=1", f"data.valid={frozen}")
    assert train(config, tmp_path / "run", stream=io.StringIO()) == "finished"
    (valid,) = _rows(tmp_path / "run", "valid")
    assert valid["metrics"]["trials"] == len(trials)
    assert 0 <= valid["metrics"]["eer"] <= 1 and valid["metrics"]["min_dcf"] >= 0


def test_nas_tasnet_auxiliary_loss_is_logged(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = _config("nas_tasnet", "max_steps=2", "aux_loss_weight=0.5")
    assert train(config, tmp_path, stream=io.StringIO()) == "finished"
    row = _rows(tmp_path, "train")[-1]
    # (1 - w) * final + w * aux, with w = 0.5.
    expected = 0.5 * row["metrics"]["final_loss"] + 0.5 * row["metrics"]["aux_loss"]
    assert row["loss"] == pytest.approx(expected, abs=1e-4)
    # Uniformly sampled paths, architecture frozen: the logits did not move.
    logits = read_checkpoint(tmp_path / "checkpoint.pt").model_state["architecture_logits"]
    assert torch.count_nonzero(logits) == 0


def test_resume_after_kill_9_repeats_the_uninterrupted_run(tmp_path: Path) -> None:
    """MTASS has dropout, so only restored RNG states give the same next-step loss."""
    torch.set_num_threads(1)
    settings = ("schedule=constant", "checkpoint_minutes=0", "valid_interval=1000")
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "workbench"]
    command += tiny.cli_arguments("mtass", str(killed), *settings) + ["--max-steps", "100000"]
    process = subprocess.Popen(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if _status(killed).get("step", 0) >= 4:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read()
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    saved_step = read_checkpoint(killed / "checkpoint.pt").step
    assert saved_step >= 3
    final_step = saved_step + 2

    # Resume in this process (the command-line resume has its own test): `--run DIR` alone.
    stream = io.StringIO()
    resumed = resolve_config(killed, max_steps=final_step)
    assert train(resumed, killed, stream=stream) == "finished"
    assert json.loads(stream.getvalue().splitlines()[0])["done"] == saved_step + 1

    reference = tmp_path / "reference"
    config = _config("mtass", *settings, f"max_steps={final_step}")
    assert train(config, reference, stream=io.StringIO()) == "finished"

    # Rows after the checkpoint were dropped and replayed: every step appears once, and the
    # losses, including the next steps after the resume point, equal the uninterrupted run.
    killed_rows, reference_rows = _rows(killed, "train"), _rows(reference, "train")
    assert [r["step"] for r in killed_rows] == list(range(1, final_step + 1))
    assert [r["loss"] for r in killed_rows] == [r["loss"] for r in reference_rows]
    killed_state = read_checkpoint(killed / "checkpoint.pt").model_state
    reference_state = read_checkpoint(reference / "checkpoint.pt").model_state
    for name, value in reference_state.items():
        assert torch.equal(killed_state[name], value), name


def test_a_folder_holding_another_run_is_refused_untouched(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train(_config("conv_tasnet", "max_steps=1"), tmp_path, stream=io.StringIO())
    status_before = (tmp_path / "status.json").read_text()
    with pytest.raises(RunFolderError, match="lr: run has"):
        train(_config("conv_tasnet", "max_steps=2", "lr=0.5"), tmp_path, stream=io.StringIO())
    assert (tmp_path / "status.json").read_text() == status_before


def test_torchrun_two_ranks_stay_in_sync_and_split_the_batch(tmp_path: Path) -> None:
    """2 ranks x batch 1 (gloo) must equal 1 process x batch 2: same weights after 3 steps."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    extra = ("batch_size=1", "lr=0.01")
    arguments = tiny.cli_arguments("conv_tasnet", str(tmp_path / "ddp"), *extra)
    # torchrun's parser would take --run for its own --run-path: the alias is --run-dir.
    arguments[arguments.index("--run")] = "--run-dir"
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "workbench"]
        + arguments
        + ["--max-steps", "3"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((tmp_path / "ddp" / "status.json").read_text())
    first, second = status["rank_fingerprints"]
    assert status["state"] == "finished" and first == second

    torch.set_num_threads(1)
    single = _config("conv_tasnet", "batch_size=2", "lr=0.01", "max_steps=3")
    train(single, tmp_path / "single", stream=io.StringIO())
    distributed_state = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt").model_state
    single_state = read_checkpoint(tmp_path / "single" / "checkpoint.pt").model_state
    for name, value in single_state.items():
        torch.testing.assert_close(distributed_state[name], value, rtol=1e-4, atol=1e-5)
    # ... and training moved them away from the shared initial weights.
    torch.manual_seed(0)
    initial = registry.build_model("conv_tasnet", model_config(single)).state_dict()
    assert any(not torch.equal(initial[name], value) for name, value in single_state.items())
