"""Verification, identification and AS-norm, against direct NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.speaker_scoring import AdaptiveSNorm, cosine, identify, verify


def test_cosine_matches_definition() -> None:
    a, b = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 2.0])
    expected = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert cosine(a, b) == pytest.approx(expected)


def test_verify_reports_score_threshold_decision_margin() -> None:
    a = np.array([1.0, 0.0])
    decision = verify(a, np.array([1.0, 1.0]), threshold=0.5)
    assert decision.score == pytest.approx(np.sqrt(0.5))
    assert decision.accepted and decision.margin == pytest.approx(np.sqrt(0.5) - 0.5)
    assert verify(a, np.array([0.0, 1.0]), threshold=0.5).as_dict()["decision"] == "reject"


def test_identify_ranks_best_first() -> None:
    prints = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 1.0])}
    ranked = identify(prints, np.array([0.9, 0.1]))
    assert [name for name, _ in ranked] == ["a", "c", "b"]


def test_as_norm_against_direct_formula() -> None:
    rng = np.random.default_rng(0)
    cohort = rng.standard_normal((50, 8))
    enrol, test = rng.standard_normal(8), rng.standard_normal(8)
    norm = AdaptiveSNorm(cohort, top_k=10)

    def unit(x):
        return x / np.linalg.norm(x)

    raw = unit(enrol) @ unit(test)
    ce = np.sort(np.array([unit(c) @ unit(enrol) for c in cohort]))[-10:]
    ct = np.sort(np.array([unit(c) @ unit(test) for c in cohort]))[-10:]
    expected = 0.5 * ((raw - ce.mean()) / ce.std() + (raw - ct.mean()) / ct.std())
    assert norm(enrol, test) == pytest.approx(expected)
    with pytest.raises(ValueError, match="cohort"):
        AdaptiveSNorm(np.zeros(3))
