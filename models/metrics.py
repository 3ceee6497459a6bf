"""Evaluation metrics: separation quality (SI-SDR, SI-SDRi, BSS-eval SDR) and verification (EER,
minDCF, DET curve).

Inputs may be NumPy arrays or tensors; results are NumPy (float64) or Python floats.
Separation metrics run the differentiable code of :mod:`models.losses` in float64 without
gradients, so training and evaluation agree on the definitions.

Verification conventions (NIST SRE / VoxCeleb): a trial is *accepted* when
``score >= threshold``; ``labels`` are 1 for target (same-speaker) trials and 0 for
non-target trials; the false-reject rate (miss rate) is the fraction of target trials below
the threshold, the false-accept rate the fraction of non-target trials at or above it.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models import losses

ArrayLike = np.ndarray | Tensor | list[float]


def _as_float64(values: ArrayLike, name: str) -> Tensor:
    if isinstance(values, Tensor):
        tensor = values.detach().to("cpu", torch.float64)
    else:
        tensor = torch.from_numpy(np.array(values, dtype=np.float64))  # a writable copy
    if tensor.dim() == 0:
        raise ValueError(f"{name} must have shape (..., time), got a scalar.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return tensor


# --------------------------------------------------------------------------- separation


def si_sdr(estimate: ArrayLike, reference: ArrayLike, zero_mean: bool = True) -> np.ndarray:
    """Scale-invariant SDR in dB.

    Args:
        estimate: Shape ``(..., time)``.
        reference: Broadcastable to ``estimate``, shape ``(..., time)``.
        zero_mean: Remove the means first (standard).

    Returns:
        SI-SDR per signal, shape ``(...)``.
    """
    with torch.no_grad():
        value = losses.si_sdr(
            _as_float64(estimate, "estimate"),
            _as_float64(reference, "reference"),
            zero_mean=zero_mean,
            eps=1e-12,
        )
    return value.numpy()


def _mixture_like(mixture: ArrayLike, reference: Tensor) -> Tensor:
    mixture_tensor = _as_float64(mixture, "mixture")
    if mixture_tensor.dim() == reference.dim() - 1:
        mixture_tensor = mixture_tensor.unsqueeze(-2)  # ..., 1, time: one mixture, S sources
    return mixture_tensor


def si_sdr_improvement(estimate: ArrayLike, reference: ArrayLike, mixture: ArrayLike) -> np.ndarray:
    """SI-SDR improvement over the unprocessed mixture, in dB.

    Args:
        estimate: Shape ``(..., sources, time)`` or ``(..., time)``.
        reference: Same shape as ``estimate``.
        mixture: Shape ``(..., time)`` (one mixture for all sources) or the shape of
            ``reference``.

    Returns:
        ``si_sdr(estimate, reference) - si_sdr(mixture, reference)``, shape ``(..., sources)``.
    """
    reference_tensor = _as_float64(reference, "reference")
    mixture_tensor = _mixture_like(mixture, reference_tensor)
    return si_sdr(estimate, reference_tensor) - si_sdr(mixture_tensor, reference_tensor)


def sdr(
    estimate: ArrayLike, reference: ArrayLike, filter_length: int = 512, zero_mean: bool = False
) -> np.ndarray:
    """BSS-eval SDR in dB (``bss_eval_sources`` with a ``filter_length``-tap distortion filter).

    Sources are compared in the given order; line them up first with
    :func:`best_permutation` when the order is arbitrary.

    Args:
        estimate: Shape ``(..., time)``.
        reference: Broadcastable to ``estimate``, shape ``(..., time)``.
        filter_length: Distortion filter taps (512 as in BSS-eval v3 / ``mir_eval``).
        zero_mean: Remove the means first (BSS-eval does not).

    Returns:
        SDR per signal, shape ``(...)``.
    """
    with torch.no_grad():
        value = losses.sdr(
            _as_float64(estimate, "estimate"),
            _as_float64(reference, "reference"),
            filter_length=filter_length,
            zero_mean=zero_mean,
            eps=1e-12,
        )
    return value.numpy()


def sdr_improvement(
    estimate: ArrayLike, reference: ArrayLike, mixture: ArrayLike, filter_length: int = 512
) -> np.ndarray:
    """BSS-eval SDR improvement over the mixture, shapes as :func:`si_sdr_improvement`."""
    reference_tensor = _as_float64(reference, "reference")
    mixture_tensor = _mixture_like(mixture, reference_tensor)
    return sdr(estimate, reference_tensor, filter_length) - sdr(
        mixture_tensor, reference_tensor, filter_length
    )


def best_permutation(
    estimates: ArrayLike,
    references: ArrayLike,
    metric: Callable[[ArrayLike, ArrayLike], np.ndarray] = si_sdr,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The order of ``estimates`` that maximises the mean ``metric`` against ``references``.

    Args:
        estimates: Shape ``(sources, time)``.
        references: Shape ``(sources, time)``.
        metric: Higher-is-better metric mapping ``(..., time)`` pairs to ``(...)``.

    Returns:
        ``(reordered_estimates, permutation)`` with ``reordered[j] = estimates[permutation[j]]``.
    """
    estimate_array = _as_float64(estimates, "estimates").numpy()
    reference_array = _as_float64(references, "references").numpy()
    if estimate_array.ndim != 2 or estimate_array.shape != reference_array.shape:
        raise ValueError(
            "estimates and references must both have shape (sources, time); got "
            f"{estimate_array.shape} and {reference_array.shape}."
        )
    num_sources = estimate_array.shape[0]
    pairwise = metric(estimate_array[:, None, :], reference_array[None, :, :])  # S_est, S_ref
    best = max(
        itertools.permutations(range(num_sources)),
        key=lambda perm: sum(pairwise[perm[j], j] for j in range(num_sources)),
    )
    return estimate_array[list(best)], tuple(best)


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class DetCurve:
    """Operating points of a verification system, one per candidate threshold.

    Attributes:
        thresholds: Ascending thresholds, shape ``(points,)``; the last is ``+inf`` (reject
            everything).
        false_accept_rates: Non-target fraction with ``score >= threshold``, shape
            ``(points,)`` (decreasing).
        false_reject_rates: Target fraction with ``score < threshold``, shape ``(points,)``
            (increasing).
    """

    thresholds: np.ndarray
    false_accept_rates: np.ndarray
    false_reject_rates: np.ndarray


def _check_trials(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    score_array = np.asarray(
        scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64
    )
    label_array = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if score_array.ndim != 1 or label_array.shape != score_array.shape:
        raise ValueError(
            "scores and labels must both have shape (trials,); got "
            f"{score_array.shape} and {label_array.shape}."
        )
    if not np.isfinite(score_array).all():
        raise ValueError("scores contain NaN or infinite values.")
    if not np.isin(label_array, (0, 1)).all():
        raise ValueError("labels must be 1 (target trial) or 0 (non-target trial).")
    label_array = label_array.astype(bool)
    if label_array.all() or not label_array.any():
        raise ValueError("Need at least one target (label 1) and one non-target (label 0) trial.")
    return score_array, label_array


def det_curve(scores: ArrayLike, labels: ArrayLike) -> DetCurve:
    """False-accept and false-reject rates at every distinct score used as the threshold.

    Args:
        scores: Trial scores, higher means more likely the same speaker, shape ``(trials,)``.
        labels: 1 for target trials, 0 for non-target trials, shape ``(trials,)``.

    Returns:
        The :class:`DetCurve`, from "accept everything" (lowest score) to "reject
        everything" (``+inf``).
    """
    score_array, label_array = _check_trials(scores, labels)
    order = np.argsort(score_array, kind="stable")
    sorted_scores = score_array[order]
    sorted_labels = label_array[order]
    thresholds, first_index = np.unique(sorted_scores, return_index=True)
    # Trials strictly below threshold t are exactly those before its first occurrence.
    targets_below = np.concatenate(([0], np.cumsum(sorted_labels)))[first_index]
    nontargets_below = np.concatenate(([0], np.cumsum(~sorted_labels)))[first_index]
    num_targets = label_array.sum()
    num_nontargets = label_array.size - num_targets
    false_reject = np.append(targets_below, num_targets) / num_targets
    false_accept = (num_nontargets - np.append(nontargets_below, num_nontargets)) / num_nontargets
    return DetCurve(np.append(thresholds, np.inf), false_accept, false_reject)


def eer_with_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs.

    The DET points are joined by straight lines and the EER is where that line crosses
    ``false accept = false reject`` (the same as interpolating the ROC, as scikit-learn based
    recipes do). The threshold is interpolated the same way between the two points.

    Args:
        scores: Shape ``(trials,)``.
        labels: Shape ``(trials,)``, 1 target / 0 non-target.

    Returns:
        ``(eer, threshold)`` with ``eer`` a fraction in ``[0, 1]``.
    """
    curve = det_curve(scores, labels)
    difference = curve.false_reject_rates - curve.false_accept_rates  # increasing
    index = int(np.argmax(difference >= 0))  # first point at or past the crossing
    if index == 0 or difference[index] == 0:
        return float(curve.false_reject_rates[index]), float(curve.thresholds[index])
    before, after = difference[index - 1], difference[index]
    weight = -before / (after - before)
    eer = curve.false_reject_rates[index - 1] + weight * (
        curve.false_reject_rates[index] - curve.false_reject_rates[index - 1]
    )
    low, high = curve.thresholds[index - 1], curve.thresholds[index]
    threshold = low + weight * (high - low) if np.isfinite(high) else low
    return float(eer), float(threshold)


def eer(scores: ArrayLike, labels: ArrayLike) -> float:
    """Equal error rate (a fraction), see :func:`eer_with_threshold`."""
    return eer_with_threshold(scores, labels)[0]


def min_dcf_with_threshold(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Minimum normalised detection cost and the threshold that reaches it.

    ``DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t)``, divided by
    the cost of the best trivial system ``min(c_miss * p_target, c_fa * (1 - p_target))``
    and minimised over all thresholds (NIST SRE 2008-2016, VoxCeleb SRC).

    Args:
        scores: Shape ``(trials,)``.
        labels: Shape ``(trials,)``, 1 target / 0 non-target.
        p_target: Prior probability of a target trial.
        c_miss: Cost of a false reject.
        c_fa: Cost of a false accept.

    Returns:
        ``(min_dcf, threshold)``.
    """
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError(
            f"Need 0 < p_target < 1 and positive costs; got {p_target}, {c_miss}, {c_fa}."
        )
    curve = det_curve(scores, labels)
    costs = c_miss * p_target * curve.false_reject_rates + c_fa * (1 - p_target) * (
        curve.false_accept_rates
    )
    costs = costs / min(c_miss * p_target, c_fa * (1 - p_target))
    index = int(np.argmin(costs))
    return float(costs[index]), float(curve.thresholds[index])


def min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalised detection cost, see :func:`min_dcf_with_threshold`."""
    return min_dcf_with_threshold(scores, labels, p_target, c_miss, c_fa)[0]


def threshold_for_false_accept_rate(
    scores: ArrayLike, labels: ArrayLike, false_accept_rate: float
) -> float:
    """The lowest threshold whose false-accept rate is at most ``false_accept_rate``.

    Args:
        scores: Shape ``(trials,)``.
        labels: Shape ``(trials,)``, 1 target / 0 non-target.
        false_accept_rate: Target rate in ``[0, 1]``.

    Returns:
        The threshold (``+inf`` only when no finite threshold meets the rate).
    """
    if not 0 <= false_accept_rate <= 1:
        raise ValueError(f"false_accept_rate must lie in [0, 1], got {false_accept_rate}.")
    curve = det_curve(scores, labels)
    index = int(np.argmax(curve.false_accept_rates <= false_accept_rate))
    return float(curve.thresholds[index])


def probit(probabilities: ArrayLike, floor: float = 1e-6) -> np.ndarray:
    """Standard normal deviate of each probability (the axes of a DET plot).

    Args:
        probabilities: Values in ``[0, 1]``, any shape; clipped to ``[floor, 1 - floor]``.
        floor: Clipping bound that keeps 0 and 1 finite.

    Returns:
        ``Phi^-1(p)``, same shape.
    """
    values = np.clip(np.asarray(probabilities, dtype=np.float64), floor, 1 - floor)
    normal = statistics.NormalDist()
    return np.vectorize(normal.inv_cdf, otypes=[np.float64])(values)
