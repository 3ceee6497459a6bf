"""Bundles: save, list, load by name/folder/checkpoint, safe weights, untrained placeholders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import registry
from models.bundles import (
    BUNDLE_FILE,
    DEFAULT_BUNDLES,
    WEIGHTS_FILE,
    BundleError,
    default_bundle,
    get_model,
    list_bundles,
    load_bundle,
    save_bundle,
)
from models.checkpoint import CheckpointError, save_checkpoint

torch.set_num_threads(1)


def tiny_separator(seed: int = 0) -> torch.nn.Module:
    config = registry.get_spec("conv_tasnet").config(
        "small",
        encoder_filters=16,
        bottleneck_channels=8,
        hidden_channels=16,
        num_blocks=2,
        num_repeats=1,
        source_names=("speech", "noise"),
    )
    torch.manual_seed(seed)
    return registry.build_model("conv_tasnet", config)


def outputs(model: torch.nn.Module, mixture: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(mixture)


def test_save_list_load_and_get_model(tmp_path: Path) -> None:
    model = tiny_separator()
    bundle = save_bundle(
        tmp_path / "enhancer",
        model,
        "conv_tasnet",
        description="test enhancer",
        model_card="# Enhancer\n",
        chunk_seconds=4.0,
        extra={"run": "runs/enhancer"},
    )
    assert (bundle.name, bundle.task, bundle.sample_rate) == ("enhancer", "separation", 8000)
    assert bundle.sources == ("speech", "noise") and bundle.trained
    assert bundle.model_card_path == tmp_path / "enhancer" / "MODEL_CARD.md"
    assert bundle.chunk_seconds == 4.0 and bundle.extra["run"] == "runs/enhancer"
    data = json.loads((tmp_path / "enhancer" / BUNDLE_FILE).read_text())
    assert data["weights"] == WEIGHTS_FILE and data["parameters"] > 0
    # weights.pt is a bare state dict that loads under weights_only.
    state = torch.load(tmp_path / "enhancer" / WEIGHTS_FILE, weights_only=True)
    assert set(state) == set(model.state_dict())

    assert [b.name for b in list_bundles([tmp_path])] == ["enhancer"]
    by_name = load_bundle("enhancer", roots=[tmp_path])
    by_folder = load_bundle(tmp_path / "enhancer")
    by_file = load_bundle(tmp_path / "enhancer" / BUNDLE_FILE)
    assert by_name == by_folder == by_file
    loaded = get_model(by_name, device="cpu")
    assert not loaded.training
    mixture = torch.randn(1, 1200)
    torch.testing.assert_close(outputs(loaded, mixture), outputs(model, mixture), rtol=0, atol=0)

    with pytest.raises(KeyError, match="Known bundles: enhancer"):
        load_bundle("missing", roots=[tmp_path])


def test_checkpoint_file_opens_as_a_bundle(tmp_path: Path) -> None:
    model = tiny_separator(seed=3)
    path = save_checkpoint(
        tmp_path / "best.pt", model, "conv_tasnet", step=12, metrics={"si_sdri": 4.0}
    )
    bundle = load_bundle(path)
    assert bundle.trained and bundle.weights_path == path and bundle.sources == ("speech", "noise")
    mixture = torch.randn(2, 900)
    torch.testing.assert_close(outputs(get_model(bundle), mixture), outputs(model, mixture))


def test_broken_bundles_are_refused_plainly(tmp_path: Path) -> None:
    save_bundle(tmp_path / "good", tiny_separator(), "conv_tasnet")
    (tmp_path / "good" / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match="weights file weights.pt is missing"):
        load_bundle(tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "bad")
    assert list_bundles([tmp_path]) == []  # broken folders are skipped, not fatal

    evil = save_bundle(tmp_path / "evil", tiny_separator(), "conv_tasnet")
    torch.save({"weights": _Unsafe()}, evil.weights_path)  # a pickled object, not tensors
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        get_model(evil)


class _Unsafe:
    pass


def test_default_bundle_is_an_untrained_placeholder_until_one_is_shipped(tmp_path: Path) -> None:
    placeholder = default_bundle("speech", roots=[tmp_path])
    assert not placeholder.trained and placeholder.weights_path is None
    assert placeholder.description.startswith("UNTRAINED")
    assert placeholder.label.endswith("(untrained placeholder)")
    assert placeholder.model_name == DEFAULT_BUNDLES["speech"].model_name
    # Placeholders are reproducible: the same random weights every time.
    first, second = get_model(placeholder), get_model(placeholder)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)

    speaker = default_bundle("speaker", roots=[tmp_path])
    assert speaker.task == "speaker" and not speaker.trained

    shipped = save_bundle(
        tmp_path / DEFAULT_BUNDLES["speech"].bundle_name, tiny_separator(), "conv_tasnet"
    )
    found = default_bundle("speech", roots=[tmp_path])
    assert found.trained and found.path == shipped.path
    with pytest.raises(KeyError, match="Valid tasks"):
        default_bundle("karaoke")


def test_every_default_task_has_a_registered_model() -> None:
    for task, default in DEFAULT_BUNDLES.items():
        spec = registry.get_spec(default.model_name)
        assert default.preset in spec.presets, task
