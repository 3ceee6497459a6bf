"""What a training run is: one frozen :class:`TrainConfig`, saved as ``config.json``.

The config names the model (registry name, preset and field overrides), the data and every
optimisation choice. ``workbench train --set key=value`` edits it: plain keys are
:class:`TrainConfig` fields (``lr=3e-4``), ``model.KEY`` keys are fields of the model's own
config (``model.emb_dim=16``, nested with dots: ``model.cross_prompt.num_heads=1``) and
``data.KEY`` keys are dataset options (``data.num_speakers=3``) and ``task.KEY`` keys options
of the family's training adapter (``task.snr_max=20``). A plain key that only the
model config has is taken as a model override, so ``--set emb_dim=16`` works too.

Overrides are stored as ``((key, value), ...)`` so the config stays frozen, hashable and
JSON-round-trippable; :func:`model_config` applies them to the preset.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from models.registry import get_spec

SCHEDULES: tuple[str, ...] = ("cosine", "constant")

#: Fields that may differ when an existing run folder is resumed (budget and loading, which do
#: not change what is computed).
RESUMABLE_CHANGES: tuple[str, ...] = ("max_steps", "max_minutes", "num_workers")

Override = tuple[str, Any]

#: Name of the resolved config in a run folder.
CONFIG_FILE = "config.json"

#: The ``(key, value)`` tuple fields and their ``--set`` prefixes.
OPTION_FIELDS: tuple[str, ...] = ("overrides", "data_options", "task_options")


class SettingsError(ValueError):
    """A training setting is unknown or invalid (a usage error: nothing was trained)."""


class RunFolderError(SettingsError):
    """The run folder holds a run with other settings."""


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of one training run.

    Attributes:
        model: Registry name (``"tuss"``, ``"mtass"``, ``"conv_tasnet"``, ``"dtdnn"``...).
        preset: Preset of that model (``"small"``, ``"paper"``...).
        overrides: ``(field, value)`` pairs applied to the preset's config; dotted fields
            reach into nested configs.
        data: ``"synthetic"``, a corpus root or manifest from ``workbench data build``, or a
            folder in a standard public layout.
        data_options: ``(option, value)`` pairs passed to the dataset constructor.
        task_options: ``(option, value)`` pairs for the family's training adapter (loss
            settings such as TUSS's ``snr_max`` or the AAM-softmax ``margin``).
        batch_size: Examples per step on each process (the global batch is ``batch_size``
            times the number of processes).
        segment_seconds: Length of each training example.
        valid_segment_seconds: Length of each validation example.
        valid_items: Validation examples (separation) or trial utterances drawn (speakers).
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW decoupled weight decay.
        warmup_steps: Linear warm-up from 0 to ``lr``.
        schedule: ``"cosine"`` (decay to ``min_lr_ratio * lr`` at ``max_steps``) or
            ``"constant"`` after warm-up.
        min_lr_ratio: Floor of the cosine schedule, as a fraction of ``lr``.
        grad_clip: Maximum global gradient norm (0 disables clipping).
        valid_interval: Validate every this many steps (and at the end).
        log_interval: Write a ``train`` row to ``metrics.jsonl`` every this many steps.
        checkpoint_minutes: Write ``checkpoint.pt`` at least this often (0: after every step,
            for tests); ``kill -9`` loses at most this much work.
        patience: Stop after this many validations without improvement (0: never).
        aux_loss_weight: Weight of the model's auxiliary loss, if it has one (NAS-TasNet's
            per-repeat loss); 0 disables it.
        seed: Seeds the model initialisation, the data order and every random draw.
        max_steps: Total optimiser steps of the run (across resumes).
        max_minutes: Wall-clock budget of this invocation (0: unlimited); when it is spent
            the job checkpoints and stops, and running it again continues.
        num_workers: Data-loading worker processes (0 loads in the training process; mixing
            on the fly costs tens of milliseconds per example, so use a few on a GPU).
    """

    model: str
    preset: str = "small"
    overrides: tuple[Override, ...] = ()
    data: str = "synthetic"
    data_options: tuple[Override, ...] = ()
    task_options: tuple[Override, ...] = ()
    batch_size: int = 4
    segment_seconds: float = 2.0
    valid_segment_seconds: float = 4.0
    valid_items: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    valid_interval: int = 500
    log_interval: int = 10
    checkpoint_minutes: float = 5.0
    patience: int = 0
    aux_loss_weight: float = 0.0
    seed: int = 0
    max_steps: int = 20000
    max_minutes: float = 0.0
    num_workers: int = 0

    def __post_init__(self) -> None:
        positive = ("batch_size", "valid_items", "max_steps", "valid_interval", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("segment_seconds", "valid_segment_seconds", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        non_negative = (
            "weight_decay",
            "warmup_steps",
            "grad_clip",
            "checkpoint_minutes",
            "patience",
            "aux_loss_weight",
            "max_minutes",
            "min_lr_ratio",
            "num_workers",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown schedule '{self.schedule}'. Valid schedules: {', '.join(SCHEDULES)}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (overrides as ``{key: value}`` objects)."""
        values = dataclasses.asdict(self)
        values["overrides"] = dict(self.overrides)
        values["data_options"] = dict(self.data_options)
        values["task_options"] = dict(self.task_options)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training settings {unknown}. Valid: {sorted(known)}.")
        values = dict(values)
        for name in OPTION_FIELDS:
            items = values.get(name, ())
            pairs = items.items() if isinstance(items, Mapping) else items
            values[name] = tuple((str(key), _freeze(value)) for key, value in pairs)
        return cls(**values)


def _freeze(value: Any) -> Any:
    """Lists (from JSON or the command line) become tuples, so configs stay hashable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``1e-3``, ``True``, ``(1, 2)``) or a string."""
    try:
        return _freeze(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def resolve_config(
    run_dir: Path,
    model: str | None = None,
    preset: str = "small",
    data: str = "synthetic",
    settings: Iterable[str] = (),
    max_steps: int | None = None,
    max_minutes: float | None = None,
) -> TrainConfig:
    """The config of ``workbench train``: from the command, or from the run folder it resumes.

    Without ``model`` the folder's ``config.json`` is the base (``--run DIR`` alone resumes);
    budget values not given keep the saved ones when resuming, the defaults otherwise.

    Raises:
        SettingsError: On a missing model for a new run, an unknown model or a bad setting.
    """
    saved_path = Path(run_dir) / CONFIG_FILE
    saved = load_config(saved_path) if saved_path.exists() else None
    budget = {"max_steps": saved.max_steps, "max_minutes": saved.max_minutes} if saved else {}
    if max_steps is not None:
        budget["max_steps"] = max_steps
    if max_minutes is not None:
        budget["max_minutes"] = max_minutes
    if model is None and saved is None:
        raise SettingsError(f"--model is required to start a new run ({run_dir} holds no run).")
    try:
        base = saved if model is None else TrainConfig(model=model, preset=preset, data=data)
        return apply_settings(dataclasses.replace(base, **budget), settings)
    except (KeyError, ValueError) as exc:  # KeyError: the registry's unknown-name message
        raise SettingsError(exc.args[0] if exc.args else str(exc)) from None


def apply_settings(config: TrainConfig, settings: Iterable[str]) -> TrainConfig:
    """Apply ``key=value`` strings from ``--set`` (see the module docstring).

    Raises:
        ValueError: On a malformed setting, an unknown key (listing the valid ones) or a
            value of the wrong type.
    """
    train_fields = {f.name: f for f in fields(TrainConfig)}
    updates: dict[str, Any] = {}
    overrides = dict(config.overrides)
    data_options = dict(config.data_options)
    task_options = dict(config.task_options)
    model_fields = _field_names(get_spec(config.model).config_class)
    for setting in settings:
        key, separator, text = setting.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"Expected --set KEY=VALUE, got '{setting}'.")
        value = parse_value(text.strip())
        if key.startswith("model."):
            overrides[key.removeprefix("model.")] = value
        elif key.startswith("data."):
            data_options[key.removeprefix("data.")] = value
        elif key.startswith("task."):
            task_options[key.removeprefix("task.")] = value
        elif key in (*OPTION_FIELDS, "model"):
            raise ValueError(f"'{key}' cannot be set with --set; use the command's options.")
        elif key in train_fields:
            updates[key] = _coerce(key, value, train_fields[key].type)
        elif key.split(".")[0] in model_fields:
            overrides[key] = value
        else:
            raise ValueError(
                f"Unknown setting '{key}'. Training settings: "
                f"{', '.join(sorted(set(train_fields) - {*OPTION_FIELDS, 'model'}))}; "
                f"model '{config.model}' fields (also as model.KEY): "
                f"{', '.join(sorted(model_fields))}; dataset options as data.KEY; loss "
                "options as task.KEY."
            )
    merged = dataclasses.replace(
        config,
        **updates,
        overrides=tuple(overrides.items()),
        data_options=tuple(data_options.items()),
        task_options=tuple(task_options.items()),
    )
    model_config(merged)  # fail now, with the field's message, not after the data is built
    return merged


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    kinds = {"int": (int, "an int"), "float": (float, "a number"), "str": (str, "a string")}
    expected, wording = kinds.get(str(annotation), (None, ""))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
        raise ValueError(f"Setting '{key}' needs {wording}, got {value!r}.")
    return value


def _field_names(config_class: type) -> set[str]:
    return {f.name for f in fields(config_class)}


def model_config(config: TrainConfig) -> Any:
    """The model's config: its preset with the overrides applied.

    Raises:
        ValueError: On an unknown preset or field, or a value the config rejects.
    """
    spec = get_spec(config.model)
    try:
        base = spec.config(config.preset)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    return _apply(base, [(key.split("."), value, key) for key, value in config.overrides])


def _apply(node: Any, overrides: list[tuple[list[str], Any, str]]) -> Any:
    """Replace fields of a config dataclass, all at once.

    One ``dataclasses.replace`` per config: fields that must change together (``n_fft`` and
    ``hop_length``) would fail the config's checks if set one by one.

    Args:
        node: A config dataclass.
        overrides: ``(path, value, full key)`` with ``path`` relative to ``node``.
    """
    names = _field_names(type(node))
    updates: dict[str, Any] = {}
    nested: dict[str, list[tuple[list[str], Any, str]]] = {}
    for path, value, full_key in overrides:
        name = path[0]
        if name not in names:
            raise ValueError(
                f"{type(node).__name__} has no field '{name}' (in '{full_key}'). "
                f"Valid fields: {', '.join(sorted(names))}."
            )
        if len(path) > 1:
            nested.setdefault(name, []).append((path[1:], value, full_key))
            continue
        value = _like(getattr(node, name), value, full_key)
        hint = typing.get_type_hints(type(node)).get(name)
        if typing.get_origin(hint) is tuple and not isinstance(value, tuple):
            value = (value,)
        updates[name] = value
    for name, items in nested.items():
        updates[name] = _apply(getattr(node, name), items)
    try:
        return dataclasses.replace(node, **updates)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{key}={value!r}" for _, value, key in overrides)
        raise ValueError(f"Settings {given} were rejected: {exc}") from None


def _like(current: Any, value: Any, key: str) -> Any:
    """``value`` checked against the type of the field's current value."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"Setting '{key}' needs True or False, got {value!r}.")
    wants_int = isinstance(current, int) and not isinstance(current, bool)
    if wants_int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"Setting '{key}' needs an int, got {value!r}.")
    if isinstance(current, float):
        if not is_number:
            raise ValueError(f"Setting '{key}' needs a number, got {value!r}.")
        return float(value)
    if isinstance(current, str) and not isinstance(value, str):
        raise ValueError(f"Setting '{key}' needs a string, got {value!r}.")
    return value


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as ``config.json`` (with the resolved model config)."""
    payload = {
        **config.to_dict(),
        "resolved_model_config": dataclasses.asdict(model_config(config)),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def load_config(path: Path) -> TrainConfig:
    """Read ``config.json`` back (the resolved model config is informational)."""
    values = json.loads(path.read_text())
    values.pop("resolved_model_config", None)
    return TrainConfig.from_dict(values)


def differences(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    """Fields (other than :data:`RESUMABLE_CHANGES`) where a requested config differs from a saved run."""
    return [
        f"{f.name}: run has {getattr(saved, f.name)!r}, command gives {getattr(requested, f.name)!r}"
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(requested, f.name)
    ]
