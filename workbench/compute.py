"""Which device the models will run on (CPU or a CUDA GPU), described for people."""

from __future__ import annotations

from collections.abc import Generator

from workbench.workers import Progress


def describe_compute_device(preference: str = "auto") -> str:
    """``"CPU (2 threads)"`` or ``"GPU: NVIDIA H100 (CUDA)"``; imports torch (slow: ~1 s)."""
    import torch

    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)} (CUDA)"
    note = " — no GPU found" if preference == "cuda" else ""
    return f"CPU ({torch.get_num_threads()} threads){note}"


def detect_task(preference: str = "auto") -> Generator[Progress, None, str]:
    """Background form for the window's status bar (importing torch takes a moment)."""
    yield Progress(0.0, "Detecting compute device")
    return describe_compute_device(preference)


def model_catalog() -> dict[str, dict]:
    """The registry as plain data for views: name -> task, presets, description."""
    from models.registry import registry

    return {
        name: {
            "task": spec.task,
            "presets": list(spec.presets),
            "description": spec.description,
        }
        for name, spec in registry().items()
    }


def catalog_task() -> Generator[Progress, None, dict[str, dict]]:
    """Background form: importing the model library takes a moment."""
    yield Progress(0.0, "Reading the model library")
    return model_catalog()
