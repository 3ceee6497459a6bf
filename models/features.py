"""Acoustic front ends for the speaker encoders: Kaldi-compatible fbank and MFCC.

Two ways to get the same features:

* :func:`kaldi_features` computes one utterance with ``torchaudio.compliance.kaldi`` (``fbank``
  or ``mfcc``). It is the reference: slow (a Python loop per utterance) but exactly what Kaldi
  and the published recipes (D-TDNN, SpeechNAS, wespeaker) feed their models.
* :class:`BatchedFeatures` computes a whole ``(batch, time)`` batch at once with plain tensor
  ops (``unfold``, ``torch.fft.rfft``, one matmul with the mel matrix), on CPU or GPU. It is
  what training and every encoder's ``embed`` use.

Why the batched path is not ``torchaudio.transforms.MelSpectrogram``: that transform differs
from Kaldi in three ways that change the features by far more than float round-off: (1) its
triangular filters are laid out with linear interpolation between FFT bins in Hz, while Kaldi
builds each triangle in the mel domain; (2) it neither removes each frame's DC offset nor
pre-emphasises inside each frame (Kaldi does both, frame by frame, before windowing); (3) it
has no Povey window and frames with ``center``-padding instead of Kaldi's ``snip_edges``
rules. A model trained on Kaldi features and run on ``MelSpectrogram`` features therefore
sees a shifted input distribution. The batched path here instead replays Kaldi's per-frame
pipeline in tensor form and takes its mel matrix from ``torchaudio.compliance.kaldi``
(``get_mel_banks``), so it matches :func:`kaldi_features` to float tolerance (a test checks
it) at the speed of a batched transform. Dither is always off (deterministic features;
augmentation belongs in the data pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as audio_functional
from torch import Tensor, nn

FEATURE_KINDS = ("fbank", "mfcc")
WINDOWS = ("povey", "hamming", "hanning", "rectangular")


@dataclass(frozen=True)
class FeatureConfig:
    """Kaldi front-end settings (defaults are Kaldi's, with 80 mel bins and mean normalisation).

    Attributes:
        kind: ``"fbank"`` (log mel energies) or ``"mfcc"`` (their DCT, ``num_mels`` cepstra
            from ``num_mels`` bins, as the Kaldi VoxCeleb recipe's 30/30 MFCCs).
        num_mels: Mel bins, and the feature dimension the encoders see.
        frame_length_ms: Window length (25 ms = 400 samples at 16 kHz).
        frame_shift_ms: Hop (10 ms = 160 samples at 16 kHz).
        window: ``"povey"`` (Kaldi's default, Hann to the power 0.85), ``"hamming"``...
        low_freq: Lowest mel filter edge in Hz.
        high_freq: Highest edge in Hz; ``<= 0`` is an offset from Nyquist (Kaldi semantics).
        preemphasis: Per-frame pre-emphasis coefficient.
        remove_dc_offset: Subtract each frame's mean before pre-emphasis.
        snip_edges: Kaldi framing: True keeps only frames that fit in the signal; False
            reflects the edges and yields ``round(time / shift)`` frames.
        cepstral_lifter: MFCC liftering coefficient (0 disables).
        mean_normalize: Subtract each utterance's per-dimension mean over frames (CMN).
        input_scale: Waveforms in [-1, 1] are multiplied by this first. Kaldi reads 16-bit
            integers; matching that range keeps the log floor where Kaldi has it.
    """

    kind: str = "fbank"
    num_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "povey"
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    snip_edges: bool = True
    cepstral_lifter: float = 22.0
    mean_normalize: bool = True
    input_scale: float = 32768.0

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {FEATURE_KINDS}, got '{self.kind}'.")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got '{self.window}'.")
        if self.num_mels < 1:
            raise ValueError(f"num_mels must be >= 1, got {self.num_mels}.")
        if self.frame_length_ms <= 0 or self.frame_shift_ms <= 0:
            raise ValueError("frame_length_ms and frame_shift_ms must be positive.")


def kaldi_voxceleb_mfcc(num_mels: int = 30) -> FeatureConfig:
    """The MFCCs of Kaldi's VoxCeleb v2 recipe (``conf/mfcc.conf``), used by D-TDNN/SpeechNAS."""
    return FeatureConfig(kind="mfcc", num_mels=num_mels, high_freq=7600.0, snip_edges=False)


def frame_geometry(sample_rate: int, config: FeatureConfig) -> tuple[int, int, int]:
    """Window length, hop and FFT size in samples, rounded the way Kaldi rounds them."""
    window_size = int(sample_rate * config.frame_length_ms * 0.001)
    window_shift = int(sample_rate * config.frame_shift_ms * 0.001)
    fft_size = 1 << max(0, (window_size - 1).bit_length())
    return window_size, window_shift, fft_size


def num_frames(num_samples: int, sample_rate: int, config: FeatureConfig) -> int:
    """Frames Kaldi produces for ``num_samples`` samples (0 when the signal is too short)."""
    window_size, window_shift, _ = frame_geometry(sample_rate, config)
    if config.snip_edges:
        if num_samples < window_size:
            return 0
        return 1 + (num_samples - window_size) // window_shift
    return (num_samples + window_shift // 2) // window_shift


def check_waveform(waveform: Tensor, min_samples: int = 1) -> None:
    """Raise ``ValueError`` unless ``waveform`` is a finite ``(batch, time)`` float tensor."""
    if not isinstance(waveform, Tensor):
        raise ValueError(f"Expected waveform as a Tensor of shape (batch, time), got {waveform!r}.")
    if waveform.dim() != 2:
        raise ValueError(
            f"Expected waveform of shape (batch, time), got shape {tuple(waveform.shape)}."
        )
    if waveform.shape[0] == 0 or waveform.shape[1] < min_samples:
        raise ValueError(
            f"Expected waveform of shape (batch >= 1, time >= {min_samples}), "
            f"got shape {tuple(waveform.shape)}."
        )
    if not waveform.is_floating_point():
        raise ValueError(f"Expected a floating-point waveform, got dtype {waveform.dtype}.")
    if not torch.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or infinite values.")


def check_features(features: Tensor, num_mels: int, min_frames: int = 1) -> None:
    """Raise ``ValueError`` unless ``features`` is a finite ``(batch, frames, num_mels)`` tensor."""
    if not isinstance(features, Tensor):
        raise ValueError(
            f"Expected features as a Tensor of shape (batch, frames, {num_mels}), got {features!r}."
        )
    if features.dim() != 3 or features.shape[-1] != num_mels:
        raise ValueError(
            f"Expected features of shape (batch, frames, {num_mels}), "
            f"got shape {tuple(features.shape)}."
        )
    if features.shape[0] == 0 or features.shape[1] < min_frames:
        raise ValueError(
            f"Expected features of shape (batch >= 1, frames >= {min_frames}, {num_mels}), "
            f"got shape {tuple(features.shape)}."
        )
    if not features.is_floating_point():
        raise ValueError(f"Expected floating-point features, got dtype {features.dtype}.")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values.")


def kaldi_features(waveform: Tensor, sample_rate: int, config: FeatureConfig) -> Tensor:
    """One utterance through ``torchaudio.compliance.kaldi`` (the reference front end).

    Args:
        waveform: Mono audio of shape ``(time,)`` or ``(1, time)``, values in [-1, 1].
        sample_rate: Sampling rate of ``waveform`` in Hz.
        config: Front-end settings.

    Returns:
        Features of shape ``(frames, num_mels)``.
    """
    if waveform.dim() == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.dim() != 1:
        raise ValueError(
            f"Expected waveform of shape (time,) or (1, time), got {tuple(waveform.shape)}."
        )
    if waveform.shape[0] < frame_geometry(sample_rate, config)[0]:
        raise ValueError(
            f"waveform of {waveform.shape[0]} samples is shorter than one "
            f"{config.frame_length_ms} ms frame at {sample_rate} Hz."
        )
    common = {
        "sample_frequency": float(sample_rate),
        "num_mel_bins": config.num_mels,
        "frame_length": config.frame_length_ms,
        "frame_shift": config.frame_shift_ms,
        "window_type": config.window,
        "low_freq": config.low_freq,
        "high_freq": config.high_freq,
        "preemphasis_coefficient": config.preemphasis,
        "remove_dc_offset": config.remove_dc_offset,
        "snip_edges": config.snip_edges,
        "dither": 0.0,
        "subtract_mean": config.mean_normalize,
    }
    scaled = (waveform * config.input_scale).unsqueeze(0)
    if config.kind == "fbank":
        return kaldi.fbank(scaled, **common)
    return kaldi.mfcc(
        scaled, num_ceps=config.num_mels, cepstral_lifter=config.cepstral_lifter, **common
    )


def _window(name: str, size: int) -> Tensor:
    # Kaldi's windows are symmetric (periodic=False); Povey is Hann raised to 0.85.
    if name == "povey":
        return torch.hann_window(size, periodic=False, dtype=torch.float64).pow(0.85)
    if name == "hamming":
        return torch.hamming_window(
            size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64
        )
    if name == "hanning":
        return torch.hann_window(size, periodic=False, dtype=torch.float64)
    return torch.ones(size, dtype=torch.float64)


class BatchedFeatures(nn.Module):
    """Kaldi fbank/MFCC for a whole batch in tensor ops (matches :func:`kaldi_features`).

    The mel matrix, window and DCT are non-persistent buffers: they follow ``.to(device)``
    but never enter a checkpoint, so changing them can never break loading.

    Args:
        config: Front-end settings.
        sample_rate: Sampling rate of the waveforms in Hz.
    """

    def __init__(self, config: FeatureConfig, sample_rate: int) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = sample_rate
        self.window_size, self.window_shift, self.fft_size = frame_geometry(sample_rate, config)
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError(
                f"frame_length_ms={config.frame_length_ms} and frame_shift_ms="
                f"{config.frame_shift_ms} are too short at {sample_rate} Hz."
            )
        mel_banks, _ = kaldi.get_mel_banks(
            config.num_mels, self.fft_size, float(sample_rate), config.low_freq,
            config.high_freq, 100.0, -500.0, 1.0,
        )  # fmt: skip
        # Kaldi's bank covers fft_size // 2 bins; the Nyquist bin gets a zero weight.
        mel_banks = torch.nn.functional.pad(mel_banks.float(), (0, 1))
        self.register_buffer("mel_banks", mel_banks.T.contiguous(), persistent=False)
        self.register_buffer("window", _window(config.window, self.window_size), persistent=False)
        if config.kind == "mfcc":
            # Same float32 DCT and lifter tables as torchaudio's kaldi.mfcc, applied in the same
            # order (DCT, then lifter), so float64 results agree to round-off.
            dct = audio_functional.create_dct(config.num_mels, config.num_mels, norm="ortho")
            lifter = torch.ones(config.num_mels)
            if config.cepstral_lifter != 0.0:
                index = torch.arange(config.num_mels)
                lifter = 1.0 + 0.5 * config.cepstral_lifter * torch.sin(
                    math.pi * index / config.cepstral_lifter
                )
            self.register_buffer("dct", dct, persistent=False)
            self.register_buffer("lifter", lifter, persistent=False)
        else:
            self.register_buffer("dct", None, persistent=False)
            self.register_buffer("lifter", None, persistent=False)

    @property
    def num_features(self) -> int:
        """Feature dimension of the output."""
        return self.config.num_mels

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples."""
        return num_frames(num_samples, self.sample_rate, self.config)

    def _frames(self, waveform: Tensor) -> Tensor:
        # B, T -> B, N, window_size, replaying kaldi._get_strided for both edge modes.
        if not self.config.snip_edges:
            count = self.num_frames(waveform.shape[-1])
            pad = self.window_size // 2 - self.window_shift // 2
            if pad > 0:
                waveform = torch.cat(
                    [waveform[:, :pad].flip(-1), waveform, waveform.flip(-1)], dim=-1
                )
            else:
                waveform = torch.cat([waveform[:, -pad:], waveform.flip(-1)], dim=-1)
            return waveform.unfold(-1, self.window_size, self.window_shift)[:, :count]
        return waveform.unfold(-1, self.window_size, self.window_shift)

    def forward(self, waveform: Tensor) -> Tensor:
        """Compute features for a batch of equal-length waveforms.

        Args:
            waveform: Audio of shape ``(batch, time)``, values in [-1, 1].

        Returns:
            Features of shape ``(batch, frames, num_mels)``.
        """
        check_waveform(waveform)
        # One full window at least in both edge modes (Kaldi's reflection needs it too).
        if waveform.shape[-1] < self.window_size:
            raise ValueError(
                f"Expected waveform of shape (batch, time >= {self.window_size}) for one "
                f"{self.config.frame_length_ms} ms frame, got shape {tuple(waveform.shape)}."
            )
        config = self.config
        # float64 input stays float64 (the tests compare with Kaldi at that precision);
        # anything else runs in float32.
        dtype = torch.float64 if waveform.dtype == torch.float64 else torch.float32
        frames = self._frames(waveform.to(dtype) * config.input_scale)  # B, N, W
        if config.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if config.preemphasis != 0.0:
            # Kaldi replicates each frame's first sample as its own predecessor.
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - config.preemphasis * previous
        frames = frames * self.window.to(dtype)
        spectrum = torch.view_as_real(torch.fft.rfft(frames, n=self.fft_size))
        power = spectrum.square().sum(dim=-1)  # B, N, fft_size // 2 + 1
        mel = power @ self.mel_banks.to(dtype)  # B, N, num_mels
        # Kaldi floors at float32 epsilon whatever the dtype.
        features = mel.clamp_min(torch.finfo(torch.float32).eps).log()
        if self.dct is not None:
            features = (features @ self.dct.to(dtype)) * self.lifter.to(dtype)
        if config.mean_normalize:
            features = features - features.mean(dim=1, keepdim=True)
        return features
