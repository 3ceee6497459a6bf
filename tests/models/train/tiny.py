"""Tiny training settings shared by the training tests (a step takes milliseconds)."""

from __future__ import annotations

#: Settings for every tiny run: short clips, two validation items, a row per step.
COMMON: tuple[str, ...] = (
    "batch_size=2",
    "segment_seconds=0.25",
    "valid_segment_seconds=0.25",
    "valid_items=2",
    "log_interval=1",
    "warmup_steps=1",
)

#: Per model: overrides that shrink its small preset to a few thousand parameters.
MODELS: dict[str, tuple[str, ...]] = {
    "tuss": (
        "model.emb_dim=8",
        "model.num_cross_prompt_blocks=1",
        "model.num_extraction_blocks=1",
    ),
    "mtass": (
        "model.n_fft=128",
        "model.hop_length=64",
        "model.num_subbands=4",
        "model.hidden_channels=16",
        "model.bottleneck_channels=8",
        "model.block_dilations=(1, 2)",
        "model.residual_channels=8",
        "model.residual_hidden_channels=8",
        "model.residual_repeats=1",
        "model.residual_blocks_per_repeat=2",
    ),
    "conv_tasnet": (
        "model.encoder_filters=16",
        "model.bottleneck_channels=8",
        "model.hidden_channels=16",
        "model.num_blocks=2",
        "model.num_repeats=1",
    ),
    "nas_tasnet": (
        "model.encoder_filters=16",
        "model.bottleneck_channels=8",
        "model.num_blocks=2",
        "model.num_repeats=2",
    ),
    # Speaker validation needs repeated speakers: 8 utterances of 4 held-out identities.
    "dtdnn": ("model.init_channels=16", "model.growth_rate=8", "valid_items=8"),
}


def settings(model: str, *extra: str) -> list[str]:
    """``--set`` values for a tiny run of ``model``."""
    return [*COMMON, *MODELS[model], *extra]


def cli_arguments(model: str, run_dir: str, *extra: str) -> list[str]:
    """``workbench train`` arguments for a tiny run of ``model`` in ``run_dir``."""
    arguments = ["train", "--model", model, "--data", "synthetic", "--run", run_dir]
    for setting in settings(model, *extra):
        arguments += ["--set", setting]
    return arguments
