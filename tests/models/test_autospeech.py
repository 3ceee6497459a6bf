"""AutoSpeech: DARTS search network, genotype derivation, derived network, published size."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from models import registry
from models.autospeech import (
    AUTOSPEECH_NORMAL,
    AUTOSPEECH_REDUCE,
    PRIMITIVES,
    AutoSpeech,
    AutoSpeechConfig,
)
from models.features import FeatureConfig

torch.set_num_threads(1)

TINY_SEARCH = AutoSpeechConfig(
    embedding_dim=8, features=FeatureConfig(num_mels=20), channels=4, num_cells=3, search=True
)
TINY_DERIVED = dataclasses.replace(TINY_SEARCH, search=False, drop_path_probability=0.2)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def alphas_for(genotype, steps: int = 4) -> torch.Tensor:
    """Architecture weights whose DARTS derivation is ``genotype`` (first pair strongest)."""
    alphas = torch.zeros(sum(2 + node for node in range(steps)), len(PRIMITIVES))
    start = 0
    for node in range(steps):
        for rank, (operation, source) in enumerate(genotype[2 * node : 2 * node + 2]):
            alphas[start + source, PRIMITIVES.index(operation)] = 4.0 - rank
        start += 2 + node
    return alphas


def test_search_network_forward_backward_reaches_both_parameter_sets() -> None:
    torch.manual_seed(0)
    model = AutoSpeech(TINY_SEARCH)
    embeddings = model(torch.randn(2, 33, 20))  # odd sizes exercise the stride-2 paths
    assert embeddings.shape == (2, 8)
    embeddings.square().sum().backward()
    arch = model.arch_parameters()
    weights = model.weight_parameters()
    assert len(arch) == 2 and arch[0].shape == (14, 8)
    assert {id(p) for p in arch}.isdisjoint(id(p) for p in weights)
    assert len(arch) + len(weights) == len(list(model.parameters()))
    for alphas in arch:
        assert alphas.grad is not None and alphas.grad.abs().sum() > 0
    assert all(p.grad is not None for p in weights)
    entropy = model.architecture_entropy()
    # Near-uniform initial alphas: entropy close to log(8).
    torch.testing.assert_close(entropy, torch.full((2,), float(torch.log(torch.tensor(8.0)))))


def test_gumbel_softmax_search_runs() -> None:
    torch.manual_seed(0)
    model = AutoSpeech(dataclasses.replace(TINY_SEARCH, gumbel_softmax=True))
    model(torch.randn(2, 16, 20)).sum().backward()
    assert model.alphas_normal.grad is not None


def test_genotype_by_hand() -> None:
    model = AutoSpeech(TINY_SEARCH)
    index = PRIMITIVES.index
    alphas = torch.zeros(14, 8)
    alphas[0, index("sep_conv_3x3")] = 5.0
    alphas[1, index("none")] = 10.0  # `none` dominates this edge but is never derived
    alphas[1, index("avg_pool_3x3")] = 1.0
    alphas[4, index("dil_conv_5x5")] = 4.0
    alphas[2, index("skip_connect")] = 2.0
    alphas[3, index("max_pool_3x3")] = 1.0
    alphas[8, index("sep_conv_5x5")] = 6.0
    alphas[6, index("dil_conv_3x3")] = 3.0
    alphas[13, index("max_pool_3x3")] = 2.0
    alphas[9, index("avg_pool_3x3")] = 1.5
    with torch.no_grad():
        model.alphas_normal.copy_(alphas)
        model.alphas_reduce.copy_(alphas_for(AUTOSPEECH_REDUCE))
    normal, reduce = model.genotype()
    assert normal == (
        ("sep_conv_3x3", 0), ("avg_pool_3x3", 1),
        ("dil_conv_5x5", 2), ("skip_connect", 0),
        ("sep_conv_5x5", 3), ("dil_conv_3x3", 1),
        ("max_pool_3x3", 4), ("avg_pool_3x3", 0),
    )  # fmt: skip
    assert reduce == AUTOSPEECH_REDUCE


def test_derived_config_builds_through_the_registry_and_trains() -> None:
    torch.manual_seed(0)
    search = AutoSpeech(TINY_SEARCH)
    with torch.no_grad():
        search.alphas_normal.copy_(alphas_for(AUTOSPEECH_NORMAL))
        search.alphas_reduce.copy_(alphas_for(AUTOSPEECH_REDUCE))
    config = search.derive_config(drop_path_probability=0.2)
    assert not config.search
    assert (config.normal, config.reduce) == (AUTOSPEECH_NORMAL, AUTOSPEECH_REDUCE)
    # A derived result is just a config: a plain dict (JSON turns tuples into lists) rebuilds it.
    as_json = {
        key: [list(pair) for pair in value] if key in ("normal", "reduce") else value
        for key, value in dataclasses.asdict(config).items()
    }
    derived = registry.build_model("autospeech", as_json)
    assert derived.config == config
    assert derived.arch_parameters() == []
    assert derived.genotype() == (AUTOSPEECH_NORMAL, AUTOSPEECH_REDUCE)
    derived.train()
    embeddings = derived(torch.randn(3, 31, 20))
    assert embeddings.shape == (3, 8)
    embeddings.square().sum().backward()
    for name, parameter in derived.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    with pytest.raises(ValueError, match="search network"):
        derived.architecture_entropy()


def test_save_reload_gives_identical_output() -> None:
    torch.manual_seed(0)
    for config in (TINY_DERIVED, TINY_SEARCH):
        model = registry.build_model("autospeech", dataclasses.asdict(config))
        model(torch.randn(2, 24, 20)).sum().backward()
        model.eval()
        features = torch.randn(2, 24, 20)
        with torch.no_grad():
            expected = model(features)
        buffer = io.BytesIO()
        torch.save(
            {"config": registry.config_to_dict(model.config), "state": model.state_dict()}, buffer
        )
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)
        rebuilt = registry.build_model("autospeech", checkpoint["config"])
        rebuilt.load_state_dict(checkpoint["state"])
        rebuilt.eval()
        with torch.no_grad():
            assert torch.equal(rebuilt(features), expected)


def test_embed_and_small_presets() -> None:
    torch.manual_seed(0)
    for preset in ("small", "search_small"):
        model = registry.build_model("autospeech", preset=preset).eval()
        with torch.no_grad():
            embeddings = model.embed(0.1 * torch.randn(2, 8000))
        assert embeddings.shape == (2, model.config.embedding_dim)
        assert torch.isfinite(embeddings).all()
        assert model.config.sample_rate == 16000


def test_bad_input_and_bad_genotypes_raise_value_error() -> None:
    model = AutoSpeech(TINY_DERIVED)
    for bad in (
        torch.randn(24, 20),
        torch.randn(2, 24, 21),
        torch.randn(2, 0, 20),
        torch.full((2, 24, 20), float("inf")),
    ):
        with pytest.raises(ValueError, match="features"):
            model(bad)
    with pytest.raises(ValueError, match="waveform"):
        model.embed(torch.randn(2, 10))
    with pytest.raises(ValueError, match="pairs"):
        dataclasses.replace(TINY_DERIVED, normal=AUTOSPEECH_NORMAL[:6])
    with pytest.raises(ValueError, match="unknown operation"):
        dataclasses.replace(TINY_DERIVED, normal=(("conv_9x9", 0),) + AUTOSPEECH_NORMAL[1:])
    with pytest.raises(ValueError, match="can read states"):
        dataclasses.replace(TINY_DERIVED, reduce=(("max_pool_3x3", 2),) + AUTOSPEECH_REDUCE[1:])
    with pytest.raises(ValueError, match="primitives"):
        dataclasses.replace(TINY_SEARCH, primitives=("none", "conv_9x9"))


def test_paper_parameter_count_matches_published() -> None:
    # AutoSpeech "N=8, C=128": 18 M parameters as reported for VoxCeleb1 identification,
    # i.e. with its 1251-way linear classifier on the 2048-d pooled output.
    with torch.device("meta"):
        model = registry.build_model("autospeech", preset="paper")
    backbone = count(model)
    classifier = model.config.output_channels * 1251 + 1251
    print(f"autospeech/paper: {backbone:,} parameters + {classifier:,} classifier")
    assert model.config.output_channels == model.config.embedding_dim == 2048
    assert abs(backbone + classifier - 18e6) / 18e6 < 0.05
