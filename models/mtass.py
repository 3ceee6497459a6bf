"""Complex-MTASSNet: two-stage speech / music / noise separation in the complex STFT domain.

Zhang et al., "Multi-Task Audio Source Separation" (ASRU 2021, arXiv:2107.06467). The model
separates a 16 kHz mixture into three fixed tracks. Facts below were read from the authors'
code (``Windstudent/Complex-MTASSNet``, non-commercial licence; nothing is copied from it):

* Front end: 512-point STFT, Hamming window, hop 256, no normalisation (waveforms in
  ``[-1, 1]``). The network input is the mixture magnitude ``|X|`` (257 bins); the masks act
  on the stacked real and imaginary parts ``[Re X; Im X]`` (514 rows).
* Stage 1, multi-scale TCN separation: a 1x1 conv lifts ``|X|`` to 1028 channels, then 15
  multi-scale residual blocks with dilations ``1, 3, 5, 7, 11`` repeated three times, a
  1028 -> 1028 1x1 conv and one linear 1x1 head per track producing 514 mask values. Every
  conv is followed by BatchNorm, ReLU and dropout 0.2 (the heads are linear).
* Multi-scale residual block: 1x1 conv 1028 -> 257, concatenated with the mixture magnitude
  (514 channels), a multi-scale dilated layer, 1x1 conv 514 -> 1028, plus the block input.
  The multi-scale layer cuts its 514 channels into 8 sub-bands (each half into 4 bands:
  64, 64, 64, 65) and runs two cascades of kernel-3 dilated convs across the bands, one from
  low to high and one from high to low; band ``i`` of a cascade sees band ``i`` of the input
  concatenated with the cascade's output for the previous band, and the two cascades' outputs
  are summed per band. Information thus flows across all bands in both directions.
* The "complex masks" are unbounded real masks of 514 values applied element-wise to
  ``[Re X; Im X]``: the real and imaginary parts are scaled independently, with no cross
  terms (not a complex multiplication).
* Stage 2, residual compensation: for each track the residual ``X - Y1`` (stacked RI, 514
  rows) goes through its own gated TCN (1x1 514 -> 256, 5 repeats x 8 gated blocks with
  dilations ``1, 2, ..., 128``, 1x1 256 -> 514) and the output is added to the stage-1
  estimate ``Y1``. A gated block is 1x1 256 -> 64 (no bias), two kernel-3 dilated convs
  (no bias, BatchNorm, ReLU, dropout), one of them passed through a sigmoid as the gate,
  their product, 1x1 64 -> 256 (no bias) and a residual connection. In the authors' code the
  sigmoid follows the ReLU, so the gate lies in ``[0.5, 1)``; ``gate_activation`` keeps that
  (``"relu_sigmoid"``) or uses a plain sigmoid gate (``"sigmoid"``, same parameter count).
* Loss: MSE between estimated and reference stacked RI spectra summed over the three tracks,
  plus ``0.01`` times the negative time-domain SNR summed over the tracks
  (:func:`mtass_loss`).

These sizes give 28,180,685 parameters, the count the authors report (28.18 M).

Differences from the authors' code, on purpose: the STFT is :func:`torch.stft` with
``center=True`` and :func:`torch.istft` with the window-sum normalisation, so the analysis /
synthesis pair is exactly invertible for any length; the channel widths, sub-band count,
dilations and stage-2 sizes are configurable so a small CPU model keeps the same structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.registry import ModelSpec

GATE_ACTIVATIONS: tuple[str, ...] = ("relu_sigmoid", "sigmoid")


@dataclass(frozen=True)
class MTASSConfig:
    """Every architecture choice of a Complex-MTASSNet model.

    Attributes:
        sample_rate: Sample rate the model is trained at (Hz).
        source_names: One label per output track; one mask head and one stage-2 TCN each.
        n_fft: STFT size (the window length); ``n_fft // 2 + 1`` frequency bins ``F``.
        hop_length: STFT hop in samples.
        hidden_channels: Stage-1 trunk width (1028 in the paper).
        bottleneck_channels: Width each multi-scale block reduces the trunk to before
            concatenating the mixture magnitude (257 = ``F`` in the paper).
        block_dilations: One dilation per multi-scale residual block, in order.
        num_subbands: Sub-bands of the multi-scale layer (even: half cut the magnitude part,
            half the bottleneck part).
        kernel_size: Kernel of the multi-scale dilated convs (odd).
        dropout: Dropout after every stage-1 conv and every stage-2 gated conv.
        residual_channels: Stage-2 gated-TCN width (256 in the paper).
        residual_hidden_channels: Width inside each gated block (64 in the paper).
        residual_repeats: Stage-2 repeats (5 in the paper).
        residual_blocks_per_repeat: Gated blocks per repeat, dilations ``1, 2, 4, ...`` (8).
        residual_kernel_size: Kernel of the gated dilated convs (odd).
        gate_activation: ``"relu_sigmoid"`` (the authors' gate, in ``[0.5, 1)``) or
            ``"sigmoid"``.
    """

    sample_rate: int = 16000
    source_names: tuple[str, ...] = ("speech", "music", "noise")
    n_fft: int = 512
    hop_length: int = 256
    hidden_channels: int = 1028
    bottleneck_channels: int = 257
    block_dilations: tuple[int, ...] = (1, 3, 5, 7, 11) * 3
    num_subbands: int = 8
    kernel_size: int = 3
    dropout: float = 0.2
    residual_channels: int = 256
    residual_hidden_channels: int = 64
    residual_repeats: int = 5
    residual_blocks_per_repeat: int = 8
    residual_kernel_size: int = 3
    gate_activation: str = "relu_sigmoid"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}.")
        if len(self.source_names) < 1:
            raise ValueError("source_names must hold at least one track label.")
        if self.n_fft < 2 or not 0 < self.hop_length <= self.n_fft:
            raise ValueError(
                f"Need n_fft >= 2 and 0 < hop_length <= n_fft, got {self.n_fft}, {self.hop_length}."
            )
        if not self.block_dilations or min(self.block_dilations) < 1:
            raise ValueError(
                f"block_dilations must be non-empty positive ints, got {self.block_dilations}."
            )
        if self.num_subbands < 2 or self.num_subbands % 2:
            raise ValueError(f"num_subbands must be even and >= 2, got {self.num_subbands}.")
        half_bands = self.num_subbands // 2
        if self.bottleneck_channels < half_bands or self.num_bins < half_bands:
            raise ValueError(
                f"num_subbands={self.num_subbands} needs at least {half_bands} bottleneck "
                f"channels and frequency bins (got {self.bottleneck_channels}, {self.num_bins})."
            )
        for name in ("kernel_size", "residual_kernel_size"):
            value = getattr(self, name)
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be odd and >= 1, got {value}.")
        for name in (
            "hidden_channels",
            "residual_channels",
            "residual_hidden_channels",
            "residual_repeats",
            "residual_blocks_per_repeat",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(
                f"gate_activation must be one of {GATE_ACTIVATIONS}, got '{self.gate_activation}'."
            )

    @property
    def num_bins(self) -> int:
        """Frequency bins ``F = n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def num_sources(self) -> int:
        """Number of output tracks."""
        return len(self.source_names)


# Short-time Fourier transform shared by the model and the loss


def stft(waveform: Tensor, n_fft: int = 512, hop_length: int = 256) -> Tensor:
    """Hamming-window STFT of any leading shape.

    Args:
        waveform: Real tensor ``(..., time)``.
        n_fft: FFT size and window length.
        hop_length: Hop in samples.

    Returns:
        Complex spectrum ``(..., n_fft // 2 + 1, frames)`` with ``frames = time // hop + 1``.
    """
    leading = waveform.shape[:-1]
    window = torch.hamming_window(n_fft, device=waveform.device, dtype=waveform.dtype)
    # Zero (not reflect) centring padding works for signals shorter than half a window.
    spectrum = torch.stft(
        waveform.reshape(-1, waveform.shape[-1]),
        n_fft,
        hop_length=hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spectrum.reshape(*leading, *spectrum.shape[-2:])


def istft(spectrum: Tensor, length: int, n_fft: int = 512, hop_length: int = 256) -> Tensor:
    """Inverse of :func:`stft` (window-sum normalised overlap-add).

    Args:
        spectrum: Complex tensor ``(..., n_fft // 2 + 1, frames)``.
        length: Output length in samples.
        n_fft: FFT size and window length.
        hop_length: Hop in samples.

    Returns:
        Real waveform ``(..., length)``.
    """
    leading = spectrum.shape[:-2]
    window = torch.hamming_window(n_fft, device=spectrum.device, dtype=spectrum.real.dtype)
    waveform = torch.istft(
        spectrum.reshape(-1, *spectrum.shape[-2:]),
        n_fft,
        hop_length=hop_length,
        window=window,
        center=True,
        length=length,
    )
    return waveform.reshape(*leading, length)


def _stack_real_imag(spectrum: Tensor) -> Tensor:
    """Complex ``(..., F, frames)`` -> real ``(..., 2F, frames)`` as ``[Re; Im]``."""
    return torch.cat((spectrum.real, spectrum.imag), dim=-2)


def _complex_from_stacked(stacked: Tensor) -> Tensor:
    """Real ``(..., 2F, frames)`` ``[Re; Im]`` -> complex ``(..., F, frames)``."""
    real, imag = stacked.chunk(2, dim=-2)
    return torch.complex(real, imag)


def check_mixture(mixture: Tensor) -> None:
    """Raise ``ValueError`` unless ``mixture`` is a finite, non-empty ``(batch, time)`` tensor."""
    if not isinstance(mixture, Tensor) or mixture.dim() != 2:
        shape = tuple(mixture.shape) if isinstance(mixture, Tensor) else type(mixture).__name__
        raise ValueError(f"Expected a mixture of shape (batch, time), got {shape}.")
    if mixture.shape[0] == 0 or mixture.shape[1] == 0:
        raise ValueError(f"Expected a non-empty (batch, time) mixture, got {tuple(mixture.shape)}.")
    if not mixture.is_floating_point():
        raise ValueError(f"Expected a floating-point mixture, got {mixture.dtype}.")
    if not bool(torch.isfinite(mixture).all()):
        raise ValueError("The mixture contains NaN or infinite samples.")


# Stage 1: multi-scale TCN separation


class ConvNormReLU(nn.Sequential):
    """Conv1d -> BatchNorm1d -> ReLU -> Dropout, "same" length (symmetric dilated padding).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel size.
        dilation: Dilation of the conv.
        dropout: Dropout probability.
        bias: Whether the conv has a bias (BatchNorm follows, but the authors keep it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        dilation: int = 1,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv1d(
                in_channels,
                out_channels,
                kernel_size,
                dilation=dilation,
                padding=padding,
                bias=bias,
            ),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )


def _split_evenly(total: int, parts: int) -> list[int]:
    """``parts`` sizes summing to ``total``; the remainder goes to the last (64,64,64,65)."""
    base = total // parts
    return [base] * (parts - 1) + [total - base * (parts - 1)]


class MultiScaleDilatedLayer(nn.Module):
    """Bidirectional cascade of dilated convs across sub-bands of the channel axis.

    The channels are cut into bands; the low-to-high cascade computes band ``i`` from
    ``[previous output; band i]`` and the high-to-low cascade from ``[band i; next output]``,
    so every output band has seen every input band. The two cascades are summed per band.

    Args:
        band_sizes: Channels of each band in order; the output has the same sizes.
        kernel_size: Odd kernel of every band conv.
        dilation: Dilation of every band conv.
        dropout: Dropout after every band conv.
    """

    def __init__(
        self, band_sizes: Sequence[int], kernel_size: int, dilation: int, dropout: float
    ) -> None:
        super().__init__()
        self.band_sizes = tuple(band_sizes)
        sizes = self.band_sizes
        last = len(sizes) - 1

        def band_conv(in_channels: int, out_channels: int) -> ConvNormReLU:
            return ConvNormReLU(in_channels, out_channels, kernel_size, dilation, dropout)

        self.upward = nn.ModuleList(
            band_conv(sizes[i] + (sizes[i - 1] if i > 0 else 0), sizes[i])
            for i in range(len(sizes))
        )
        self.downward = nn.ModuleList(
            band_conv(sizes[i] + (sizes[i + 1] if i < last else 0), sizes[i])
            for i in range(len(sizes))
        )

    def forward(self, features: Tensor) -> Tensor:
        """Mix information across bands and time.

        Args:
            features: ``(batch, sum(band_sizes), frames)``.

        Returns:
            ``(batch, sum(band_sizes), frames)``.
        """
        bands = features.split(self.band_sizes, dim=1)
        upward: list[Tensor] = []
        for index, band in enumerate(bands):
            inputs = band if index == 0 else torch.cat((upward[-1], band), dim=1)
            upward.append(self.upward[index](inputs))
        downward: list[Tensor] = []  # filled from the top band down
        for index in reversed(range(len(bands))):
            band = bands[index]
            inputs = band if not downward else torch.cat((band, downward[-1]), dim=1)
            downward.append(self.downward[index](inputs))
        downward.reverse()
        return torch.cat([up + down for up, down in zip(upward, downward, strict=True)], dim=1)


class MultiScaleResidualBlock(nn.Module):
    """Reduce the trunk, append the mixture magnitude, multi-scale layer, expand, add.

    Args:
        config: Model config (trunk and bottleneck widths, sub-bands, kernel, dropout).
        dilation: Dilation of this block's multi-scale layer.
    """

    def __init__(self, config: MTASSConfig, dilation: int) -> None:
        super().__init__()
        half = config.num_subbands // 2
        # Magnitude bands first, then bottleneck bands: the magnitude is concatenated in
        # front, and cutting each part separately keeps a band from straddling the two.
        band_sizes = _split_evenly(config.num_bins, half) + _split_evenly(
            config.bottleneck_channels, half
        )
        self.reduce = ConvNormReLU(
            config.hidden_channels, config.bottleneck_channels, dropout=config.dropout
        )
        self.multi_scale = MultiScaleDilatedLayer(
            band_sizes, config.kernel_size, dilation, config.dropout
        )
        self.expand = ConvNormReLU(sum(band_sizes), config.hidden_channels, dropout=config.dropout)

    def forward(self, trunk: Tensor, magnitude: Tensor) -> Tensor:
        """One residual step.

        Args:
            trunk: ``(batch, hidden_channels, frames)``.
            magnitude: Mixture magnitude ``(batch, F, frames)``.

        Returns:
            ``(batch, hidden_channels, frames)``.
        """
        reduced = self.reduce(trunk)
        mixed = self.multi_scale(torch.cat((magnitude, reduced), dim=1))
        return trunk + self.expand(mixed)


class MultiScaleSeparator(nn.Module):
    """Stage 1: mixture magnitude -> one real mask per track over the stacked RI spectrum.

    Args:
        config: Model config.
    """

    def __init__(self, config: MTASSConfig) -> None:
        super().__init__()
        self.input_conv = ConvNormReLU(
            config.num_bins, config.hidden_channels, dropout=config.dropout
        )
        self.blocks = nn.ModuleList(
            MultiScaleResidualBlock(config, dilation) for dilation in config.block_dilations
        )
        self.output_conv = ConvNormReLU(
            config.hidden_channels, config.hidden_channels, dropout=config.dropout
        )
        # Linear heads: the masks are unbounded, so they can amplify as well as attenuate.
        self.mask_heads = nn.ModuleList(
            nn.Conv1d(config.hidden_channels, 2 * config.num_bins, 1) for _ in config.source_names
        )

    def forward(self, magnitude: Tensor) -> Tensor:
        """Estimate the masks.

        Args:
            magnitude: Mixture magnitude ``(batch, F, frames)``.

        Returns:
            Masks ``(batch, num_sources, 2F, frames)`` for ``[Re X; Im X]``.
        """
        trunk = self.input_conv(magnitude)
        for block in self.blocks:
            trunk = block(trunk, magnitude)
        trunk = self.output_conv(trunk)
        return torch.stack([head(trunk) for head in self.mask_heads], dim=1)


# Stage 2: gated TCN residual compensation


class GatedDilatedBlock(nn.Module):
    """1x1 squeeze, dilated value conv times dilated gate conv, 1x1 expand, residual.

    Args:
        channels: Block input / output width.
        hidden_channels: Width of the gated convs.
        kernel_size: Odd kernel of the gated convs.
        dilation: Dilation of the gated convs.
        dropout: Dropout after both gated convs.
        gate_activation: ``"relu_sigmoid"`` or ``"sigmoid"``.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation: int,
        dropout: float,
        gate_activation: str,
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv1d(channels, hidden_channels, 1, bias=False)
        self.value = ConvNormReLU(
            hidden_channels, hidden_channels, kernel_size, dilation, dropout, bias=False
        )
        if gate_activation == "relu_sigmoid":
            self.gate = ConvNormReLU(
                hidden_channels, hidden_channels, kernel_size, dilation, dropout, bias=False
            )
        else:
            padding = dilation * (kernel_size - 1) // 2
            self.gate = nn.Sequential(
                nn.Conv1d(
                    hidden_channels,
                    hidden_channels,
                    kernel_size,
                    dilation=dilation,
                    padding=padding,
                    bias=False,
                ),
                nn.BatchNorm1d(hidden_channels),
                nn.Dropout(dropout),
            )
        self.expand = nn.Conv1d(hidden_channels, channels, 1, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        """Gated residual update.

        Args:
            features: ``(batch, channels, frames)``.

        Returns:
            ``(batch, channels, frames)``.
        """
        squeezed = self.squeeze(features)
        gated = self.value(squeezed) * torch.sigmoid(self.gate(squeezed))
        return features + self.expand(gated)


class GatedTCN(nn.Module):
    """Stage 2 for one track: stacked RI residual -> stacked RI correction.

    Args:
        config: Model config (stage-2 sizes).
    """

    def __init__(self, config: MTASSConfig) -> None:
        super().__init__()
        spectrum_rows = 2 * config.num_bins
        self.input_conv = nn.Conv1d(spectrum_rows, config.residual_channels, 1)
        self.blocks = nn.Sequential(
            *(
                GatedDilatedBlock(
                    config.residual_channels,
                    config.residual_hidden_channels,
                    config.residual_kernel_size,
                    2**index,
                    config.dropout,
                    config.gate_activation,
                )
                for _ in range(config.residual_repeats)
                for index in range(config.residual_blocks_per_repeat)
            )
        )
        self.output_conv = nn.Conv1d(config.residual_channels, spectrum_rows, 1)

    def forward(self, residual: Tensor) -> Tensor:
        """Estimate the part of the track that stage 1 left in the residual.

        Args:
            residual: ``[Re; Im]`` of ``mixture - stage-1 estimate``, ``(batch, 2F, frames)``.

        Returns:
            Correction ``(batch, 2F, frames)`` added to the stage-1 estimate.
        """
        return self.output_conv(self.blocks(self.input_conv(residual)))


# The model


class MTASSNet(nn.Module):
    """Complex-MTASSNet: stage-1 multi-scale TCN masks, stage-2 gated-TCN compensation.

    Args:
        config: Architecture choices; see :class:`MTASSConfig` and the module docstring.

    Training: :meth:`forward_spectra` (or :meth:`forward_stages`) with :func:`mtass_loss` on
    both stages. The authors' two-step schedule (stage 1 first, then stage 2 with stage 1
    frozen) is ``model.separator.requires_grad_(False)`` in the second step.
    """

    def __init__(self, config: MTASSConfig) -> None:
        super().__init__()
        self.config = config
        self.source_names: tuple[str, ...] = tuple(config.source_names)
        self.separator = MultiScaleSeparator(config)
        self.compensators = nn.ModuleList(GatedTCN(config) for _ in config.source_names)

    def forward_spectra(self, mixture: Tensor) -> tuple[Tensor, Tensor]:
        """Both stages' estimates as complex spectra (what the paper's MSE term compares).

        Args:
            mixture: ``(batch, time)`` waveform.

        Returns:
            ``(stage1, stage2)``, each complex ``(batch, num_sources, F, frames)`` with
            ``frames = time // hop_length + 1``.
        """
        check_mixture(mixture)
        config = self.config
        spectrum = stft(mixture, config.n_fft, config.hop_length)  # B, F, N
        stacked = _stack_real_imag(spectrum)  # B, 2F, N
        masks = self.separator(spectrum.abs())  # B, S, 2F, N
        # Real and imaginary parts are scaled independently (authors' "complex mask").
        stage1 = masks * stacked.unsqueeze(1)  # B, S, 2F, N
        residual = stacked.unsqueeze(1) - stage1
        stage2 = stage1 + torch.stack(
            [
                compensator(residual[:, index])
                for index, compensator in enumerate(self.compensators)
            ],
            dim=1,
        )
        return _complex_from_stacked(stage1), _complex_from_stacked(stage2)

    def forward_stages(self, mixture: Tensor) -> tuple[Tensor, Tensor]:
        """Both stages' estimates as waveforms.

        Args:
            mixture: ``(batch, time)`` waveform.

        Returns:
            ``(stage1, stage2)``, each ``(batch, num_sources, time)``.
        """
        stage1, stage2 = self.forward_spectra(mixture)
        length = mixture.shape[-1]
        return (
            istft(stage1, length, self.config.n_fft, self.config.hop_length),
            istft(stage2, length, self.config.n_fft, self.config.hop_length),
        )

    def forward(self, mixture: Tensor) -> Tensor:
        """Separate a mixture into the configured tracks (final, stage-2 estimates).

        Args:
            mixture: ``(batch, time)`` waveform at ``config.sample_rate``.

        Returns:
            ``(batch, num_sources, time)``, same length as the input.
        """
        _, stage2 = self.forward_spectra(mixture)
        return istft(stage2, mixture.shape[-1], self.config.n_fft, self.config.hop_length)


# Loss


def _snr_loss(estimate: Tensor, reference: Tensor, eps: float) -> Tensor:
    """Negative SNR in dB per ``(batch, source)``, from waveforms ``(batch, S, time)``."""
    signal = reference.pow(2).sum(dim=-1)
    error = (estimate - reference).pow(2).sum(dim=-1)
    return -10.0 * torch.log10(signal / (error + eps) + eps)


def mtass_loss(
    estimates: Tensor | Sequence[Tensor],
    references: Tensor,
    *,
    snr_weight: float = 0.01,
    stage_weights: Sequence[float] | None = None,
    n_fft: int = 512,
    hop_length: int = 256,
    eps: float = 1e-8,
) -> Tensor:
    """Complex-spectrum MSE plus weighted negative time-domain SNR, summed over tracks.

    Per stage: ``sum_s MSE(RI_hat_s, RI_s) + snr_weight * sum_s mean_batch(-SNR_s)``, with
    ``RI`` the stacked real and imaginary STFT (the authors use ``snr_weight = 0.01`` with
    unnormalised STFTs of waveforms in ``[-1, 1]``). Several stages are combined as a
    weighted sum (default weight 1 each).

    Args:
        estimates: One estimate or a sequence of them (e.g. ``(stage1, stage2)``). Each is
            either a complex spectrum ``(batch, S, F, frames)`` from
            :meth:`MTASSNet.forward_spectra` (exactly the paper's spectral term) or a
            waveform ``(batch, S, time)`` (its spectrum is recomputed with :func:`stft`).
        references: Reference waveforms ``(batch, S, time)``.
        snr_weight: Weight of the SNR term.
        stage_weights: One weight per estimate; ``None`` weights all by 1.
        n_fft: STFT size used for the references (must match the model's).
        hop_length: STFT hop (must match the model's).
        eps: Numerical floor inside the SNR.

    Returns:
        Scalar loss (lower is better).
    """
    stages = [estimates] if isinstance(estimates, Tensor) else list(estimates)
    if not stages:
        raise ValueError("Expected at least one estimate.")
    weights = [1.0] * len(stages) if stage_weights is None else list(stage_weights)
    if len(weights) != len(stages):
        raise ValueError(f"Got {len(weights)} stage_weights for {len(stages)} estimates.")
    if not isinstance(references, Tensor) or references.dim() != 3 or references.numel() == 0:
        shape = tuple(references.shape) if isinstance(references, Tensor) else references
        raise ValueError(f"Expected references of shape (batch, sources, time), got {shape}.")
    if not bool(torch.isfinite(references).all()):
        raise ValueError("The references contain NaN or infinite samples.")
    length = references.shape[-1]
    reference_spectrum = _stack_real_imag(stft(references, n_fft, hop_length))
    total = references.new_zeros(())
    for weight, estimate in zip(weights, stages, strict=True):
        if estimate.is_complex():
            batch, sources, rows, frames = reference_spectrum.shape
            expected = (batch, sources, rows // 2, frames)
            if tuple(estimate.shape) != expected:
                raise ValueError(
                    f"Expected a spectrum estimate of shape {expected} (batch, sources, "
                    f"bins, frames), got {tuple(estimate.shape)}."
                )
            estimate_spectrum = _stack_real_imag(estimate)
            estimate_waveform = istft(estimate, length, n_fft, hop_length)
        else:
            if tuple(estimate.shape) != tuple(references.shape):
                raise ValueError(
                    f"Expected a waveform estimate of shape {tuple(references.shape)} "
                    f"(batch, sources, time), got {tuple(estimate.shape)}."
                )
            estimate_spectrum = _stack_real_imag(stft(estimate, n_fft, hop_length))
            estimate_waveform = estimate
        # Mean over batch, bins and frames for each track, summed over tracks (as the
        # authors add one nn.MSELoss per track).
        spectral = (estimate_spectrum - reference_spectrum).pow(2).mean(dim=(0, 2, 3)).sum()
        snr = _snr_loss(estimate_waveform, references, eps).mean(dim=0).sum()
        total = total + weight * (spectral + snr_weight * snr)
    return total


# Presets


def mtass_paper() -> MTASSConfig:
    """The published Complex-MTASSNet (28,180,685 parameters, as the authors count)."""
    return MTASSConfig()


def mtass_small() -> MTASSConfig:
    """Same two-stage structure, trainable on two CPU cores in 1-2 hours (about 2.5 M params).

    The trunk (128), bottleneck (32) and stage-2 widths (96 / 32) are cut; the multi-scale
    blocks keep their dilation cycle ``1, 3, 5, 7, 11`` but repeat it twice instead of three
    times (stage-1 receptive field 108 frames, 1.7 s). The mixture magnitude is still
    concatenated at full resolution, so the multi-scale layer uses 16 sub-bands to keep its
    band convs small. Each stage-2 TCN has 2 repeats of 8 gated blocks (receptive field
    about 16 s).
    """
    return MTASSConfig(
        hidden_channels=128,
        bottleneck_channels=32,
        block_dilations=(1, 3, 5, 7, 11) * 2,
        num_subbands=16,
        residual_channels=96,
        residual_hidden_channels=32,
        residual_repeats=2,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    "mtass": ModelSpec(
        name="mtass",
        task="separation",
        config_class=MTASSConfig,
        model_class=MTASSNet,
        presets={"paper": mtass_paper, "small": mtass_small},
        description="Complex-MTASSNet two-stage speech / music / noise separation (16 kHz)",
    ),
}
