"""Every registered model: small preset -> checkpoint -> load -> identical output; name errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from models import registry
from models.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)

#: Collected from the registry, so a family that lands is tested without editing this file.
MODEL_NAMES = sorted(registry.registry())


def run(model: nn.Module, task: str, waveform: Tensor) -> Tensor:
    """One inference call through the model's public contract."""
    if task == "speaker":
        return model.embed(waveform)
    if hasattr(model, "PROMPTS"):
        return model(waveform, ["speech", "sfx", "speech"])
    return model(waveform)


def test_registry_has_every_family() -> None:
    assert {"tuss", "mtass", "conv_tasnet", "nas_tasnet", "dtdnn", "autospeech"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_small_preset_round_trips_through_a_checkpoint(name: str, tmp_path: Path) -> None:
    spec = registry.get_spec(name)
    assert {"paper", "small"} <= set(spec.presets)
    config = spec.config("small")
    torch.manual_seed(0)
    model = registry.build_model(name, config).eval()
    waveform = 0.1 * torch.randn(2, int(0.5 * config.sample_rate))
    with torch.no_grad():
        expected = run(model, spec.task, waveform)
    assert torch.isfinite(expected).all()
    if spec.task == "separation":
        assert expected.shape[0] == 2 and expected.shape[-1] == waveform.shape[-1]
    else:
        assert expected.shape == (2, config.embedding_dim)

    path = save_checkpoint(tmp_path / "checkpoint.pt", model, name, step=5)
    loaded, checkpoint = load_checkpoint(path)
    assert checkpoint.config() == config and checkpoint.step == 5
    assert type(loaded) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(run(loaded.eval(), spec.task, waveform), expected)


@pytest.mark.parametrize(
    ("name", "preset"),
    [(name, preset) for name in MODEL_NAMES for preset in registry.get_spec(name).presets],
)
def test_every_preset_config_survives_the_checkpoint_dict(name: str, preset: str) -> None:
    config = registry.get_spec(name).config(preset)
    assert config.sample_rate > 0
    assert registry.config_from_dict(name, registry.config_to_dict(config)) == config


@dataclass(frozen=True)
class _Inner:
    width: int = 1


@dataclass(frozen=True)
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    optional: _Inner | None = None
    sizes: tuple[tuple[int, int], ...] = ((1, 2),)


def test_nested_and_optional_dataclasses_are_rebuilt() -> None:
    config = _Outer(inner=_Inner(3), optional=_Inner(4), sizes=((5, 6), (7, 8)))
    assert registry._dataclass_from_dict(_Outer, asdict(config)) == config
    assert registry._dataclass_from_dict(_Outer, asdict(_Outer())) == _Outer()


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="Valid models: .*conv_tasnet"):
        registry.build_model("conv_tassnet")
    with pytest.raises(KeyError, match="Valid presets: .*small"):
        registry.get_spec("conv_tasnet").config("huge")
    with pytest.raises(ValueError, match="no fields"):
        registry.config_from_dict("conv_tasnet", {"sample_rate": 8000, "bogus": 1})
