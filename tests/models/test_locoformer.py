"""TF-Locoformer block and its parts, each checked against an independent computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.blocks.locoformer import (
    ConvSwiGLU,
    LocoformerConfig,
    LocoformerLayer,
    MultiHeadSelfAttention,
    RotaryEmbedding,
    TFLocoformerBlock,
)
from models.blocks.norms import RMSGroupNorm, TimeChannelNorm

torch.set_num_threads(1)

TINY = LocoformerConfig(
    num_groups=2,
    num_heads=2,
    attention_dim=16,
    freq_ffn_dim=12,
    freq_kernel_size=3,
    time_ffn_dim=20,
    time_kernel_size=2,
)


def test_rms_group_norm_matches_manual_formula() -> None:
    torch.manual_seed(0)
    norm = RMSGroupNorm(num_groups=2, num_channels=8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8))
    x = 3.0 * torch.randn(4, 5, 8)

    groups = x.reshape(4, 5, 2, 4)
    expected = groups / torch.sqrt(groups.pow(2).mean(-1, keepdim=True) + 1e-5)
    expected = expected.reshape(4, 5, 8) * norm.weight

    torch.testing.assert_close(norm(x), expected)
    # RMS norm: a gain and no bias.
    assert [name for name, _ in norm.named_parameters()] == ["weight"]


def test_rms_group_norm_rejects_indivisible_groups() -> None:
    with pytest.raises(ValueError, match="divide"):
        RMSGroupNorm(num_groups=3, num_channels=8)


def test_time_channel_norm_equals_torch_group_norm() -> None:
    torch.manual_seed(0)
    ours = TimeChannelNorm(6)
    reference = nn.GroupNorm(1, 6)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(6))
        ours.bias.copy_(torch.randn(6))
        reference.weight.copy_(ours.weight)
        reference.bias.copy_(ours.bias)
    x = torch.randn(3, 11, 6) * 5 + 2  # batch, time, channels

    expected = reference(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_rotary_embedding_scores_depend_only_on_position_difference() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=8)
    query = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    key = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    positions = torch.arange(6).unsqueeze(0)

    def scores(offset: int) -> torch.Tensor:
        q = rope(query, positions + offset)
        k = rope(key, positions + offset)
        return q[0, 0] @ k[0, 0].T  # 6 x 6

    base = scores(0)
    torch.testing.assert_close(scores(37), base, rtol=1e-4, atol=1e-4)
    # Rotation keeps norms, and the scores do change with the distance.
    torch.testing.assert_close(rope(query, positions).norm(dim=-1), query.norm(dim=-1))
    assert not torch.allclose(base[0, 1], base[0, 4])


def test_rotary_embedding_uses_one_position_row_per_group() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=4)
    x = torch.randn(6, 2, 5, 4)  # 2 groups of 3 sequences
    positions = torch.stack((torch.arange(5), torch.arange(5) * 2 + 1))

    grouped = rope(x, positions)

    torch.testing.assert_close(grouped[:3], rope(x[:3], positions[:1]))
    torch.testing.assert_close(grouped[3:], rope(x[3:], positions[1:]))


def test_attention_matches_explicit_softmax_attention() -> None:
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(emb_dim=8, attention_dim=16, num_heads=2, dropout=0.0)
    x = torch.randn(3, 7, 8)
    positions = torch.arange(7).unsqueeze(0)

    qkv = (x @ attention.qkv.weight.T).reshape(3, 7, 3, 2, 8)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # 3, H, S, d
    q, k = attention.rope(q, positions), attention.rope(k, positions)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = (weights @ v).transpose(1, 2).reshape(3, 7, 16) @ attention.out.weight.T

    torch.testing.assert_close(attention(x, positions), expected, rtol=1e-5, atol=1e-5)
    assert attention.qkv.bias is None and attention.out.bias is None


@pytest.mark.parametrize("kernel_size", [1, 3, 4])
def test_conv_swiglu_matches_conv_and_transposed_conv(kernel_size: int) -> None:
    torch.manual_seed(0)
    ffn = ConvSwiGLU(emb_dim=6, inner_dim=5, kernel_size=kernel_size, dropout=0.0)
    assert ffn.conv.weight.shape == (10, 6, kernel_size)  # emb -> 2 * inner
    assert ffn.deconv.weight.shape == (5, 6, kernel_size)  # inner -> emb, transposed
    x = torch.randn(2, 9, 6)

    margin = kernel_size - 1
    hidden = F.conv1d(F.pad(x.transpose(1, 2), (margin, margin)), ffn.conv.weight, ffn.conv.bias)
    hidden = hidden[:, :5] * F.silu(hidden[:, 5:])
    out = F.conv_transpose1d(hidden, ffn.deconv.weight, ffn.deconv.bias)
    expected = out[..., margin : margin + 9].transpose(1, 2)

    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-5)


def test_conv_swiglu_is_local() -> None:
    torch.manual_seed(0)
    ffn = ConvSwiGLU(emb_dim=4, inner_dim=8, kernel_size=3, dropout=0.0)
    x = torch.randn(1, 15, 4)
    bumped = x.clone()
    bumped[0, 7] += 1.0

    changed = (ffn(bumped) - ffn(x)).abs().sum(-1)[0] > 0
    # Kernel 3 on both convolutions: position 7 reaches 7 - 2 .. 7 + 2 and nothing else.
    assert changed.nonzero().flatten().tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("macaron", [True, False])
def test_layer_structure_and_parameter_count(macaron: bool) -> None:
    config = LocoformerConfig(
        num_groups=2, num_heads=2, attention_dim=16, freq_ffn_dim=12, macaron=macaron
    )
    layer = LocoformerLayer(emb_dim=8, config=config, ffn_dim=12, kernel_size=3)
    norms = [m for m in layer.modules() if isinstance(m, RMSGroupNorm)]
    ffns = [m for m in layer.modules() if isinstance(m, ConvSwiGLU)]
    num_ffns = 2 if macaron else 1
    assert len(norms) == num_ffns + 1 and len(ffns) == num_ffns

    emb, inner, kernel, attn = 8, 12, 3, 16
    ffn = emb * 2 * inner * kernel + 2 * inner + inner * emb * kernel + emb
    expected = (num_ffns + 1) * emb + 4 * emb * attn + num_ffns * ffn
    assert sum(p.numel() for p in layer.parameters()) == expected


def test_block_forward_backward_keeps_shape() -> None:
    torch.manual_seed(0)
    block = TFLocoformerBlock(emb_dim=8, config=TINY)
    x = torch.randn(2, 10, 5, 8, requires_grad=True)  # batch, frames, bands, channels

    out = block(x)
    out.pow(2).mean().backward()

    assert out.shape == x.shape
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_block_mixes_along_frequency_then_time() -> None:
    torch.manual_seed(0)
    block = TFLocoformerBlock(emb_dim=8, config=TINY).eval()
    x = torch.randn(1, 12, 6, 8)
    bumped = x.clone()
    bumped[0, 3, 2] += 1.0

    changed = (block(bumped) - block(x)).abs().sum(-1)[0] > 1e-6  # frames, bands
    # Attention spreads the change over the frame's bands (frequency path), then every band
    # spreads it over all frames (time path): every TF point sees it.
    assert changed.all()

    # The frequency path alone keeps the change inside the bumped frame.
    freq_only = block.freq_path(x.reshape(12, 6, 8), torch.arange(6).unsqueeze(0))
    freq_bumped = block.freq_path(bumped.reshape(12, 6, 8), torch.arange(6).unsqueeze(0))
    rows = (freq_bumped - freq_only).abs().sum((-1, -2)) > 0
    assert rows.nonzero().flatten().tolist() == [3]


def test_block_is_invariant_to_shifting_all_time_positions() -> None:
    torch.manual_seed(0)
    block = TFLocoformerBlock(emb_dim=8, config=TINY).eval()
    x = torch.randn(2, 9, 4, 8)
    positions = torch.arange(9).unsqueeze(0)

    torch.testing.assert_close(block(x, positions + 100), block(x, positions), rtol=1e-4, atol=1e-4)


def test_bad_block_configs_raise() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        LocoformerConfig(num_heads=3, attention_dim=16)
    with pytest.raises(ValueError, match="even"):
        LocoformerConfig(num_heads=4, attention_dim=12)
    with pytest.raises(ValueError, match="num_groups"):
        TFLocoformerBlock(emb_dim=10, config=LocoformerConfig(num_groups=4))
