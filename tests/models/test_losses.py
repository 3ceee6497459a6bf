"""Separation losses against NumPy references, capped SNR, silent targets, PIT and gradients."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

from models import losses, registry

torch.set_num_threads(1)


def numpy_si_sdr(estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
    estimate = estimate - estimate.mean(axis=-1, keepdims=True)
    target = target - target.mean(axis=-1, keepdims=True)
    alpha = np.sum(estimate * target, axis=-1, keepdims=True) / np.sum(
        target**2, axis=-1, keepdims=True
    )
    projection = alpha * target
    return 10 * np.log10(np.sum(projection**2, -1) / np.sum((estimate - projection) ** 2, -1))


def numpy_snr(estimate: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.sum(target**2, -1) / np.sum((estimate - target) ** 2, -1))


@pytest.fixture
def signals() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(3, 2, 1000, generator=generator, dtype=torch.float64)
    estimate = 0.7 * target + 0.3 * torch.randn(
        3, 2, 1000, generator=generator, dtype=torch.float64
    )
    return estimate, target


def test_si_sdr_matches_numpy_and_ignores_scale(signals) -> None:
    estimate, target = signals
    value = losses.si_sdr(estimate, target, eps=0.0)
    assert value.shape == (3, 2)
    np.testing.assert_allclose(value.numpy(), numpy_si_sdr(estimate.numpy(), target.numpy()))
    np.testing.assert_allclose(losses.si_sdr(2.5 * estimate, target).numpy(), value.numpy())
    np.testing.assert_allclose(losses.negative_si_sdr(estimate, target).numpy(), -value.numpy())


def test_snr_matches_numpy_and_cap_saturates(signals) -> None:
    estimate, target = signals
    np.testing.assert_allclose(
        losses.snr(estimate, target, eps=0.0).numpy(), numpy_snr(estimate.numpy(), target.numpy())
    )
    # Far below the cap the capped SNR equals the SNR (noise >> tau * target power).
    noisy = target + 3.0 * torch.randn_like(target)
    np.testing.assert_allclose(
        losses.snr(noisy, target, snr_max=30.0).numpy(),
        losses.snr(noisy, target).numpy(),
        atol=0.01,
    )
    # A perfect estimate reaches the cap instead of +inf; a tiny error stays just below it.
    np.testing.assert_allclose(losses.snr(target, target, snr_max=30.0).numpy(), 30.0, atol=1e-6)
    nearly = losses.snr(target + 1e-4 * torch.randn_like(target), target, snr_max=30.0)
    assert (nearly < 30.0).all() and (nearly > 29.9).all()


def test_thresholded_snr_loss_active_and_silent_targets() -> None:
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 800, generator=generator, dtype=torch.float64)
    target[1, 2] = 0.0  # an absent source
    estimate = target + 0.1 * torch.randn(2, 3, 800, generator=generator, dtype=torch.float64)
    mixture = target.sum(dim=1, keepdim=True)
    loss = losses.thresholded_snr_loss(estimate, target, snr_max=30.0, eps=0.0)
    assert loss.shape == (2, 3)
    capped = -losses.snr(estimate, target, snr_max=30.0, eps=0.0)
    active = torch.ones(2, 3, dtype=torch.bool)
    active[1, 2] = False
    np.testing.assert_allclose(loss[active].numpy(), capped[active].numpy(), rtol=1e-10)
    tau = 10 ** (-30.0 / 10)
    silent = (
        0.1
        * 10
        * np.log10(np.sum(estimate[1, 2].numpy() ** 2) + tau * np.sum(mixture[1, 0].numpy() ** 2))
    )
    np.testing.assert_allclose(loss[1, 2].item(), silent, rtol=1e-10)
    # Gradients stay finite even for a perfect estimate of a silent target.
    perfect = target.clone().requires_grad_(True)
    losses.thresholded_snr_loss(perfect, target).sum().backward()
    assert torch.isfinite(perfect.grad).all()


def test_sdr_with_one_tap_is_si_sdr_without_mean_removal(signals) -> None:
    estimate, target = signals
    np.testing.assert_allclose(
        losses.sdr(estimate, target, filter_length=1, eps=0.0).numpy(),
        losses.si_sdr(estimate, target, zero_mean=False, eps=0.0).numpy(),
        rtol=1e-9,
    )


@pytest.mark.parametrize("num_sources", [2, 3, 4])
def test_pit_recovers_the_permutation(num_sources: int) -> None:
    generator = torch.Generator().manual_seed(num_sources)
    batch = 5
    targets = torch.randn(batch, num_sources, 600, generator=generator)
    truth = torch.stack([torch.randperm(num_sources, generator=generator) for _ in range(batch)])
    # estimates[b, i] = targets[b, truth[b, i]] + noise, so estimate truth^-1[j] matches target j
    estimates = targets.gather(1, truth.unsqueeze(-1).expand(-1, -1, 600))
    estimates = estimates + 0.05 * torch.randn(estimates.shape, generator=generator)
    loss, permutation = losses.pit_loss(losses.negative_si_sdr, estimates, targets)
    assert loss.shape == (batch,) and permutation.shape == (batch, num_sources)
    assert torch.equal(permutation, truth.argsort(dim=1))
    aligned = losses.reorder_sources(estimates, permutation)
    torch.testing.assert_close(loss, losses.negative_si_sdr(aligned, targets).mean(dim=1))
    # Brute force over every permutation gives the same minimum.
    for b in range(batch):
        best = min(
            losses.negative_si_sdr(estimates[b, list(p)], targets[b]).mean().item()
            for p in itertools.permutations(range(num_sources))
        )
        assert loss[b].item() == pytest.approx(best, abs=1e-4)


def test_pit_groups_only_swap_within_a_group() -> None:
    generator = torch.Generator().manual_seed(7)
    targets = torch.randn(2, 3, 500, generator=generator)
    # Estimate 0 resembles target 2 and estimate 2 resembles target 0: free PIT swaps them,
    # but with groups (speech, speech, sfx) estimate 2 must stay the sfx output.
    estimates = targets[:, [2, 1, 0]] + 0.05 * torch.randn(2, 3, 500, generator=generator)
    _, free = losses.pit_loss(losses.negative_si_sdr, estimates, targets)
    assert free.tolist() == [[2, 1, 0]] * 2
    _, grouped = losses.pit_loss(
        losses.negative_si_sdr, estimates, targets, groups=["speech", "speech", "sfx"]
    )
    assert grouped[:, 2].tolist() == [2, 2]
    # Per-example groups as a tensor: only example 1 has all three in one group.
    per_example = torch.tensor([[0, 0, 1], [0, 0, 0]])
    _, mixed = losses.pit_loss(losses.negative_si_sdr, estimates, targets, groups=per_example)
    assert mixed[0, 2].item() == 2 and mixed[1].tolist() == [2, 1, 0]


def test_pit_with_tuss_loss_and_real_model_backward() -> None:
    config = registry.get_spec("conv_tasnet").config(
        "small",
        encoder_filters=16,
        bottleneck_channels=8,
        hidden_channels=16,
        num_blocks=2,
        num_repeats=1,
        num_sources=3,
        source_names=("a", "b", "c"),
    )
    torch.manual_seed(0)
    model = registry.build_model("conv_tasnet", config)
    targets = torch.randn(2, 3, 1600)
    targets[0, 1] = 0.0
    mixture = targets.sum(dim=1)
    estimates = model(mixture)
    loss_fn = functools.partial(
        losses.thresholded_snr_loss, mixture=mixture[:, None, None, :], snr_max=30.0
    )
    loss, permutation = losses.pit_loss(loss_fn, estimates, targets)
    loss.mean().backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)
    assert sorted(permutation[0].tolist()) == [0, 1, 2]


def test_bad_shapes_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., time\)"):
        losses.si_sdr(torch.zeros(2, 100), torch.zeros(2, 90))
    with pytest.raises(ValueError, match=r"\(batch, num_sources, time\)"):
        losses.pit_loss(losses.negative_si_sdr, torch.zeros(2, 100), torch.zeros(2, 100))
    with pytest.raises(ValueError, match="1 to 8 sources"):
        losses.pit_loss(losses.negative_si_sdr, torch.randn(1, 9, 50), torch.randn(1, 9, 50))
    with pytest.raises(ValueError, match="groups"):
        losses.pit_loss(
            losses.negative_si_sdr, torch.randn(1, 2, 50), torch.randn(1, 2, 50), groups=["a"]
        )
    with pytest.raises(ValueError, match="filter_length"):
        losses.sdr(torch.randn(50), torch.randn(50), filter_length=0)
