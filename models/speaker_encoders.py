"""Speaker encoders: D-TDNN, D-TDNN-SS with the SpeechNAS search space, and ECAPA-TDNN.

Every encoder maps features ``(batch, frames, num_mels)`` to embeddings
``(batch, embedding_dim)`` with ``forward``, and raw audio ``(batch, time)`` to embeddings
with ``embed`` (the batched Kaldi front end of :mod:`models.features`, then ``forward``).

D-TDNN (Yu & Li, Interspeech 2020): a TDNN layer, two blocks of densely connected TDNN
layers (each layer: BN-act-1x1 bottleneck-BN-act-TDNN, its ``growth_rate`` outputs appended
to its input), a transit layer halving the channels after each block, mean+std statistics
pooling and a dense embedding layer. D-TDNN-SS gives each layer several TDNN branches with
different dilations, fused per channel by statistics-and-selection (SS): high-order
statistics (mean, std, skewness, kurtosis) of the summed branches drive a softmax over
branches.

SpeechNAS (Zhu et al., ASRU 2021) searches, per dense layer, the number of branches
{2, 3} (dilations 1, 3[, 5]), the bottleneck width {64, 96, 128, 192} and the selection
dimension {32, 64}. :class:`DTdnn` covers all of these with one config: ``layers`` holds one
``(branches, width, selection)`` choice per dense layer (``branches == 1`` is the plain
D-TDNN layer). With ``supernet=True`` the module instead holds the largest choice of every
layer and ``forward(features, architecture)`` runs any sampled sub-network on slices of the
shared weights (single-path one-shot with weight sharing); :meth:`DTdnn.derive_config` turns a
sampled architecture into a plain config, so a search result is just a config.

ECAPA-TDNN (Desplanques et al., Interspeech 2020): SE-Res2Net blocks, multi-layer feature
aggregation and channel- and context-dependent attentive statistics pooling.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.features import BatchedFeatures, FeatureConfig, check_features, kaldi_voxceleb_mfcc
from models.registry import ModelSpec

#: One dense layer's choice: (number of TDNN branches, bottleneck width, selection dimension).
LayerChoice = tuple[int, int, int]
Architecture = tuple[LayerChoice, ...]

ACTIVATIONS = ("relu", "prelu")


# ---------------------------------------------------------------- helpers


def statistics_pooling(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean and standard deviation over time.

    The standard deviation is the biased one, floored at ``sqrt(eps)``: the unbiased estimate
    of the reference code is NaN for a single frame.

    Args:
        x: Tensor of shape ``(batch, channels, frames)``.
        eps: Floor on the variance.

    Returns:
        Tensor of shape ``(batch, 2 * channels)``.
    """
    mean = x.mean(dim=-1)
    variance = (x - mean.unsqueeze(-1)).square().mean(dim=-1)
    return torch.cat([mean, variance.clamp_min(eps).sqrt()], dim=-1)


def high_order_statistics_pooling(x: Tensor, eps: float = 1e-2) -> Tensor:
    """Mean, standard deviation, skewness and kurtosis over time (the SS gather step).

    Args:
        x: Tensor of shape ``(batch, channels, frames)``.
        eps: Floor on the standard deviation when standardising (as in D-TDNN).

    Returns:
        Tensor of shape ``(batch, 4 * channels)``.
    """
    mean = x.mean(dim=-1, keepdim=True)
    std = (x - mean).square().mean(dim=-1, keepdim=True).clamp_min(1e-12).sqrt()
    standard = (x - mean) / std.clamp_min(eps)
    skewness = standard.pow(3).mean(dim=-1)
    kurtosis = standard.pow(4).mean(dim=-1)
    return torch.cat([mean.squeeze(-1), std.squeeze(-1), skewness, kurtosis], dim=-1)


class ChannelActivation(nn.Module):
    """ReLU, or PReLU with one slope per channel that also works on a channel prefix.

    Args:
        kind: ``"relu"`` or ``"prelu"``.
        num_channels: Channels of the widest input (the PReLU slopes).
    """

    def __init__(self, kind: str, num_channels: int) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.full((num_channels,), 0.25)) if kind == "prelu" else None

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation to ``x`` of shape ``(batch, channels, frames)``."""
        if self.weight is None:
            return F.relu(x)
        return F.prelu(x, self.weight[: x.shape[1]])


# ---------------------------------------------------------------- D-TDNN family


@dataclass(frozen=True)
class DTdnnConfig:
    """D-TDNN / D-TDNN-SS / SpeechNAS architecture.

    Attributes:
        sample_rate: Audio rate ``embed`` expects.
        embedding_dim: Output size of the embedding layer.
        features: Front end used by ``embed``; ``features.num_mels`` is the input size.
        init_channels: Output channels of the first TDNN layer.
        init_kernel_size: Context of the first TDNN layer (5 frames).
        growth_rate: Channels each dense layer appends.
        kernel_size: Context of each branch's TDNN (3 taps, dilated).
        block_layers: Dense layers per block (6, 12); a transit layer halves the channels
            after each block.
        block_dilations: Dilation of single-branch (plain D-TDNN) layers in each block.
        branch_dilations: Dilations of branches 1, 2, 3 of a multi-branch layer.
        layers: One ``(branches, width, selection)`` per dense layer. ``branches == 1`` is a
            plain D-TDNN layer (``selection`` ignored, write 0). In a supernet this is the
            default architecture ``forward`` runs when given none.
        activation: ``"relu"`` (D-TDNN) or ``"prelu"`` (D-TDNN-SS, SpeechNAS).
        supernet: Hold the largest choice of every layer and accept an architecture in
            ``forward`` (SpeechNAS single-path weight sharing).
        branch_choices: Supernet choices for the number of branches.
        width_choices: Supernet choices for the bottleneck width.
        selection_choices: Supernet choices for the selection dimension.
    """

    sample_rate: int = 16000
    embedding_dim: int = 128
    features: FeatureConfig = FeatureConfig()
    init_channels: int = 128
    init_kernel_size: int = 5
    growth_rate: int = 64
    kernel_size: int = 3
    block_layers: tuple[int, ...] = (6, 12)
    block_dilations: tuple[int, ...] = (1, 3)
    branch_dilations: tuple[int, ...] = (1, 3, 5)
    layers: tuple[tuple[int, int, int], ...] = ((2, 128, 32),) * 18
    activation: str = "prelu"
    supernet: bool = False
    branch_choices: tuple[int, ...] = (2, 3)
    width_choices: tuple[int, ...] = (64, 96, 128, 192)
    selection_choices: tuple[int, ...] = (32, 64)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got '{self.activation}'.")
        if self.kernel_size % 2 == 0 or self.init_kernel_size % 2 == 0:
            raise ValueError("kernel_size and init_kernel_size must be odd (same-length output).")
        if len(self.block_layers) != len(self.block_dilations) or not self.block_layers:
            raise ValueError("block_layers and block_dilations need one entry per block.")
        if len(self.layers) != sum(self.block_layers):
            raise ValueError(
                f"layers has {len(self.layers)} entries but block_layers {self.block_layers} "
                f"needs {sum(self.block_layers)}."
            )
        for index, choice in enumerate(self.layers):
            _check_layer_choice(choice, len(self.branch_dilations), f"layers[{index}]")
        if self.supernet:
            if min(self.branch_choices) < 2 or max(self.branch_choices) > len(
                self.branch_dilations
            ):
                raise ValueError(
                    f"branch_choices {self.branch_choices} must lie in "
                    f"[2, {len(self.branch_dilations)}] for a supernet."
                )
            if min(self.width_choices) < 1 or min(self.selection_choices) < 1:
                raise ValueError("width_choices and selection_choices must be positive.")
            validate_architecture(self, self.layers)


def _check_layer_choice(choice: tuple[int, ...], max_branches: int, where: str) -> None:
    if len(choice) != 3:
        raise ValueError(f"{where} must be (branches, width, selection), got {choice}.")
    branches, width, selection = choice
    if not 1 <= branches <= max_branches:
        raise ValueError(f"{where}: branches must be in [1, {max_branches}], got {branches}.")
    if width < 1:
        raise ValueError(f"{where}: width must be positive, got {width}.")
    if branches > 1 and selection < 1:
        raise ValueError(f"{where}: a multi-branch layer needs selection >= 1, got {selection}.")


def architecture_space(config: DTdnnConfig) -> tuple[dict[str, tuple[int, ...]], ...]:
    """The supernet's choices, one ``{"branches", "width", "selection"}`` dict per layer.

    Optuna callers can suggest each entry with ``trial.suggest_categorical``.
    """
    layer = {
        "branches": tuple(config.branch_choices),
        "width": tuple(config.width_choices),
        "selection": tuple(config.selection_choices),
    }
    return tuple(dict(layer) for _ in range(sum(config.block_layers)))


def sample_architecture(config: DTdnnConfig, rng: random.Random) -> Architecture:
    """A uniformly sampled architecture of the supernet's space (SPOS sampling)."""
    return tuple(
        (
            rng.choice(config.branch_choices),
            rng.choice(config.width_choices),
            rng.choice(config.selection_choices),
        )
        for _ in range(sum(config.block_layers))
    )


def validate_architecture(
    config: DTdnnConfig, architecture: Iterable[Iterable[int]]
) -> Architecture:
    """``architecture`` as a tuple of int triples, or ``ValueError`` if it is outside the space."""
    try:
        result = tuple(tuple(int(value) for value in choice) for choice in architecture)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"architecture must be a sequence of (branches, width, selection): {exc}"
        ) from exc
    expected = sum(config.block_layers)
    if len(result) != expected:
        raise ValueError(f"architecture needs {expected} layer choices, got {len(result)}.")
    for index, choice in enumerate(result):
        _check_layer_choice(choice, len(config.branch_dilations), f"architecture[{index}]")
        branches, width, selection = choice
        if (
            branches not in config.branch_choices
            or width not in config.width_choices
            or selection not in config.selection_choices
        ):
            raise ValueError(
                f"architecture[{index}] = {choice} is outside the search space "
                f"branches {config.branch_choices}, width {config.width_choices}, "
                f"selection {config.selection_choices}."
            )
    return result


def derive_config(config: DTdnnConfig, architecture: Iterable[Iterable[int]]) -> DTdnnConfig:
    """The stand-alone (non-supernet) config of one sub-network of ``config``'s supernet."""
    return dataclasses.replace(
        config, layers=validate_architecture(config, architecture), supernet=False
    )


class DenseTdnnLayer(nn.Module):
    """One dense layer: BN-act-1x1 bottleneck, BN-act, TDNN branches, statistics-and-selection.

    Built at its largest size (``max_branches``, ``max(widths)``, ``max_selection``); a
    smaller choice runs on the leading channels of the same weights. The bottleneck's second
    BatchNorm is kept per width ("switchable" BN): its statistics depend strongly on the
    width, and sharing them would make every sub-network's running averages wrong.

    Args:
        in_channels: Input channels (fixed by the dense connectivity).
        growth_rate: Output channels.
        kernel_size: TDNN taps per branch.
        dilations: Dilation of each branch (its length is the largest branch count).
        widths: Bottleneck widths this layer can run at.
        max_selection: Largest selection dimension (0 for a single-branch layer).
        activation: ``"relu"`` or ``"prelu"``.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        kernel_size: int,
        dilations: tuple[int, ...],
        widths: tuple[int, ...],
        max_selection: int,
        activation: str,
    ) -> None:
        super().__init__()
        max_width = max(widths)
        self.kernel_size = kernel_size
        self.dilations = dilations
        self.widths = tuple(widths)
        self.norm1 = nn.BatchNorm1d(in_channels)
        self.act1 = ChannelActivation(activation, in_channels)
        self.bottleneck = nn.Conv1d(in_channels, max_width, 1, bias=False)
        self.norm2 = nn.ModuleList(nn.BatchNorm1d(width) for width in self.widths)
        self.act2 = ChannelActivation(activation, max_width)
        self.branches = nn.ModuleList(
            nn.Conv1d(max_width, growth_rate, kernel_size, bias=False) for _ in dilations
        )
        if len(dilations) > 1:
            # SS: HOSP -> FNN -> one FNN per branch -> softmax over branches. There is no
            # nonlinearity between the two FNNs in either reference implementation.
            self.gather = nn.Linear(4 * growth_rate, max_selection)
            self.select = nn.ModuleList(nn.Linear(max_selection, growth_rate) for _ in dilations)
        else:
            self.gather = None
            self.select = None

    def forward(self, x: Tensor, choice: LayerChoice) -> Tensor:
        """New channels for the dense concatenation.

        Args:
            x: Tensor of shape ``(batch, in_channels, frames)``.
            choice: ``(branches, width, selection)`` to run.

        Returns:
            Tensor of shape ``(batch, growth_rate, frames)``.
        """
        branches, width, selection = choice
        h = F.conv1d(self.act1(self.norm1(x)), self.bottleneck.weight[:width])  # B, width, N
        h = self.act2(self.norm2[self.widths.index(width)](h))
        outputs = []
        for conv, dilation in zip(self.branches[:branches], self.dilations[:branches]):
            padding = dilation * (self.kernel_size - 1) // 2
            outputs.append(F.conv1d(h, conv.weight[:, :width], padding=padding, dilation=dilation))
        if branches == 1:
            return outputs[0]
        stacked = torch.stack(outputs, dim=1)  # B, branches, growth, N
        summary = high_order_statistics_pooling(stacked.sum(dim=1))  # B, 4 * growth
        summary = F.linear(summary, self.gather.weight[:selection], self.gather.bias[:selection])
        scores = torch.stack(
            [F.linear(summary, fc.weight[:, :selection], fc.bias) for fc in self.select[:branches]],
            dim=1,
        )  # B, branches, growth
        weights = scores.softmax(dim=1).unsqueeze(-1)
        return (stacked * weights).sum(dim=1)


class TransitLayer(nn.Sequential):
    """BN-act-1x1 convolution between dense blocks (no bias, as in D-TDNN)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str) -> None:
        super().__init__(
            nn.BatchNorm1d(in_channels),
            ChannelActivation(activation, in_channels),
            nn.Conv1d(in_channels, out_channels, 1, bias=False),
        )


class DTdnn(nn.Module):
    """D-TDNN / D-TDNN-SS / SpeechNAS speaker encoder (and the SpeechNAS supernet).

    Args:
        config: Architecture; ``config.supernet`` selects the weight-sharing supernet.
    """

    def __init__(self, config: DTdnnConfig) -> None:
        super().__init__()
        self.config = config
        self.front_end = BatchedFeatures(config.features, config.sample_rate)
        num_mels = config.features.num_mels
        self.stem = nn.Sequential(
            nn.Conv1d(
                num_mels,
                config.init_channels,
                config.init_kernel_size,
                padding=config.init_kernel_size // 2,
            ),
            nn.BatchNorm1d(config.init_channels),
            ChannelActivation(config.activation, config.init_channels),
        )
        self.blocks = nn.ModuleList()
        self.transits = nn.ModuleList()
        channels = config.init_channels
        index = 0
        for num_layers, block_dilation in zip(config.block_layers, config.block_dilations):
            block = nn.ModuleList()
            for _ in range(num_layers):
                block.append(self._layer(channels, index, block_dilation))
                channels += config.growth_rate
                index += 1
            self.blocks.append(block)
            self.transits.append(TransitLayer(channels, channels // 2, config.activation))
            channels //= 2
        self.embedding = nn.Linear(2 * channels, config.embedding_dim)
        # D-TDNN ends with a BatchNorm without affine parameters on the embedding.
        self.embedding_norm = nn.BatchNorm1d(config.embedding_dim, affine=False)

    def _layer(self, in_channels: int, index: int, block_dilation: int) -> DenseTdnnLayer:
        config = self.config
        if config.supernet:
            return DenseTdnnLayer(
                in_channels,
                config.growth_rate,
                config.kernel_size,
                config.branch_dilations[: max(config.branch_choices)],
                tuple(sorted(config.width_choices)),
                max(config.selection_choices),
                config.activation,
            )
        branches, width, selection = config.layers[index]
        dilations = (block_dilation,) if branches == 1 else config.branch_dilations[:branches]
        return DenseTdnnLayer(
            in_channels,
            config.growth_rate,
            config.kernel_size,
            dilations,
            (width,),
            selection if branches > 1 else 0,
            config.activation,
        )

    # -- architecture helpers (SpeechNAS) --

    def architecture_space(self) -> tuple[dict[str, tuple[int, ...]], ...]:
        """Per-layer choices of the supernet (see :func:`architecture_space`)."""
        return architecture_space(self.config)

    def sample_architecture(self, rng: random.Random) -> Architecture:
        """A uniformly sampled sub-network (see :func:`sample_architecture`)."""
        return sample_architecture(self.config, rng)

    def derive_config(self, architecture: Iterable[Iterable[int]]) -> DTdnnConfig:
        """The plain config of one sub-network (see :func:`derive_config`)."""
        return derive_config(self.config, architecture)

    def parameter_count(self, architecture: Iterable[Iterable[int]] | None = None) -> int:
        """Parameters of the stand-alone network for ``architecture``.

        The default is this network, or for a supernet its default path ``config.layers``.

        Built on the ``meta`` device, so it costs no memory and no initialisation.
        """
        if architecture is None and not self.config.supernet:
            return sum(p.numel() for p in self.parameters())
        config = self.derive_config(self.config.layers if architecture is None else architecture)
        with torch.device("meta"):
            model = DTdnn(config)
        return sum(p.numel() for p in model.parameters())

    def subnetwork_state_dict(self, architecture: Iterable[Iterable[int]]) -> dict[str, Tensor]:
        """The supernet's shared weights sliced to one sub-network.

        ``DTdnn(self.derive_config(architecture))`` loads the result with
        ``load_state_dict`` and then computes exactly what ``self(features, architecture)``
        computes (in eval mode), so a searched network can start from the supernet weights.
        """
        if not self.config.supernet:
            raise ValueError("subnetwork_state_dict needs a supernet (config.supernet=True).")
        choices = validate_architecture(self.config, architecture)
        state = {}
        for key, value in self.state_dict().items():
            if not key.startswith("blocks."):
                state[key] = value.clone()
        layers = [layer for block in self.blocks for layer in block]
        offsets = [0]
        for num_layers in self.config.block_layers:
            offsets.append(offsets[-1] + num_layers)
        for index, (layer, (branches, width, selection)) in enumerate(zip(layers, choices)):
            block = next(b for b in range(len(offsets) - 1) if index < offsets[b + 1])
            prefix = f"blocks.{block}.{index - offsets[block]}."
            norm_index = layer.widths.index(width)
            for key, value in layer.state_dict().items():
                if key.startswith("norm2."):
                    if not key.startswith(f"norm2.{norm_index}."):
                        continue
                    key = "norm2.0." + key.split(".", 2)[2]
                elif key == "bottleneck.weight" or key == "act2.weight":
                    value = value[:width]
                elif key.startswith("branches."):
                    if int(key.split(".")[1]) >= branches:
                        continue
                    value = value[:, :width]
                elif key.startswith("gather."):
                    value = value[:selection]
                elif key.startswith("select."):
                    if int(key.split(".")[1]) >= branches:
                        continue
                    if key.endswith("weight"):
                        value = value[:, :selection]
                state[prefix + key] = value.clone()
        return state

    @torch.no_grad()
    def recalibrate_batchnorm(
        self, feature_batches: Iterable[Tensor], architecture: Iterable[Iterable[int]] | None = None
    ) -> None:
        """Recompute BatchNorm running statistics for one sub-network (SPOS evaluation step).

        The shared statistics of a supernet are a blend over all sampled paths; evaluating a
        sub-network with them understates its accuracy. This resets them and re-estimates
        them as an exact average over ``feature_batches`` run through ``architecture``.

        Args:
            feature_batches: Feature tensors of shape ``(batch, frames, num_mels)``.
            architecture: Sub-network to calibrate (default: ``config.layers``).
        """
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm1d)]
        momenta = [m.momentum for m in norms]
        was_training = self.training
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average
        self.train()
        try:
            for features in feature_batches:
                self(features, architecture)
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
            self.train(was_training)

    def _resolve(self, architecture: Iterable[Iterable[int]] | None) -> Architecture:
        if architecture is None:
            return self.config.layers
        if not self.config.supernet:
            resolved = tuple(tuple(int(v) for v in choice) for choice in architecture)
            if resolved != self.config.layers:
                raise ValueError(
                    "This D-TDNN is a fixed network; build it with supernet=True to run "
                    "other architectures."
                )
            return resolved
        return validate_architecture(self.config, architecture)

    def forward(
        self, features: Tensor, architecture: Iterable[Iterable[int]] | None = None
    ) -> Tensor:
        """Embed a batch of feature sequences.

        Args:
            features: Tensor of shape ``(batch, frames, num_mels)``.
            architecture: Supernet only: one ``(branches, width, selection)`` per dense layer
                (default ``config.layers``).

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        check_features(features, self.config.features.num_mels)
        choices = self._resolve(architecture)
        x = self.stem(features.transpose(1, 2))  # B, C, N
        index = 0
        for block, transit in zip(self.blocks, self.transits):
            for layer in block:
                x = torch.cat([x, layer(x, choices[index])], dim=1)
                index += 1
            x = transit(x)
        return self.embedding_norm(self.embedding(statistics_pooling(x)))

    def embed(self, waveform: Tensor) -> Tensor:
        """Embed raw audio through the batched Kaldi front end.

        Args:
            waveform: Audio of shape ``(batch, time)`` at ``config.sample_rate``.

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        return self(self.front_end(waveform))


# -- D-TDNN presets (Yu & Li 2020; counts checked in tests/models/test_speaker_encoders.py) --


def _uniform(choice: LayerChoice, num_layers: int = 18) -> Architecture:
    return (choice,) * num_layers


def dtdnn_paper() -> DTdnnConfig:
    """D-TDNN as published: 30-d MFCC, 512-d embedding, ReLU, 2.8 M parameters."""
    return DTdnnConfig(
        embedding_dim=512,
        features=kaldi_voxceleb_mfcc(30),
        layers=_uniform((1, 128, 0)),
        activation="relu",
    )


def dtdnn_ss_paper() -> DTdnnConfig:
    """D-TDNN-SS as published (512-d embedding, 3.5 M parameters in the authors' table)."""
    return DTdnnConfig(
        embedding_dim=512, features=kaldi_voxceleb_mfcc(30), layers=_uniform((2, 128, 32))
    )


def dtdnn_small() -> DTdnnConfig:
    """CPU-trainable D-TDNN: half the channels, 80-d fbank, 128-d embedding (~0.6 M)."""
    return DTdnnConfig(
        init_channels=64,
        growth_rate=32,
        layers=_uniform((1, 64, 0)),
        activation="relu",
    )


# -- SpeechNAS presets --
#
# The searched networks come from wentaozhu/speechnas (network/dtdnnss_searched.py and
# dtdnnss_searched_large.py), where each is a "chromosome" of indices into a list of
# (width, selection[, dilations]) options, with the checkpoint named by its size and EER:
# dtdnnss_2.6M_eer1.251, 2.9M_eer1.225, 3.1M_eer1.14, 4.3M_eer1.066 (30-d input) and
# 4.4M_eer1.023 (80-d input). We number them SpeechNAS-1..5 in that order (growing size,
# falling EER); the paper's PDF could not be read here to confirm its numbering. The repo
# does not say which 30-d and 80-d features it used: we assume the Kaldi VoxCeleb 30-d MFCCs
# (as D-TDNN) and 80-d fbank. The decoded per-layer choices are written out below; 160
# (SpeechNAS-3) is outside the paper's width set, as in the repo.


def _decode(chromosome: tuple[int, ...], options: tuple[tuple[int, int, int], ...]) -> Architecture:
    return tuple(options[gene] for gene in chromosome)


_SMALL_OPTIONS = ((2, 64, 32), (2, 64, 64), (2, 96, 32), (2, 96, 64), (2, 128, 32), (2, 128, 64))
_LARGE_OPTIONS = (
    (2, 128, 32), (2, 192, 32), (3, 128, 32), (3, 192, 32),
    (2, 128, 64), (2, 192, 64), (3, 128, 64), (3, 192, 64),
)  # fmt: skip
SPEECHNAS_ARCHITECTURES: dict[str, Architecture] = {
    "speechnas1": _decode((0, 4, 1, 2, 2, 0, 2, 2, 3, 2, 2, 2, 1, 3, 2, 5, 1, 4), _SMALL_OPTIONS),
    "speechnas2": _decode((4, 3, 5, 4, 5, 3, 1, 3, 0, 3, 4, 2, 5, 2, 2, 2, 5, 5), _SMALL_OPTIONS),
    "speechnas3": _decode(
        (3, 4, 2, 2, 2, 1, 1, 3, 1, 0, 0, 3, 3, 2, 4, 4, 3, 3),
        ((2, 64, 32), (2, 96, 64), (2, 128, 32), (2, 128, 64), (2, 160, 32)),
    ),
    "speechnas4": _decode((6, 3, 7, 7, 1, 5, 3, 2, 7, 4, 6, 5, 1, 4, 1, 5, 3, 5), _LARGE_OPTIONS),
}
SPEECHNAS_ARCHITECTURES["speechnas5"] = SPEECHNAS_ARCHITECTURES["speechnas4"]

#: Parameter counts in the checkpoint names of wentaozhu/speechnas (millions).
SPEECHNAS_PUBLISHED_PARAMETERS = {
    "speechnas1": 2.6e6,
    "speechnas2": 2.9e6,
    "speechnas3": 3.1e6,
    "speechnas4": 4.3e6,
    "speechnas5": 4.4e6,
}


def speechnas_paper() -> DTdnnConfig:
    """The SpeechNAS base network: D-TDNN-SS, 128-d embedding (3.1 M in the D-TDNN table)."""
    return DTdnnConfig(features=kaldi_voxceleb_mfcc(30), layers=_uniform((2, 128, 32)))


def _speechnas(name: str) -> DTdnnConfig:
    features = FeatureConfig(num_mels=80) if name == "speechnas5" else kaldi_voxceleb_mfcc(30)
    return DTdnnConfig(features=features, layers=SPEECHNAS_ARCHITECTURES[name])


def speechnas_supernet() -> DTdnnConfig:
    """The paper's search space as a weight-sharing supernet (default path: the largest)."""
    return DTdnnConfig(
        features=kaldi_voxceleb_mfcc(30), layers=_uniform((3, 192, 64)), supernet=True
    )


def speechnas_small() -> DTdnnConfig:
    """CPU-trainable D-TDNN-SS: half the channels, 80-d fbank (~0.8 M parameters)."""
    return DTdnnConfig(
        init_channels=64,
        growth_rate=32,
        layers=_uniform((2, 64, 16)),
        width_choices=(32, 48, 64, 96),
        selection_choices=(16, 32),
    )


def speechnas_supernet_small() -> DTdnnConfig:
    """The SpeechNAS space at half the channels, for searches on a CPU."""
    return dataclasses.replace(speechnas_small(), layers=_uniform((3, 96, 32)), supernet=True)


# ---------------------------------------------------------------- ECAPA-TDNN


@dataclass(frozen=True)
class EcapaTdnnConfig:
    """ECAPA-TDNN architecture.

    Attributes:
        sample_rate: Audio rate ``embed`` expects.
        embedding_dim: Embedding size (192 in the paper).
        features: Front end; the paper uses 80-d MFCCs.
        channels: Channels ``C`` of the frame layers (512 or 1024 in the paper).
        block_kernel_size: Kernel of the Res2 convolutions.
        block_dilations: Dilation of each SE-Res2 block (2, 3, 4).
        scale: Res2Net scale (channel groups).
        se_channels: Squeeze-excitation bottleneck.
        attention_channels: Attentive statistics pooling bottleneck.
        mfa_channels: Output of the multi-layer feature aggregation convolution (1536).
        global_context: Attention sees the utterance mean and std besides each frame.
    """

    sample_rate: int = 16000
    embedding_dim: int = 192
    features: FeatureConfig = FeatureConfig()
    channels: int = 512
    block_kernel_size: int = 3
    block_dilations: tuple[int, ...] = (2, 3, 4)
    scale: int = 8
    se_channels: int = 128
    attention_channels: int = 128
    mfa_channels: int = 1536
    global_context: bool = True

    def __post_init__(self) -> None:
        if self.channels % self.scale != 0:
            raise ValueError(
                f"channels ({self.channels}) must be divisible by scale ({self.scale})."
            )
        if self.block_kernel_size % 2 == 0:
            raise ValueError("block_kernel_size must be odd (same-length output).")


class TdnnBlock(nn.Sequential):
    """Conv1d -> ReLU -> BatchNorm (the ECAPA frame layer)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(
            nn.Conv1d(
                in_channels,
                out_channels,
                kernel_size,
                dilation=dilation,
                padding=dilation * (kernel_size - 1) // 2,
            ),
            nn.ReLU(),
            nn.BatchNorm1d(out_channels),
        )


class Res2Block(nn.Module):
    """Res2Net convolution: ``scale`` channel groups, each group also sees the previous one."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(
            TdnnBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply to ``x`` of shape ``(batch, channels, frames)``; same shape out."""
        groups = x.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        for group, conv in zip(groups[1:], self.convs):
            previous = conv(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged input."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.reduce = nn.Conv1d(channels, bottleneck, 1)
        self.expand = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Rescale ``x`` of shape ``(batch, channels, frames)``; same shape out."""
        gates = self.expand(F.relu(self.reduce(x.mean(dim=-1, keepdim=True)))).sigmoid()
        return x * gates


class SeRes2Block(nn.Module):
    """1x1 TDNN -> Res2 -> 1x1 TDNN -> SE, plus a residual connection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se: int):
        super().__init__()
        self.body = nn.Sequential(
            TdnnBlock(channels, channels, 1),
            Res2Block(channels, kernel_size, dilation, scale),
            TdnnBlock(channels, channels, 1),
            SqueezeExcitation(channels, se),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply to ``x`` of shape ``(batch, channels, frames)``; same shape out."""
        return x + self.body(x)


class AttentiveStatisticsPooling(nn.Module):
    """Channel- and context-dependent attentive mean and standard deviation over time."""

    def __init__(self, channels: int, bottleneck: int, global_context: bool) -> None:
        super().__init__()
        self.global_context = global_context
        self.attention = nn.Sequential(
            TdnnBlock(channels * (3 if global_context else 1), bottleneck, 1),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, 1),
        )

    def forward(self, x: Tensor, eps: float = 1e-6) -> Tensor:
        """Pool ``x`` of shape ``(batch, channels, frames)`` to ``(batch, 2 * channels)``."""
        if self.global_context:
            mean = x.mean(dim=-1, keepdim=True)
            std = (x - mean).square().mean(dim=-1, keepdim=True).clamp_min(eps).sqrt()
            context = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)
        else:
            context = x
        weights = self.attention(context).softmax(dim=-1)  # B, C, N
        mean = (weights * x).sum(dim=-1)
        variance = (weights * x.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, variance.clamp_min(eps).sqrt()], dim=-1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN speaker encoder.

    Args:
        config: Architecture.
    """

    def __init__(self, config: EcapaTdnnConfig) -> None:
        super().__init__()
        self.config = config
        self.front_end = BatchedFeatures(config.features, config.sample_rate)
        channels = config.channels
        self.stem = TdnnBlock(config.features.num_mels, channels, 5)
        self.blocks = nn.ModuleList(
            SeRes2Block(
                channels, config.block_kernel_size, dilation, config.scale, config.se_channels
            )
            for dilation in config.block_dilations
        )
        self.aggregate = TdnnBlock(channels * len(config.block_dilations), config.mfa_channels, 1)
        self.pooling = AttentiveStatisticsPooling(
            config.mfa_channels, config.attention_channels, config.global_context
        )
        self.pooling_norm = nn.BatchNorm1d(2 * config.mfa_channels)
        self.embedding = nn.Linear(2 * config.mfa_channels, config.embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(config.embedding_dim)

    def forward(self, features: Tensor) -> Tensor:
        """Embed a batch of feature sequences.

        Args:
            features: Tensor of shape ``(batch, frames, num_mels)``.

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        check_features(features, self.config.features.num_mels)
        x = self.stem(features.transpose(1, 2))  # B, C, N
        outputs = []
        # A plain chain of blocks as in the SpeechBrain and wespeaker implementations.
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.aggregate(torch.cat(outputs, dim=1))  # B, mfa_channels, N
        pooled = self.pooling_norm(self.pooling(x))
        return self.embedding_norm(self.embedding(pooled))

    def embed(self, waveform: Tensor) -> Tensor:
        """Embed raw audio through the batched Kaldi front end.

        Args:
            waveform: Audio of shape ``(batch, time)`` at ``config.sample_rate``.

        Returns:
            Embeddings of shape ``(batch, embedding_dim)``.
        """
        return self(self.front_end(waveform))


def ecapa_paper() -> EcapaTdnnConfig:
    """ECAPA-TDNN, C = 1024 (the paper's best system, 14.7 M parameters), 80-d MFCC."""
    return EcapaTdnnConfig(features=FeatureConfig(kind="mfcc", num_mels=80), channels=1024)


def ecapa_paper_c512() -> EcapaTdnnConfig:
    """ECAPA-TDNN, C = 512 (6.2 M parameters in the paper), 80-d MFCC."""
    return EcapaTdnnConfig(features=FeatureConfig(kind="mfcc", num_mels=80), channels=512)


def ecapa_small() -> EcapaTdnnConfig:
    """CPU-trainable ECAPA-TDNN, C = 128 on 80-d fbank."""
    return EcapaTdnnConfig(
        channels=128, se_channels=64, attention_channels=64, mfa_channels=384, embedding_dim=128
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    "dtdnn": ModelSpec(
        name="dtdnn",
        task="speaker",
        config_class=DTdnnConfig,
        model_class=DTdnn,
        presets={"paper": dtdnn_paper, "paper_ss": dtdnn_ss_paper, "small": dtdnn_small},
        description="D-TDNN / D-TDNN-SS densely connected TDNN speaker encoder (Yu & Li 2020).",
    ),
    "speechnas": ModelSpec(
        name="speechnas",
        task="speaker",
        config_class=DTdnnConfig,
        model_class=DTdnn,
        presets={
            "paper": speechnas_paper,
            "small": speechnas_small,
            **{name: (lambda name=name: _speechnas(name)) for name in SPEECHNAS_ARCHITECTURES},
            "supernet": speechnas_supernet,
            "supernet_small": speechnas_supernet_small,
        },
        description="Searchable D-TDNN-SS (SpeechNAS, Zhu et al. 2021): searched nets and supernet.",
    ),
    "ecapa_tdnn": ModelSpec(
        name="ecapa_tdnn",
        task="speaker",
        config_class=EcapaTdnnConfig,
        model_class=EcapaTdnn,
        presets={"paper": ecapa_paper, "paper_c512": ecapa_paper_c512, "small": ecapa_small},
        description="ECAPA-TDNN speaker encoder (Desplanques et al. 2020).",
    ),
}
