"""Conv-TasNet / TDCN++ / MiTAS sharing: shapes, gradients, parameter counts, causality, I/O,
stateful streaming equal to the offline forward."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
import torchaudio

from models import registry
from models.blocks.tcn import CumulativeLayerNorm, FeatureWiseLayerNorm, GlobalLayerNorm
from models.conv_tasnet import (
    ConvTasNet,
    ConvTasNetConfig,
    ConvTasNetStreamState,
    conv_tasnet_causal_small,
    conv_tasnet_paper,
    conv_tasnet_small,
)
from models.flops import macs_per_second
from models.inference import Separator, StreamingSeparator

torch.set_num_threads(1)

TINY = ConvTasNetConfig(
    encoder_filters=16,
    encoder_kernel_size=8,
    bottleneck_channels=8,
    hidden_channels=16,
    kernel_size=3,
    num_blocks=3,
    num_repeats=2,
)

VARIANTS = {
    "plain": TINY,
    "tdcnpp": dataclasses.replace(TINY, norm="fln", repeat_skip_connections=True, block_scale=True),
    "causal": dataclasses.replace(TINY, norm="cln", causal=True),
    "one_source_relu": dataclasses.replace(
        TINY, num_sources=1, source_names=("speech",), mask_activation="relu"
    ),
    **{
        f"sharing_{code}": dataclasses.replace(TINY, sharing=code)
        for code in ("ss", "sn", "ns", "nd", "dn", "na")
    },
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_backward_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    config = VARIANTS[name]
    model = ConvTasNet(config)
    mixture = torch.randn(2, 397)  # odd length: the model pads and crops internally
    sources = model(mixture)
    assert sources.shape == (2, config.num_sources, 397)
    assert model.source_names == config.source_names
    sources.pow(2).mean().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_paper_preset_matches_torchaudio_parameter_count() -> None:
    ours = count(ConvTasNet(conv_tasnet_paper()))
    reference = count(
        torchaudio.models.ConvTasNet(
            num_sources=2,
            enc_kernel_size=16,
            enc_num_feats=512,
            msk_kernel_size=3,
            msk_num_feats=128,
            msk_num_hidden_feats=512,
            msk_num_layers=8,
            msk_num_stacks=3,
        )
    )
    print(f"conv_tasnet paper: ours {ours:,} parameters, torchaudio {reference:,}")
    assert abs(ours - reference) / reference < 0.01
    assert 4.9e6 < ours < 5.1e6


def test_ss_sharing_cuts_the_separator_about_threefold() -> None:
    plain = ConvTasNet(conv_tasnet_paper())
    shared = ConvTasNet(dataclasses.replace(conv_tasnet_paper(), sharing="ss"))
    ratio = count(plain.separator) / count(shared.separator)
    print(
        f"separator: none {count(plain.separator):,}, ss {count(shared.separator):,}, "
        f"ratio {ratio:.3f}"
    )
    assert 2.5 <= ratio <= 3.5
    # Encoder and decoder are untouched by sharing.
    assert count(plain.codec) == count(shared.codec)


@pytest.mark.parametrize(
    ("code", "unique_depthwise", "unique_pointwise"),
    [
        ("none", 6, 6),
        ("ss", 3, 3),
        ("sn", 3, 6),
        ("ns", 6, 3),
        ("nd", 6, 2),
        ("dn", 2, 6),
        ("na", 6, 1),
    ],
)
def test_sharing_codes_tie_the_right_convolutions(
    code: str, unique_depthwise: int, unique_pointwise: int
) -> None:
    # TINY: 2 repeats x 3 blocks. s = same block index across repeats, d = one per repeat,
    # a = one for the whole separator, n = one per block.
    model = ConvTasNet(dataclasses.replace(TINY, sharing=code))
    blocks = list(model.separator.blocks)
    assert len({id(b.depthwise) for b in blocks}) == unique_depthwise
    assert len({id(b.pointwise) for b in blocks}) == unique_pointwise
    if code == "ss":
        assert blocks[0].depthwise is blocks[3].depthwise
        assert blocks[0].pointwise is blocks[3].pointwise
        assert blocks[0].depthwise is not blocks[1].depthwise
    if code == "dn":
        # Shared across dilations: one weight used at dilations 1, 2, 4.
        assert blocks[0].depthwise is blocks[2].depthwise
        assert [b.dilation for b in blocks[:3]] == [1, 2, 4]
    # Norms stay per block.
    assert len({id(b.input_norm) for b in blocks}) == len(blocks)


def test_causal_output_ignores_input_after_latency() -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, norm="cln", causal=True)
    model = ConvTasNet(config).eval()
    latency = model.algorithmic_latency_samples
    assert latency == config.encoder_kernel_size
    mixture = torch.randn(1, 800)
    t = 400  # a multiple of the hop: the frame starting at t reaches t + L - 1
    changed = mixture.clone()
    changed[:, t + latency :] = torch.randn(1, 800 - t - latency)
    with torch.no_grad():
        reference = model(mixture)
        perturbed = model(changed)
        assert torch.allclose(reference[..., : t + 1], perturbed[..., : t + 1], atol=1e-6)
        assert not torch.allclose(reference[..., t + 1 :], perturbed[..., t + 1 :], atol=1e-4)
        # The bound is tight: the last sample inside the window does reach output t.
        edge = mixture.clone()
        edge[:, t + latency - 1] += 1.0
        assert not torch.allclose(model(edge)[..., t], reference[..., t], atol=1e-7)


def test_non_causal_model_has_no_latency_and_sees_the_future() -> None:
    torch.manual_seed(0)
    model = ConvTasNet(TINY).eval()
    assert model.algorithmic_latency_samples is None
    mixture = torch.randn(1, 800)
    changed = mixture.clone()
    changed[:, 700:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(mixture)[..., :100], model(changed)[..., :100])


@pytest.mark.parametrize("preset", ["paper", "small", "tdcnpp", "causal_small"])
def test_save_reload_gives_identical_output(preset: str) -> None:
    torch.manual_seed(0)
    spec = registry.get_spec("conv_tasnet")
    # Keep the preset's options but shrink it so the test stays fast.
    config = spec.config(
        preset,
        encoder_filters=16,
        bottleneck_channels=8,
        hidden_channels=16,
        num_blocks=2,
        num_repeats=2,
        sharing="sn" if preset == "small" else "none",
    )
    model = registry.build_model("conv_tasnet", config).eval()
    buffer = io.BytesIO()
    torch.save(
        {"model_config": registry.config_to_dict(config), "model": model.state_dict()}, buffer
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = registry.build_model("conv_tasnet", checkpoint["model_config"]).eval()
    rebuilt.load_state_dict(checkpoint["model"])
    assert rebuilt.config == config
    mixture = torch.randn(2, 300)
    with torch.no_grad():
        assert torch.equal(model(mixture), rebuilt(mixture))


def test_presets_fit_their_purpose() -> None:
    small = ConvTasNet(conv_tasnet_small())
    assert 0.5e6 <= count(small) <= 1.5e6
    assert small.config.sample_rate == 8000 and small.config.num_sources == 2
    live = ConvTasNet(conv_tasnet_causal_small())
    assert live.config.causal and live.config.sample_rate == 16000
    assert live.algorithmic_latency_samples / live.config.sample_rate <= 0.032
    assert live.source_names == ("speech", "noise")
    assert set(registry.get_spec("conv_tasnet").presets) >= {
        "paper",
        "small",
        "tdcnpp",
        "causal_small",
    }


def test_per_block_overrides_and_dilations() -> None:
    config = dataclasses.replace(
        TINY,
        blocks_per_repeat=(3, 1),
        block_kernel_sizes=(3, 5, 3, 5),
        block_hidden=(8, 16, 32, 8),
    )
    model = ConvTasNet(config)
    blocks = list(model.separator.blocks)
    assert [b.dilation for b in blocks] == [1, 2, 4, 1]
    assert [b.kernel_size for b in blocks] == [3, 5, 3, 5]
    assert [b.hidden_channels for b in blocks] == [8, 16, 32, 8]
    assert blocks[-1].pointwise.residual_conv is None
    assert model(torch.randn(1, 200)).shape == (1, 2, 200)


def test_norms() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10) * 3 + 1
    cumulative = CumulativeLayerNorm(4)(x)
    # Frame k uses only frames <= k: equals gLN of the prefix at its last frame.
    for k in (0, 4, 9):
        prefix = x[..., : k + 1]
        mean = prefix.mean(dim=(1, 2), keepdim=True)
        var = prefix.var(dim=(1, 2), unbiased=False, keepdim=True)
        expected = ((prefix - mean) / torch.sqrt(var + 1e-8))[..., k]
        assert torch.allclose(cumulative[..., k], expected, atol=1e-4)
    assert torch.allclose(GlobalLayerNorm(4)(x)[..., -1], cumulative[..., -1], atol=1e-4)
    feature_wise = FeatureWiseLayerNorm(4)(x)
    assert torch.allclose(feature_wise.mean(dim=-1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(feature_wise.var(dim=-1, unbiased=False), torch.ones(2, 4), atol=1e-3)


@pytest.mark.parametrize(
    "bad",
    [
        torch.randn(100),
        torch.randn(1, 1, 100),
        torch.randn(1, 0),
        torch.full((1, 50), float("nan")),
    ],
    ids=["1d", "3d", "empty", "nan"],
)
def test_bad_input_raises_value_error(bad: torch.Tensor) -> None:
    model = ConvTasNet(TINY)
    with pytest.raises(ValueError, match="mixture"):
        model(bad)


@pytest.mark.parametrize(
    "overrides",
    [
        {"causal": True},  # gLN with causal
        {"sharing": "sx"},
        {"sharing": "sss"},
        {"encoder_kernel_size": 7},
        {"num_sources": 3},
        {"blocks_per_repeat": (1, 2, 3)},
        {"block_hidden": (8, 8)},
        {"norm": "batch"},
    ],
)
def test_invalid_configs_raise(overrides: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **overrides)


def test_sharing_blocks_of_different_widths_raises() -> None:
    config = dataclasses.replace(TINY, sharing="ss", block_hidden=(8, 8, 8, 16, 16, 16))
    with pytest.raises(ValueError, match="hidden widths"):
        ConvTasNet(config)


def test_macs_per_second_matches_hand_count() -> None:
    config = TINY
    model = ConvTasNet(config)
    measured = macs_per_second(model, seconds=1.0)
    n, length, b, h, p = 16, 8, 8, 16, 3
    blocks = 6 * (3 * b * h + h * p) - h * b  # the last block has no residual conv
    per_frame = n * length * 3 + n * b + blocks + b * n * 2  # encoder, 2 decodes, head
    frames = 8000 / (length // 2)
    expected = per_frame * frames
    print(f"tiny conv_tasnet: {measured:,.0f} MACs/s measured, {expected:,.0f} by hand")
    # The hop of padding on each side adds two frames to the 2,000 of one second.
    assert abs(measured - expected) / expected < 0.01
    # Sharing changes parameters, not compute.
    shared = ConvTasNet(dataclasses.replace(config, sharing="ss"))
    assert macs_per_second(shared) == measured


# -- stateful streaming


def random_trained_looking(model: ConvTasNet, seed: int) -> ConvTasNet:
    """Perturb every parameter (PReLU slopes, norm gains, biases) off its initial value, so
    streaming is compared on weights where every term matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def stream_in_blocks(
    model: ConvTasNet, signal: torch.Tensor, sizes: list[int]
) -> tuple[torch.Tensor, ConvTasNetStreamState]:
    """Feed ``signal`` (batch, time) and then ``L`` zeros in blocks cycling through ``sizes``."""
    latency = model.stream_latency_samples
    padded = torch.cat((signal, torch.zeros(signal.shape[0], latency)), dim=-1)
    state = model.stream_init(signal.shape[0])
    pieces, position, index = [], 0, 0
    with torch.inference_mode():
        while position < padded.shape[-1]:
            size = sizes[index % len(sizes)]
            block = padded[:, position : position + size]
            output, state = model.stream_step(block, state)
            assert output.shape == (signal.shape[0], model.num_sources, block.shape[-1])
            pieces.append(output)
            position += size
            index += 1
    return torch.cat(pieces, dim=-1), state


CAUSAL_TINY = dataclasses.replace(TINY, norm="cln", causal=True)

STREAMING_VARIANTS = {
    "causal_small": conv_tasnet_causal_small(),
    "tdcnpp_shared_relu_softmax": dataclasses.replace(
        CAUSAL_TINY,
        repeat_skip_connections=True,
        block_scale=True,
        sharing="ss",
        encoder_activation="relu",
        mask_activation="softmax",
    ),
    "per_block_overrides": dataclasses.replace(
        CAUSAL_TINY,
        num_repeats=3,
        blocks_per_repeat=(2, 0, 3),
        block_kernel_sizes=(1, 5, 3, 2, 4),
        block_hidden=(8, 16, 12, 16, 8),
        num_sources=3,
        source_names=("a", "b", "c"),
        mask_activation="linear",
    ),
    "shortest_window": dataclasses.replace(
        CAUSAL_TINY, encoder_kernel_size=2, sharing="na", mask_activation="relu"
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMING_VARIANTS))
def test_streaming_equals_offline_after_the_latency(name: str) -> None:
    model = random_trained_looking(ConvTasNet(STREAMING_VARIANTS[name]), seed=3)
    latency = model.stream_latency_samples
    assert latency == model.algorithmic_latency_samples == model.config.encoder_kernel_size
    signal = 0.1 * torch.randn(2, 4001, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        offline = model(signal)
    # Block sizes below, at and far above the hop and the longest ring buffer, and empty.
    streamed, _ = stream_in_blocks(model, signal, [256, 0, 1, 7, 1500, 33, 256])
    assert streamed.shape == (2, model.num_sources, 4001 + latency)
    assert streamed[..., :latency].abs().max() == 0.0
    torch.testing.assert_close(streamed[..., latency:], offline, atol=1e-5, rtol=0)


def test_streaming_state_has_a_fixed_size_and_blocks_cost_only_their_frames() -> None:
    model = random_trained_looking(ConvTasNet(conv_tasnet_causal_small()), seed=5)

    def state_numbers(state: ConvTasNetStreamState) -> int:
        tensors = [state.pending, state.decoder_tail, *state.norm_totals, *state.rings]
        return sum(tensor.numel() for tensor in tensors)

    signal = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(6))
    _, after_half = stream_in_blocks(model, signal[:, :8000], [256])
    _, after_one = stream_in_blocks(model, signal, [256])
    # The history lives in fixed-size ring buffers and running sums: a longer stream does
    # not grow the state, and each step is handed only its new frames.
    assert state_numbers(after_half) == state_numbers(after_one)
    assert after_one.frames == (16000 + model.stream_latency_samples) // model.config.stride
    receptive_frames = sum(ring.shape[1] for ring in after_one.rings)
    assert receptive_frames == 2 * 2 * (2**8 - 1)  # two repeats of dilations 1..128, P = 3


def test_streaming_refuses_non_causal_models_and_bad_blocks() -> None:
    with pytest.raises(ValueError, match="causal"):
        ConvTasNet(TINY).stream_init(1)
    model = ConvTasNet(CAUSAL_TINY).eval()
    assert model.supports_streaming and not ConvTasNet(TINY).supports_streaming
    state = model.stream_init(2)
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model.stream_step(torch.zeros(2, 1, 64), state)
    with pytest.raises(ValueError, match=r"\(2, samples\)"):
        model.stream_step(torch.zeros(3, 64), state)
    with pytest.raises(ValueError, match="finite"):
        model.stream_step(torch.full((2, 64), float("nan")), state)
    with pytest.raises(ValueError, match="batch_size"):
        model.stream_init(0)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (48000, 2), (22050, 1)])
def test_streaming_separator_runs_the_model_statefully(rate: int, channels: int) -> None:
    config = dataclasses.replace(CAUSAL_TINY, sample_rate=16000)
    model = random_trained_looking(ConvTasNet(config), seed=7)
    stream = StreamingSeparator(model, rate, channels=channels, device="cpu")
    assert stream.stateful
    if rate == 16000:
        assert stream.latency_samples == model.stream_latency_samples
    generator = np.random.default_rng(8)
    mixture = (0.1 * generator.standard_normal((rate // 4, channels))).astype(np.float32)
    pieces, position = [], 0
    while position < len(mixture):
        block = mixture[position : position + int(generator.integers(1, 700))]
        output = stream.process(block)
        assert output.shape == (2, len(block), channels)
        pieces.append(output)
        position += len(block)
    tail = stream.flush()
    assert tail.shape == (2, stream.latency_samples, channels)
    streamed = np.concatenate(pieces + [tail], axis=1)
    latency = stream.latency_samples
    assert np.abs(streamed[:, :latency]).max() == 0.0
    offline = Separator(model, device="cpu", chunk_seconds=float("inf")).separate(mixture, rate)
    expected = np.stack([offline[name] for name in offline])
    np.testing.assert_allclose(streamed[:, latency:], expected, atol=1e-5, rtol=0)
    # Offline block separation keeps the chunk engine (equal to Separator.separate).
    assert not Separator(model, device="cpu").stream(rate, channels).stateful
    with pytest.raises(ValueError, match="cannot stream"):
        StreamingSeparator(ConvTasNet(TINY), 8000, device="cpu", stateful=True)


def test_sharing_by_shape_shares_what_a_mixed_network_can() -> None:
    """A searched network mixes block shapes: plain 'ss' rejects it, by-shape 'ss' shares."""
    mixed = dataclasses.replace(
        conv_tasnet_small(),
        num_blocks=2,
        blocks_per_repeat=(2, 2),
        block_kernel_sizes=(3, 5, 3, 3),
        block_hidden=(64, 128, 64, 64),
    )
    with pytest.raises(ValueError, match="sharing"):
        ConvTasNet(dataclasses.replace(mixed, sharing="ss"))
    unshared = ConvTasNet(mixed)
    shared = ConvTasNet(dataclasses.replace(mixed, sharing="ss", sharing_by_shape=True))
    blocks = shared.separator.blocks
    # Block 0 of both repeats has one shape: one set of weights; block 1 differs: two sets.
    assert blocks[0].depthwise is blocks[2].depthwise
    assert blocks[0].pointwise is blocks[2].pointwise
    assert blocks[1].depthwise is not blocks[3].depthwise
    assert sum(p.numel() for p in shared.parameters()) < sum(
        p.numel() for p in unshared.parameters()
    )
    mixture = torch.randn(1, 800)
    shared(mixture).sum().backward()
    assert all(p.grad is not None for p in shared.parameters() if p.requires_grad)
