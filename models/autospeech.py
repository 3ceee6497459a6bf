"""AutoSpeech: a DARTS cell network over the 2-D time-frequency feature map.

AutoSpeech (Ding et al., 2020; ``VITA-Group/AutoSpeech``) searches a cell with DARTS and
builds the speaker encoder by stacking it. The features ``(batch, frames, num_mels)`` are
treated as a one-channel image (frames x mel bins). A cell takes the outputs of the two
previous cells, has ``steps`` (4) intermediate nodes, each the sum of two operations on
earlier states, and outputs the concatenation of its last ``multiplier`` (4) nodes. Cells at
1/3 and 2/3 of the depth are reduction cells (stride 2, doubled channels). The operations are
the eight standard DARTS ones (:data:`PRIMITIVES`).

One config covers both networks:

* ``search=True``: the search network. Every edge of a cell is a mixed operation, the softmax
  (or Gumbel-softmax, as AutoSpeech trains it) of one architecture weight per operation
  times every candidate. The architecture weights (:meth:`AutoSpeech.arch_parameters`) and
  the network weights (:meth:`AutoSpeech.weight_parameters`) are separate lists, as the
  bi-level DARTS update needs. :meth:`AutoSpeech.genotype` derives the discrete cell the
  DARTS way (per node, the two strongest incoming edges and on each its strongest operation
  other than ``none``) and :meth:`AutoSpeech.derive_config` returns it as a config.
* ``search=False``: the derived network, built from the genotype in ``normal`` and
  ``reduce``, each a tuple of ``(operation, input_state)`` pairs, two per node. The
  published AutoSpeech cell is the default.

The stems follow the reference: a 3x3 convolution and max-pool for the search network, the
DARTS "ImageNet" stem (three stride-2 convolutions) for the derived one. AutoSpeech fed a
257-bin log spectrogram; here the input is whatever ``features`` gives (80 log-mel bins by
default). That changes no parameter count (the network ends in global average pooling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.features import BatchedFeatures, FeatureConfig, check_features
from models.registry import ModelSpec

#: The eight standard DARTS operations (Liu et al. 2019), AutoSpeech's search space "s2".
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: A cell: for each intermediate node, two ``(operation, input_state)`` pairs.
Genotype = tuple[tuple[str, int], ...]

#: The cells AutoSpeech published (README of VITA-Group/AutoSpeech).
AUTOSPEECH_NORMAL: Genotype = (
    ("dil_conv_5x5", 1), ("dil_conv_3x3", 0), ("dil_conv_5x5", 0), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("dil_conv_3x3", 2), ("max_pool_3x3", 1),
)  # fmt: skip
AUTOSPEECH_REDUCE: Genotype = (
    ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
    ("dil_conv_5x5", 3), ("dil_conv_3x3", 2), ("dil_conv_5x5", 4), ("dil_conv_5x5", 2),
)  # fmt: skip


@dataclass(frozen=True)
class AutoSpeechConfig:
    """AutoSpeech search or derived network.

    Attributes:
        sample_rate: Audio rate ``embed`` expects.
        embedding_dim: Output size. When it equals the last cell's output channels
            (``4 * multiplier * channels``) the pooled vector is the embedding, as in
            AutoSpeech; otherwise a linear layer projects it.
        features: Front end; ``features.num_mels`` is the frequency axis of the input map.
        channels: Channels of the first cells (``C``); doubled at each reduction cell.
        num_cells: Cells stacked (reduction cells at 1/3 and 2/3 of the depth).
        steps: Intermediate nodes per cell.
        multiplier: Last nodes concatenated as the cell output.
        stem_multiplier: Search stem output is ``stem_multiplier * channels``.
        search: Build the DARTS search network instead of the derived one.
        primitives: Candidate operations of the search network.
        normal: Derived normal cell, ``2 * steps`` ``(operation, input_state)`` pairs.
        reduce: Derived reduction cell, same form.
        drop_path_probability: Derived network: probability of dropping each non-identity
            operation output during training (DARTS/AutoSpeech regulariser).
        gumbel_softmax: Search network: mix operations with Gumbel-softmax samples during
            training (AutoSpeech) instead of the plain softmax (DARTS).
    """

    sample_rate: int = 16000
    embedding_dim: int = 128
    features: FeatureConfig = FeatureConfig()
    channels: int = 16
    num_cells: int = 8
    steps: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    search: bool = False
    primitives: tuple[str, ...] = PRIMITIVES
    normal: tuple[tuple[str, int], ...] = AUTOSPEECH_NORMAL
    reduce: tuple[tuple[str, int], ...] = AUTOSPEECH_REDUCE
    drop_path_probability: float = 0.0
    gumbel_softmax: bool = False

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2 != 0:
            raise ValueError(f"channels must be even and >= 2, got {self.channels}.")
        if self.num_cells < 1 or self.steps < 1:
            raise ValueError("num_cells and steps must be >= 1.")
        if not 1 <= self.multiplier <= self.steps:
            raise ValueError(f"multiplier must be in [1, steps={self.steps}].")
        unknown = set(self.primitives) - set(PRIMITIVES)
        if unknown or not self.primitives:
            raise ValueError(
                f"Unknown primitives {sorted(unknown)}; valid: {', '.join(PRIMITIVES)}."
            )
        if not 0.0 <= self.drop_path_probability < 1.0:
            raise ValueError("drop_path_probability must be in [0, 1).")
        for name, genotype in (("normal", self.normal), ("reduce", self.reduce)):
            validate_genotype(genotype, self.steps, name)

    @property
    def output_channels(self) -> int:
        """Channels of the last cell's output (before pooling)."""
        return self.multiplier * self.channels * 2 ** len(reduction_cells(self.num_cells))


def reduction_cells(num_cells: int) -> set[int]:
    """Indices of the reduction cells (at 1/3 and 2/3 of the depth, as in DARTS)."""
    return {num_cells // 3, 2 * num_cells // 3}


def validate_genotype(genotype: Any, steps: int, name: str = "genotype") -> None:
    """Raise ``ValueError`` unless ``genotype`` is ``2 * steps`` valid ``(op, input)`` pairs."""
    if len(genotype) != 2 * steps:
        raise ValueError(f"{name} needs {2 * steps} (operation, input) pairs, got {len(genotype)}.")
    for index, pair in enumerate(genotype):
        if len(pair) != 2:
            raise ValueError(f"{name}[{index}] must be an (operation, input) pair, got {pair}.")
        operation, source = pair
        if operation not in PRIMITIVES:
            raise ValueError(
                f"{name}[{index}]: unknown operation '{operation}'; valid: {', '.join(PRIMITIVES)}."
            )
        node = index // 2
        if not isinstance(source, int) or not 0 <= source < 2 + node:
            raise ValueError(
                f"{name}[{index}]: node {node} can read states 0..{1 + node}, got {source}."
            )


# ---------------------------------------------------------------- operations


class ReluConvBn(nn.Sequential):
    """ReLU -> convolution -> BatchNorm (cell preprocessing)."""

    def __init__(self, in_channels: int, out_channels: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )


class DilatedConv(nn.Sequential):
    """ReLU -> dilated depthwise k x k -> pointwise -> BatchNorm."""

    def __init__(self, channels: int, kernel: int, stride: int, dilation: int, affine: bool):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(
                channels,
                channels,
                kernel,
                stride=stride,
                padding=dilation * (kernel - 1) // 2,
                dilation=dilation,
                groups=channels,
                bias=False,
            ),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )


class SeparableConv(nn.Sequential):
    """Two stacked (ReLU -> depthwise k x k -> pointwise -> BatchNorm); the first strided."""

    def __init__(self, channels: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__(
            DilatedConv(channels, kernel, stride, 1, affine),
            DilatedConv(channels, kernel, 1, 1, affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Zeros shaped like ``x`` (strided) of shape ``(batch, channels, height, width)``."""
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convolutions on offset grids.

    DARTS shifts the second grid by one pixel; for odd sizes that gives mismatched outputs,
    so we pad one row and column at the far end before shifting (AutoSpeech dropped the
    shift instead, losing the second grid's point).
    """

    def __init__(self, in_channels: int, out_channels: int, affine: bool) -> None:
        super().__init__()
        if out_channels % 2 != 0:
            raise ValueError(f"FactorizedReduce needs even out_channels, got {out_channels}.")
        self.conv_even = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(batch, in, h, w)`` to ``(batch, out, ceil(h / 2), ceil(w / 2))``."""
        x = F.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.norm(torch.cat([self.conv_even(x), self.conv_odd(shifted)], dim=1))


def make_operation(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build one DARTS operation (``channels`` in and out, ``stride`` 1 or 2)."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)
    if name.startswith("sep_conv_"):
        return SeparableConv(channels, int(name[-1]), stride, affine)
    if name.startswith("dil_conv_"):
        return DilatedConv(channels, int(name[-1]), stride, 2, affine)
    raise ValueError(f"Unknown operation '{name}'; valid: {', '.join(PRIMITIVES)}.")


def drop_path(x: Tensor, probability: float) -> Tensor:
    """Zero whole samples with ``probability`` and rescale the rest (DARTS drop-path)."""
    keep = 1.0 - probability
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


# ---------------------------------------------------------------- cells


class MixedOperation(nn.Module):
    """All candidate operations on one edge, mixed by architecture weights."""

    def __init__(self, channels: int, stride: int, primitives: tuple[str, ...]) -> None:
        super().__init__()
        operations = []
        for name in primitives:
            operation = make_operation(name, channels, stride, affine=False)
            if "pool" in name:
                # Pooling outputs are unnormalised; DARTS adds a parameter-free BatchNorm so
                # their scale is comparable with the convolutions'.
                operation = nn.Sequential(operation, nn.BatchNorm2d(channels, affine=False))
            operations.append(operation)
        self.operations = nn.ModuleList(operations)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Weighted sum of every candidate on ``x`` (weights of shape ``(num_ops,)``)."""
        return sum(w * operation(x) for w, operation in zip(weights, self.operations))


class SearchCell(nn.Module):
    """A DARTS cell with a mixed operation on every edge."""

    def __init__(
        self,
        config: AutoSpeechConfig,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = config.steps
        self.multiplier = config.multiplier
        self.preprocess0 = (
            FactorizedReduce(prev_prev_channels, channels, affine=False)
            if reduction_prev
            else ReluConvBn(prev_prev_channels, channels, affine=False)
        )
        self.preprocess1 = ReluConvBn(prev_channels, channels, affine=False)
        self.edges = nn.ModuleList(
            MixedOperation(channels, 2 if reduction and source < 2 else 1, config.primitives)
            for node in range(config.steps)
            for source in range(2 + node)
        )

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
        """Cell output from the two previous states; ``weights`` is ``(num_edges, num_ops)``."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = sum(
                self.edges[offset + j](state, weights[offset + j]) for j, state in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class DerivedCell(nn.Module):
    """A discrete cell built from a genotype."""

    def __init__(
        self,
        config: AutoSpeechConfig,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = config.steps
        self.multiplier = config.multiplier
        self.drop_path_probability = config.drop_path_probability
        self.preprocess0 = (
            FactorizedReduce(prev_prev_channels, channels, affine=True)
            if reduction_prev
            else ReluConvBn(prev_prev_channels, channels, affine=True)
        )
        self.preprocess1 = ReluConvBn(prev_channels, channels, affine=True)
        genotype = config.reduce if reduction else config.normal
        self.sources = tuple(source for _, source in genotype)
        self.operations = nn.ModuleList(
            make_operation(name, channels, 2 if reduction and source < 2 else 1, affine=True)
            for name, source in genotype
        )

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        """Cell output from the two previous states."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            total = 0
            for index in (2 * node, 2 * node + 1):
                operation = self.operations[index]
                h = operation(states[self.sources[index]])
                if (
                    self.training
                    and self.drop_path_probability > 0.0
                    and not isinstance(operation, nn.Identity)
                ):
                    h = drop_path(h, self.drop_path_probability)
                total = total + h
            states.append(total)
        return torch.cat(states[-self.multiplier :], dim=1)


# ---------------------------------------------------------------- network


class AutoSpeech(nn.Module):
    """AutoSpeech speaker encoder: the DARTS search network or a derived cell network.

    Args:
        config: Architecture; ``config.search`` selects the search network.
    """

    def __init__(self, config: AutoSpeechConfig) -> None:
        super().__init__()
        self.config = config
        self.front_end = BatchedFeatures(config.features, config.sample_rate)
        channels = config.channels
        if config.search:
            stem_channels = config.stem_multiplier * channels
            self.stem = nn.Sequential(
                nn.Conv2d(1, stem_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            self.stem_reduce = None
            prev_prev, prev, reduction_prev = stem_channels, stem_channels, False
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(1, channels // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(),
                nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.stem_reduce = nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            # The two stem outputs differ in resolution, so the first cell reduces s0.
            prev_prev, prev, reduction_prev = channels, channels, True
        cell_class = SearchCell if config.search else DerivedCell
        reductions = reduction_cells(config.num_cells)
        self.cells = nn.ModuleList()
        current = channels
        for index in range(config.num_cells):
            reduction = index in reductions
            if reduction:
                current *= 2
            self.cells.append(
                cell_class(config, prev_prev, prev, current, reduction, reduction_prev)
            )
            reduction_prev = reduction
            prev_prev, prev = prev, config.multiplier * current
        if config.embedding_dim == prev:
            self.projection = None
        else:
            self.projection = nn.Sequential(
                nn.Linear(prev, config.embedding_dim),
                nn.BatchNorm1d(config.embedding_dim, affine=False),
            )
        if config.search:
            num_edges = sum(2 + node for node in range(config.steps))
            shape = (num_edges, len(config.primitives))
            self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
            self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        else:
            self.alphas_normal = None
            self.alphas_reduce = None

    # -- DARTS interface --

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture weights (empty for a derived network)."""
        if self.alphas_normal is None:
            return []
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture weights."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def architecture_entropy(self) -> Tensor:
        """Mean entropy of the operation distribution per edge, ``(2,)``: normal, reduce."""
        self._require_search("architecture_entropy")
        entropies = []
        for alphas in self.arch_parameters():
            log_probs = alphas.log_softmax(dim=-1)
            entropies.append(-(log_probs.exp() * log_probs).sum(dim=-1).mean())
        return torch.stack(entropies)

    def _require_search(self, what: str) -> None:
        if not self.config.search:
            raise ValueError(f"{what} needs the search network (config.search=True).")

    def _parse(self, alphas: Tensor) -> Genotype:
        primitives = self.config.primitives
        weights = alphas.detach().softmax(dim=-1).cpu()
        usable = [k for k, name in enumerate(primitives) if name != "none"]
        genotype: list[tuple[str, int]] = []
        start = 0
        for node in range(self.config.steps):
            rows = weights[start : start + 2 + node]
            strength = [max(float(row[k]) for k in usable) for row in rows]
            # Two strongest incoming edges, then each one's strongest non-`none` operation.
            edges = sorted(range(2 + node), key=lambda j: -strength[j])[:2]
            for j in edges:
                best = max(usable, key=lambda k, row=rows[j]: float(row[k]))
                genotype.append((primitives[best], j))
            start += 2 + node
        return tuple(genotype)

    def genotype(self) -> tuple[Genotype, Genotype]:
        """The derived ``(normal, reduce)`` cells (for a derived network: its own cells)."""
        if not self.config.search:
            return self.config.normal, self.config.reduce
        if all(name == "none" for name in self.config.primitives):
            raise ValueError("Cannot derive a cell when the only primitive is 'none'.")
        return self._parse(self.alphas_normal), self._parse(self.alphas_reduce)

    def derive_config(self, **overrides: Any) -> AutoSpeechConfig:
        """The derived network's config from the current architecture weights.

        Args:
            **overrides: Further fields to change, e.g. ``channels=64`` for retraining at
                the published width.
        """
        normal, reduce = self.genotype()
        return dataclasses.replace(
            self.config, search=False, normal=normal, reduce=reduce, **overrides
        )

    # -- forward --

    def _mixing_weights(self, alphas: Tensor) -> Tensor:
        if self.config.gumbel_softmax and self.training:
            return F.gumbel_softmax(alphas.log_softmax(dim=-1), tau=1.0, hard=False, dim=-1)
        return alphas.softmax(dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        """Embed a batch of feature sequences.

        Args:
            features: Tensor of shape ``(batch, frames, num_mels)``.

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        check_features(features, self.config.features.num_mels)
        x = features.unsqueeze(1)  # B, 1, frames, mels: a one-channel image
        if self.config.search:
            s0 = s1 = self.stem(x)
            normal = self._mixing_weights(self.alphas_normal)
            reduce = self._mixing_weights(self.alphas_reduce)
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        else:
            s0 = self.stem(x)
            s1 = self.stem_reduce(s0)
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1)
        pooled = s1.mean(dim=(2, 3))  # B, output_channels
        return pooled if self.projection is None else self.projection(pooled)

    def embed(self, waveform: Tensor) -> Tensor:
        """Embed raw audio through the batched Kaldi front end.

        Args:
            waveform: Audio of shape ``(batch, time)`` at ``config.sample_rate``.

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        return self(self.front_end(waveform))


def autospeech_paper() -> AutoSpeechConfig:
    """The published network "N=8, C=128" (18 M parameters with its 1251-way classifier).

    The embedding is the 2048-d pooled output, as in AutoSpeech.
    """
    return AutoSpeechConfig(channels=128, num_cells=8, embedding_dim=2048)


def autospeech_small() -> AutoSpeechConfig:
    """CPU-trainable derived network: C = 16, 5 cells, 128-d embedding."""
    return AutoSpeechConfig(channels=16, num_cells=5, embedding_dim=128)


def autospeech_search() -> AutoSpeechConfig:
    """The published search network (exps/search.yaml): C = 16, 8 cells."""
    return AutoSpeechConfig(channels=16, num_cells=8, search=True, embedding_dim=256)


def autospeech_search_small() -> AutoSpeechConfig:
    """A search network small enough for a CPU: C = 8, 3 cells (normal, reduce, reduce).

    The mixed operations of the first cell run at half the input resolution, which dominates
    the cost: a training step on 8 x 3 s takes ~5 s on one CPU core with 3 cells, ~8 s with 5.
    """
    return AutoSpeechConfig(channels=8, num_cells=3, search=True, embedding_dim=128)


MODEL_SPECS: dict[str, ModelSpec] = {
    "autospeech": ModelSpec(
        name="autospeech",
        task="speaker",
        config_class=AutoSpeechConfig,
        model_class=AutoSpeech,
        presets={
            "paper": autospeech_paper,
            "small": autospeech_small,
            "search": autospeech_search,
            "search_small": autospeech_search_small,
        },
        description="AutoSpeech DARTS cell network (Ding et al. 2020): search and derived.",
    ),
}
