"""What a separation is asked to do and what it returns: plain data, no model imports.

Views import this module; the task functions that run the models live in
:mod:`workbench.separation` (views must not import it, since it reaches the model library).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: TUSS prompts, in the model's order.
PROMPTS: tuple[str, ...] = (
    "speech",
    "sfx",
    "sfx-mix",
    "drums",
    "bass",
    "vocals",
    "other-inst",
    "music-mix",
)

#: Model families the panel and ``workbench separate`` offer: key -> label.
FAMILIES: dict[str, str] = {
    "tuss": "TUSS — prompted separation",
    "mtass": "MTASS — speech / music / noise",
    "speech": "Speech separator (Conv-TasNet family)",
}


@dataclass(frozen=True)
class SeparationRequest:
    """What to separate with.

    Attributes:
        family: ``"tuss"``, ``"mtass"`` or ``"speech"``.
        bundle: Bundle name or path; empty for the family's default.
        prompts: TUSS prompts in output order (repeats allowed); empty otherwise.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        residual: Also return mixture minus the sum of the outputs.
    """

    family: str
    bundle: str = ""
    prompts: tuple[str, ...] = ()
    device: str = "auto"
    residual: bool = True
    track_id: int | None = None


@dataclass
class SeparationOutput:
    """Stems in output order, each ``(frames, channels)`` like the input.

    Attributes:
        names: Output names (``"1_speech"``, ``"speech"``, ``"residual"``...).
        stems: Arrays in the same order as ``names``.
        bundle_name: Which bundle produced them.
        trained: False when the bundle was an untrained placeholder.
        device: The device used.
    """

    names: list[str] = field(default_factory=list)
    stems: list[np.ndarray] = field(default_factory=list)
    bundle_name: str = ""
    trained: bool = True
    device: str = "cpu"
