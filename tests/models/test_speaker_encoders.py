"""Speaker encoders and front ends: Kaldi features, D-TDNN / SpeechNAS supernet, ECAPA-TDNN."""

from __future__ import annotations

import dataclasses
import io
import random

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from models import registry
from models.features import (
    BatchedFeatures,
    FeatureConfig,
    kaldi_features,
    kaldi_voxceleb_mfcc,
    num_frames,
)
from models.speaker_encoders import (
    SPEECHNAS_ARCHITECTURES,
    SPEECHNAS_PUBLISHED_PARAMETERS,
    DTdnn,
    DTdnnConfig,
    EcapaTdnn,
    EcapaTdnnConfig,
    architecture_space,
    derive_config,
    validate_architecture,
)

torch.set_num_threads(1)

TINY_FEATURES = FeatureConfig(num_mels=20)
TINY_DTDNN = DTdnnConfig(
    embedding_dim=16,
    features=TINY_FEATURES,
    init_channels=16,
    growth_rate=8,
    block_layers=(2, 3),
    layers=((1, 16, 0), (2, 16, 8), (3, 24, 4), (2, 8, 8), (1, 16, 0)),
)
TINY_SUPERNET = dataclasses.replace(
    TINY_DTDNN,
    layers=((3, 24, 8),) * 5,
    supernet=True,
    width_choices=(8, 16, 24),
    selection_choices=(4, 8),
)
TINY_ECAPA = EcapaTdnnConfig(
    embedding_dim=16,
    features=TINY_FEATURES,
    channels=16,
    scale=4,
    se_channels=8,
    attention_channels=8,
    mfa_channels=24,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- front ends


KALDI_CASES = {
    "fbank_povey": FeatureConfig(num_mels=40, mean_normalize=False),
    "fbank_hamming_cmn": FeatureConfig(num_mels=80, window="hamming"),
    "fbank_no_snip": FeatureConfig(num_mels=24, snip_edges=False),
    "mfcc_voxceleb": kaldi_voxceleb_mfcc(30),
}


@pytest.mark.parametrize("case", sorted(KALDI_CASES))
def test_batched_features_match_torchaudio_kaldi(case: str) -> None:
    config = KALDI_CASES[case]
    generator = torch.Generator().manual_seed(1)
    # A tone plus noise, two different lengths' worth of content, same padded length.
    time = torch.arange(8000, dtype=torch.float64) / 16000
    waveform = torch.stack(
        [
            0.3 * torch.sin(2 * torch.pi * 440 * time),
            0.05 * torch.randn(8000, generator=generator, dtype=torch.float64),
        ]
    )
    batched = BatchedFeatures(config, 16000)(waveform)
    function = kaldi.fbank if config.kind == "fbank" else kaldi.mfcc
    extra = {"num_ceps": config.num_mels} if config.kind == "mfcc" else {}
    for row, signal in enumerate(waveform):
        # The reference is called directly, not through our wrapper.
        reference = function(
            (signal * 32768.0).unsqueeze(0),
            sample_frequency=16000.0,
            num_mel_bins=config.num_mels,
            window_type=config.window,
            high_freq=config.high_freq,
            snip_edges=config.snip_edges,
            dither=0.0,
            subtract_mean=config.mean_normalize,
            **extra,
        )
        assert batched.shape[1:] == reference.shape
        assert batched.shape[1] == num_frames(8000, 16000, config)
        torch.testing.assert_close(batched[row], reference, rtol=0, atol=1e-8)
        torch.testing.assert_close(kaldi_features(signal, 16000, config), reference)
    # float32, the training path: same values up to single-precision round-off. Only the
    # broadband row: for the pure tone, bins far from 440 Hz hold leakage energies ~1e-7 of
    # the total, whose logs single precision cannot resolve (Kaldi in float32 neither).
    single = BatchedFeatures(config, 16000)(waveform.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single[1].double(), batched[1], rtol=0, atol=1e-2)


def test_batched_features_reject_bad_waveforms() -> None:
    front_end = BatchedFeatures(FeatureConfig(), 16000)
    for bad in (
        torch.zeros(16000),  # rank 1
        torch.zeros(1, 2, 16000),  # rank 3
        torch.zeros(0, 16000),  # empty batch
        torch.zeros(2, 399),  # shorter than one 25 ms window
        torch.zeros(2, 16000, dtype=torch.int16),
        torch.full((2, 16000), float("nan")),
    ):
        with pytest.raises(ValueError):
            front_end(bad)
    with pytest.raises(ValueError):
        FeatureConfig(kind="spectrogram")
    with pytest.raises(ValueError):
        kaldi_features(torch.zeros(100), 16000, FeatureConfig())


# ---------------------------------------------------------------- D-TDNN / ECAPA


@pytest.mark.parametrize(
    "model_class, config", [(DTdnn, TINY_DTDNN), (EcapaTdnn, TINY_ECAPA)], ids=["dtdnn", "ecapa"]
)
def test_forward_backward_every_parameter_gets_a_gradient(model_class, config) -> None:
    torch.manual_seed(0)
    model = model_class(config)
    features = torch.randn(3, 37, 20)
    embeddings = model(features)
    assert embeddings.shape == (3, 16)
    embeddings.square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "model_class, config", [(DTdnn, TINY_DTDNN), (EcapaTdnn, TINY_ECAPA)], ids=["dtdnn", "ecapa"]
)
def test_embed_equals_forward_on_kaldi_features(model_class, config) -> None:
    torch.manual_seed(0)
    model = model_class(config).eval()
    waveform = 0.1 * torch.randn(2, 6000)
    features = torch.stack([kaldi_features(w, 16000, config.features) for w in waveform])
    with torch.no_grad():
        torch.testing.assert_close(model.embed(waveform), model(features), rtol=1e-4, atol=1e-4)


def test_single_frame_is_handled() -> None:
    model = DTdnn(TINY_DTDNN).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 1, 20))).all()


@pytest.mark.parametrize("model_class, config", [(DTdnn, TINY_DTDNN), (EcapaTdnn, TINY_ECAPA)])
def test_bad_features_raise_value_error(model_class, config) -> None:
    model = model_class(config)
    for bad in (
        torch.randn(37, 20),  # no batch axis
        torch.randn(2, 37, 21),  # wrong number of mel bins
        torch.randn(0, 37, 20),  # empty batch
        torch.randn(2, 0, 20),  # no frames
        torch.full((2, 37, 20), float("nan")),
    ):
        with pytest.raises(ValueError, match="features"):
            model(bad)
    with pytest.raises(ValueError, match="waveform"):
        model.embed(torch.randn(2, 100))


def test_invalid_configs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="layers"):
        dataclasses.replace(TINY_DTDNN, layers=((2, 16, 8),))
    with pytest.raises(ValueError, match="branches"):
        dataclasses.replace(TINY_DTDNN, layers=((4, 16, 8),) * 5)
    with pytest.raises(ValueError, match="activation"):
        dataclasses.replace(TINY_DTDNN, activation="gelu")
    with pytest.raises(ValueError, match="search space"):
        dataclasses.replace(TINY_SUPERNET, layers=((2, 32, 8),) * 5)
    with pytest.raises(ValueError, match="scale"):
        dataclasses.replace(TINY_ECAPA, channels=18)


# ---------------------------------------------------------------- SpeechNAS supernet


def test_supernet_trains_sampled_architectures_with_shared_weights() -> None:
    torch.manual_seed(0)
    supernet = DTdnn(TINY_SUPERNET)
    features = torch.randn(4, 29, 20)
    rng = random.Random(0)
    architectures = [supernet.sample_architecture(rng) for _ in range(4)]
    assert len(set(architectures)) > 1
    shared = supernet.blocks[0][0].bottleneck.weight
    outputs = []
    for architecture in architectures:
        validate_architecture(TINY_SUPERNET, architecture)
        supernet.zero_grad()
        embeddings = supernet(features, architecture)
        assert embeddings.shape == (4, 16)
        embeddings.square().sum().backward()
        # The first layer's bottleneck is shared: only the chosen width's rows learn.
        width = architecture[0][1]
        assert shared.grad[:width].abs().sum() > 0
        assert shared.grad[width:].abs().sum() == 0
        outputs.append(embeddings.detach())
    assert not torch.allclose(outputs[0], outputs[1])


def test_subnetwork_inherits_supernet_weights_exactly() -> None:
    torch.manual_seed(0)
    supernet = DTdnn(TINY_SUPERNET)
    features = torch.randn(3, 25, 20)
    rng = random.Random(3)
    supernet.train()
    for _ in range(3):  # populate BatchNorm statistics for several paths
        with torch.no_grad():
            supernet(features, supernet.sample_architecture(rng))
    supernet.eval()
    for _ in range(3):
        architecture = supernet.sample_architecture(rng)
        config = supernet.derive_config(architecture)
        assert not config.supernet and config.layers == architecture
        standalone = registry.build_model("speechnas", dataclasses.asdict(config))
        standalone.load_state_dict(supernet.subnetwork_state_dict(architecture))
        standalone.eval()
        with torch.no_grad():
            torch.testing.assert_close(standalone(features), supernet(features, architecture))
        assert supernet.parameter_count(architecture) == count(standalone)


def test_architecture_space_and_validation() -> None:
    space = architecture_space(TINY_SUPERNET)
    assert len(space) == 5
    assert space[0] == {"branches": (2, 3), "width": (8, 16, 24), "selection": (4, 8)}
    supernet = DTdnn(TINY_SUPERNET)
    features = torch.randn(2, 20, 20)
    with pytest.raises(ValueError, match="layer choices"):
        supernet(features, ((2, 8, 4),) * 4)
    with pytest.raises(ValueError, match="search space"):
        supernet(features, ((2, 12, 4),) * 5)
    with pytest.raises(ValueError, match="fixed network"):
        DTdnn(TINY_DTDNN)(features, ((2, 8, 4),) * 5)
    with pytest.raises(ValueError, match="supernet"):
        DTdnn(TINY_DTDNN).subnetwork_state_dict(((2, 8, 4),) * 5)
    derived = derive_config(TINY_SUPERNET, [[2, 8, 4]] * 5)  # lists, as JSON gives them
    assert derived.layers == ((2, 8, 4),) * 5


def test_recalibrate_batchnorm_reestimates_statistics() -> None:
    torch.manual_seed(0)
    supernet = DTdnn(TINY_SUPERNET).eval()
    norm = supernet.stem[1]
    assert torch.all(norm.running_mean == 0)
    batches = [torch.randn(2, 20, 20) + 3.0 for _ in range(2)]
    architecture = supernet.sample_architecture(random.Random(1))
    supernet.recalibrate_batchnorm(batches, architecture)
    assert not supernet.training
    assert norm.running_mean.abs().sum() > 0
    assert norm.momentum == 0.1
    assert norm.num_batches_tracked == 2


# ---------------------------------------------------------------- registry round trips


SAVE_RELOAD_CASES = {
    "dtdnn": dataclasses.asdict(
        dataclasses.replace(TINY_DTDNN, layers=((1, 16, 0),) * 5, activation="relu")
    ),
    "speechnas": dataclasses.asdict(TINY_SUPERNET),
    "ecapa_tdnn": dataclasses.asdict(TINY_ECAPA),
}


@pytest.mark.parametrize("name", sorted(SAVE_RELOAD_CASES))
def test_save_reload_gives_identical_output(name: str) -> None:
    torch.manual_seed(0)
    model = registry.build_model(name, SAVE_RELOAD_CASES[name])
    # One training step so BatchNorm statistics are not the defaults.
    model(torch.randn(3, 30, 20)).sum().backward()
    model.eval()
    features = torch.randn(2, 30, 20)
    with torch.no_grad():
        expected = model(features)
    buffer = io.BytesIO()
    torch.save(
        {
            "name": name,
            "config": registry.config_to_dict(model.config),
            "state": model.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = registry.build_model(checkpoint["name"], checkpoint["config"])
    rebuilt.load_state_dict(checkpoint["state"])
    rebuilt.eval()
    assert rebuilt.config == model.config
    with torch.no_grad():
        assert torch.equal(rebuilt(features), expected)


def test_every_speaker_preset_builds_with_sample_rate_and_embedding_dim() -> None:
    for name in ("dtdnn", "speechnas", "ecapa_tdnn"):
        spec = registry.get_spec(name)
        assert spec.task == "speaker"
        assert {"paper", "small"} <= set(spec.presets)
        for preset in spec.presets:
            config = spec.config(preset)
            assert config.sample_rate == 16000 and config.embedding_dim > 0
            rebuilt = registry.config_from_dict(name, dataclasses.asdict(config))
            assert rebuilt == config


def test_small_presets_embed_audio() -> None:
    torch.manual_seed(0)
    for name in ("dtdnn", "speechnas", "ecapa_tdnn"):
        model = registry.build_model(name, preset="small").eval()
        with torch.no_grad():
            embeddings = model.embed(0.1 * torch.randn(2, 8000))
        assert embeddings.shape == (2, model.config.embedding_dim)
        assert torch.isfinite(embeddings).all()


# ---------------------------------------------------------------- published sizes


def meta_count(name: str, preset: str) -> int:
    with torch.device("meta"):
        return count(registry.build_model(name, preset=preset))


PUBLISHED = {
    # D-TDNN paper / yuyq96/D-TDNN README (30-d MFCC input).
    ("dtdnn", "paper"): 2.8e6,  # D-TDNN, 512-d embedding
    ("dtdnn", "paper_ss"): 3.5e6,  # D-TDNN-SS, 512-d embedding
    ("speechnas", "paper"): 3.1e6,  # D-TDNN-SS, 128-d embedding (AAM-softmax row)
    # SpeechNAS-1..5, from the checkpoint names in wentaozhu/speechnas.
    **{("speechnas", name): value for name, value in SPEECHNAS_PUBLISHED_PARAMETERS.items()},
    # ECAPA-TDNN paper, Table 1.
    ("ecapa_tdnn", "paper"): 14.7e6,  # C = 1024
    ("ecapa_tdnn", "paper_c512"): 6.2e6,  # C = 512
}


@pytest.mark.parametrize("name, preset", sorted(PUBLISHED))
def test_paper_parameter_counts_match_published(name: str, preset: str) -> None:
    measured = meta_count(name, preset)
    published = PUBLISHED[(name, preset)]
    print(f"{name}/{preset}: {measured:,} parameters (published {published / 1e6:.1f} M)")
    assert abs(measured - published) / published < 0.05


def test_searched_architectures_lie_where_the_repo_puts_them() -> None:
    supernet = registry.get_spec("speechnas").config("supernet")
    assert validate_architecture(supernet, SPEECHNAS_ARCHITECTURES["speechnas1"])
    assert validate_architecture(supernet, SPEECHNAS_ARCHITECTURES["speechnas4"])
    # SpeechNAS-3 uses a 160-wide bottleneck, outside the paper's width set.
    with pytest.raises(ValueError, match="search space"):
        validate_architecture(supernet, SPEECHNAS_ARCHITECTURES["speechnas3"])


def test_small_presets_fit_the_cpu_budget() -> None:
    for name in ("dtdnn", "speechnas", "ecapa_tdnn"):
        measured = meta_count(name, "small")
        print(f"{name}/small: {measured:,} parameters")
        assert 0.3e6 < measured < 1.5e6
