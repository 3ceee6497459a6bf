"""Training checkpoints: one schema, written atomically, loaded without unpickling code.

A checkpoint is a ``torch.save`` of a plain dict::

    format_version   int, :data:`FORMAT_VERSION`
    model_name       registry name ("tuss", "conv_tasnet", ...)
    model_config     dataclasses.asdict(config): numbers, strings, bools, tuples, dicts
    model            the model's state dict (tensors)
    optimizer        optimizer.state_dict() or None
    scheduler        scheduler.state_dict() or None
    step             int
    metrics          dict of plain values (e.g. {"best_si_sdri": 9.1, "valid_loss": -8.7})
    train_config     dict of plain values (the resolved training settings)
    versions         {"torch": .., "torchaudio": .., "workbench": ..}
    extra            dict of plain values and tensors (sampler position, RNG states, ...)

Loading uses ``torch.load(..., weights_only=True)``, whose unpickler only builds tensors and
plain containers: a file carrying any other pickled object (a class instance, a function,
a NumPy array) is refused with :class:`CheckpointError` instead of running its code. The
saver checks the same rule up front, so a checkpoint that saves always loads.

Writes go to a temporary file in the same folder, are flushed to disk and then renamed over
the target with ``os.replace``, so a crash (or ``kill -9``) mid-write leaves the previous
checkpoint intact and never a truncated one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models import registry

#: Version of the checkpoint dict layout; bump on incompatible changes.
FORMAT_VERSION = 1

REQUIRED_KEYS: tuple[str, ...] = (
    "format_version",
    "model_name",
    "model_config",
    "model",
    "step",
)

_PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A checkpoint file is unsafe, corrupt or does not match the schema."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes:
        model_name: Registry name of the model.
        model_config: The model config as a plain dict (rebuild with :meth:`config`).
        model_state: The model's state dict.
        optimizer_state: Optimizer state dict, if saved.
        scheduler_state: Learning-rate scheduler state dict, if saved.
        step: Training step the state belongs to.
        metrics: Plain metric values.
        train_config: Plain training settings.
        versions: Library versions that wrote the file.
        extra: Anything else a trainer needs to resume (plain values and tensors).
        format_version: Layout version of the file.
    """

    model_name: str
    model_config: dict[str, Any]
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def config(self) -> Any:
        """The model's frozen config dataclass, rebuilt through the registry."""
        try:
            return registry.config_from_dict(self.model_name, self.model_config)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"The checkpoint's config for model '{self.model_name}' cannot be rebuilt: {exc}"
            ) from exc

    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Build the registered model from the stored config and load the stored weights.

        Args:
            device: Where to put the model.

        Returns:
            The model in training mode (call ``eval()`` for inference).
        """
        model = registry.build_model(self.model_name, self.config())
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"The checkpoint's weights do not fit model '{self.model_name}': {exc}"
            ) from exc
        return model.to(device)


def library_versions() -> dict[str, str]:
    """Versions of torch, torchaudio and the workbench, for the ``versions`` field."""
    versions = {"torch": str(torch.__version__)}
    try:
        import torchaudio

        versions["torchaudio"] = str(torchaudio.__version__)
    except ImportError:  # torchaudio is a dependency, but a checkpoint must still save
        versions["torchaudio"] = "missing"
    try:
        versions["workbench"] = importlib.metadata.version("audio-workbench")
    except importlib.metadata.PackageNotFoundError:
        versions["workbench"] = "unknown"
    return versions


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``value`` loads under ``weights_only=True``.

    Allowed: tensors, ``torch.Size``, ``torch.dtype``, ``torch.device``, strings, numbers,
    booleans, ``None`` and dicts, lists and tuples of those.

    Args:
        value: The object to check.
        where: Its path in the checkpoint, for the message.
    """
    # Exact types: a NumPy float64 *is* a float but pickles as a NumPy object.
    if type(value) in _PLAIN_TYPES or isinstance(
        value, Tensor | torch.Size | torch.dtype | torch.device
    ):
        return
    if isinstance(value, Mapping) and type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, _PLAIN_TYPES):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}.")
            check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    hint = ""
    if type(value).__module__ == "numpy":
        hint = " Convert NumPy values with .tolist() or torch.from_numpy()."
    raise CheckpointError(
        f"{where} holds a {type(value).__module__}.{type(value).__qualname__}, which a "
        f"weights-only checkpoint cannot store.{hint}"
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    model_name: str,
    config: Any | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    step: int = 0,
    metrics: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: Destination file (conventionally ``checkpoint.pt``); its folder must exist.
        model: The model; its ``state_dict()`` is stored.
        model_name: Registry name used to rebuild it.
        config: The model's config dataclass (or plain dict); defaults to ``model.config``.
        optimizer: Optimizer whose state is stored.
        scheduler: Learning-rate scheduler whose state is stored.
        step: Training step.
        metrics: Plain metric values.
        train_config: Plain training settings.
        extra: Further plain values or tensors (RNG states, sampler position...).

    Returns:
        The path written.
    """
    registry.get_spec(model_name)  # unknown names fail here, not at load time
    if config is None:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("Pass config=...: the model has no .config attribute.")
    config_dict = (
        registry.config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    )
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_config": config_dict,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}),
        "versions": library_versions(),
        "extra": dict(extra or {}),
    }
    check_plain(payload)
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary sibling, fsync, then ``os.replace`` onto ``path``."""
    destination = Path(path)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(destination.parent)
    return destination


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not supported everywhere (Windows), hence best effort.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def safe_torch_load(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with plain errors for unsafe or broken files.

    Args:
        path: File to read.
        map_location: Passed to ``torch.load``.

    Returns:
        The loaded object (tensors and plain containers only).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file holds pickled objects other than tensors and plain
            values, or is not a torch file.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"No such checkpoint file: {file_path}")
    try:
        return torch.load(file_path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()
        reason = next((line for line in detail if "Unsupported global" in line), "")
        raise CheckpointError(
            f"Refusing to load {file_path}: it contains pickled Python objects, not only "
            "tensors and plain values, and loading it could run arbitrary code. "
            + (f"({reason.strip()})" if reason else "")
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{file_path} is not a readable torch file: {exc}") from exc


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> Checkpoint:
    """Read and validate a checkpoint without building the model.

    Args:
        path: Checkpoint file.
        map_location: Where tensors are loaded (``"cpu"`` by default).

    Returns:
        The :class:`Checkpoint`.
    """
    payload = safe_torch_load(path, map_location)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict.")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a workbench checkpoint: missing {missing}.")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this version reads up to "
            f"{FORMAT_VERSION}. Update the workbench."
        )
    if not isinstance(payload["model_config"], Mapping) or not isinstance(
        payload["model"], Mapping
    ):
        raise CheckpointError(f"{path}: model_config and model must be dicts.")
    return Checkpoint(
        model_name=str(payload["model_name"]),
        model_config=dict(payload["model_config"]),
        model_state=dict(payload["model"]),
        optimizer_state=payload.get("optimizer"),
        scheduler_state=payload.get("scheduler"),
        step=int(payload["step"]),
        metrics=dict(payload.get("metrics") or {}),
        train_config=dict(payload.get("train_config") or {}),
        versions=dict(payload.get("versions") or {}),
        extra=dict(payload.get("extra") or {}),
        format_version=version,
    )


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """Read a checkpoint and rebuild its model through the registry.

    Args:
        path: Checkpoint file.
        device: Where to put the model.

    Returns:
        ``(model, checkpoint)``: the model with the stored weights (in training mode, so a
        trainer can resume; call ``eval()`` for inference) and the full checkpoint, whose
        ``optimizer_state`` / ``scheduler_state`` go to ``load_state_dict`` of freshly built
        optimizer and scheduler.
    """
    checkpoint = read_checkpoint(path)
    try:
        registry.get_spec(checkpoint.model_name)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from exc
    return checkpoint.build_model(device), checkpoint
