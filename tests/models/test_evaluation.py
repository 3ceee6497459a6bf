"""Evaluation loops against independent NumPy computations, on generated sets and tiny models.

The helpers here (tiny bundles, a frozen set, synthetic voices, NumPy SI-SDR / oracle mask /
EER) are shared with ``tests/workbench/test_eval_command.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models import registry
from models.blocks.locoformer import LocoformerConfig
from models.bundles import Bundle, save_bundle
from models.data.freeze import freeze_dataset
from models.evaluation import (
    METRICS,
    EvaluationItem,
    StftSettings,
    Trial,
    category,
    evaluate_separation,
    evaluate_speakers,
    fold_into_background,
    ideal_ratio_mask,
    item_task,
    match_outputs,
    open_evaluation_set,
    prompt_for,
    read_trial_list,
    score_sources,
    task_from_prompts,
)
from models.features import FeatureConfig
from models.inference import Separator, Verifier
from models.speaker_encoders import DTdnnConfig
from models.tuss import TUSSConfig

torch.set_num_threads(1)

RATE = 8000
SPEAKER_RATE = 16000


# --------------------------------------------------------------------------- shared helpers


def tiny_tuss_bundle(folder: Path) -> Bundle:
    """An 8-kHz TUSS of a few thousand parameters, saved as a bundle (random weights)."""
    block = LocoformerConfig(
        num_groups=2,
        num_heads=2,
        attention_dim=16,
        freq_ffn_dim=16,
        freq_kernel_size=3,
        time_ffn_dim=16,
        time_kernel_size=1,
    )
    config = TUSSConfig(
        sample_rate=RATE,
        n_fft=128,
        hop_length=64,
        emb_dim=8,
        num_cross_prompt_blocks=1,
        num_extraction_blocks=1,
        cross_prompt=block,
        extraction=block,
        band_layout=((0, 1000, 4), (1000, 4000, 16)),
        decoder_hidden_multiplier=2,
        sfc_attention_dim=8,
        sfc_num_heads=2,
    )
    torch.manual_seed(0)
    return save_bundle(folder, registry.build_model("tuss", config), "tuss")


def tiny_speaker_bundle(folder: Path) -> Bundle:
    """A 16-kHz D-TDNN with 16-dimensional embeddings, saved as a bundle (random weights)."""
    config = DTdnnConfig(
        embedding_dim=16,
        features=FeatureConfig(num_mels=20),
        init_channels=16,
        growth_rate=8,
        block_layers=(2, 3),
        layers=((1, 16, 0), (2, 16, 8), (3, 24, 4), (2, 8, 8), (1, 16, 0)),
    )
    torch.manual_seed(0)
    return save_bundle(folder, registry.build_model("dtdnn", config), "dtdnn")


def tiny_frozen_set(folder: Path, count: int = 4) -> Path:
    """A frozen prompted set in ``workbench data freeze``'s layout (synthetic signals)."""
    return freeze_dataset("prompted", folder, count=count, seconds=0.5, sample_rate=RATE, seed=3)


def numpy_si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SI-SDR in dB, straight from the definition (Le Roux et al. 2019)."""
    estimate = estimate.astype(np.float64) - estimate.mean()
    reference = reference.astype(np.float64) - reference.mean()
    target = (estimate @ reference) / (reference @ reference) * reference
    return float(10 * np.log10((target @ target) / ((estimate - target) @ (estimate - target))))


def numpy_stft(signal: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred (zero-padded) STFT with a periodic Hann window, shape ``(frames, bins)``."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(signal, n_fft // 2)
    frames = 1 + (len(padded) - n_fft) // hop
    return np.stack(
        [np.fft.rfft(window * padded[i * hop : i * hop + n_fft]) for i in range(frames)]
    )


def numpy_istft(spectrum: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`numpy_stft`."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    total = n_fft + hop * (len(spectrum) - 1)
    output, weight = np.zeros(total), np.zeros(total)
    for i, frame in enumerate(spectrum):
        output[i * hop : i * hop + n_fft] += window * np.fft.irfft(frame, n_fft)
        weight[i * hop : i * hop + n_fft] += window**2
    start = n_fft // 2
    return output[start : start + length] / np.maximum(weight[start : start + length], 1e-12)


def numpy_ideal_ratio_mask(sources: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    spectra = np.stack([numpy_stft(s.astype(np.float64), n_fft, hop) for s in sources])
    magnitudes = np.abs(spectra)
    masks = magnitudes / np.maximum(magnitudes.sum(axis=0), 1e-300)
    mixture = spectra.sum(axis=0)
    return np.stack([numpy_istft(m * mixture, n_fft, hop, sources.shape[1]) for m in masks])


def independent_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER where the straight line between DET points crosses FAR = FRR, by brute force."""
    targets, nontargets = scores[labels == 1], scores[labels == 0]
    points = []
    for threshold in [*sorted(set(scores.tolist())), np.inf]:
        false_accept = np.mean(nontargets >= threshold)
        false_reject = np.mean(targets < threshold)
        points.append((false_accept, false_reject))
    for (fa0, fr0), (fa1, fr1) in itertools.pairwise(points):
        if fr0 - fa0 < 0 <= fr1 - fa1:
            weight = (fa0 - fr0) / ((fr1 - fa1) - (fr0 - fa0))
            return float(fr0 + weight * (fr1 - fr0))
    return float(points[0][1])


def voice(pitch: float, seed: int, seconds: float = 1.0) -> np.ndarray:
    """A buzzy harmonic tone with a vowel-like spectral tilt: one synthetic 'speaker'."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SPEAKER_RATE)) / SPEAKER_RATE
    f0 = pitch * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(2, 5) * time))
    phase = 2 * np.pi * np.cumsum(f0) / SPEAKER_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * wave + 0.005 * rng.standard_normal(time.size)).astype(np.float32)


def write_trial_list(folder: Path) -> Path:
    """Three voices x three clips under ``folder/wav/``, every pair as a trial."""
    clips = []
    for speaker, pitch in enumerate((110.0, 170.0, 240.0)):
        for take in range(3):
            relative = f"spk{speaker}/take{take}.wav"
            path = folder / "wav" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(pitch, 10 * speaker + take), SPEAKER_RATE)
            clips.append((speaker, f"wav/{relative}"))
    lines = [
        f"{int(a == b)} {first} {second}"
        for (a, first), (b, second) in itertools.combinations(clips, 2)
    ]
    (folder / "trials.txt").write_text("\n".join(lines) + "\n")
    return folder / "trials.txt"


# --------------------------------------------------------------------------- oracle mask


def test_stft_settings_scale_with_the_rate() -> None:
    assert StftSettings.for_rate(16000) == StftSettings(16000, 1024, 256)
    assert StftSettings.for_rate(8000) == StftSettings(8000, 512, 128)
    assert StftSettings.for_rate(44100) == StftSettings(44100, 4096, 1024)
    with pytest.raises(ValueError, match="sample_rate"):
        StftSettings.for_rate(0)


def test_oracle_mask_matches_numpy_and_improves_generated_mixtures() -> None:
    rng = np.random.default_rng(0)
    time = np.arange(4000) / RATE
    sources = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 440 * time) * (1 + np.sin(2 * np.pi * 3 * time)),
            0.1 * rng.standard_normal(time.size),
            0.2 * np.sign(np.sin(2 * np.pi * 97 * time)),
        ]
    )
    settings = StftSettings.for_rate(RATE)
    estimates = ideal_ratio_mask(torch.from_numpy(sources), settings).numpy()
    expected = numpy_ideal_ratio_mask(sources, settings.n_fft, settings.hop_length)
    assert np.abs(estimates - expected).max() < 1e-9
    # The masks sum to one, so the estimates add up to the mixture.
    assert np.abs(estimates.sum(axis=0) - sources.sum(axis=0)).max() < 1e-9
    mixture = sources.sum(axis=0)
    for estimate, reference in zip(estimates, sources, strict=True):
        improvement = numpy_si_sdr(estimate, reference) - numpy_si_sdr(mixture, reference)
        assert improvement > 3.0
    # One source: the mask is one everywhere and the estimate is the source.
    single = ideal_ratio_mask(torch.from_numpy(sources[:1]), settings).numpy()
    assert np.abs(single - sources[:1]).max() < 1e-9
    with pytest.raises(ValueError, match=r"\(num_sources, time\)"):
        ideal_ratio_mask(torch.zeros(10), settings)


# --------------------------------------------------------------------------- scoring


def test_mixture_as_estimate_improves_by_zero_and_scores_match_numpy() -> None:
    rng = np.random.default_rng(1)
    references = rng.standard_normal((3, 3000)) * np.array([[1.0], [0.5], [0.2]])
    mixture = references.sum(axis=0)
    settings = StftSettings.for_rate(RATE)
    baseline = score_sources(np.tile(mixture, (3, 1)), references, mixture, "abc", settings)
    for score, reference in zip(baseline, references, strict=True):
        assert score.si_sdri == 0.0 and score.sdri == 0.0
        assert score.si_sdr == pytest.approx(numpy_si_sdr(mixture, reference), abs=1e-9)
        assert score.mixture_si_sdr == score.si_sdr
    estimates = references + 0.1 * rng.standard_normal(references.shape)
    scores = score_sources(estimates, references, mixture, "abc", settings, sdr_filter_length=0)
    oracle = numpy_ideal_ratio_mask(references, settings.n_fft, settings.hop_length)
    for score, estimate, reference, irm in zip(scores, estimates, references, oracle, strict=True):
        expected = numpy_si_sdr(estimate, reference)
        assert score.si_sdr == pytest.approx(expected, abs=1e-9)
        assert score.si_sdri == pytest.approx(expected - numpy_si_sdr(mixture, reference), abs=1e-9)
        assert score.oracle_irm_si_sdr == pytest.approx(numpy_si_sdr(irm, reference), abs=1e-6)
        assert np.isnan(score.sdr)  # SDR switched off
    with pytest.raises(ValueError, match=r"\(num_sources, time\)"):
        score_sources(estimates[:2], references, mixture, "abc", settings)
    with pytest.raises(ValueError, match=r"\(time,\)"):
        score_sources(estimates, references, mixture[:-1], "abc", settings)


def test_outputs_swap_only_within_their_group() -> None:
    rng = np.random.default_rng(3)
    references = rng.standard_normal((3, 1000))
    # Outputs: speech B, sfx, speech A -> the two speech outputs swap, sfx stays put.
    estimates = references[[1, 2, 0]] + 0.01 * rng.standard_normal((3, 1000))
    groups = ["speech", "speech", "sfx"]
    assert match_outputs(estimates, ["speech", "sfx", "speech"], references, groups) == (2, 0, 1)
    # Different groups never swap, even when swapping would score better.
    swapped = references[[1, 0, 2]]
    assert match_outputs(swapped, ["speech", "sfx", "x"], references, ["speech", "sfx", "x"]) == (
        0,
        1,
        2,
    )
    # More outputs than references: the best ones are chosen.
    extra = np.concatenate([rng.standard_normal((1, 1000)), references[:1]])
    assert match_outputs(extra, ["speech", "speech"], references[:1], ["speech"]) == (1,)
    with pytest.raises(ValueError, match="2 reference.*'speech'.*1 such"):
        match_outputs(references[:1], ["speech"], references[:2], ["speech", "speech"])


def test_names_prompts_and_tasks() -> None:
    assert [category(n) for n in ("speaker1", "spk2", "noise", "music-mix", "other-inst")] == [
        "speech",
        "speech",
        "sfx",
        "music",
        "other",
    ]
    prompts = ("speech", "sfx", "sfx-mix", "drums", "bass", "vocals", "other-inst", "music-mix")
    assert [prompt_for(n, prompts) for n in ("speaker2", "music", "other", "sfx-mix")] == [
        "speech",
        "music-mix",
        "other-inst",
        "sfx-mix",
    ]
    assert prompt_for("guitar", prompts) is None
    cases = {
        ("speech", "sfx"): "enhancement",
        ("music-mix", "speech", "sfx-mix"): "cinematic",
        ("speech", "speech"): "two-speaker",
        ("speech", "sfx", "speech"): "two-speaker",
        ("speech", "speech", "speech"): "multi-speaker",
        ("sfx", "sfx", "sfx"): "sfx",
        ("bass", "drums", "vocals"): "stems",
        ("speech", "sfx-mix", "music-mix", "speech"): "cinematic",
        ("speech", "sfx-mix"): "enhancement",
        ("sfx", "music-mix"): "mixed",
    }
    for names, task in cases.items():
        assert task_from_prompts(names) == task, names
    # Item metadata wins over the names; non-prompted sets report their dataset.
    names = ("speech", "sfx-mix", "music-mix")
    assert item_task(names, "prompted", scenario="speech-enhancement") == "enhancement"
    assert item_task(("a",), "prompted", task="custom") == "custom"
    assert item_task(("speech",) * 3, "prompted", scenario="speech-separation") == "multi-speaker"
    assert item_task(("speech", "music", "noise"), "three-way") == "three-way"
    assert item_task(("speech", "music", "sfx"), "dnr") == "cinematic"


# --------------------------------------------------------------------------- sets and loops


def test_frozen_set_evaluates_with_a_prompted_model(tmp_path: Path) -> None:
    folder = tiny_frozen_set(tmp_path / "set", count=3)
    evaluation_set = open_evaluation_set(folder)
    assert (evaluation_set.layout, evaluation_set.dataset, len(evaluation_set)) == (
        "frozen",
        "prompted",
        3,
    )
    separator = Separator(tiny_tuss_bundle(tmp_path / "tuss"), device="cpu")
    seen = []
    evaluation = evaluate_separation(separator, evaluation_set, total=3, progress=seen.append)
    assert [info["done"] for info in seen] == [1, 2, 3] and not evaluation.skipped
    summary = evaluation.summary()
    assert summary["counts"]["items"] == 3
    assert summary["counts"]["sources"] == sum(len(i.scores) for i in evaluation.items)
    assert set(summary["overall"]) == {*METRICS, "num_sources"}
    assert summary["mixture_baseline"]["si_sdri"] == 0.0
    assert summary["oracle_irm"]["si_sdri"] > 0
    assert summary["oracle_irm"]["stft"] == [StftSettings.for_rate(RATE).as_dict()]
    # Independent check of one item: read its files, separate, match and score in NumPy.
    item = evaluation.items[0]
    record = evaluation_set.item(0)
    mixture = sf.read(folder / "items" / "000000" / "mixture.wav", dtype="float32")[0]
    outputs = separator.separate(mixture, RATE, prompts=list(record.source_names))
    references = record.sources.numpy()
    best = max(
        (
            order
            for order in itertools.permutations(range(len(references)))
            if all(record.source_names[o] == record.source_names[j] for j, o in enumerate(order))
        ),
        key=lambda order: sum(
            numpy_si_sdr(outputs.arrays[o], references[j]) for j, o in enumerate(order)
        ),
    )
    for j, score in enumerate(item.scores):
        expected = numpy_si_sdr(outputs.arrays[best[j]], references[j])
        assert score.si_sdr == pytest.approx(expected, abs=1e-4)
        assert score.si_sdri == pytest.approx(
            expected - numpy_si_sdr(mixture, references[j]), abs=1e-4
        )


def test_public_layouts_open_as_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)

    def write(path: Path, signal: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signal, RATE, subtype="FLOAT")

    for clip in ("a", "b"):  # DnR: SPLIT/ID/{mix,speech,music,sfx}.wav
        parts = {name: 0.1 * rng.standard_normal(800) for name in ("speech", "music", "sfx")}
        write(tmp_path / "dnr" / "cv" / clip / "mix.wav", sum(parts.values()))
        for name, signal in parts.items():
            write(tmp_path / "dnr" / "cv" / clip / f"{name}.wav", signal)
    for number in (1, 2):  # MTASS: SPLIT/KIND/KINDn/KIND_n.wav
        parts = {name: 0.1 * rng.standard_normal(800) for name in ("speech", "music", "noise")}
        for kind, signal in {"mixture": sum(parts.values()), **parts}.items():
            write(
                tmp_path / "mtass" / "dev" / kind / f"{kind}{number}" / f"{kind}_{number}.wav",
                signal,
            )
    dnr = open_evaluation_set(tmp_path / "dnr" / "cv")
    mtass = open_evaluation_set(tmp_path / "mtass" / "dev")
    for opened, layout, task in ((dnr, "dnr", "cinematic"), (mtass, "mtass", "three-way")):
        assert (opened.layout, opened.sample_rate, len(opened)) == (layout, RATE, 2)
        item = opened.item(1)
        assert item.task == task and item.sources.shape == (3, 800)
        assert torch.allclose(item.sources.sum(0), item.mixture)
    with pytest.raises(FileNotFoundError, match="no known set layout"):
        open_evaluation_set(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_evaluation_set(tmp_path / "missing")


def test_fixed_output_model_skips_items_it_cannot_serve(tmp_path: Path) -> None:
    folder = freeze_dataset(
        "speech-separation", tmp_path / "speech", count=2, seconds=0.5, sample_rate=RATE
    )
    config = registry.get_spec("conv_tasnet").config(
        "small",
        encoder_filters=16,
        bottleneck_channels=8,
        hidden_channels=16,
        num_blocks=2,
        num_repeats=1,
    )
    model = registry.build_model("conv_tasnet", config)
    separator = Separator(model, device="cpu")
    evaluation = evaluate_separation(separator, open_evaluation_set(folder), sdr_filter_length=0)
    assert len(evaluation.items) == 2 and evaluation.items[0].task == "speech-separation"
    assert {s.name for i in evaluation.items for s in i.scores} == {"speaker1", "speaker2"}
    mtass_like = dataclasses.replace(config, source_names=("speech", "music"))
    separator = Separator(registry.build_model("conv_tasnet", mtass_like), device="cpu")
    evaluation = evaluate_separation(separator, open_evaluation_set(folder), sdr_filter_length=0)
    assert not evaluation.items and len(evaluation.skipped) == 2
    assert "cannot stand for" in evaluation.skipped[0][1]


def test_speaker_evaluation_matches_independent_eer(tmp_path: Path) -> None:
    list_path = write_trial_list(tmp_path)
    trials = read_trial_list(list_path)
    assert len(trials) == 36 and sum(t.label for t in trials) == 9
    verifier = Verifier(tiny_speaker_bundle(tmp_path / "speaker"), device="cpu")
    evaluation = evaluate_speakers(verifier, trials)
    assert evaluation.num_files == 9
    scores = np.array([t.score for t in evaluation.trials])
    labels = np.array([t.label for t in evaluation.trials])
    assert evaluation.eer == pytest.approx(independent_eer(scores, labels), abs=1e-12)
    first = trials[0]
    expected = verifier.score(
        verifier.embed(sf.read(first.enroll_path, dtype="float32")[0], SPEAKER_RATE),
        verifier.embed(sf.read(first.test_path, dtype="float32")[0], SPEAKER_RATE),
    )
    assert evaluation.trials[0].score == pytest.approx(expected, abs=1e-6)
    summary = evaluation.summary(per_trial=True)
    assert summary["num_trials"] == 36 and len(summary["trials"]) == 36
    assert summary["min_dcf"] >= 0 and summary["p_target"] == 0.01


def test_trial_lists_resolve_their_audio_and_refuse_bad_input(tmp_path: Path) -> None:
    list_path = write_trial_list(tmp_path)
    assert read_trial_list(list_path)[0].enroll_path == tmp_path / "wav" / "spk0" / "take0.wav"
    # VoxCeleb style: paths relative to the wav/ folder next to the list.
    voxceleb = tmp_path / "veri_test.txt"
    voxceleb.write_text(list_path.read_text().replace("wav/", ""))
    assert read_trial_list(voxceleb)[0].enroll_path == tmp_path / "wav" / "spk0" / "take0.wav"
    # Elsewhere: say where the audio is.
    moved = tmp_path / "lists" / "veri.txt"
    moved.parent.mkdir()
    moved.write_text(voxceleb.read_text())
    with pytest.raises(FileNotFoundError, match="9 audio file.*missing"):
        read_trial_list(moved)
    resolved = read_trial_list(moved, audio_root=tmp_path / "wav")
    assert resolved[-1].test_path == tmp_path / "wav" / "spk2" / "take2.wav"
    # A frozen speaker set folder: its trials.txt, paths under utterances/.
    frozen = freeze_dataset("speakers", tmp_path / "frozen", count=8, seconds=0.5)
    trials = read_trial_list(frozen)
    assert all(isinstance(t, Trial) and t.enroll_path.is_file() for t in trials)
    assert trials[0].enroll_path.parent.parent == frozen / "utterances"
    one_class = tmp_path / "targets.txt"
    one_class.write_text("1 wav/spk0/take0.wav wav/spk0/take1.wav\n")
    with pytest.raises(ValueError, match="non-target"):
        read_trial_list(one_class)
    malformed = tmp_path / "bad.txt"
    malformed.write_text("yes a b\n")
    with pytest.raises(ValueError, match="label enroll test"):
        read_trial_list(malformed)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_trial_list(tmp_path / "nothing.txt")


def test_an_enhancement_model_is_scored_on_three_way_items_with_music_in_its_noise() -> None:
    sources = torch.randn(3, 400)
    item = EvaluationItem(
        "0", "three-way", sources.sum(0), sources, ("speech", "music", "noise"), RATE
    )
    folded = fold_into_background(item, ("speech", "noise"))
    assert folded.source_names == ("speech", "noise")
    torch.testing.assert_close(folded.sources[0], sources[0])
    torch.testing.assert_close(folded.sources[1], sources[1] + sources[2])
    # Without a noise reference, the folded background becomes one under the model's name.
    speech_music = EvaluationItem(
        "1", "x", sources[:2].sum(0), sources[:2], ("speech", "music"), RATE
    )
    assert fold_into_background(speech_music, ("speech", "noise")).source_names == (
        "speech",
        "noise",
    )
    # Models with every kind, or with several background outputs, see the item unchanged.
    assert fold_into_background(item, ("speech", "music", "noise")) is item
    assert fold_into_background(item, ("speaker1", "speaker2")) is item
