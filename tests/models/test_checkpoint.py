"""Checkpoints: schema, round trip with optimizer and scheduler, atomic writes (including a
process killed mid-write) and refusal of files carrying pickled objects."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)

TINY_OVERRIDES = dict(
    encoder_filters=16, bottleneck_channels=8, hidden_channels=16, num_blocks=2, num_repeats=1
)


def tiny_model() -> torch.nn.Module:
    config = registry.get_spec("conv_tasnet").config("small", **TINY_OVERRIDES)
    return registry.build_model("conv_tasnet", config)


def train_one_step(model, optimizer, scheduler) -> None:
    mixture = torch.randn(2, 800)
    loss = model(mixture).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def test_round_trip_restores_model_optimizer_scheduler_and_fields(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_one_step(model, optimizer, scheduler)
    path = save_checkpoint(
        tmp_path / "checkpoint.pt",
        model,
        "conv_tasnet",
        optimizer=optimizer,
        scheduler=scheduler,
        step=1,
        metrics={"valid_si_sdri": 3.5},
        train_config={"batch_size": 2, "segments": (4.0, 2.0)},
        extra={"rng": torch.get_rng_state(), "sampler": {"position": 17}},
    )
    assert path == tmp_path / "checkpoint.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp files
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {
        "format_version", "model_name", "model_config", "model", "optimizer", "scheduler",
        "step", "metrics", "train_config", "versions", "extra",
    }  # fmt: skip
    assert raw["format_version"] == FORMAT_VERSION
    assert set(raw["versions"]) == {"torch", "torchaudio", "workbench"}

    loaded, checkpoint = load_checkpoint(path)
    assert checkpoint.model_name == "conv_tasnet" and checkpoint.step == 1
    assert checkpoint.config() == model.config
    assert checkpoint.metrics == {"valid_si_sdri": 3.5}
    assert checkpoint.train_config["segments"] == (4.0, 2.0)
    assert checkpoint.extra["sampler"] == {"position": 17}
    mixture = torch.randn(1, 1000)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(mixture), model(mixture), rtol=0, atol=0)

    # Resuming: fresh optimizer and scheduler take the saved state and continue identically.
    new_optimizer = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    new_scheduler = torch.optim.lr_scheduler.StepLR(new_optimizer, step_size=1, gamma=0.5)
    new_optimizer.load_state_dict(checkpoint.optimizer_state)
    new_scheduler.load_state_dict(checkpoint.scheduler_state)
    assert new_scheduler.get_last_lr() == scheduler.get_last_lr()
    model.train()
    loaded.train()
    torch.manual_seed(1)
    train_one_step(model, optimizer, scheduler)
    torch.manual_seed(1)
    train_one_step(loaded, new_optimizer, new_scheduler)
    for a, b in zip(model.parameters(), loaded.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Payload:
    """Unpickling this runs ``Path.touch``: the kind of code execution weights_only prevents."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    path = tmp_path / "evil.pt"
    marker = tmp_path / "code-ran"
    payload = {
        "format_version": FORMAT_VERSION,
        "model_name": "conv_tasnet",
        "model_config": registry.config_to_dict(model.config),
        "model": model.state_dict(),
        "step": 0,
        "metrics": {"note": _Payload(marker)},
    }
    torch.save(payload, path)  # plain pickling, as a careless or hostile writer would
    with pytest.raises(CheckpointError, match="pickled Python objects") as error:
        load_checkpoint(path)
    assert isinstance(error.value, ValueError)
    assert not marker.exists(), "refusing must happen before any object is built"
    # The same file unpickled without weights_only would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_saving_refuses_values_that_would_not_load(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_checkpoint(tmp_path / "checkpoint.pt", model, "conv_tasnet", step=3)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="numpy"):
        save_checkpoint(path, model, "conv_tasnet", step=4, extra={"state": np.zeros(3)})
    with pytest.raises(CheckpointError, match="numpy"):
        save_checkpoint(path, model, "conv_tasnet", metrics={"eer": np.float64(0.1)})
    assert path.read_bytes() == before  # the previous checkpoint is untouched
    assert read_checkpoint(path).step == 3
    with pytest.raises(KeyError, match="Valid models"):
        save_checkpoint(path, model, "no_such_model")


def test_kill_during_repeated_saves_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    script = textwrap.dedent(
        f"""
        import torch
        from models import registry
        from models.checkpoint import save_checkpoint
        torch.set_num_threads(1)
        model = registry.build_model("conv_tasnet", preset="small")  # ~3 MB of weights
        step = 0
        while True:
            save_checkpoint({str(path)!r}, model, "conv_tasnet", step=step)
            print(step, flush=True)
            step += 1
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        for _ in range(3):  # a few complete saves, then kill at an arbitrary moment
            assert process.stdout.readline(), "the writer process died"
        time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    checkpoint = read_checkpoint(path)
    assert checkpoint.step >= 2
    load_checkpoint(path)


def test_broken_files_and_schema_errors_are_plain(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_checkpoint(tmp_path / "good.pt", model, "conv_tasnet")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        read_checkpoint(truncated)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pt")

    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "model_name": "vanished"}, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="Valid models: .*conv_tasnet"):
        load_checkpoint(tmp_path / "unknown.pt")
    torch.save({**raw, "format_version": FORMAT_VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format"):
        read_checkpoint(tmp_path / "future.pt")
    torch.save({"model": raw["model"]}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="missing"):
        read_checkpoint(tmp_path / "bare.pt")
    wrong = dict(raw["model"])
    wrong.pop(next(iter(wrong)))
    torch.save({**raw, "model": wrong}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "wrong.pt")
