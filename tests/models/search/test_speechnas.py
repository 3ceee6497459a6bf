"""SpeechNAS search job: tiny end-to-end run, exact supernet resume, budgets, settings."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import optuna
import pytest
import torch

from models import registry
from models.checkpoint import load_checkpoint, read_checkpoint
from models.flops import count_macs
from models.search import optuna_study
from models.search.common import (
    apply_overrides,
    apply_settings,
    load_speaker_data,
    parse_value,
    speaker_data_from_datasets,
    synthetic_speaker_data,
    synthetic_speaker_waveform,
)
from models.search.speechnas import SpeechNasJob, SpeechNasSettings, write_run_config
from models.speaker_encoders import DTdnn
from models.speaker_losses import AAMSoftmax
from tests.models.search.tiny_settings import SPEECHNAS_TINY

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny(**changes) -> SpeechNasSettings:
    settings = apply_settings(SpeechNasSettings(), SPEECHNAS_TINY, ("model", "data"))
    return dataclasses.replace(settings, **changes)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def supernet_losses(run_dir: Path) -> dict[int, float]:
    return {
        row["step"]: row["loss"]
        for row in read_jsonl(run_dir / "metrics.jsonl")
        if row.get("stage") == "supernet" and "loss" in row
    }


def test_tiny_search_derives_an_architecture_that_builds_and_trains(tmp_path: Path) -> None:
    stream = io.StringIO()
    result = SpeechNasJob(
        tmp_path, tiny(supernet_steps=3, trials=4, retrain_steps=2), stream=stream
    ).run()
    assert result["state"] == "finished"
    for name in ("config.json", "metrics.jsonl", "trials.jsonl", "result.json", "supernet.pt"):
        assert (tmp_path / name).is_file(), name
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["fraction"] == 1.0

    progress = [json.loads(line) for line in stream.getvalue().splitlines()]
    fractions = [line["fraction"] for line in progress if line["event"] == "progress"]
    assert fractions == sorted(fractions) and progress[-1]["event"] == "finished"

    rows = optuna_study.read_trials(tmp_path / "trials.jsonl")
    assert [row["state"] for row in rows] == ["COMPLETE"] * 4
    for row in rows:
        assert 0.0 <= row["objectives"]["eer"] <= 1.0
        assert row["objectives"]["parameters"] > 0 and row["objectives"]["macs"] > 0
        assert row["duration_seconds"] >= 0 and len(row["architecture"]) == 4
        assert row["worker"].startswith("main@")
    stages = {row.get("stage") for row in read_jsonl(tmp_path / "metrics.jsonl")}
    assert {"supernet", "search", "retrain"} <= stages
    assert sorted(supernet_losses(tmp_path)) == [1, 2, 3]

    saved = json.loads((tmp_path / "result.json").read_text())
    (chosen,) = saved["chosen"]
    assert chosen["search"]["eer"] == min(row["objectives"]["eer"] for row in rows)
    assert chosen["trial"] in [point["trial"] for point in saved["pareto_front"]]
    # A search candidate is a config: it round-trips through the registry and builds.
    config = registry.config_from_dict(chosen["model_name"], chosen["config"])
    assert not config.supernet
    assert config.layers == tuple(tuple(choice) for choice in chosen["architecture"])
    model = registry.build_model("speechnas", config)
    assert isinstance(model, DTdnn)
    # ... and it is the same config as a `workbench train` job of the preset plus overrides.
    command = chosen["train_command"]
    assert command[:5] == ["train", "--model", "speechnas", "--preset", "supernet_small"]
    overrides = [
        (key.removeprefix("model."), parse_value(text))
        for key, _, text in (item.partition("=") for item in command[6::2])
    ]
    assert (
        apply_overrides(registry.get_spec("speechnas").config("supernet_small"), overrides)
        == config
    )
    assert sum(p.numel() for p in model.parameters()) == chosen["search"]["parameters"]
    probe = torch.zeros(1, model.front_end.num_frames(config.sample_rate), 20)
    assert count_macs(model, lambda: model(probe)) == chosen["search"]["macs"]

    # ... and trains with AAM-softmax + MHE.
    head = AAMSoftmax(config.embedding_dim, 4, mhe_weight=0.01)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    loss = head(model.embed(0.1 * torch.randn(4, 16000)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    optimizer.step()

    # The retrained network is an inference checkpoint the app can open.
    assert chosen["retrained"]["steps"] == 2 and 0.0 <= chosen["retrained"]["eer"] <= 1.0
    loaded, checkpoint = load_checkpoint(tmp_path / chosen["bundle"])
    assert checkpoint.model_name == "speechnas" and checkpoint.step == 2
    assert loaded.eval().embed(0.1 * torch.randn(2, 16000)).shape == (2, 16)

    # Running the same job again trains nothing more and gives the same choice.
    again = SpeechNasJob(
        tmp_path, tiny(supernet_steps=3, trials=4, retrain_steps=2), stream=io.StringIO()
    ).run()
    assert again["chosen"][0]["trial"] == chosen["trial"]
    assert len(optuna_study.read_trials(tmp_path / "trials.jsonl")) == 4
    assert sorted(supernet_losses(tmp_path)) == [1, 2, 3]


def test_supernet_resumes_exactly_from_its_run_folder(tmp_path: Path) -> None:
    settings = tiny(supernet_steps=4, trials=0, retrain_steps=0)
    SpeechNasJob(tmp_path / "straight", settings, stream=io.StringIO()).run()

    holder: list[SpeechNasJob] = []
    job = SpeechNasJob(
        tmp_path / "resumed",
        settings,
        should_stop=lambda: holder[0]._supernet_step >= 2,
        stream=io.StringIO(),
    )
    holder.append(job)
    assert job.run()["state"] == "stopped"
    checkpoint = read_checkpoint(tmp_path / "resumed" / "supernet.pt")
    assert checkpoint.step == 2 and not checkpoint.extra["finished"]
    assert json.loads((tmp_path / "resumed" / "status.json").read_text())["state"] == "stopped"

    assert SpeechNasJob(tmp_path / "resumed", settings, stream=io.StringIO()).run()["state"] == (
        "finished"
    )
    straight, resumed = (
        supernet_losses(tmp_path / "straight"),
        supernet_losses(tmp_path / "resumed"),
    )
    assert sorted(resumed) == [1, 2, 3, 4]
    assert resumed == pytest.approx(straight, rel=1e-6)
    a = read_checkpoint(tmp_path / "straight" / "supernet.pt").model_state
    b = read_checkpoint(tmp_path / "resumed" / "supernet.pt").model_state
    assert all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)


def test_multi_objective_search_keeps_the_budget_and_returns_the_pareto_front(
    tmp_path: Path,
) -> None:
    config = tiny().supernet_config()
    with torch.device("meta"):
        supernet = DTdnn(config)
    smallest = supernet.parameter_count(((2, 8, 4),) * 4)
    largest = supernet.parameter_count(((3, 16, 8),) * 4)
    budget = (smallest + largest) // 2
    settings = tiny(
        supernet_steps=1,
        trials=6,
        retrain_steps=0,
        retrain_top=2,
        objective="multi",
        sampler="nsga2",
        budget=float(budget),
    )
    result = SpeechNasJob(tmp_path, settings, stream=io.StringIO()).run()
    rows = optuna_study.read_trials(tmp_path / "trials.jsonl")
    counted = [row for row in rows if row["state"] in ("COMPLETE", "PRUNED")]
    assert len(counted) == 6
    assert any(row["state"] == "PRUNED" for row in rows)  # the budget path ran (fixed seed)
    for row in rows:
        if row["state"] == "COMPLETE":
            assert row["objectives"]["parameters"] <= budget
            assert row["values"] == [row["objectives"]["eer"], row["objectives"]["parameters"]]
        elif row["state"] == "PRUNED":
            assert row["objectives"]["parameters"] > budget
    front = result["pareto_front"]
    assert front
    points = [(p["eer"], p["parameters"]) for p in front]
    for eer, parameters in points:  # no point dominates another
        assert not any(
            e <= eer and p <= parameters and (e, p) != (eer, parameters) for e, p in points
        )
    assert 1 <= len(result["chosen"]) <= 2
    assert {c["trial"] for c in result["chosen"]} <= {p["trial"] for p in front}


def test_a_budget_below_the_smallest_architecture_is_refused(tmp_path: Path) -> None:
    job = SpeechNasJob(
        tmp_path, tiny(supernet_steps=1, trials=2, budget=10.0), stream=io.StringIO()
    )
    with pytest.raises(ValueError, match="smallest architecture"):
        job.run()
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_resume_accepts_a_new_budget_but_not_a_new_search(tmp_path: Path) -> None:
    data = synthetic_speaker_data(num_speakers=2, utterances_per_speaker=1, seconds=0.1)
    write_run_config(tmp_path, tiny(), data, None)
    assert SpeechNasJob(tmp_path, tiny(trials=9, supernet_steps=7)).settings.trials == 9
    with pytest.raises(ValueError, match="different search"):
        SpeechNasJob(tmp_path, tiny(seed=1))
    worker = SpeechNasJob(tmp_path, None, budget={"trials": 5}, worker=True)
    assert worker.settings == dataclasses.replace(tiny(), trials=5)
    with pytest.raises(ValueError, match="No supernet"):
        worker.run()


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="objective"):
        SpeechNasSettings(objective="pareto")
    with pytest.raises(ValueError, match="nsga2"):
        SpeechNasSettings(sampler="nsga2")
    with pytest.raises(ValueError, match="Unknown setting 'colour'"):
        apply_settings(SpeechNasSettings(), ["colour=3"], ("model", "data"))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_settings(SpeechNasSettings(), ["trials"], ("model", "data"))
    with pytest.raises(ValueError, match="needs a int"):
        apply_settings(SpeechNasSettings(), ["trials=many"], ("model", "data"))
    with pytest.raises(ValueError, match="no field 'depth'"):
        tiny(model_overrides=(("depth", 3),)).supernet_config()
    with pytest.raises(ValueError, match="not a supernet"):
        SpeechNasSettings(preset="small").supernet_config()
    with pytest.raises(ValueError, match="no preset"):
        SpeechNasSettings(preset="huge").supernet_config()


class SpeakerItems(torch.utils.data.Dataset):
    """Items in the data layer's speaker form, from generated waveforms."""

    def __init__(self, speakers: list[int]) -> None:
        self.speakers = speakers

    def __len__(self) -> int:
        return len(self.speakers)

    def __getitem__(self, index: int) -> dict:
        speaker = self.speakers[index]
        waveform = synthetic_speaker_waveform(speaker, 1000 + index, 4000, 16000)
        return {"waveform": waveform, "speaker_index": speaker, "speaker_id": f"spk{speaker}"}


def test_speaker_datasets_become_search_data() -> None:
    data = speaker_data_from_datasets(
        SpeakerItems([0, 0, 1, 1, 2]), SpeakerItems([5, 5, 6]), sample_rate=16000
    )
    assert data.num_speakers == 3 and list(data.train_speakers) == [0, 0, 1, 1, 2]
    assert data.train_waveforms[3].shape == (4000,)
    assert data.trials == [(1, 0, 1), (0, 0, 2), (0, 1, 2)]
    with pytest.raises(ValueError, match="neither .synthetic. nor a corpus"):
        load_speaker_data("/no/such/corpus", 16000)
