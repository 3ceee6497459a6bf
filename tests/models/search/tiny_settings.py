"""Tiny search settings shared by the search tests (a few thousand parameters, 1-s clips)."""

from __future__ import annotations

#: ``--set`` items for a SpeechNAS supernet of 4 dense layers and a tiny synthetic corpus.
SPEECHNAS_TINY: tuple[str, ...] = (
    "model.init_channels=16",
    "model.growth_rate=8",
    "model.block_layers=(2, 2)",
    "model.block_dilations=(1, 3)",
    "model.width_choices=(8, 16)",
    "model.selection_choices=(4, 8)",
    "model.embedding_dim=16",
    "model.features.num_mels=20",
    "data.num_speakers=4",
    "data.utterances_per_speaker=3",
    "data.valid_speakers=3",
    "data.valid_utterances=2",
    "data.seconds=1.0",
    "batch_size=4",
    "segment_seconds=1.0",
    "valid_seconds=1.0",
    "calibration_batches=1",
    "startup_trials=2",
    "log_interval=1",
    "warmup_steps=0",
)

#: ``--set`` items for an AutoSpeech search network of 3 cells at C = 4 (0.5-s clips).
AUTOSPEECH_TINY: tuple[str, ...] = (
    "model.channels=4",
    "model.num_cells=3",
    "model.embedding_dim=8",
    "model.features.num_mels=20",
    "retrain.channels=4",
    "retrain.num_cells=3",
    "retrain.embedding_dim=8",
    "data.num_speakers=4",
    "data.utterances_per_speaker=2",
    "data.valid_speakers=3",
    "data.valid_utterances=2",
    "data.seconds=0.5",
    "batch_size=4",
    "segment_seconds=0.5",
    "valid_seconds=0.5",
    "log_interval=1",
)


def cli_arguments(items: tuple[str, ...]) -> list[str]:
    """``--set`` options for the command line."""
    return [argument for item in items for argument in ("--set", item)]
