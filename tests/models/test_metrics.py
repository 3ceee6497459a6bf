"""Evaluation metrics against independent computations: NumPy least squares, fast_bss_eval,
brute-force threshold sweeps and the closed-form EER of two Gaussians."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from models import metrics

fast_bss_eval = pytest.importorskip("fast_bss_eval")


def lstsq_sdr(estimate: np.ndarray, reference: np.ndarray, taps: int) -> float:
    """BSS-eval SDR by explicit least squares on a matrix of delayed references."""
    length = reference.size
    delayed = np.zeros((length + taps - 1, taps))
    for delay in range(taps):
        delayed[delay : delay + length, delay] = reference
    padded = np.concatenate([estimate, np.zeros(taps - 1)])
    coefficients, *_ = np.linalg.lstsq(delayed, padded, rcond=None)
    projection = delayed @ coefficients
    return 10 * np.log10(np.sum(projection**2) / np.sum((padded - projection) ** 2))


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((3, 4000))
    # A filtered, noisy estimate: what the distortion filter is meant to forgive.
    filtered = np.stack([np.convolve(r, rng.standard_normal(8) * 0.3)[:4000] for r in reference])
    estimate = filtered + 0.2 * rng.standard_normal((3, 4000))
    return estimate, reference


def test_si_sdr_matches_fast_bss_eval_and_improvement(pair) -> None:
    estimate, reference = pair
    ours = metrics.si_sdr(estimate, reference)
    assert ours.shape == (3,)
    theirs = fast_bss_eval.si_sdr(reference[:, None], estimate[:, None], zero_mean=True)[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    mixture = reference.sum(axis=0)
    improvement = metrics.si_sdr_improvement(estimate, reference, mixture)
    expected = ours - np.array([metrics.si_sdr(mixture, r) for r in reference])
    np.testing.assert_allclose(improvement, expected, atol=1e-9)


@pytest.mark.parametrize("taps", [1, 32, 512])
def test_sdr_matches_explicit_least_squares(pair, taps: int) -> None:
    estimate, reference = pair
    ours = metrics.sdr(estimate[:, :1500], reference[:, :1500], filter_length=taps)
    expected = [lstsq_sdr(e, r, taps) for e, r in zip(estimate[:, :1500], reference[:, :1500])]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_sdr_matches_fast_bss_eval_bss_eval_sources(pair) -> None:
    estimate, reference = pair
    ours = metrics.sdr(estimate, reference, filter_length=512)
    # One source per call: bss_eval_sources' SDR projects on the source's own reference only.
    theirs = fast_bss_eval.sdr(reference[:, None], estimate[:, None], filter_length=512)[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # The filter forgives the 8-tap distortion that SI-SDR penalises.
    assert (ours > metrics.si_sdr(estimate, reference) + 3).all()


def test_sdr_improvement_and_best_permutation(pair) -> None:
    estimate, reference = pair
    mixture = reference.sum(axis=0)
    np.testing.assert_allclose(
        metrics.sdr_improvement(estimate, reference, mixture, filter_length=16),
        metrics.sdr(estimate, reference, 16)
        - metrics.sdr(np.broadcast_to(mixture, reference.shape), reference, 16),
        atol=1e-9,
    )
    shuffled = estimate[[2, 0, 1]]
    reordered, permutation = metrics.best_permutation(shuffled, reference)
    assert permutation == (1, 2, 0)
    np.testing.assert_allclose(reordered, estimate)


def brute_force_rates(scores, labels, threshold):
    targets = [s for s, label in zip(scores, labels) if label == 1]
    nontargets = [s for s, label in zip(scores, labels) if label == 0]
    false_reject = sum(s < threshold for s in targets) / len(targets)
    false_accept = sum(s >= threshold for s in nontargets) / len(nontargets)
    return false_accept, false_reject


def brute_force_eer(scores, labels) -> float:
    thresholds = sorted(set(scores)) + [np.inf]
    points = [brute_force_rates(scores, labels, t) for t in thresholds]
    for (fa0, fr0), (fa1, fr1) in zip(points, points[1:]):
        if fr1 - fa1 >= 0 > fr0 - fa0:
            # Intersection of the segment with the line false_accept == false_reject.
            weight = (fa0 - fr0) / ((fa0 - fr0) - (fa1 - fr1))
            return fr0 + weight * (fr1 - fr0)
        if fr0 == fa0:
            return fr0
    raise AssertionError("no crossing")


def brute_force_min_dcf(scores, labels, p_target, c_miss, c_fa) -> float:
    thresholds = sorted(set(scores)) + [np.inf]
    costs = []
    for threshold in thresholds:
        false_accept, false_reject = brute_force_rates(scores, labels, threshold)
        costs.append(c_miss * p_target * false_reject + c_fa * (1 - p_target) * false_accept)
    return min(costs) / min(c_miss * p_target, c_fa * (1 - p_target))


@pytest.fixture
def trials() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(labels * 1.5, 1.0), 2)  # rounding creates tied scores
    return scores, labels


def test_eer_against_brute_force_and_hand_computed_cases(trials) -> None:
    scores, labels = trials
    assert metrics.eer(scores, labels) == pytest.approx(
        brute_force_eer(list(scores), list(labels)), abs=1e-12
    )
    # Targets 0.9 0.8 0.3, non-targets 0.7 0.2 0.1: at threshold 0.7 one of each is wrong.
    assert metrics.eer([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0]) == pytest.approx(1 / 3)
    assert metrics.eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert metrics.eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0


def test_eer_of_two_gaussians_matches_closed_form() -> None:
    rng = np.random.default_rng(5)
    count = 20000
    scores = np.concatenate([rng.normal(1.0, 1.0, count), rng.normal(-1.0, 1.0, count)])
    labels = np.concatenate([np.ones(count), np.zeros(count)])
    eer, threshold = metrics.eer_with_threshold(scores, labels)
    assert eer == pytest.approx(statistics.NormalDist().cdf(-1.0), abs=0.006)
    assert threshold == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize(("p_target", "c_miss", "c_fa"), [(0.01, 1, 1), (0.05, 10, 1)])
def test_min_dcf_against_brute_force(trials, p_target, c_miss, c_fa) -> None:
    scores, labels = trials
    value, threshold = metrics.min_dcf_with_threshold(scores, labels, p_target, c_miss, c_fa)
    expected = brute_force_min_dcf(list(scores), list(labels), p_target, c_miss, c_fa)
    assert value == pytest.approx(expected, abs=1e-12)
    false_accept, false_reject = brute_force_rates(list(scores), list(labels), threshold)
    cost = (c_miss * p_target * false_reject + c_fa * (1 - p_target) * false_accept) / min(
        c_miss * p_target, c_fa * (1 - p_target)
    )
    assert cost == pytest.approx(value, abs=1e-12)
    assert metrics.min_dcf(scores, labels, p_target, c_miss, c_fa) <= 1.0


def test_det_curve_points_and_threshold_for_rate(trials) -> None:
    scores, labels = trials
    curve = metrics.det_curve(scores, labels)
    assert (np.diff(curve.false_accept_rates) <= 0).all()
    assert (np.diff(curve.false_reject_rates) >= 0).all()
    assert (curve.false_accept_rates[0], curve.false_reject_rates[0]) == (1.0, 0.0)
    assert (curve.false_accept_rates[-1], curve.false_reject_rates[-1]) == (0.0, 1.0)
    for index in (5, 50, 150):
        expected = brute_force_rates(list(scores), list(labels), curve.thresholds[index])
        assert (curve.false_accept_rates[index], curve.false_reject_rates[index]) == expected
    threshold = metrics.threshold_for_false_accept_rate(scores, labels, 0.05)
    assert brute_force_rates(list(scores), list(labels), threshold)[0] <= 0.05
    lower = curve.thresholds[np.searchsorted(curve.thresholds, threshold) - 1]
    assert brute_force_rates(list(scores), list(labels), lower)[0] > 0.05
    np.testing.assert_allclose(metrics.probit([0.5, statistics.NormalDist().cdf(1.0)]), [0, 1])


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="1 \\(target trial\\) or 0"):
        metrics.eer([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="at least one target"):
        metrics.eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.min_dcf([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match=r"\(trials,\)"):
        metrics.det_curve([[0.1, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="NaN"):
        metrics.si_sdr(np.array([0.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(sources, time\)"):
        metrics.best_permutation(np.zeros((2, 10)), np.zeros((3, 10)))
