"""The inference facade: chunked == unchunked, resampling, channels, progress, cancel,
permutation alignment, streaming == offline after the stated latency, the verifier, bad input."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
import torchaudio.functional as audio_functional
from torch import Tensor, nn

from models import registry
from models.bundles import save_bundle
from models.inference import (
    Cancelled,
    SeparationResult,
    Separator,
    StreamingSeparator,
    Verifier,
)

torch.set_num_threads(1)

TINY = dict(
    encoder_filters=16, bottleneck_channels=8, hidden_channels=16, num_blocks=3, num_repeats=1
)


@pytest.fixture(scope="module")
def causal_model() -> nn.Module:
    """A causal 16 kHz Conv-TasNet: its output at t depends on input up to t + 32 samples."""
    config = registry.get_spec("conv_tasnet").config("causal_small", **TINY)
    torch.manual_seed(0)
    return registry.build_model("conv_tasnet", config).eval()


@pytest.fixture(scope="module")
def speakers_model() -> nn.Module:
    """A non-causal (gLN) two-talker 8 kHz Conv-TasNet."""
    config = registry.get_spec("conv_tasnet").config("small", **TINY)
    torch.manual_seed(1)
    return registry.build_model("conv_tasnet", config).eval()


def noise(frames: int, channels: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (frames,) if channels is None else (frames, channels)
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def whole(model: nn.Module, **kwargs) -> Separator:
    return Separator(model, device="cpu", chunk_seconds=float("inf"), **kwargs)


def stacked(result: SeparationResult) -> np.ndarray:
    return np.stack([result[name] for name in result])


def test_chunked_equals_unchunked_when_context_covers_the_model(causal_model) -> None:
    mixture = noise(16000, channels=2)
    reference = whole(causal_model).separate(mixture, 16000)
    assert reference.names == ("speech", "noise")
    assert all(array.shape == (16000, 2) for array in reference.arrays)
    # A causal model with cLN sees all of its past: a left context over the whole signal and
    # a right context over its 32-sample look-ahead make every chunk exact.
    chunked = Separator(
        causal_model,
        device="cpu",
        chunk_seconds=0.2,
        overlap_seconds=0.05,
        context_seconds=(1.0, 0.005),
    )
    plan = chunked.engine(16000, None).plan
    assert plan.num_chunks(16000) == 7 and plan.overlap == 800
    result = chunked.separate(mixture, 16000)
    np.testing.assert_allclose(stacked(result), stacked(reference), atol=1e-5)


def test_resampling_round_trip_matches_a_manual_pipeline(causal_model) -> None:
    mixture = noise(44100 // 2, seed=1)
    reference = whole(causal_model).separate(mixture, 44100)
    assert reference["speech"].shape == mixture.shape  # 1-D in, 1-D out, exact length
    # Independent computation: resample, run the model, resample back, trim.
    with torch.no_grad():
        x = audio_functional.resample(torch.from_numpy(mixture)[None], 44100, 16000)
        y = audio_functional.resample(causal_model(x)[0], 16000, 44100)[:, : mixture.size]
    np.testing.assert_allclose(stacked(reference), y.numpy(), atol=1e-5)
    # Chunk-wise resampling with margins equals resampling the whole signal.
    chunked = Separator(
        causal_model,
        device="cpu",
        chunk_seconds=0.1,
        overlap_seconds=0.02,
        context_seconds=(1.0, 0.005),
    ).separate(mixture, 44100)
    np.testing.assert_allclose(stacked(chunked), stacked(reference), atol=1e-5)


def test_channels_are_separated_independently(speakers_model) -> None:
    stereo = noise(4000, channels=2, seed=2)
    result = whole(speakers_model).separate(stereo, 8000)
    left = whole(speakers_model).separate(np.ascontiguousarray(stereo[:, 0]), 8000)
    right = whole(speakers_model).separate(torch.from_numpy(stereo[:, 1].copy()), 8000)
    for name in result:
        np.testing.assert_allclose(result[name][:, 0], left[name], atol=1e-6)
        np.testing.assert_allclose(result[name][:, 1], right[name], atol=1e-6)


def test_progress_generator_and_cancel(speakers_model) -> None:
    mixture = noise(22400, seed=3)  # 2.8 s: three 1 s chunks 0.9 s apart
    separator = Separator(speakers_model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.1)
    seen: list[dict] = []
    result = separator.separate(mixture, 8000, progress=seen.append)
    assert set(seen[0]) == {"fraction", "chunk", "total", "message"}
    fractions = [info["fraction"] for info in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert seen[-1]["chunk"] == seen[-1]["total"] == 3

    steps = separator.iter_separate(mixture, 8000)
    count = 0
    while True:
        try:
            next(steps)
            count += 1
        except StopIteration as stop:
            generated = stop.value
            break
    assert count == len(seen)
    np.testing.assert_array_equal(stacked(generated), stacked(result))

    cancel = threading.Event()

    def cancel_after_first_chunk(info: dict) -> None:
        if info["chunk"] == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        separator.separate(mixture, 8000, progress=cancel_after_first_chunk, cancel=cancel)


class FilterPairSeparator(nn.Module):
    """Two fixed FIR filters whose output order flips with the input: a model whose
    interchangeable outputs swap between chunks, like a speaker separator may."""

    source_names = ("speaker1", "speaker2")

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.filters = nn.Parameter(torch.randn(2, 1, 9, generator=generator))

    def forward(self, mixture: Tensor) -> Tensor:
        outputs = nn.functional.conv1d(mixture[:, None], self.filters, padding=4)
        flip = int(mixture.abs().sum().item() * 1000) % 2 == 1
        return outputs.flip(1) if flip else outputs


def test_interchangeable_outputs_are_aligned_across_chunks() -> None:
    model = FilterPairSeparator()
    mixture = noise(8000, seed=4)
    with torch.no_grad():
        expected = model.filters.new_tensor(mixture)[None, None]
        expected = nn.functional.conv1d(expected, model.filters, padding=4)[0].numpy()
    options = dict(device="cpu", sample_rate=8000, chunk_seconds=0.1, overlap_seconds=0.02)
    separator = Separator(model, **options, context_seconds=0.01)
    assert len({int(abs(c).sum() * 1000) % 2 for c in np.array_split(mixture, 10)}) == 2
    result = stacked(separator.separate(mixture, 8000))
    # Aligned chunk by chunk: equal to the filters up to one global order.
    error = min(np.abs(result - expected).max(), np.abs(result - expected[::-1]).max())
    assert error < 1e-5
    unaligned = Separator(model, **options, context_seconds=0.01, align_permutations=False)
    raw = stacked(unaligned.separate(mixture, 8000))
    assert min(np.abs(raw - expected).max(), np.abs(raw - expected[::-1]).max()) > 1e-2


def test_prompted_model_with_one_to_five_prompts_including_duplicates() -> None:
    config = registry.get_spec("tuss").config(
        "small", emb_dim=16, num_cross_prompt_blocks=1, num_extraction_blocks=1
    )
    config = dataclasses.replace(
        config,
        cross_prompt=dataclasses.replace(config.cross_prompt, num_groups=4),
        extraction=dataclasses.replace(config.extraction, num_groups=4),
    )
    torch.manual_seed(0)
    model = registry.build_model("tuss", config).eval()
    mixture = noise(12000, channels=2, seed=5)  # 22.05 kHz stereo in, 16 kHz model
    separator = Separator(model, device="cpu", chunk_seconds=0.25, overlap_seconds=0.05)
    for prompts in (
        ["speech"],
        ["speech", "speech"],
        ["speech", "sfx", "music-mix"],
        ["drums", "bass", "vocals", "other-inst"],
        ["speech", "speech", "sfx", "sfx-mix", "speech"],
    ):
        result = separator.separate(mixture, 22050, prompts=prompts)
        assert result.labels == tuple(prompts)
        assert result.names == tuple(f"{i}_{p}" for i, p in enumerate(prompts, start=1))
        assert all(array.shape == (12000, 2) for array in result.arrays)
        assert all(np.isfinite(array).all() for array in result.arrays)
    with pytest.raises(ValueError, match="needs prompts"):
        separator.separate(mixture, 22050)
    with pytest.raises(ValueError, match="Unknown prompt"):
        separator.separate(mixture, 22050, prompts=["speech", "guitar"])


def feed_in_random_blocks(stream: StreamingSeparator, signal: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces, position = [], 0
    while position < len(signal):
        size = int(rng.integers(1, 900))
        block = signal[position : position + size]
        output = stream.process(block)
        assert output.shape[1] == len(block)  # as many frames out as in
        pieces.append(output)
        position += size
    tail = stream.flush(mono=signal.ndim == 1)
    assert tail.shape[1] == stream.latency_samples
    return np.concatenate(pieces + [tail], axis=1)


def test_streaming_matches_offline_after_the_stated_latency(speakers_model) -> None:
    mixture = noise(8000 * 2, channels=2, seed=6)
    options = dict(device="cpu", chunk_seconds=0.25, overlap_seconds=0.05, context_seconds=0.02)
    stream = StreamingSeparator(speakers_model, 8000, channels=2, **options)
    plan = stream.plan
    assert stream.latency_samples == plan.chunk + plan.right_context - 1
    streamed = feed_in_random_blocks(stream, mixture, seed=0)  # S, frames + latency, C
    latency = stream.latency_samples
    assert np.abs(streamed[:, :latency]).max() == 0.0
    offline = Separator(speakers_model, **options).separate(mixture, 8000)
    np.testing.assert_allclose(streamed[:, latency:], stacked(offline), atol=1e-5)


def test_causal_streaming_latency_and_resampled_stream(causal_model) -> None:
    stream = StreamingSeparator(causal_model, 16000, device="cpu")
    # Default causal plan: 16 ms chunks plus the model's 32-sample (2 ms) look-ahead.
    assert stream.plan.right_context == causal_model.algorithmic_latency_samples
    assert stream.latency_seconds <= 0.032
    mixture = noise(16000 // 2, seed=7)
    streamed = feed_in_random_blocks(stream, mixture, seed=1)
    # With a history longer than the signal the causal stream equals the unchunked output.
    long_history = StreamingSeparator(causal_model, 16000, device="cpu", context_seconds=(1.0, 0.0))
    exact = feed_in_random_blocks(long_history, mixture, seed=2)[:, long_history.latency_samples :]
    offline = stacked(whole(causal_model).separate(mixture, 16000))
    np.testing.assert_allclose(exact, offline, atol=1e-5)
    assert streamed.shape == (2, mixture.size + stream.latency_samples)

    # A 48 kHz stream into the 16 kHz model equals the offline result with the same plan
    # (offline chunking also adds the model's look-ahead to the right context).
    stream48 = StreamingSeparator(causal_model, 48000, device="cpu", chunk_seconds=0.016)
    mixture48 = noise(48000 // 4, seed=8)
    streamed48 = feed_in_random_blocks(stream48, mixture48, seed=3)
    plan = stream48.plan
    offline48 = Separator(
        causal_model,
        device="cpu",
        chunk_seconds=plan.chunk / 48000,
        overlap_seconds=0.0,
        context_seconds=(0.5, 0.0),
    )
    assert offline48.engine(48000, None).plan == plan
    np.testing.assert_allclose(
        streamed48[:, stream48.latency_samples :],
        stacked(offline48.separate(mixture48, 48000)),
        atol=1e-5,
    )


def test_separate_blocks_equals_separate(speakers_model) -> None:
    mixture = noise(8000 * 2 + 123, channels=2, seed=9)
    separator = Separator(speakers_model, device="cpu", chunk_seconds=0.5, overlap_seconds=0.1)
    blocks = (mixture[i : i + 1000] for i in range(0, len(mixture), 1000))
    fractions: list[float] = []
    pieces = list(
        separator.separate_blocks(
            blocks,
            8000,
            channels=2,
            total_frames=len(mixture),
            progress=lambda info: fractions.append(info["fraction"]),
        )
    )
    joined = np.concatenate(pieces, axis=1).transpose(0, 1, 2)
    expected = stacked(separator.separate(mixture, 8000))
    np.testing.assert_allclose(joined, expected, atol=1e-6)
    assert fractions[-1] == 1.0


def test_bundle_input_and_bad_inputs(tmp_path, speakers_model) -> None:
    bundle = save_bundle(tmp_path / "pair", speakers_model, "conv_tasnet", chunk_seconds=0.5)
    separator = Separator(bundle.path, device="auto")
    assert separator.chunk_seconds == 0.5 and separator.device.type in ("cpu", "cuda")
    result = separator.separate(noise(3000), 8000)
    assert result.names == ("speaker1", "speaker2") and result["speaker1"].shape == (3000,)
    with pytest.raises(KeyError, match="No output 'speech'"):
        result["speech"]

    def check(waveform, match, sample_rate=8000, **kwargs):
        with pytest.raises(ValueError, match=match):
            separator.separate(waveform, sample_rate, **kwargs)

    check(np.zeros((10, 2, 2), np.float32), r"\(frames,\) or \(frames, channels\)")
    check(np.zeros(0, np.float32), "empty")
    check(np.array([0.0, np.nan, 0.1], np.float32), "NaN")
    check(np.zeros(100, np.int16), "floating-point")
    check(np.zeros((2, 5000), np.float32), "transpose")
    check(noise(100), "positive integer", sample_rate=0)
    check(noise(100), "takes no prompts", prompts=["speech"])
    with pytest.raises(ValueError, match="not a separator"):
        Separator(nn.Linear(2, 2), device="cpu", sample_rate=8000).separate(noise(10), 8000)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            Separator(speakers_model, device="cuda")


def test_verifier_embeds_normalised_and_scores_cosine(tmp_path) -> None:
    config = registry.get_spec("dtdnn").config("small")
    torch.manual_seed(0)
    model = registry.build_model("dtdnn", config)
    bundle = save_bundle(tmp_path / "speaker", model, "dtdnn", threshold=0.6)
    verifier = Verifier(bundle, device="cpu")
    assert verifier.threshold == 0.6 and verifier.embedding_dim == config.embedding_dim
    clip = noise(16000, seed=10)
    other = noise(16000, seed=11)
    embedding = verifier.embed(clip, 16000)
    assert embedding.shape == (config.embedding_dim,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    stereo = np.stack([clip, clip], axis=1)
    np.testing.assert_allclose(verifier.embed(stereo, 16000), embedding, atol=1e-5)
    second = verifier.embed(other, 16000)
    score = verifier.score(embedding, second)
    assert score == pytest.approx(float(embedding @ second), abs=1e-5)
    assert verifier.score(embedding, embedding) == pytest.approx(1.0, abs=1e-5)
    assert verifier.accepts(0.61) and not verifier.accepts(0.59)
    # Other rates are resampled; long clips are embedded piecewise and still normalised.
    assert verifier.embed(noise(8000, seed=12), 8000).shape == (config.embedding_dim,)
    pieces = Verifier(model, device="cpu", max_seconds=0.5).embed(noise(40000), 16000)
    assert np.linalg.norm(pieces) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="embedding_dim"):
        verifier.score(embedding, embedding[:10])
    with pytest.raises(ValueError, match="not a speaker encoder"):
        Verifier(registry.build_model("conv_tasnet", preset="small"), device="cpu")
