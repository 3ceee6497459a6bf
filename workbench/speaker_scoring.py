"""Verification and identification against the speaker database (NumPy; no torch, no Qt).

Scores are cosine similarities between length-normalised embeddings, optionally
AS-normalised against a cohort (adaptive symmetric normalisation, Matejka et al. 2017: each
side is z-normalised with the mean and deviation of its ``top_k`` highest cohort scores, and
the two are averaged). A threshold is always in the same units as the score it is compared
with, so a normalised score needs a threshold calibrated on normalised scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    """A verification result.

    Attributes:
        score: The (possibly normalised) similarity.
        threshold: The operating point in the same units.
        accepted: ``score >= threshold``.
        margin: ``score - threshold`` (positive means accepted).
        normalised: Whether AS-norm was applied.
    """

    score: float
    threshold: float
    accepted: bool
    margin: float
    normalised: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "decision": "accept" if self.accepted else "reject",
            "accepted": self.accepted,
            "margin": self.margin,
            "normalised": self.normalised,
        }


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Length-normalise rows of ``vectors`` (``(n, dim)`` or ``(dim,)``)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings of shape ``(dim,)``."""
    return float(np.dot(normalise(a), normalise(b)))


class AdaptiveSNorm:
    """AS-norm with a fixed cohort of impostor embeddings.

    Args:
        cohort: Shape ``(cohort_size, dim)``; embeddings of speakers who are neither the
            enrolled nor the test speaker.
        top_k: How many of the highest cohort scores define each side's statistics.
    """

    def __init__(self, cohort: np.ndarray, top_k: int = 200) -> None:
        cohort = np.asarray(cohort)
        if cohort.ndim != 2 or cohort.shape[0] < 2:
            raise ValueError(
                f"The AS-norm cohort needs at least 2 embeddings shaped (n, dim), got "
                f"{cohort.shape}."
            )
        self.cohort = normalise(cohort)
        self.top_k = max(1, min(int(top_k), self.cohort.shape[0]))

    def _stats(self, embedding: np.ndarray) -> tuple[float, float]:
        scores = self.cohort @ normalise(embedding)
        top = np.sort(scores)[-self.top_k :]
        return float(top.mean()), float(max(top.std(), 1e-6))

    def __call__(self, enrol: np.ndarray, test: np.ndarray) -> float:
        raw = cosine(enrol, test)
        mean_e, std_e = self._stats(enrol)
        mean_t, std_t = self._stats(test)
        return 0.5 * ((raw - mean_e) / std_e + (raw - mean_t) / std_t)


def score(enrol: np.ndarray, test: np.ndarray, norm: AdaptiveSNorm | None = None) -> float:
    """Raw cosine, or the AS-normalised score when ``norm`` is given."""
    return norm(enrol, test) if norm is not None else cosine(enrol, test)


def verify(
    voiceprint: np.ndarray,
    test: np.ndarray,
    threshold: float,
    norm: AdaptiveSNorm | None = None,
) -> Decision:
    """Decide whether ``test`` comes from the speaker whose ``voiceprint`` is given."""
    value = score(voiceprint, test, norm)
    return Decision(
        score=value,
        threshold=float(threshold),
        accepted=value >= threshold,
        margin=value - float(threshold),
        normalised=norm is not None,
    )


def identify(
    voiceprints: dict[str, np.ndarray],
    test: np.ndarray,
    norm: AdaptiveSNorm | None = None,
) -> list[tuple[str, float]]:
    """Enrolled speakers ranked by score against ``test``, best first."""
    ranked = [(name, score(vector, test, norm)) for name, vector in voiceprints.items()]
    return sorted(ranked, key=lambda item: item[1], reverse=True)
