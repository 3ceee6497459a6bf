"""Separation as background tasks: the bridge from the window to the model library.

The model library is imported inside the task functions only (importing this module stays
cheap); the request and result types are in :mod:`workbench.separation_request`.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from workbench.separation_request import FAMILIES, SeparationOutput, SeparationRequest
from workbench.workers import Progress

__all__ = [
    "FAMILIES",
    "SeparationOutput",
    "SeparationRequest",
    "batch_item_task",
    "bundle_catalog",
    "separate_task",
]

#: Registry model names -> separation family.
_FAMILY_OF_MODEL = {
    "tuss": "tuss",
    "mtass": "mtass",
    "conv_tasnet": "speech",
    "nas_tasnet": "speech",
}


def bundle_catalog() -> list[dict]:
    """Bundles the separation panel offers, as plain dicts (imports the model library).

    Shipped and user-registered bundles come first; each family without a shipped bundle
    gets its untrained placeholder, marked ``trained: False``.
    """
    from models.bundles import default_bundle, list_bundles

    entries: list[dict] = []
    for bundle in list_bundles():
        family = _FAMILY_OF_MODEL.get(bundle.model_name)
        if family is None or bundle.task != "separation":
            continue
        entries.append(
            {
                "name": bundle.name,
                "family": family,
                "trained": bundle.trained,
                "path": str(bundle.path) if bundle.path else bundle.name,
                "description": bundle.description,
            }
        )
    for family in FAMILIES:
        if not any(e["family"] == family for e in entries):
            bundle = default_bundle(family)
            entries.append(
                {
                    "name": bundle.name,
                    "family": family,
                    "trained": bundle.trained,
                    "path": "",
                    "description": bundle.description,
                }
            )
    return entries


def catalog_task() -> Generator[Progress, None, list[dict]]:
    yield Progress(0.0, "Listing separation models")
    return bundle_catalog()


def _load_separator(request: SeparationRequest):
    from models.bundles import default_bundle, load_bundle
    from models.inference import Separator

    bundle = load_bundle(request.bundle) if request.bundle else default_bundle(request.family)
    return Separator(bundle, device=request.device), bundle


def separate_task(
    samples: np.ndarray, sample_rate: int, request: SeparationRequest
) -> Generator[Progress, None, SeparationOutput]:
    """Separate ``samples`` (``(frames, channels)``) as ``request`` says.

    Runs chunk by chunk; between chunks the worker may cancel. The stems keep the input's
    rate, length and channel count.
    """
    yield Progress(0.0, "Loading the model")
    separator, bundle = _load_separator(request)
    prompts = list(request.prompts) if separator.prompted else None
    if separator.prompted and not prompts:
        raise ValueError("TUSS needs at least one prompt.")
    generator = separator.iter_separate(samples, sample_rate, prompts=prompts)
    while True:
        try:
            report = next(generator)
        except StopIteration as stop:
            result = stop.value
            break
        yield Progress(0.05 + 0.9 * float(report["fraction"]), str(report["message"]))
    output = SeparationOutput(
        names=list(result.names),
        stems=[np.asarray(a, dtype=np.float32).reshape(samples.shape) for a in result.arrays],
        bundle_name=bundle.name,
        trained=bundle.trained,
        device=str(separator.device),
    )
    if request.residual:
        residual = samples.astype(np.float32) - np.sum(output.stems, axis=0)
        output.names.append("residual")
        output.stems.append(residual.astype(np.float32))
    yield Progress(1.0, "Separated")
    return output


def batch_item_task(
    path: str,
    request: SeparationRequest,
    out_dir: str,
    template: str = "{track}",
    extension: str = "wav",
) -> Generator[Progress, None, list[str]]:
    """One batch-queue row: decode ``path``, separate, write each stem atomically.

    Files go to ``out_dir/<input stem>/<template>.<extension>``; an existing file is never
    replaced: the new one gets a number instead.
    """
    from pathlib import Path

    from workbench.audio import io
    from workbench.export_names import render_name, unique_path

    source = Path(path)
    loader = io.iter_load(source)
    while True:
        try:
            fraction = next(loader)
        except StopIteration as stop:
            audio = stop.value
            break
        yield Progress(0.1 * fraction, f"Decoding {source.name}")
    separation = separate_task(audio.samples, audio.sample_rate, request)
    while True:
        try:
            step = next(separation)
        except StopIteration as stop:
            output = stop.value
            break
        yield Progress(0.1 + 0.8 * step.fraction, step.message)
    folder = Path(out_dir) / source.stem
    written: list[str] = []
    for index, (name, stem) in enumerate(zip(output.names, output.stems), start=1):
        target = unique_path(
            folder
            / render_name(
                template,
                track=name,
                mixture=source.stem,
                index=index,
                rate=audio.sample_rate,
                extension=extension,
            )
        )
        subtype = io.choose_subtype(io.EXPORT_FORMATS[extension][0], audio.info.subtype)
        written.append(str(io.save(target, stem, audio.sample_rate, subtype=subtype)))
        yield Progress(0.9 + 0.1 * index / len(output.names), f"Saved {target.name}")
    return written
