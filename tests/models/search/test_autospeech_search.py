"""AutoSpeech search job: tiny bi-level search, derived genotype builds and trains, resume."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from models import registry
from models.autospeech import AutoSpeech, validate_genotype
from models.checkpoint import load_checkpoint, read_checkpoint
from models.search import optuna_study
from models.search.autospeech import AutoSpeechJob, AutoSpeechSettings, split_for_bilevel
from models.search.common import (
    apply_overrides,
    apply_settings,
    parse_value,
    synthetic_speaker_data,
)
from models.speaker_losses import SoftmaxHead
from tests.models.search.tiny_settings import AUTOSPEECH_TINY

torch.set_num_threads(1)


def tiny(**changes) -> AutoSpeechSettings:
    settings = apply_settings(AutoSpeechSettings(), AUTOSPEECH_TINY, ("model", "retrain", "data"))
    return dataclasses.replace(settings, **changes)


def test_tiny_search_derives_a_genotype_that_builds_and_trains(tmp_path: Path) -> None:
    settings = tiny(search_steps=3, retrain_steps=2, arch_lr=0.05)
    result = AutoSpeechJob(tmp_path, settings, stream=io.StringIO()).run()
    assert result["state"] == "finished"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["fraction"] == 1.0

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    search_rows = [row for row in rows if row.get("stage") == "search"]
    assert [row["step"] for row in search_rows] == [1, 2, 3]
    for row in search_rows:
        assert row["metrics"]["arch_loss"] is not None
        assert 0.0 < row["metrics"]["entropy_normal"] <= torch.log(torch.tensor(8.0)).item() + 1e-6

    # The architecture steps moved the architecture weights away from their initialisation.
    checkpoint = read_checkpoint(tmp_path / "search.pt")
    assert checkpoint.extra["finished"] and checkpoint.step == 3
    torch.manual_seed(settings.seed)
    fresh = AutoSpeech(settings.search_config())
    assert not torch.allclose(checkpoint.model_state["alphas_normal"], fresh.alphas_normal)

    (chosen,) = result["chosen"]
    config = registry.config_from_dict("autospeech", chosen["config"])
    assert not config.search and (config.channels, config.num_cells) == (4, 3)
    validate_genotype(config.normal, config.steps, "normal")
    validate_genotype(config.reduce, config.steps, "reduce")
    assert [list(pair) for pair in config.normal] == result["genotype"]["normal"]
    assert "none" not in {operation for operation, _ in config.normal + config.reduce}

    command = chosen["train_command"]
    assert command[:5] == ["train", "--model", "autospeech", "--preset", "small"]
    overrides = [
        (key.removeprefix("model."), parse_value(text))
        for key, _, text in (item.partition("=") for item in command[6::2])
    ]
    assert apply_overrides(registry.get_spec("autospeech").config("small"), overrides) == config

    model = registry.build_model("autospeech", config)
    head = SoftmaxHead(config.embedding_dim, 4)
    loss = head(model.embed(0.1 * torch.randn(4, 16000)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    (row,) = optuna_study.read_trials(tmp_path / "trials.jsonl")
    assert row["state"] == "COMPLETE" and row["architecture"] == result["genotype"]
    assert row["objectives"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert 0.0 <= row["objectives"]["eer"] <= 1.0 and row["objectives"]["macs"] > 0
    loaded, saved = load_checkpoint(tmp_path / chosen["bundle"])
    assert saved.model_name == "autospeech" and saved.step == 2
    assert loaded.eval().embed(0.1 * torch.randn(1, 16000)).shape == (1, 8)


def test_search_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    settings = tiny(search_steps=2, retrain_steps=0)
    holder: list[AutoSpeechJob] = []
    job = AutoSpeechJob(
        tmp_path, settings, should_stop=lambda: holder[0]._search_step >= 1, stream=io.StringIO()
    )
    holder.append(job)
    assert job.run()["state"] == "stopped"
    assert read_checkpoint(tmp_path / "search.pt").step == 1
    result = AutoSpeechJob(tmp_path, settings, stream=io.StringIO()).run()
    assert result["state"] == "finished"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if row.get("stage") == "search"] == [1, 2]
    with pytest.raises(ValueError, match="different search"):
        AutoSpeechJob(tmp_path, tiny(arch_lr=1.0))


def test_bilevel_split_keeps_every_speaker_on_both_sides() -> None:
    data = synthetic_speaker_data(num_speakers=3, utterances_per_speaker=3, seconds=0.1)
    weights, architecture = split_for_bilevel(data)
    assert not set(weights) & set(architecture)
    assert {data.train_speakers[i] for i in weights} == {0, 1, 2}
    assert {data.train_speakers[i] for i in architecture} == {0, 1, 2}
    lonely = synthetic_speaker_data(num_speakers=2, utterances_per_speaker=1, seconds=0.1)
    with pytest.raises(ValueError, match="two training utterances"):
        split_for_bilevel(lonely)


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="retrain_head"):
        AutoSpeechSettings(retrain_head="triplet")
    with pytest.raises(ValueError, match="derived network"):
        AutoSpeechSettings(preset="small").search_config()
    with pytest.raises(ValueError, match="search_steps"):
        AutoSpeechSettings(search_steps=0)
