"""Speaker heads: AAM-softmax by hand, MHE against NumPy, softmax head, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.speaker_losses import (
    AAMSoftmax,
    MinimumHypersphericalEnergy,
    SoftmaxHead,
    hyperspherical_energy,
)

torch.set_num_threads(1)


def log_softmax_at(logits: list[float], index: int) -> float:
    peak = max(logits)
    return logits[index] - peak - math.log(sum(math.exp(v - peak) for v in logits))


def test_aam_softmax_matches_a_hand_computation() -> None:
    margin, scale = 0.2, 10.0
    head = AAMSoftmax(embedding_dim=2, num_classes=3, margin=margin, scale=scale)
    with torch.no_grad():
        # Class vectors of different norms: only their directions matter.
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5], [-1.0, 0.0]]))
    embeddings = torch.tensor([[3.0, 4.0], [-2.0, 0.0]], dtype=torch.float32)
    labels = torch.tensor([0, 0])

    # Sample 1: cosines (0.6, 0.8, -0.6); true class 0 at theta = acos(0.6) gets + m.
    first = [scale * math.cos(math.acos(0.6) + margin), scale * 0.8, scale * -0.6]
    # Sample 2 points away from class 0: theta = pi > pi - m, so the logit continues
    # linearly: cos(theta) - sin(pi - m) * m.
    second = [scale * (-1.0 - math.sin(math.pi - margin) * margin), 0.0, scale * 1.0]
    expected = -(log_softmax_at(first, 0) + log_softmax_at(second, 0)) / 2

    logits = head.logits(embeddings, labels)
    torch.testing.assert_close(logits, torch.tensor([first, second]))
    loss = head(embeddings, labels)
    assert abs(loss.item() - expected) < 1e-5
    # Without labels: plain scaled cosines, no margin.
    torch.testing.assert_close(head.logits(embeddings)[0], torch.tensor([6.0, 8.0, -6.0]))


def test_aam_softmax_gradients_reach_embeddings_and_classes() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5)
    embeddings = torch.randn(4, 8, requires_grad=True)
    head(embeddings, torch.tensor([0, 1, 2, 4])).backward()
    assert embeddings.grad.abs().sum() > 0
    assert head.weight.grad.abs().sum() > 0
    assert head.weight.grad[3].abs().sum() > 0  # negatives are pushed away too


def numpy_energy(vectors: np.ndarray, power: float, angular: bool) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    count = len(unit)
    total = 0.0
    for i in range(count):
        for j in range(count):
            if i == j:
                continue
            if angular:
                distance = math.acos(float(np.clip(unit[i] @ unit[j], -1.0, 1.0)))
            else:
                distance = float(np.linalg.norm(unit[i] - unit[j]))
            total += math.log(1.0 / distance) if power == 0 else distance**-power
    return total / (count * (count - 1))


@pytest.mark.parametrize("power, angular", [(2.0, False), (1.0, False), (0.0, False), (1.0, True)])
def test_hyperspherical_energy_matches_numpy(power: float, angular: bool) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((7, 5))
    expected = numpy_energy(vectors, power, angular)
    measured = hyperspherical_energy(torch.from_numpy(vectors), power=power, angular=angular)
    assert abs(measured.item() - expected) < 1e-5 * max(1.0, abs(expected))


def test_evenly_spread_vectors_have_lower_energy() -> None:
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    clumped = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [1.0, 0.3]])
    assert hyperspherical_energy(spread) < hyperspherical_energy(clumped)


def test_mhe_uses_the_batch_classes_and_adds_to_aam() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(6, 10, mhe_weight=0.5, mhe_power=2.0)
    embeddings = torch.randn(5, 6)
    labels = torch.tensor([3, 7, 3, 1, 7])
    subset = head.weight.detach()[[1, 3, 7]].numpy().astype(np.float64)
    energy = MinimumHypersphericalEnergy(2.0)(head.weight, labels)
    assert abs(energy.item() - numpy_energy(subset, 2.0, False)) < 1e-4
    plain = torch.nn.functional.cross_entropy(head.logits(embeddings, labels), labels)
    torch.testing.assert_close(head(embeddings, labels), plain + 0.5 * energy)
    single_class = MinimumHypersphericalEnergy()(head.weight, torch.tensor([2, 2]))
    assert single_class.item() == 0.0


def test_softmax_head_matches_numpy_cross_entropy() -> None:
    torch.manual_seed(0)
    head = SoftmaxHead(4, 3)
    embeddings = torch.randn(5, 4)
    labels = torch.tensor([0, 2, 1, 1, 0])
    weight = head.classifier.weight.detach().double().numpy()
    bias = head.classifier.bias.detach().double().numpy()
    logits = embeddings.double().numpy() @ weight.T + bias
    peak = logits.max(axis=1, keepdims=True)
    log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    expected = float(np.mean(log_norm - logits[np.arange(5), labels.numpy()]))
    loss = head(embeddings, labels)
    assert abs(loss.item() - expected) < 1e-5
    loss.backward()
    assert head.classifier.weight.grad.abs().sum() > 0


def test_bad_input_raises_value_error() -> None:
    head = AAMSoftmax(4, 3)
    softmax = SoftmaxHead(4, 3)
    good = torch.randn(2, 4)
    for module in (head, softmax):
        with pytest.raises(ValueError, match="embeddings"):
            module(torch.randn(2, 5), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="embeddings"):
            module(torch.randn(4), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="NaN"):
            module(torch.full((2, 4), float("nan")), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="labels"):
            module(good, torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match="labels"):
            module(good, torch.tensor([0, 3]))
        with pytest.raises(ValueError, match="labels"):
            module(good, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="margin"):
        AAMSoftmax(4, 3, margin=2.0)
    with pytest.raises(ValueError, match="N >= 2"):
        hyperspherical_energy(torch.randn(1, 4))
    with pytest.raises(ValueError, match="power"):
        hyperspherical_energy(torch.randn(3, 4), power=-1.0)
