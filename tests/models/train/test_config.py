"""Training settings, the learning-rate schedule and RNG states (no training here)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models.train.config import (
    SettingsError,
    TrainConfig,
    apply_settings,
    differences,
    load_config,
    model_config,
    resolve_config,
    save_config,
)
from models.train.loop import lr_schedule, rng_state, set_rng_state


def test_settings_reach_train_model_nested_data_and_task_fields() -> None:
    config = apply_settings(
        TrainConfig(model="tuss"),
        [
            "lr=3e-4",
            "batch_size=8",
            "max_minutes=1",  # an int where a float is expected is fine
            "model.emb_dim=16",
            "num_extraction_blocks=1",  # a plain key only the model config has
            "model.cross_prompt.num_heads=4",
            "data.num_prompts=2",
            "task.snr_max=20",
            "schedule=constant",
        ],
    )
    assert (config.lr, config.batch_size, config.max_minutes) == (3e-4, 8, 1.0)
    assert config.schedule == "constant"
    resolved = model_config(config)
    assert resolved.emb_dim == 16 and resolved.num_extraction_blocks == 1
    assert resolved.cross_prompt.num_heads == 4
    assert dict(config.data_options) == {"num_prompts": 2}
    assert dict(config.task_options) == {"snr_max": 20}


def test_tuple_fields_accept_literals_and_scalars() -> None:
    config = apply_settings(TrainConfig(model="mtass"), ["model.block_dilations=(1, 2, 4)"])
    assert model_config(config).block_dilations == (1, 2, 4)
    config = apply_settings(TrainConfig(model="mtass"), ["model.block_dilations=3"])
    assert model_config(config).block_dilations == (3,)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nonsense=1", "Unknown setting 'nonsense'. Training settings: aux_loss_weight"),
        ("batch_size=two", "Setting 'batch_size' needs an int, got 'two'"),
        ("model.emb_dim=1.5", "Setting 'emb_dim' needs an int"),
        ("model.cross_prompt.heads=2", "LocoformerConfig has no field 'heads'"),
        ("model.encoder=fourier", "Unknown encoder 'fourier'"),
        ("schedule=linear", "Unknown schedule 'linear'"),
        ("=3", "Expected --set KEY=VALUE"),
        ("model=conv_tasnet", "'model' cannot be set with --set"),
    ],
)
def test_bad_settings_name_what_is_wrong(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        apply_settings(TrainConfig(model="tuss"), [setting])


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = apply_settings(
        TrainConfig(model="mtass"), ["model.block_dilations=(1, 3)", "data.snr=(-5, 5)", "lr=1e-4"]
    )
    save_config(config, tmp_path / "config.json")
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["overrides"] == {"block_dilations": [1, 3]}
    resolved = json.loads(json.dumps(dataclasses.asdict(model_config(config))))
    assert on_disk["resolved_model_config"] == resolved
    assert resolved["block_dilations"] == [1, 3]
    assert load_config(tmp_path / "config.json") == config


def test_resolve_config_resumes_with_saved_settings_and_a_new_budget(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--model is required"):
        resolve_config(tmp_path)
    with pytest.raises(SettingsError, match="Unknown model 'nope'. Valid models:"):
        resolve_config(tmp_path, model="nope")
    first = resolve_config(tmp_path, model="conv_tasnet", settings=["lr=0.01"], max_steps=50)
    save_config(first, tmp_path / "config.json")
    # --run alone: the saved run, its budget unless a new one is given.
    assert resolve_config(tmp_path) == first
    assert resolve_config(tmp_path, max_steps=80).max_steps == 80
    # The full command again without --max-steps keeps 50, not the default.
    again = resolve_config(tmp_path, model="conv_tasnet", settings=["lr=0.01"])
    assert again == first and not differences(first, again)
    changed = resolve_config(tmp_path, model="conv_tasnet", settings=["lr=0.02"])
    assert differences(first, changed) == ["lr: run has 0.01, command gives 0.02"]


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    config = TrainConfig(
        model="conv_tasnet", warmup_steps=10, max_steps=110, min_lr_ratio=0.1, lr=1.0
    )
    factor = lr_schedule(config)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cosine at pi/2
    assert factor(110) == pytest.approx(0.1) and factor(500) == pytest.approx(0.1)
    values = [factor(step) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    constant = lr_schedule(TrainConfig(model="conv_tasnet", warmup_steps=0, schedule="constant"))
    assert {constant(step) for step in (0, 5, 10_000)} == {1.0}


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    np.random.standard_normal()  # and in NumPy's
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(3))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    actual = (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(3))
    assert actual[:3] == expected[:3]
    assert torch.equal(actual[3], expected[3])
    assert not math.isnan(actual[1])
