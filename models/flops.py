"""Count multiply-accumulates (MACs) per second of audio with ``torch.utils.flop_counter``.

``FlopCounterMode`` records the FLOPs of matrix multiplications, convolutions (transposed
included) and attention as they run, so the count follows the real forward path, including
whichever path a search supernet has active. Element-wise work (norms, activations, masking)
is not counted; for convolutional separators it is well under 1 % of the total. One MAC is
two FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, forward: Callable[[], Any]) -> int:
    """MACs of one call of ``forward`` (which should run ``model``).

    The model is put in eval mode for the count (dropout and training-only branches off) and
    its mode restored afterwards; gradients are off.

    Args:
        model: The module whose mode is switched.
        forward: Zero-argument callable running the forward pass.

    Returns:
        Multiply-accumulates (FLOPs / 2), rounded down.
    """
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            forward()
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def macs_per_second(
    model: nn.Module,
    sample_rate: int | None = None,
    seconds: float = 1.0,
    prompts: Sequence[str] | None = None,
) -> float:
    """MACs per second of audio for a registered model.

    The model runs on ``seconds`` of noise (one example, one channel) on its own device:

    * prompted models (a ``PROMPTS`` attribute, e.g. TUSS) as ``model(x, prompts)`` with
      ``prompts`` defaulting to the first prompt;
    * speaker encoders (an ``embed`` method and no ``source_names``) as ``model.embed(x)``;
    * every other model as ``model(x)``.

    Args:
        model: The model.
        sample_rate: Audio rate; default ``model.config.sample_rate``.
        seconds: Length of the probe signal. Longer probes dilute fixed edge costs (padding
            frames) and approach the steady-state rate.
        prompts: Prompt names for prompted models.

    Returns:
        MACs divided by ``seconds``.
    """
    if sample_rate is None:
        config = getattr(model, "config", None)
        sample_rate = getattr(config, "sample_rate", None) or getattr(model, "sample_rate", None)
        if sample_rate is None:
            raise ValueError("Pass sample_rate: the model has no config.sample_rate.")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    num_samples = max(1, round(sample_rate * seconds))
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    probe: Tensor = torch.randn(1, num_samples, generator=generator).to(device)

    if hasattr(model, "PROMPTS"):
        chosen = list(prompts) if prompts is not None else [model.PROMPTS[0]]

        def forward() -> Any:
            return model(probe, chosen)
    elif hasattr(model, "embed") and not hasattr(model, "source_names"):

        def forward() -> Any:
            return model.embed(probe)
    else:

        def forward() -> Any:
            return model(probe)

    return count_macs(model, forward) / seconds
