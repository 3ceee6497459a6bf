"""One registry from stable model names to their config class, module class and presets.

Each model family module (``models/tuss.py``, ``models/mtass.py``...) defines a module-level
``MODEL_SPECS: dict[str, ModelSpec]``. This module imports the families listed in
:data:`FAMILY_MODULES` and merges their specs, so adding a family is one line here and no
family module ever edits another. The GUI's model pickers, the CLI and the checkpoint loader
all read :func:`registry`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from torch import nn

Task = Literal["separation", "speaker"]

#: Family modules contributing ``MODEL_SPECS``; a missing module is skipped (work in progress).
FAMILY_MODULES: tuple[str, ...] = (
    "models.tuss",
    "models.mtass",
    "models.conv_tasnet",
    "models.nas_tasnet",
    "models.speaker_encoders",
    "models.autospeech",
)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model.

    Attributes:
        name: Stable registry name (``"tuss"``, ``"mtass"``, ``"conv_tasnet"``...).
        task: ``"separation"`` or ``"speaker"``.
        config_class: Frozen dataclass holding every architecture choice.
        model_class: ``nn.Module`` whose constructor takes one config instance.
        presets: Preset name -> zero-argument function returning a config. Every model has
            at least ``"paper"`` (the published configuration) and ``"small"`` (CPU-trainable).
        description: One line for pickers and ``workbench models``.
    """

    name: str
    task: Task
    config_class: type
    model_class: type[nn.Module]
    presets: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    description: str = ""

    def config(self, preset: str = "small", **overrides: Any) -> Any:
        """The named preset with ``overrides`` applied (``dataclasses.replace``)."""
        if preset not in self.presets:
            raise KeyError(
                f"Model '{self.name}' has no preset '{preset}'. "
                f"Valid presets: {', '.join(sorted(self.presets))}."
            )
        config = self.presets[preset]()
        return dataclasses.replace(config, **overrides) if overrides else config


@cache
def registry() -> dict[str, ModelSpec]:
    """All registered models by name."""
    specs: dict[str, ModelSpec] = {}
    for module_name in FAMILY_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        for name, spec in getattr(module, "MODEL_SPECS", {}).items():
            if name in specs:
                raise RuntimeError(f"Model name '{name}' is registered twice ({module_name}).")
            specs[name] = spec
    return specs


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    specs = registry()
    if name not in specs:
        raise KeyError(f"Unknown model '{name}'. Valid models: {', '.join(sorted(specs))}.")
    return specs[name]


def config_from_dict(name: str, values: Mapping[str, Any]) -> Any:
    """Rebuild a model's config from the plain dict a checkpoint carries.

    Nested dataclass fields and tuples are restored from the lists JSON/torch saved them as.
    """
    return _dataclass_from_dict(get_spec(name).config_class, values)


def _dataclass_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    import typing

    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}.")
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        hint = _dataclass_in(hints.get(f.name))
        if hint is not None and isinstance(value, Mapping):
            value = _dataclass_from_dict(hint, value)
        elif isinstance(value, list):
            value = _to_tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field hint names, also inside ``Optional[...]`` / ``X | None``."""
    import typing

    if dataclasses.is_dataclass(hint):
        return hint
    for member in typing.get_args(hint):
        if dataclasses.is_dataclass(member):
            return member
    return None


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain Python (dicts, lists, numbers, strings) for checkpoints and JSON."""
    return dataclasses.asdict(config)


def build_model(name: str, config: Any | None = None, preset: str = "small") -> nn.Module:
    """Build model ``name`` from ``config`` (a config instance or dict) or from ``preset``."""
    spec = get_spec(name)
    if config is None:
        config = spec.config(preset)
    elif isinstance(config, Mapping):
        config = config_from_dict(name, config)
    return spec.model_class(config)
