"""TUSS: Task-aware Unified Source Separation (Saijo et al., ICASSP 2025).

One model for speech enhancement, speech separation, sound-event separation, music source
separation and cinematic audio separation. What to separate is told by prompts: each prompt
is a learned vector, the model receives any number of them (duplicates allowed, e.g. two
``"speech"`` prompts for two talkers) and returns one estimate per prompt, in prompt order.

Pipeline (shapes for batch ``B``, prompts ``P``, frames ``T``, bands ``K``, channels ``E``)::

    waveform / std -> STFT (sqrt-Hann) -> encoder (band-split or SFC-CA)      B, T, K, E
    [prompt tokens | start token | frames] along time                        B, P+1+T, K, E
    N1 cross-prompt TF-Locoformer blocks (prompts and mixture see each other)
    split: prompt features B, P, K, E  and  mixture features B, T, K, E
    condition: mixture * prompt feature (elementwise), prompts folded into batch   B*P, T, K, E
    N2 target-extraction TF-Locoformer blocks (shared by all prompts)
    decoder -> complex mask per bin -> mask * mixture STFT -> iSTFT -> * std      B, P, time

Reference implementation (read for facts, not copied): ``merlresearch/unified-source-separation``
``nets/tuss.py`` and ``configs/unified/tuss.{medium,large}.2-4src.yaml``.

One deliberate deviation: the reference gives the prompt tokens RoPE time positions
``0 .. P-1``, which makes the result depend on prompt order even for distinct prompts. Here a
prompt token's position is its *occurrence rank* among identical prompts (the first
``"speech"`` is 0, the second ``"speech"`` 1, a lone ``"sfx"`` 0). Distinct prompts are then
treated as a set, so reordering them reorders the outputs and nothing else (given a
position-wise time FFN in the cross-prompt stack, as in the paper's configurations), while
duplicate prompts still differ and can pick out different talkers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks.band_split import (
    BS_ROFORMER_BAND_LAYOUT,
    BandSplitDecoder,
    BandSplitEncoder,
    band_widths,
)
from models.blocks.locoformer import LocoformerConfig, TFLocoformerBlock
from models.blocks.sfc_ca import SFCDecoder, SFCEncoder
from models.registry import ModelSpec

#: Prompt vocabulary, in the order of the rows of ``TUSS.prompt_embeddings``. The reference
#: code calls ``sfx-mix`` / ``other-inst`` / ``music-mix`` ``sfxbg`` / ``other`` / ``musicbg``.
PROMPTS: tuple[str, ...] = (
    "speech",
    "sfx",
    "sfx-mix",
    "drums",
    "bass",
    "vocals",
    "other-inst",
    "music-mix",
)

ENCODERS: tuple[str, ...] = ("band_split", "sfc_ca")


def _paper_cross_prompt(num_heads: int, attention_dim: int) -> LocoformerConfig:
    # Time-path FFN kernel 1: the prompt tokens sit at the front of the time axis and a wider
    # kernel would smear them into the start token and the first frames.
    return LocoformerConfig(
        num_groups=8,
        num_heads=num_heads,
        attention_dim=attention_dim,
        freq_ffn_dim=384,
        freq_kernel_size=4,
        time_ffn_dim=384,
        time_kernel_size=1,
    )


def _paper_extraction(num_heads: int, attention_dim: int) -> LocoformerConfig:
    return LocoformerConfig(
        num_groups=8,
        num_heads=num_heads,
        attention_dim=attention_dim,
        freq_ffn_dim=256,
        freq_kernel_size=4,
        time_ffn_dim=256,
        time_kernel_size=4,
    )


@dataclass(frozen=True)
class TUSSConfig:
    """Every architecture choice of a TUSS model; defaults are the paper's medium model.

    Attributes:
        sample_rate: Rate the model runs at, in Hz.
        n_fft: STFT size (window length equals ``n_fft``).
        hop_length: STFT hop in samples.
        emb_dim: Channels of the band features and of every block.
        num_cross_prompt_blocks: N1, blocks that see prompts and mixture together.
        num_extraction_blocks: N2, conditional target-extraction blocks shared by the prompts.
        cross_prompt: Block configuration of the cross-prompt stack.
        extraction: Block configuration of the target-extraction stack.
        encoder: ``"band_split"`` (paper) or ``"sfc_ca"`` (cross-attention compression).
        band_layout: ``(low_hz, high_hz, bins_per_band)`` ranges (see
            :func:`models.blocks.band_split.band_widths`); SFC-CA uses it for its queries and
            positional bias.
        num_top_bands: Bands for the bins above the last layout range.
        decoder_hidden_multiplier: Band-split decoder MLP width as a multiple of ``emb_dim``.
        sfc_attention_dim: SFC-CA attention width.
        sfc_num_heads: SFC-CA heads.
        use_start_token: Put a learned start token between the prompts and the frames.
        normalize_input: Divide the input by its standard deviation and rescale the outputs.
    """

    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 512
    emb_dim: int = 64
    num_cross_prompt_blocks: int = 4
    num_extraction_blocks: int = 2
    cross_prompt: LocoformerConfig = field(default_factory=lambda: _paper_cross_prompt(4, 128))
    extraction: LocoformerConfig = field(default_factory=lambda: _paper_extraction(4, 96))
    encoder: str = "band_split"
    band_layout: tuple[tuple[int, int, int], ...] = BS_ROFORMER_BAND_LAYOUT
    num_top_bands: int = 4
    decoder_hidden_multiplier: int = 4
    sfc_attention_dim: int = 64
    sfc_num_heads: int = 4
    use_start_token: bool = True
    normalize_input: bool = True

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"Unknown encoder '{self.encoder}'. Valid encoders: {', '.join(ENCODERS)}."
            )
        if self.sample_rate <= 0 or self.n_fft < 2 or not 0 < self.hop_length <= self.n_fft:
            raise ValueError(
                "Need sample_rate > 0, n_fft >= 2 and 0 < hop_length <= n_fft; got "
                f"{self.sample_rate}, {self.n_fft}, {self.hop_length}."
            )
        if self.num_cross_prompt_blocks < 0 or self.num_extraction_blocks < 0:
            raise ValueError("Block counts must be >= 0.")
        self.cross_prompt.validate_for(self.emb_dim)
        self.extraction.validate_for(self.emb_dim)


class TUSS(nn.Module):
    """Prompted universal source separation.

    Args:
        config: Architecture; see :class:`TUSSConfig` and the presets below.

    Attributes:
        PROMPTS: The prompt names the model understands, in index order.
        band_widths: Bins per band of the encoder/decoder.
    """

    PROMPTS: tuple[str, ...] = PROMPTS

    def __init__(self, config: TUSSConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.band_widths = band_widths(
            config.sample_rate, config.n_fft, config.band_layout, config.num_top_bands
        )
        emb_dim = config.emb_dim
        if config.encoder == "band_split":
            self.encoder = BandSplitEncoder(self.band_widths, emb_dim)
            self.decoder = BandSplitDecoder(
                self.band_widths, emb_dim, config.decoder_hidden_multiplier
            )
        else:
            self.encoder = SFCEncoder(
                self.band_widths, emb_dim, config.sfc_attention_dim, config.sfc_num_heads
            )
            self.decoder = SFCDecoder(
                self.band_widths, emb_dim, config.sfc_attention_dim, config.sfc_num_heads
            )
        self.prompt_embeddings = nn.Parameter(torch.randn(len(PROMPTS), emb_dim))
        self.start_token = nn.Parameter(torch.randn(emb_dim)) if config.use_start_token else None
        self.cross_prompt_blocks = nn.ModuleList(
            TFLocoformerBlock(emb_dim, config.cross_prompt)
            for _ in range(config.num_cross_prompt_blocks)
        )
        self.extraction_blocks = nn.ModuleList(
            TFLocoformerBlock(emb_dim, config.extraction)
            for _ in range(config.num_extraction_blocks)
        )
        self.register_buffer("window", torch.hann_window(config.n_fft).sqrt(), persistent=False)

    def prompt_indices(
        self, prompts: Sequence[str] | Tensor, batch_size: int, device: torch.device
    ) -> Tensor:
        """Validate ``prompts`` and return them as indices into :attr:`PROMPTS`.

        Args:
            prompts: Names shared by the batch, or a LongTensor ``(batch, num_prompts)``.
            batch_size: Batch size of the mixture.
            device: Device of the result.

        Returns:
            LongTensor ``(batch_size, num_prompts)``.
        """
        valid = f"Valid prompts: {', '.join(PROMPTS)}."
        if isinstance(prompts, Tensor):
            if prompts.dtype == torch.bool or prompts.is_floating_point() or prompts.is_complex():
                raise ValueError(f"Prompt indices must be an integer tensor, got {prompts.dtype}.")
            if prompts.dim() != 2 or prompts.shape[0] != batch_size or prompts.shape[1] == 0:
                raise ValueError(
                    f"Prompt indices must have shape (batch={batch_size}, num_prompts>=1), "
                    f"got {tuple(prompts.shape)}."
                )
            if prompts.min() < 0 or prompts.max() >= len(PROMPTS):
                raise ValueError(f"Prompt indices must lie in [0, {len(PROMPTS) - 1}]. {valid}")
            return prompts.to(device=device, dtype=torch.long)
        if isinstance(prompts, str):
            raise ValueError(f"prompts must be a sequence of names, e.g. ['{prompts}']. {valid}")
        names = list(prompts)
        if not names:
            raise ValueError(f"Give at least one prompt. {valid}")
        unknown = [name for name in names if not isinstance(name, str) or name not in PROMPTS]
        if unknown:
            raise ValueError(f"Unknown prompt(s) {unknown}. {valid}")
        indices = torch.tensor([PROMPTS.index(name) for name in names], device=device)
        return indices.unsqueeze(0).expand(batch_size, -1)

    def forward(self, mixture: Tensor, prompts: Sequence[str] | Tensor) -> Tensor:
        """Separate one source per prompt.

        Args:
            mixture: Mono waveforms at :attr:`sample_rate`, ``(batch, time)``; any length >= 1.
            prompts: Prompt names shared by the batch (e.g. ``["speech", "sfx-mix"]``) or a
                LongTensor ``(batch, num_prompts)`` of indices into :attr:`PROMPTS`.

        Returns:
            Estimates ``(batch, num_prompts, time)``, in prompt order, same length as input.

        Raises:
            ValueError: On a mixture that is not a non-empty finite ``(batch, time)`` float
                tensor, or on bad prompts.
        """
        self._check_mixture(mixture)
        batch, length = mixture.shape
        indices = self.prompt_indices(prompts, batch, mixture.device)  # B, P
        num_prompts = indices.shape[1]
        input_dtype = mixture.dtype
        x = mixture.to(self.window.dtype)

        if self.config.normalize_input:
            std = x.std(dim=-1, keepdim=True, correction=0) + 1e-8  # B, 1
            x = x / std
        hop = self.config.hop_length
        padded_length = max(-(-length // hop), 1) * hop
        x = F.pad(x, (0, padded_length - length))
        # Zero (not reflect) centre padding so inputs shorter than n_fft / 2 still work.
        spectrum = torch.stft(
            x,
            self.config.n_fft,
            hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).transpose(1, 2)  # B, T, F
        frames = spectrum.shape[1]

        features = self.encoder(torch.view_as_real(spectrum))  # B, T, K, E
        features = self._cross_prompt(features, indices)  # B, P, T, K, E (conditioned)
        features = features.reshape(batch * num_prompts, frames, *features.shape[3:])
        for block in self.extraction_blocks:
            features = block(features)
        mask = torch.view_as_complex(self.decoder(features).float().contiguous())  # B*P, T, F

        estimates = mask.reshape(batch, num_prompts, frames, -1) * spectrum.unsqueeze(1)
        waveforms = torch.istft(
            estimates.reshape(batch * num_prompts, frames, -1).transpose(1, 2),
            self.config.n_fft,
            hop,
            window=self.window,
            center=True,
            length=padded_length,
        ).reshape(batch, num_prompts, padded_length)[..., :length]
        if self.config.normalize_input:
            waveforms = waveforms * std.unsqueeze(1)
        return waveforms.to(input_dtype)

    def _cross_prompt(self, features: Tensor, indices: Tensor) -> Tensor:
        """Joint prompt/mixture modelling, then conditioning of the mixture on each prompt.

        Args:
            features: Encoded mixture, ``(batch, frames, bands, emb_dim)``.
            indices: Prompt indices, ``(batch, num_prompts)``.

        Returns:
            Conditioned features, ``(batch, num_prompts, frames, bands, emb_dim)``.
        """
        batch, frames, bands, emb_dim = features.shape
        num_prompts = indices.shape[1]
        tokens = [self.prompt_embeddings[indices]]  # B, P, E
        if self.start_token is not None:
            tokens.append(self.start_token.expand(batch, 1, emb_dim))
        num_tokens = num_prompts + len(tokens) - 1
        token_features = torch.cat(tokens, dim=1).unsqueeze(2).expand(-1, -1, bands, -1)
        sequence = torch.cat((token_features, features), dim=1)  # B, P(+1)+T, K, E

        # Occurrence rank of each prompt among identical prompts (see the module docstring).
        same = indices.unsqueeze(2) == indices.unsqueeze(1)  # B, P, P
        earlier = torch.ones(num_prompts, num_prompts, device=indices.device).tril(-1).bool()
        ranks = (same & earlier).sum(dim=2)  # B, P
        # The start token and the frames follow at P, P + 1, ... as in the reference.
        rest = torch.arange(num_prompts, num_tokens + frames, device=indices.device)
        positions = torch.cat((ranks, rest.unsqueeze(0).expand(batch, -1)), dim=1)  # B, P(+1)+T

        for block in self.cross_prompt_blocks:
            sequence = block(sequence, positions)
        prompt_features = sequence[:, :num_prompts]  # B, P, K, E
        mixture_features = sequence[:, num_tokens:]  # B, T, K, E
        return mixture_features.unsqueeze(1) * prompt_features.unsqueeze(2)

    @staticmethod
    def _check_mixture(mixture: Tensor) -> None:
        if not isinstance(mixture, Tensor):
            raise ValueError(
                f"mixture must be a tensor of shape (batch, time), got {type(mixture).__name__}."
            )
        if mixture.dim() != 2:
            raise ValueError(
                f"mixture must have shape (batch, time) (mono), got {tuple(mixture.shape)}."
            )
        if mixture.shape[0] == 0 or mixture.shape[1] == 0:
            raise ValueError(
                f"mixture of shape (batch, time) is empty: got {tuple(mixture.shape)}."
            )
        if not mixture.is_floating_point():
            raise ValueError(f"mixture must be a float tensor, got {mixture.dtype}.")
        if not torch.isfinite(mixture).all():
            raise ValueError("mixture contains NaN or infinite values.")


def tuss_medium() -> TUSSConfig:
    """The paper's medium model (48 kHz, emb 64, N1 4, N2 2); also the ``"paper"`` preset."""
    return TUSSConfig()


def tuss_large() -> TUSSConfig:
    """The paper's large model (48 kHz, emb 128, N1 6, N2 3)."""
    return TUSSConfig(
        emb_dim=128,
        num_cross_prompt_blocks=6,
        num_extraction_blocks=3,
        cross_prompt=_paper_cross_prompt(8, 256),
        extraction=_paper_extraction(8, 192),
    )


def tuss_small() -> TUSSConfig:
    """A CPU-trainable TUSS.

    16 kHz because our speech and sound-effect corpora are 16 kHz: running at 44.1/48 kHz
    would only add empty bins for them while tripling frames and bins (the cost) for all;
    music stems are resampled down and lose the top octave, which the small model could not
    use anyway. A 512-point window (32 ms) with a 256-sample hop keeps the time sequence short
    (63 frames per second). The band layout is the paper's halved in resolution: 4/8/16/32-bin
    bands up to 1/2/4/8 kHz, 20 bands instead of 61. Attention is the main cost on the
    630-frame time axis, hence the narrow attention (32 channels, 2 heads); the band-wise
    decoder keeps the paper's 4x hidden width, which costs parameters but little time.
    """
    cross_prompt = LocoformerConfig(
        num_groups=4,
        num_heads=2,
        attention_dim=32,
        freq_ffn_dim=64,
        freq_kernel_size=3,
        time_ffn_dim=64,
        time_kernel_size=1,
    )
    return TUSSConfig(
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        emb_dim=32,
        num_cross_prompt_blocks=2,
        num_extraction_blocks=1,
        cross_prompt=cross_prompt,
        extraction=replace(cross_prompt, time_kernel_size=3),
        band_layout=((0, 1000, 4), (1000, 2000, 8), (2000, 4000, 16), (4000, 8000, 32)),
        num_top_bands=1,
        sfc_attention_dim=32,
        # Two heads (sharp and wide bias): SFC-CA's softmax runs over bands x bins per frame,
        # and each head costs as much as the rest of the encoder on one CPU core.
        sfc_num_heads=2,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    "tuss": ModelSpec(
        name="tuss",
        task="separation",
        config_class=TUSSConfig,
        model_class=TUSS,
        presets={
            "small": tuss_small,
            "medium": tuss_medium,
            "large": tuss_large,
            "paper": tuss_medium,
        },
        description="Task-aware unified source separation: one estimate per prompt.",
    )
}
