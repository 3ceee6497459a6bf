"""Complex-MTASSNet: shapes, gradients, two-stage wiring, parameter counts, loss, save/reload."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from models import registry
from models.mtass import (
    MTASSConfig,
    MTASSNet,
    MultiScaleDilatedLayer,
    istft,
    mtass_loss,
    mtass_paper,
    mtass_small,
    stft,
)

torch.set_num_threads(1)

#: The authors' model, counted with their code (and reported as 28.18 M in the paper).
PAPER_PARAMETERS = 28_180_685

TINY = MTASSConfig(
    n_fft=64,
    hop_length=32,
    hidden_channels=24,
    bottleneck_channels=8,
    block_dilations=(1, 3),
    num_subbands=4,
    dropout=0.0,
    residual_channels=16,
    residual_hidden_channels=8,
    residual_repeats=1,
    residual_blocks_per_repeat=3,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("gate_activation", ["relu_sigmoid", "sigmoid"])
def test_forward_backward_every_parameter_gets_a_gradient(gate_activation: str) -> None:
    torch.manual_seed(0)
    model = MTASSNet(dataclasses.replace(TINY, gate_activation=gate_activation))
    mixture = torch.randn(2, 397)  # odd length, not a multiple of the hop
    sources = model(mixture)
    assert sources.shape == (2, 3, 397)
    assert model.source_names == ("speech", "music", "noise")
    sources.pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("length", [1, 31, 32, 255, 1001])
def test_output_keeps_the_input_length(length: int) -> None:
    torch.manual_seed(0)
    model = MTASSNet(TINY).eval()
    with torch.no_grad():
        stage1, stage2 = model.forward_stages(torch.randn(1, length))
        final = model(torch.randn(3, length))
    assert stage1.shape == stage2.shape == (1, 3, length)
    assert final.shape == (3, 3, length)


def test_stages_and_forward_agree_and_stage_two_adds_a_residual_correction() -> None:
    torch.manual_seed(0)
    model = MTASSNet(TINY).eval()
    mixture = torch.randn(2, 500)
    with torch.no_grad():
        stage1, stage2 = model.forward_stages(mixture)
        torch.testing.assert_close(model(mixture), stage2)
        spectrum1, spectrum2 = model.forward_spectra(mixture)
        frames = 500 // TINY.hop_length + 1
        assert spectrum1.shape == (2, 3, TINY.num_bins, frames) and spectrum1.is_complex()
        assert not torch.allclose(stage1, stage2)

        # Stage 1 is the mask applied separately to Re and Im of the mixture spectrum.
        mixture_spectrum = stft(mixture, TINY.n_fft, TINY.hop_length)
        masks = model.separator(mixture_spectrum.abs())
        real_mask, imag_mask = masks.chunk(2, dim=2)
        expected = torch.complex(
            real_mask * mixture_spectrum.real.unsqueeze(1),
            imag_mask * mixture_spectrum.imag.unsqueeze(1),
        )
        torch.testing.assert_close(spectrum1, expected)

        # Stage 2 sees mixture minus stage 1 and adds its correction to stage 1.
        for index, compensator in enumerate(model.compensators):
            leftover = mixture_spectrum - spectrum1[:, index]
            residual = torch.cat((leftover.real, leftover.imag), dim=1)  # B, 2F, N
            correction = compensator(residual)
            real, imag = correction.chunk(2, dim=1)
            torch.testing.assert_close(
                spectrum2[:, index], spectrum1[:, index] + torch.complex(real, imag)
            )

        # With the stage-2 output convs zeroed, the final estimate is the stage-1 estimate.
        for compensator in model.compensators:
            torch.nn.init.zeros_(compensator.output_conv.weight)
            torch.nn.init.zeros_(compensator.output_conv.bias)
        torch.testing.assert_close(model(mixture), stage1)


def test_multi_scale_layer_mixes_every_band_in_both_directions() -> None:
    torch.manual_seed(0)
    layer = MultiScaleDilatedLayer([3, 4, 3, 5], kernel_size=3, dilation=2, dropout=0.0).eval()
    features = torch.randn(1, 15, 20, requires_grad=True)
    output = layer(features)
    assert output.shape == (1, 15, 20)
    first_band = torch.autograd.grad(output[:, :3].sum(), features, retain_graph=True)[0]
    last_band = torch.autograd.grad(output[:, -5:].sum(), features)[0]
    # Band 0's output depends on the last input band (high-to-low cascade) and vice versa.
    assert first_band[:, -5:].abs().sum() > 0
    assert last_band[:, :3].abs().sum() > 0


def test_paper_preset_matches_the_authors_parameter_count() -> None:
    with torch.device("meta"):
        model = MTASSNet(mtass_paper())
    total = count(model)
    assert abs(total - PAPER_PARAMETERS) <= 0.005 * PAPER_PARAMETERS, total
    # Stage 2 is three gated TCNs of 2,567,938 parameters each in the authors' layout.
    assert count(model.compensators) == 3 * 2_567_938
    assert len(model.separator.blocks) == 15
    assert mtass_paper().block_dilations == (1, 3, 5, 7, 11) * 3


def test_small_preset_is_cpu_sized() -> None:
    config = mtass_small()
    assert config.sample_rate == 16000 and config.n_fft == 512 and config.hop_length == 256
    with torch.device("meta"):
        total = count(MTASSNet(config))
    assert 1_000_000 <= total <= 3_000_000, total


def test_registry_presets_and_save_reload_give_identical_output() -> None:
    spec = registry.get_spec("mtass")
    assert spec.task == "separation"
    assert set(spec.presets) >= {"paper", "small"}
    assert spec.config("paper") == mtass_paper()

    torch.manual_seed(0)
    config = dataclasses.replace(TINY, source_names=("speech", "music", "noise"))
    model = MTASSNet(config)
    # A few training-mode passes move the BatchNorm running statistics off their defaults.
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 300))
    model.eval()
    buffer = io.BytesIO()
    torch.save({"config": dataclasses.asdict(config), "state": model.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = registry.build_model("mtass", checkpoint["config"])
    rebuilt.load_state_dict(checkpoint["state"])
    rebuilt.eval()
    assert rebuilt.config == config
    mixture = torch.randn(2, 333)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(mixture), model(mixture), rtol=0, atol=0)


@pytest.mark.parametrize(
    "mixture",
    [
        torch.randn(100),
        torch.randn(1, 1, 100),
        torch.randn(0, 100),
        torch.randn(2, 0),
        torch.tensor([[0.0, float("nan"), 0.0]]),
        torch.tensor([[0.0, float("inf"), 0.0]]),
        torch.ones(1, 100, dtype=torch.int64),
    ],
    ids=["1d", "3d", "empty-batch", "empty-time", "nan", "inf", "integer"],
)
def test_bad_mixtures_raise_value_error(mixture: torch.Tensor) -> None:
    model = MTASSNet(TINY)
    with pytest.raises(ValueError, match="mixture"):
        model(mixture)
    with pytest.raises(ValueError, match="mixture"):
        model.forward_stages(mixture)


@pytest.mark.parametrize(
    "changes",
    [
        {"num_subbands": 3},
        {"kernel_size": 2},
        {"block_dilations": ()},
        {"gate_activation": "tanh"},
        {"source_names": ()},
        {"hop_length": 0},
        {"dropout": 1.0},
    ],
)
def test_bad_configs_raise_value_error(changes: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **changes)


def test_stft_matches_a_numpy_hamming_stft_and_inverts_exactly() -> None:
    torch.manual_seed(0)
    n_fft, hop = 64, 32
    waveform = torch.randn(2, 301, dtype=torch.float64)
    spectrum = stft(waveform, n_fft, hop)
    # Independent reference: zero-pad half a window each side, periodic Hamming, rFFT,
    # no normalisation (the authors' unnormalised FFT of Hamming-windowed frames).
    padded = np.pad(waveform.numpy(), ((0, 0), (n_fft // 2, n_fft // 2)))
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = 301 // hop + 1
    reference = np.stack(
        [
            np.fft.rfft(padded[:, start : start + n_fft] * window, axis=-1)
            for start in range(0, frames * hop, hop)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(spectrum.numpy(), reference, atol=1e-10)
    torch.testing.assert_close(istft(spectrum, 301, n_fft, hop), waveform)


def test_loss_matches_an_independent_computation() -> None:
    torch.manual_seed(0)
    references = torch.randn(2, 3, 400, dtype=torch.float64)
    estimates = 0.5 * references
    loss = mtass_loss(estimates, references, n_fft=64, hop_length=32)
    # Spectral term: the error is half the reference spectrum; its squared Re and Im values
    # are averaged over (batch, 2F rows, frames) per track and summed over the tracks.
    error = stft(0.5 * references, 64, 32)  # B, S, F, N
    batch, _, bins, frames = error.shape
    squared = error.real.pow(2) + error.imag.pow(2)
    spectral = (squared.sum(dim=(0, 2, 3)) / (batch * 2 * bins * frames)).sum()
    # SNR of a half-amplitude estimate is 10 log10(4) dB for every track.
    expected = spectral + 0.01 * 3 * (-10 * np.log10(4.0))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    # Spectrum and waveform inputs give the same loss for an STFT-consistent estimate.
    torch.testing.assert_close(
        mtass_loss(stft(estimates, 64, 32), references, n_fft=64, hop_length=32), loss
    )
    # Two stages with weights add up.
    torch.testing.assert_close(
        mtass_loss(
            (estimates, estimates),
            references,
            stage_weights=(0.5, 2.0),
            n_fft=64,
            hop_length=32,
        ),
        2.5 * loss,
    )


def test_loss_rejects_mismatched_shapes() -> None:
    references = torch.randn(2, 3, 100)
    with pytest.raises(ValueError, match="sources, time"):
        mtass_loss(torch.randn(2, 3, 99), references, n_fft=64, hop_length=32)
    with pytest.raises(ValueError, match="bins, frames"):
        mtass_loss(torch.randn(2, 3, 5, 4, dtype=torch.complex64), references)
    with pytest.raises(ValueError, match="batch, sources, time"):
        mtass_loss(torch.randn(2, 100), torch.randn(2, 100))
    with pytest.raises(ValueError, match="stage_weights"):
        mtass_loss((references, references), references, stage_weights=(1.0,))


def test_two_stage_loss_is_finite_and_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = MTASSNet(TINY)
    model.train()
    time = 640
    references = 0.1 * torch.randn(4, 3, time)
    mixture = references.sum(dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        stage1, stage2 = model.forward_spectra(mixture)
        loss = mtass_loss(
            (stage1, stage2), references, n_fft=TINY.n_fft, hop_length=TINY.hop_length
        )
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert losses[-1] < losses[0]
