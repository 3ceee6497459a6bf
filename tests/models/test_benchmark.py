"""Speed measurements: real-time factor with a paired reference, block timing, peak memory."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from models import benchmark
from models.conv_tasnet import ConvTasNet, conv_tasnet_causal_small
from models.flops import macs_per_second
from models.registry import build_model

torch.set_num_threads(1)


def test_live_block_timing_on_the_causal_preset() -> None:
    from models.inference import StreamingSeparator

    model = ConvTasNet(conv_tasnet_causal_small())
    # A short left context keeps the test fast; the live path defaults to a longer one.
    timing = benchmark.live_block_timing(
        model, 512, num_blocks=6, warmup_blocks=1, context_seconds=0.05
    )
    streamer = StreamingSeparator(model, 16000, context_seconds=(0.05, 0.0), device="cpu")
    assert timing.num_blocks == 6 and timing.block_size == 512
    assert timing.block_ms == pytest.approx(1000 * 512 / 16000)
    # One block of buffering plus the streamer's stated delay (its chunk and the model's
    # 32-sample look-ahead).
    assert timing.lookahead_samples == streamer.latency_samples >= 32
    assert timing.algorithmic_latency_ms == pytest.approx(
        1000 * (512 + streamer.latency_samples) / 16000
    )
    assert 0 < timing.p50_ms <= timing.p99_ms <= timing.max_ms
    assert timing.mean_ms <= timing.max_ms
    assert timing.mean_fraction == pytest.approx(timing.mean_ms / timing.block_ms)
    assert timing.p99_fraction == pytest.approx(timing.p99_ms / timing.block_ms)
    assert benchmark.block_timing_to_dict(timing)["p99_fraction"] == timing.p99_fraction


def test_block_timing_times_every_block_after_warmup() -> None:
    calls: list[tuple[int, ...]] = []

    def step(block: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(block.shape))
        return torch.fft.rfft(block)

    timing = benchmark.measure_block_processing(step, 64, 8000, num_blocks=5, warmup_blocks=2)
    assert calls == [(1, 64)] * 7
    assert timing.num_blocks == 5
    assert timing.algorithmic_latency_ms == pytest.approx(8.0)  # one 64-sample block at 8 kHz


def test_live_timing_refuses_non_causal_models_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="not causal"):
        benchmark.live_block_timing(build_model("conv_tasnet", preset="small"), 512)
    with pytest.raises(ValueError, match="num_blocks"):
        benchmark.measure_block_processing(lambda block: block, 32, 16000, num_blocks=0)
    with pytest.raises(ValueError, match="warmup_blocks"):
        benchmark.measure_block_processing(lambda block: block, 32, 16000, warmup_blocks=-1)


def test_measure_rtf_pairs_the_reference_and_counts_macs() -> None:
    model = build_model("conv_tasnet", preset="small")
    reference = benchmark.reference_model()
    run = benchmark.measure_rtf(
        model, 8000, 0.1, warmup=0, repeats=2, reference=reference, max_seconds=60
    )
    assert run.clip_seconds == pytest.approx(0.1)
    assert run.repeats == len(run.times) == 2
    assert run.seconds == pytest.approx(float(np.median(run.times)))
    assert run.rtf == pytest.approx(run.seconds / 0.1)
    assert run.reference_rtf is not None and run.reference_rtf > 0
    # Counted MACs scale with the audio: the small model is about a sixth of the reference.
    reference_macs = macs_per_second(reference, 8000, seconds=0.1)
    assert run.macs_per_second is not None
    assert 0.05 < run.macs_per_second / reference_macs < 0.5


def test_measure_rtf_calls_prompted_models_and_speaker_encoders_their_way() -> None:
    tuss = build_model("tuss", preset="small")
    seen: list[tuple[int, ...]] = []
    handle = tuss.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    run = benchmark.measure_rtf(tuss, 16000, 0.05, warmup=0, repeats=1, count_model_macs=False)
    handle.remove()
    assert run.macs_per_second is None
    # The probe and one timed run, each with two prompts and the input length.
    assert seen == [(1, 2, 800), (1, 2, 800)]
    encoder = build_model("dtdnn", preset="small").eval()
    call = benchmark.model_call(encoder)
    with torch.inference_mode():
        embedding = call(torch.randn(1, 8000))
    assert embedding.shape == (1, encoder.config.embedding_dim)


def test_measure_rtf_skips_what_cannot_fit_the_budget() -> None:
    model = build_model("conv_tasnet", preset="small")
    with pytest.raises(benchmark.TooSlowError, match="budget"):
        benchmark.measure_rtf(model, 8000, 5.0, max_seconds=1e-4)
    with pytest.raises(ValueError, match="clip_seconds"):
        benchmark.measure_rtf(model, 8000, 0.0)
    with pytest.raises(ValueError, match="repeats"):
        benchmark.measure_rtf(model, 8000, 0.1, repeats=0)


def test_reference_follows_the_batch_time_contract() -> None:
    reference = benchmark.reference_model()
    assert benchmark.parameter_count(reference) == sum(
        p.numel() for p in reference.model.parameters()
    )
    with torch.inference_mode():
        assert reference(torch.randn(1, 800)).shape == (1, 2, 800)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        reference(torch.randn(1, 1, 800))


def test_percentile_agrees_with_numpy() -> None:
    values = sorted(np.random.default_rng(0).exponential(size=57).tolist())
    for percent in (0.0, 50.0, 90.0, 99.0, 100.0):
        assert benchmark._percentile(values, percent) == pytest.approx(
            float(np.percentile(values, percent))
        )


def test_peak_rss_of_command_sees_the_child_allocation() -> None:
    def peak(megabytes: int) -> int:
        code = f"buffer = bytearray({megabytes} * 2**20)"
        outcome = benchmark.peak_rss_of_command([sys.executable, "-c", code], timeout=60)
        assert outcome.returncode == 0, outcome.stderr
        return outcome.peak_rss_bytes

    small, large = peak(10), peak(160)
    # bytearray pages are touched (zeroed), so the difference is resident; the launcher's
    # own (larger, torch-importing) parent must not leak into either number.
    assert 140 * 2**20 < large - small < 180 * 2**20
    assert small < 100 * 2**20


def test_peak_rss_of_command_reports_failure_and_timeout() -> None:
    code = "import sys; sys.stderr.write('boom'); sys.exit(3)"
    outcome = benchmark.peak_rss_of_command([sys.executable, "-c", code])
    assert outcome.returncode == 3
    assert "boom" in outcome.stderr
    with pytest.raises(Exception, match="timed out"):
        benchmark.peak_rss_of_command(
            [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5
        )


def test_machine_info_fields() -> None:
    info = benchmark.machine_info(threads=2)
    assert info["threads"] == 2 and info["device"] == "cpu"
    assert info["torch"] == torch.__version__
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert len(info["load_average"]) == 3


def test_clip_length_per_preset() -> None:
    assert benchmark.clip_seconds_for("small", 10.0, 2.0) == 10.0
    assert benchmark.clip_seconds_for("causal_small", 10.0, 2.0) == 10.0
    assert benchmark.clip_seconds_for("paper", 10.0, 2.0) == 2.0
    assert benchmark.clip_seconds_for("paper", 1.0, 2.0) == 1.0
