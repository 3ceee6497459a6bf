"""NAS-TasNet supernet: gated paths, derivation, zero-op re-indexing, FLOPs, aux loss, REINFORCE."""

from __future__ import annotations

import io
import math

import pytest
import torch

from models import registry
from models.conv_tasnet import ConvTasNet
from models.flops import macs_per_second
from models.nas_tasnet import (
    NasTasNet,
    NasTasNetConfig,
    combine_repeat_losses,
    repeat_loss_weights,
)

torch.set_num_threads(1)

TINY = NasTasNetConfig(
    encoder_filters=16,
    encoder_kernel_size=8,
    bottleneck_channels=8,
    num_blocks=3,
    num_repeats=2,
)
ZERO = 6  # candidates: (3,1) (3,2) (3,4) (5,1) (5,2) (5,4), then the zero op


def negative_si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative SI-SDR over everything but the time axis."""
    target = target - target.mean(dim=-1, keepdim=True)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / target.pow(2).sum(-1, keepdim=True)
    projection = scale * target
    noise = estimate - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + 1e-8)
    return -10 * torch.log10(ratio + 1e-8)


def make_model(seed: int = 0) -> NasTasNet:
    torch.manual_seed(seed)
    return NasTasNet(TINY)


def test_search_space_has_seven_candidates_per_block() -> None:
    model = make_model()
    assert TINY.num_choices == 7 and TINY.candidates[ZERO - 1] == (5, 4)
    assert model.alpha.shape == (6, 7)
    widths = [c.hidden_channels for c in model.separator.blocks[0].candidates]
    kernels = [c.kernel_size for c in model.separator.blocks[0].candidates]
    assert widths == [8, 16, 32, 8, 16, 32] and kernels == [3, 3, 3, 5, 5, 5]
    names = {name for name, _ in model.named_parameters()}
    assert "architecture_logits" in names
    assert len(model.weight_parameters()) + 1 == len(list(model.parameters()))


def test_single_path_forward_backward_touches_only_active_candidates() -> None:
    model = make_model()
    generator = torch.Generator().manual_seed(1)
    choices = model.sample_active_paths(generator=generator).tolist()
    mixture = torch.randn(2, 301)
    sources = model(mixture)
    assert sources.shape == (2, 2, 301)
    sources.pow(2).mean().backward()
    assert model.alpha.grad is None  # hard single path: no architecture gradient
    for index, block in enumerate(model.separator.blocks):
        for candidate_index, candidate in enumerate(block.candidates):
            grad = candidate.pointwise.input_conv.weight.grad
            if candidate_index == choices[index]:
                assert grad is not None and grad.abs().sum() > 0
            else:
                assert grad is None
    uniform = model.sample_active_paths(uniform=True, generator=generator)
    assert uniform.shape == (6,) and all(0 <= c < 7 for c in uniform.tolist())


def test_two_path_gates_send_proxyless_gradients_to_the_sampled_pair_only() -> None:
    model = make_model()
    with torch.no_grad():
        model.alpha.normal_()
    pairs = model.sample_two_paths(generator=torch.Generator().manual_seed(3))
    assert pairs.shape == (6, 2) and all(a != b for a, b in pairs.tolist())
    for (a, b), active in zip(pairs.tolist(), model.active_architecture):
        assert active in (a, b)
    mixture, target = torch.randn(2, 301), torch.randn(2, 2, 301)
    loss = negative_si_sdr(model(mixture), target).mean()
    loss.backward()
    grad = model.alpha.grad
    assert grad is not None
    for row, (a, b) in enumerate(pairs.tolist()):
        outside = [c for c in range(7) if c not in (a, b)]
        assert torch.all(grad[row, outside] == 0)
        # Softmax Jacobian over the pair: the two gradients cancel.
        assert abs(grad[row, a] + grad[row, b]) <= 1e-5 * (abs(grad[row, a]) + 1e-6)
    # A pair of two non-zero candidates whose outputs differ gets a non-zero gradient.
    assert grad.abs().sum() > 0

    # ProxylessNAS rescaling keeps the unsampled candidates' probabilities.
    before = model.alpha.detach().clone()
    probabilities_before = torch.softmax(before, dim=-1)
    with torch.no_grad():
        model.alpha.sub_(10.0 * grad)
    model.rescale_sampled_pairs(before)
    probabilities_after = torch.softmax(model.alpha.detach(), dim=-1)
    for row, (a, b) in enumerate(pairs.tolist()):
        outside = [c for c in range(7) if c not in (a, b)]
        assert torch.allclose(
            probabilities_after[row, outside], probabilities_before[row, outside], atol=1e-6
        )
    assert not torch.allclose(probabilities_after, probabilities_before)


def test_two_path_forward_equals_the_active_single_path() -> None:
    model = make_model().eval()
    model.sample_two_paths(generator=torch.Generator().manual_seed(5))
    mixture = torch.randn(1, 257)
    with torch.no_grad():
        gated = model(mixture)
        model.set_architecture(model.active_architecture)
        single = model(mixture)
    assert torch.allclose(gated, single, atol=1e-6)


def test_zero_ops_reindex_dilations_and_derived_model_matches_supernet() -> None:
    model = make_model().eval()
    # Repeat 0: block, zero, block -> dilations 1, 2. Repeat 1: zero, zero, block -> 1.
    choices = [0, ZERO, 5, ZERO, ZERO, 3]
    config = model.derive(choices)
    assert config.blocks_per_repeat == (2, 1)
    assert config.block_kernel_sizes == (3, 5, 5)
    assert config.block_hidden == (8, 32, 8)
    derived = ConvTasNet(config).eval()
    assert [b.dilation for b in derived.separator.blocks] == [1, 2, 1]
    derived.load_state_dict(model.derived_state_dict(choices), strict=True)
    model.set_architecture(choices)
    mixture = torch.randn(2, 333)
    with torch.no_grad():
        # Equal outputs with inherited weights prove the supernet re-indexed the dilations
        # exactly as the derived model has them (block 3 ran at dilation 2, not 4).
        assert torch.allclose(model(mixture), derived(mixture), atol=1e-6)
        without_reindexing = make_model().eval()
        without_reindexing.load_state_dict(model.state_dict())
        without_reindexing.set_architecture([0, 0, 5, ZERO, ZERO, 3])
        assert not torch.allclose(without_reindexing(mixture), derived(mixture), atol=1e-4)


def test_all_zero_architecture_cannot_be_derived() -> None:
    with pytest.raises(ValueError, match="zero op"):
        make_model().derive([ZERO] * 6)
    with pytest.raises(ValueError, match="choices"):
        make_model().set_architecture([0, 1])


def test_derived_argmax_config_builds_and_trains_one_step() -> None:
    model = make_model()
    with torch.no_grad():
        model.alpha[:, 4] += 2.0  # (5, 2)
        model.alpha[1, ZERO] += 5.0
    config = model.derive()
    assert config.blocks_per_repeat == (2, 3)
    assert set(config.block_kernel_sizes) == {5} and set(config.block_hidden) == {16}
    derived = registry.build_model("conv_tasnet", registry.config_to_dict(config))
    optimizer = torch.optim.Adam(derived.parameters(), lr=1e-3)
    mixture, target = torch.randn(2, 400), torch.randn(2, 2, 400)
    before = [p.detach().clone() for p in derived.parameters()]
    loss = negative_si_sdr(derived(mixture), target).mean()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p.detach()) for b, p in zip(before, derived.parameters()))


def test_expected_macs_is_differentiable_and_grows_with_bigger_ops() -> None:
    model = make_model()
    uniform = model.expected_macs()
    uniform.backward()
    assert model.alpha.grad is not None and model.alpha.grad.abs().sum() > 0
    # The gradient points to the widest candidates (largest MACs) and away from the zero op.
    assert torch.all(model.alpha.grad[:, 5] > 0) and torch.all(model.alpha.grad[:, ZERO] < 0)
    with torch.no_grad():
        model.alpha[:, 5] += 3.0  # favour kernel 5, expansion 4
    big = model.expected_macs().item()
    with torch.no_grad():
        model.alpha.zero_()
        model.alpha[:, ZERO] += 3.0
    small = model.expected_macs().item()
    assert small < uniform.item() < big


def test_expected_macs_of_a_one_hot_architecture_matches_the_flop_counter() -> None:
    model = make_model()
    choices = [2, 4, ZERO, 0, 5, 1]
    with torch.no_grad():
        model.alpha.fill_(-1e4)
        model.alpha[torch.arange(6), torch.tensor(choices)] = 0.0
    model.set_architecture(choices)
    expected = model.expected_macs().item()
    assert math.isclose(expected, model.architecture_macs(torch.tensor(choices)).item())
    measured = macs_per_second(model)
    print(f"one-hot architecture: expected {expected:,.0f} MACs/s, counted {measured:,.0f}")
    assert abs(measured - expected) / expected < 0.01


def test_forward_repeats_gives_one_estimate_per_repeat_through_the_shared_head() -> None:
    model = make_model()
    model.sample_active_paths(generator=torch.Generator().manual_seed(0))
    mixture, target = torch.randn(2, 301), torch.randn(2, 2, 301)
    estimates = model.forward_repeats(mixture)
    assert estimates.shape == (2, 2, 2, 301)  # batch, repeats, sources, time
    assert torch.allclose(estimates[:, -1], model(mixture), atol=1e-6)
    assert not torch.allclose(estimates[:, 0], estimates[:, 1])
    per_repeat = torch.stack([negative_si_sdr(estimates[:, r], target).mean() for r in range(2)])
    # Only repeat 0's loss, backpropagated alone, still trains the shared head and decoder.
    per_repeat[0].backward(retain_graph=True)
    assert model.separator.output_conv.weight.grad.abs().sum() > 0
    assert model.codec.decoder.weight.grad.abs().sum() > 0
    model.zero_grad()
    total = model.auxiliary_loss(per_repeat)
    assert torch.isclose(total, 0.4 * per_repeat[0] + 0.6 * per_repeat[1])
    total.backward()


def test_ema_repeat_weights() -> None:
    weights = repeat_loss_weights(3, 0.4)
    assert torch.allclose(weights, torch.tensor([0.16, 0.24, 0.60]))
    assert torch.isclose(repeat_loss_weights(5, 0.4).sum(), torch.tensor(1.0))
    losses = torch.tensor([[-3.0, -5.0, -9.0]])
    running = losses[:, 0]
    for r in (1, 2):
        running = 0.6 * losses[:, r] + 0.4 * running
    assert torch.allclose(combine_repeat_losses(losses, 0.4), running)
    with pytest.raises(ValueError, match="per-repeat"):
        make_model().auxiliary_loss(torch.zeros(3))


def test_reinforce_helpers() -> None:
    model = make_model()
    with torch.no_grad():
        model.alpha.normal_()
    samples = model.sample_architectures(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 6) and samples.dtype == torch.long
    log_probs = model.architecture_log_prob(samples)
    manual = torch.log_softmax(model.alpha.detach(), -1)
    for m in range(5):
        value = sum(manual[block, samples[m, block]] for block in range(6))
        assert torch.isclose(log_probs[m], value, atol=1e-5)
    assert model.architecture_macs(samples).shape == (5,)
    # One REINFORCE step raises the probability of the rewarded architecture.
    rewards = torch.zeros(5)
    rewards[0] = 1.0
    before = model.architecture_log_prob(samples[:1]).item()
    loss = model.reinforce_loss(log_probs, rewards, baseline=rewards.mean())
    loss.backward()
    with torch.no_grad():
        model.alpha.sub_(0.5 * model.alpha.grad)
    assert model.architecture_log_prob(samples[:1]).item() > before


def test_repeat_entropies() -> None:
    model = make_model()
    entropies = model.repeat_entropies()
    assert torch.allclose(entropies, torch.full((2,), math.log(7)))
    with torch.no_grad():
        model.alpha[:3, 0] += 5.0  # repeat 0 only
    entropies = model.repeat_entropies()
    assert entropies[0] < math.log(7) - 0.5
    assert torch.isclose(entropies[1], torch.tensor(math.log(7)))


def test_registry_save_reload_identical_output() -> None:
    spec = registry.get_spec("nas_tasnet")
    assert set(spec.presets) >= {"paper", "small"}
    config = spec.config("small", encoder_filters=16, bottleneck_channels=8, num_blocks=2)
    model = registry.build_model("nas_tasnet", config).eval()
    with torch.no_grad():
        model.alpha.normal_()
    model.set_architecture(model.argmax_architecture())
    buffer = io.BytesIO()
    torch.save(
        {"model_config": registry.config_to_dict(config), "model": model.state_dict()}, buffer
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = registry.build_model("nas_tasnet", checkpoint["model_config"]).eval()
    rebuilt.load_state_dict(checkpoint["model"])
    rebuilt.set_architecture(rebuilt.argmax_architecture())
    mixture = torch.randn(1, 250)
    with torch.no_grad():
        assert torch.equal(model(mixture), rebuilt(mixture))


def test_bad_input_raises_value_error() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.randn(100))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 100), float("nan")))
