"""Training heads and regularisers for speaker encoders.

* :class:`AAMSoftmax`: additive angular margin softmax (ArcFace, Deng et al. 2019), the loss
  D-TDNN-SS, SpeechNAS and ECAPA-TDNN are trained with. Logits are ``scale * cos(theta_j)``
  for the other classes and ``scale * cos(theta_y + margin)`` for the true class.
* :func:`hyperspherical_energy` / :class:`MinimumHypersphericalEnergy`: the MHE regulariser
  (Liu et al., NeurIPS 2018) that SpeechNAS adds to AAM-softmax: the mean pairwise energy of
  the normalised class vectors, which is lowest when they spread evenly over the sphere.
* :class:`SoftmaxHead`: a linear classifier with cross-entropy, for training supernets, where
  a margin would slow the shared weights' early progress.

Every head takes embeddings ``(batch, embedding_dim)`` and integer labels ``(batch,)`` and
returns a scalar loss; ``logits`` returns ``(batch, num_classes)`` for accuracy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_inputs(embeddings: Tensor, labels: Tensor | None, embedding_dim: int, num_classes: int):
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_dim or embeddings.shape[0] == 0:
        raise ValueError(
            f"Expected embeddings of shape (batch >= 1, {embedding_dim}), "
            f"got shape {tuple(embeddings.shape)}."
        )
    if not torch.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or infinite values.")
    if labels is None:
        return
    if labels.shape != (embeddings.shape[0],) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"Expected integer labels of shape ({embeddings.shape[0]},), got shape "
            f"{tuple(labels.shape)} and dtype {labels.dtype}."
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}).")


def hyperspherical_energy(
    vectors: Tensor, power: float = 2.0, angular: bool = False, eps: float = 1e-6
) -> Tensor:
    """Mean pairwise hyperspherical energy of the normalised rows of ``vectors``.

    ``E = 1 / (N (N - 1)) * sum_{i != j} f(d_ij)`` with ``f(d) = d^-power`` for ``power > 0``
    and ``f(d) = log(1 / d)`` for ``power == 0``; ``d_ij`` is the Euclidean distance between
    the unit vectors, or with ``angular`` their geodesic distance ``arccos(<w_i, w_j>)``
    (A-MHE).

    Args:
        vectors: Tensor of shape ``(N, dim)``, ``N >= 2`` (e.g. class weight vectors).
        power: The ``s`` of the Riesz ``s``-energy; 0 gives the logarithmic energy.
        angular: Use geodesic instead of Euclidean distances.
        eps: Floor on distances, so coincident vectors give a large finite energy.

    Returns:
        Scalar tensor.
    """
    if vectors.dim() != 2 or vectors.shape[0] < 2:
        raise ValueError(f"Expected vectors of shape (N >= 2, dim), got {tuple(vectors.shape)}.")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}.")
    unit = F.normalize(vectors, dim=1)
    cosine = unit @ unit.T
    count = unit.shape[0]
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=unit.device)
    cosine = cosine[off_diagonal]
    if angular:
        distance = torch.acos(cosine.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    else:
        # |a - b|^2 = 2 - 2 <a, b> for unit vectors; cheaper than cdist and exact here.
        distance = (2.0 - 2.0 * cosine).clamp_min(0.0).sqrt()
    distance = distance.clamp_min(eps)
    energy = -distance.log() if power == 0 else distance.pow(-power)
    return energy.mean()


class MinimumHypersphericalEnergy(nn.Module):
    """MHE regulariser on a classifier's weight vectors.

    Args:
        power: Riesz ``s`` (0: logarithmic energy).
        angular: Geodesic distances (A-MHE).
    """

    def __init__(self, power: float = 2.0, angular: bool = False) -> None:
        super().__init__()
        self.power = power
        self.angular = angular

    def forward(self, weight: Tensor, labels: Tensor | None = None) -> Tensor:
        """Energy of the rows of ``weight`` (``(num_classes, dim)``).

        With ``labels``, only the classes present in the batch take part (the mini-batch
        approximation of the MHE paper; the full ``num_classes^2`` matrix is costly for
        thousands of speakers). Fewer than two distinct classes give zero.
        """
        if labels is not None:
            classes = labels.unique()
            if classes.numel() < 2:
                return weight.sum() * 0.0
            weight = weight[classes]
        return hyperspherical_energy(weight, self.power, self.angular)


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace), optionally with an MHE term.

    Args:
        embedding_dim: Size of the embeddings.
        num_classes: Number of training speakers.
        margin: Angular margin ``m`` in radians.
        scale: Logit scale ``s``.
        mhe_weight: Weight of the MHE regulariser on the class vectors (0 disables).
        mhe_power: Riesz ``s`` of the MHE term.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.2,
        scale: float = 30.0,
        mhe_weight: float = 0.0,
        mhe_power: float = 2.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2), got {margin}.")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.margin = margin
        self.scale = scale
        self.mhe_weight = mhe_weight
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.mhe = MinimumHypersphericalEnergy(mhe_power)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosine between each embedding and each class vector, ``(batch, num_classes)``."""
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T

    def logits(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Scaled logits, with the margin on the true class when ``labels`` are given.

        Args:
            embeddings: Tensor of shape ``(batch, embedding_dim)``.
            labels: Optional integer tensor of shape ``(batch,)``.

        Returns:
            Tensor of shape ``(batch, num_classes)``.
        """
        _check_inputs(embeddings, labels, self.embedding_dim, self.num_classes)
        cosine = self.cosine(embeddings)
        if labels is None or self.margin == 0.0:
            return self.scale * cosine
        target = cosine.gather(1, labels.unsqueeze(1)).clamp(-1.0, 1.0)
        sine = (1.0 - target.square()).clamp_min(0.0).sqrt()
        with_margin = target * math.cos(self.margin) - sine * math.sin(self.margin)
        # Past theta = pi - m, cos(theta + m) would rise again; continue it linearly
        # downwards instead (the insightface convention) so the logit stays monotonic.
        fallback = target - math.sin(math.pi - self.margin) * self.margin
        with_margin = torch.where(target > math.cos(math.pi - self.margin), with_margin, fallback)
        cosine = cosine.scatter(1, labels.unsqueeze(1), with_margin)
        return self.scale * cosine

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy over margin logits (plus ``mhe_weight`` times the MHE term).

        Args:
            embeddings: Tensor of shape ``(batch, embedding_dim)``.
            labels: Integer tensor of shape ``(batch,)``.

        Returns:
            Scalar loss.
        """
        loss = F.cross_entropy(self.logits(embeddings, labels), labels)
        if self.mhe_weight > 0.0:
            loss = loss + self.mhe_weight * self.mhe(self.weight, labels)
        return loss


class SoftmaxHead(nn.Module):
    """Linear classifier with softmax cross-entropy (for supernet training).

    Args:
        embedding_dim: Size of the embeddings.
        num_classes: Number of training speakers.
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def logits(self, embeddings: Tensor) -> Tensor:
        """Class scores of shape ``(batch, num_classes)`` for ``(batch, embedding_dim)``."""
        _check_inputs(embeddings, None, self.embedding_dim, self.num_classes)
        return self.classifier(embeddings)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of ``(batch, embedding_dim)`` embeddings against ``(batch,)`` labels."""
        _check_inputs(embeddings, labels, self.embedding_dim, self.num_classes)
        return F.cross_entropy(self.classifier(embeddings), labels)
