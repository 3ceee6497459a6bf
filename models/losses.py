"""Waveform losses for separation: SI-SDR, SDR, thresholded SNR and permutation-invariant training.

Every measure here is a *ratio in dB, higher is better*, computed over the last (time) axis
and broadcast over any leading axes; the ``negative_*`` functions and
:func:`thresholded_snr_loss` are the corresponding losses (lower is better). All functions are
differentiable and run on whatever device and dtype their inputs have; the evaluation metrics
in :mod:`models.metrics` call the same code in float64.

* SI-SDR (Le Roux et al., "SDR - half-baked or well done?", 2019): the estimate is compared
  with the best-scaled target, so gain errors are not penalised.
* SDR, BSS-eval style (Vincent et al. 2006, as ``mir_eval.separation.bss_eval_sources`` and
  ``fast_bss_eval.sdr``): the target may be filtered by an FIR filter of ``filter_length``
  taps (512 by convention) before the comparison, so short linear distortions are forgiven.
* SNR with a soft cap (Wisdom et al., MixIT 2020; used by TUSS, Saijo et al. 2025): the noise
  power is floored by ``tau * target power`` with ``tau = 10 ** (-snr_max / 10)``, so the loss
  saturates at ``snr_max`` dB and well-separated examples stop dominating the gradient.

:func:`pit_loss` evaluates a per-source loss for every estimate/target pair once, then picks
the best assignment among all permutations (optionally only permutations within groups, e.g.
TUSS prompts: two ``speech`` outputs may swap, a ``speech`` and an ``sfx`` output may not).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from functools import cache

import torch
from torch import Tensor

#: Largest source count :func:`pit_loss` searches exhaustively (8! = 40320 assignments of a
#: precomputed pairwise matrix, still cheap); beyond it the count explodes.
MAX_PIT_SOURCES = 8

PairwiseLoss = Callable[[Tensor, Tensor], Tensor]


def _check_pair(estimate: Tensor, target: Tensor, name: str = "estimate") -> None:
    if not isinstance(estimate, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"{name} and target must be tensors of shape (..., time).")
    if estimate.dim() == 0 or target.dim() == 0:
        raise ValueError(
            f"{name} and target must have shape (..., time); got {tuple(estimate.shape)} "
            f"and {tuple(target.shape)}."
        )
    if estimate.shape[-1] != target.shape[-1]:
        raise ValueError(
            f"{name} and target must have the same time length (..., time); got "
            f"{tuple(estimate.shape)} and {tuple(target.shape)}."
        )
    if estimate.shape[-1] == 0:
        raise ValueError(f"{name} and target are empty along time: {tuple(estimate.shape)}.")


def _db(numerator: Tensor, denominator: Tensor, eps: float) -> Tensor:
    return 10 * torch.log10((numerator + eps) / (denominator + eps))


def si_sdr(estimate: Tensor, target: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB.

    Args:
        estimate: Estimated signals, shape ``(..., time)``.
        target: Reference signals, broadcastable to ``estimate``, shape ``(..., time)``.
        zero_mean: Remove the mean of both signals first (the usual SI-SDR definition).
        eps: Stabiliser added to both energies.

    Returns:
        SI-SDR per signal, shape ``(...)`` (the broadcast leading shape).
    """
    _check_pair(estimate, target)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(dim=-1, keepdim=True) / (
        target.pow(2).sum(dim=-1, keepdim=True) + eps
    )
    projection = scale * target
    noise = estimate - projection
    return _db(projection.pow(2).sum(dim=-1), noise.pow(2).sum(dim=-1), eps)


def snr(
    estimate: Tensor, target: Tensor, snr_max: float | None = None, eps: float = 1e-8
) -> Tensor:
    """Signal-to-noise ratio in dB, optionally soft-capped at ``snr_max`` (TUSS / MixIT).

    With a cap, ``10 log10(|s|^2 / (|s - s_hat|^2 + tau |s|^2))`` with
    ``tau = 10 ** (-snr_max / 10)``: equal to the SNR far below the cap and tending to
    ``snr_max`` as the estimate becomes perfect.

    Args:
        estimate: Estimated signals, shape ``(..., time)``.
        target: Reference signals, broadcastable to ``estimate``, shape ``(..., time)``.
        snr_max: Soft cap in dB, or ``None`` for the plain SNR.
        eps: Stabiliser added to both energies.

    Returns:
        SNR per signal, shape ``(...)``.
    """
    _check_pair(estimate, target)
    target_power = target.pow(2).sum(dim=-1)
    noise_power = (estimate - target).pow(2).sum(dim=-1)
    if snr_max is not None:
        noise_power = noise_power + 10 ** (-snr_max / 10) * target_power
    return _db(target_power, noise_power, eps)


@cache
def _toeplitz_index(size: int) -> Tensor:
    positions = torch.arange(size)
    return (positions[:, None] - positions[None, :]).abs()


def sdr(
    estimate: Tensor,
    target: Tensor,
    filter_length: int = 512,
    zero_mean: bool = False,
    load_diagonal: float = 0.0,
    eps: float = 1e-8,
) -> Tensor:
    """BSS-eval signal-to-distortion ratio in dB with a distortion filter.

    The estimate is projected on the span of ``filter_length`` delayed copies of the target
    (the target filtered by the best FIR filter); SDR is the energy of that projection over
    the energy of the rest. This is the SDR of ``bss_eval_sources`` (``mir_eval``,
    ``fast_bss_eval``), which only ever projects on the source's own reference. The
    correlations are computed with FFTs and the Toeplitz normal equations solved directly.

    Args:
        estimate: Estimated signals, shape ``(..., time)``.
        target: Reference signals, broadcastable to ``estimate``, shape ``(..., time)``.
        filter_length: Taps of the distortion filter (512 in BSS-eval); 1 gives the SNR of
            the best-scaled target (SI-SDR without mean removal).
        zero_mean: Remove the means first.
        load_diagonal: Added to the autocorrelation diagonal, relative to the target energy;
            0 reproduces BSS-eval exactly, a small value (1e-10) keeps silent or
            band-limited targets solvable.
        eps: Stabiliser of the final ratio.

    Returns:
        SDR per signal, shape ``(...)``.
    """
    _check_pair(estimate, target)
    if filter_length < 1:
        raise ValueError(f"filter_length must be >= 1, got {filter_length}.")
    estimate, target = torch.broadcast_tensors(estimate, target)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
    length = target.shape[-1]
    taps = filter_length
    n_fft = 2 ** math.ceil(math.log2(length + taps - 1))
    target_spectrum = torch.fft.rfft(target, n=n_fft)
    estimate_spectrum = torch.fft.rfft(estimate, n=n_fft)
    # r[k] = sum_n s[n + k] s[n]; c[k] = sum_n s_hat[n] s[n - k], lags k = 0 .. taps - 1.
    autocorrelation = torch.fft.irfft(target_spectrum * target_spectrum.conj(), n=n_fft)[..., :taps]
    crosscorrelation = torch.fft.irfft(estimate_spectrum * target_spectrum.conj(), n=n_fft)[
        ..., :taps
    ]
    gram = autocorrelation[..., _toeplitz_index(taps).to(target.device)]  # ..., taps, taps
    if load_diagonal:
        loading = load_diagonal * autocorrelation[..., :1, None]
        gram = gram + loading * torch.eye(taps, dtype=gram.dtype, device=gram.device)
    coefficients = torch.linalg.solve(gram, crosscorrelation.unsqueeze(-1)).squeeze(-1)
    # Orthogonal projection: |P s_hat|^2 = c . h and |s_hat - P s_hat|^2 = |s_hat|^2 - c . h.
    projected = (crosscorrelation * coefficients).sum(dim=-1)
    residual = (estimate.pow(2).sum(dim=-1) - projected).clamp_min(0.0)
    return _db(projected.clamp_min(0.0), residual, eps)


def negative_si_sdr(estimate: Tensor, target: Tensor) -> Tensor:
    """``-si_sdr``: a loss of shape ``(...)`` for ``(..., time)`` inputs."""
    return -si_sdr(estimate, target)


def negative_snr(estimate: Tensor, target: Tensor, snr_max: float | None = None) -> Tensor:
    """``-snr`` (optionally capped): a loss of shape ``(...)`` for ``(..., time)`` inputs."""
    return -snr(estimate, target, snr_max=snr_max)


def negative_sdr(estimate: Tensor, target: Tensor, filter_length: int = 512) -> Tensor:
    """``-sdr`` (BSS-eval, with a small diagonal load so silent targets stay finite)."""
    return -sdr(estimate, target, filter_length=filter_length, load_diagonal=1e-10)


def thresholded_snr_loss(
    estimate: Tensor,
    target: Tensor,
    mixture: Tensor | None = None,
    snr_max: float = 30.0,
    zero_reference_weight: float = 0.1,
    eps: float = 1e-7,
) -> Tensor:
    """TUSS training loss: negative soft-capped SNR, with a rule for silent targets.

    For an active target this is ``-snr(estimate, target, snr_max)``. A silent target (all
    zeros, e.g. a prompt whose source is absent) has no power to compare with, so the loss is
    ``10 log10(|s_hat|^2 + tau |mixture|^2)``: the estimate's energy, floored relative to the
    mixture, weighted by ``zero_reference_weight`` (a high weight destabilises training).

    Args:
        estimate: Estimates, shape ``(..., time)`` (e.g. ``(batch, sources, time)``).
        target: References, same shape.
        mixture: The mixture, broadcastable to ``target`` (e.g. ``(batch, 1, time)``); defaults
            to the sum of the targets over axis ``-2``.
        snr_max: Soft cap in dB.
        zero_reference_weight: Weight of the silent-target terms.
        eps: Stabiliser inside the logarithms.

    Returns:
        Loss per signal, shape ``(...)``.
    """
    _check_pair(estimate, target)
    if mixture is None:
        if target.dim() < 2:
            raise ValueError("Give mixture for targets without a source axis (..., sources, time).")
        mixture = target.sum(dim=-2, keepdim=True)
    tau = 10 ** (-snr_max / 10)
    target_power = target.pow(2).sum(dim=-1)
    mixture_power = mixture.pow(2).sum(dim=-1).expand_as(target_power)
    active = target_power > 0
    reference_power = torch.where(active, target_power, mixture_power)
    noise_power = (estimate - target).pow(2).sum(dim=-1)
    loss = 10 * torch.log10(noise_power + tau * reference_power + eps)
    loss = loss - torch.where(active, 10 * torch.log10(reference_power + eps), 0.0)
    return torch.where(active, loss, zero_reference_weight * loss)


@cache
def _permutations(num_sources: int) -> Tensor:
    return torch.tensor(list(itertools.permutations(range(num_sources))), dtype=torch.long)


def pit_loss(
    loss_fn: PairwiseLoss,
    estimates: Tensor,
    targets: Tensor,
    groups: Sequence[Hashable] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Permutation-invariant loss: the best assignment of estimates to targets per example.

    ``loss_fn`` is called once on all pairs (estimates ``(batch, S, 1, time)`` against targets
    ``(batch, 1, S, time)``); every permutation is then scored by gathering from that
    ``(batch, S, S)`` matrix, so the search costs ``S!`` gathers, not ``S!`` loss evaluations.

    Args:
        loss_fn: Per-signal loss, lower is better, mapping ``(..., time)`` pairs to ``(...)``
            (e.g. :func:`negative_si_sdr`, or ``functools.partial(thresholded_snr_loss,
            mixture=mixture.unsqueeze(1).unsqueeze(1))`` for the TUSS loss).
        estimates: Estimates, shape ``(batch, num_sources, time)``.
        targets: References, shape ``(batch, num_sources, time)``.
        groups: Only permute sources within a group: a label per source shared by the batch
            (e.g. the prompt names) or a tensor ``(batch, num_sources)`` of group ids per
            example. ``None`` allows every permutation.

    Returns:
        ``(loss, permutation)``: the mean loss over sources of the best assignment, shape
        ``(batch,)``, and that assignment, shape ``(batch, num_sources)``, where
        ``permutation[b, j]`` is the index of the estimate matched to target ``j`` (so
        :func:`reorder_sources` lines the estimates up with the targets).
    """
    if estimates.dim() != 3 or targets.dim() != 3 or estimates.shape != targets.shape:
        raise ValueError(
            "estimates and targets must both have shape (batch, num_sources, time); got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}."
        )
    batch, num_sources, _ = estimates.shape
    if not 1 <= num_sources <= MAX_PIT_SOURCES:
        raise ValueError(
            f"pit_loss searches 1 to {MAX_PIT_SOURCES} sources exhaustively; got {num_sources}."
        )
    pairwise = loss_fn(estimates.unsqueeze(2), targets.unsqueeze(1))  # B, S_est, S_target
    if pairwise.shape != (batch, num_sources, num_sources):
        raise ValueError(
            "loss_fn must map (..., time) pairs to (...); on all pairs it returned shape "
            f"{tuple(pairwise.shape)}, expected {(batch, num_sources, num_sources)}."
        )
    permutations = _permutations(num_sources).to(estimates.device)  # P, S
    targets_index = torch.arange(num_sources, device=estimates.device)
    # pairwise[b, perm[j], j] summed over j, for every permutation: B, P
    scores = pairwise[:, permutations, targets_index].mean(dim=-1)
    allowed = _allowed_permutations(groups, permutations, batch, num_sources)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("inf"))
    loss, best = scores.min(dim=1)
    return loss, permutations[best]


def _allowed_permutations(
    groups: Sequence[Hashable] | Tensor | None, permutations: Tensor, batch: int, num_sources: int
) -> Tensor | None:
    """Mask ``(batch, P)`` of permutations that only swap sources within one group."""
    if groups is None:
        return None
    if isinstance(groups, Tensor):
        ids = groups.to(permutations.device).long()
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
    else:
        labels = list(groups)
        codes = {label: index for index, label in enumerate(dict.fromkeys(labels))}
        ids = torch.tensor([[codes[label] for label in labels]], device=permutations.device)
    if ids.shape[-1] != num_sources or ids.shape[0] not in (1, batch):
        raise ValueError(
            f"groups must hold one label per source ({num_sources}) or have shape "
            f"(batch, num_sources) = ({batch}, {num_sources}); got {tuple(ids.shape)}."
        )
    permuted = ids[:, permutations]  # B, P, S: group of the estimate assigned to target j
    return (permuted == ids.unsqueeze(1)).all(dim=-1).expand(batch, -1)


def reorder_sources(estimates: Tensor, permutation: Tensor) -> Tensor:
    """Reorder estimates so estimate ``permutation[b, j]`` becomes source ``j``.

    Args:
        estimates: Shape ``(batch, num_sources, time)``.
        permutation: Shape ``(batch, num_sources)`` as returned by :func:`pit_loss`.

    Returns:
        Reordered estimates, shape ``(batch, num_sources, time)``.
    """
    index = permutation.unsqueeze(-1).expand(-1, -1, estimates.shape[-1])
    return estimates.gather(1, index)
