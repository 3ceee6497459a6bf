"""Inference bundles: a model the app can open, with what it needs to be used and described.

A bundle is a folder::

    resources/bundles/<name>/
        bundle.json   name, model_name, task, sample_rate, sources / prompts, config,
                      trained, threshold, chunk settings, file names, versions
        weights.pt    the model's state dict only (loaded with weights_only=True)
        MODEL_CARD.md what it is, how it was trained, what it reaches

Shipped bundles live under ``resources/bundles``; further folders can be searched by passing
``roots`` or listing them in ``$WORKBENCH_BUNDLE_PATH`` (``os.pathsep``-separated), which is
how the app adds models trained in its Jobs panel. A training checkpoint file
(``checkpoint.pt`` / ``best.pt`` of :mod:`models.checkpoint`) can also be opened as a bundle.

:func:`default_bundle` answers "what does the app open with for this task": the shipped
bundle when it exists, otherwise an *untrained* placeholder built from the small preset, with
``trained=False`` so every consumer can say so plainly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import registry
from models.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    library_versions,
    read_checkpoint,
    safe_torch_load,
)

#: Version of the ``bundle.json`` layout.
BUNDLE_FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"
MODEL_CARD_FILE = "MODEL_CARD.md"
#: Environment variable listing extra bundle folders.
BUNDLE_PATH_VARIABLE = "WORKBENCH_BUNDLE_PATH"
#: Seed of the random initialisation of untrained placeholders, so they are reproducible.
PLACEHOLDER_SEED = 0


def shipped_bundles_dir() -> Path:
    """``resources/bundles`` next to the ``models`` package."""
    return Path(__file__).resolve().parent.parent / "resources" / "bundles"


class BundleError(ValueError):
    """A bundle folder or file is missing pieces or does not match the schema."""


@dataclass(frozen=True)
class Bundle:
    """A model ready for inference, with its metadata.

    Attributes:
        name: Bundle name (the folder name for shipped bundles).
        model_name: Registry name of the architecture.
        task: ``"separation"`` or ``"speaker"``.
        sample_rate: Rate the model runs at, in Hz.
        sources: Output labels of a fixed-output separator (``("speech", "music", "noise")``);
            empty for prompted models and speaker encoders.
        prompts: Prompts a prompted model understands (TUSS); empty otherwise.
        config: The model config as a plain dict.
        weights_path: State-dict file (or a training checkpoint), ``None`` for an untrained
            placeholder.
        model_card_path: Markdown model card, if any.
        trained: False for placeholders with random weights; consumers must say so.
        threshold: Speaker models: calibrated accept threshold on the cosine score.
        description: One line for pickers.
        chunk_seconds: Preferred chunk length for offline separation (``None``: default).
        overlap_seconds: Preferred crossfade between chunks (``None``: default).
        path: The bundle folder (or checkpoint file) it was read from.
        extra: Further plain metadata from ``bundle.json``.
    """

    name: str
    model_name: str
    task: str
    sample_rate: int
    config: Mapping[str, Any]
    sources: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    weights_path: Path | None = None
    model_card_path: Path | None = None
    trained: bool = True
    threshold: float | None = None
    description: str = ""
    chunk_seconds: float | None = None
    overlap_seconds: float | None = None
    path: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A display name that marks untrained placeholders."""
        return self.name if self.trained else f"{self.name} (untrained placeholder)"

    def model_config(self) -> Any:
        """The frozen config dataclass, rebuilt through the registry."""
        return registry.config_from_dict(self.model_name, self.config)


def _model_io(model_name: str, config: Any) -> tuple[str, int, tuple[str, ...], tuple[str, ...]]:
    """Task, sample rate, sources and prompts implied by a registered model and config."""
    spec = registry.get_spec(model_name)
    config_object = (
        config
        if dataclasses.is_dataclass(config)
        else registry.config_from_dict(model_name, config)
    )
    sources = tuple(getattr(config_object, "source_names", ()) or ())
    prompts = tuple(getattr(spec.model_class, "PROMPTS", ()) or ())
    return spec.task, int(config_object.sample_rate), sources, prompts


def bundle_from_config(
    name: str,
    model_name: str,
    config: Any,
    weights_path: Path | None = None,
    trained: bool = True,
    **fields: Any,
) -> Bundle:
    """A :class:`Bundle` for a registered model, filling task, rate, sources and prompts.

    Args:
        name: Bundle name.
        model_name: Registry name.
        config: Config dataclass or plain dict.
        weights_path: Weights file, if any.
        trained: Whether the weights are trained.
        **fields: Other :class:`Bundle` fields (threshold, description, ...).

    Returns:
        The bundle.
    """
    task, sample_rate, sources, prompts = _model_io(model_name, config)
    config_dict = (
        registry.config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    )
    return Bundle(
        name=name,
        model_name=model_name,
        task=task,
        sample_rate=sample_rate,
        config=config_dict,
        sources=sources,
        prompts=prompts,
        weights_path=weights_path,
        trained=trained,
        **fields,
    )


def _search_roots(roots: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    if roots is not None:
        return [Path(root) for root in roots]
    paths = [shipped_bundles_dir()]
    extra = os.environ.get(BUNDLE_PATH_VARIABLE, "")
    paths.extend(Path(entry) for entry in extra.split(os.pathsep) if entry)
    return paths


def list_bundles(roots: Sequence[str | os.PathLike[str]] | None = None) -> list[Bundle]:
    """Every readable bundle folder directly under the search roots.

    Args:
        roots: Folders to search; defaults to the shipped folder and
            ``$WORKBENCH_BUNDLE_PATH``.

    Returns:
        Bundles sorted by name (a name found twice keeps the first root's).
    """
    found: dict[str, Bundle] = {}
    for root in _search_roots(roots):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / BUNDLE_FILE).is_file():
                try:
                    bundle = _read_bundle_folder(folder)
                except (BundleError, KeyError):
                    continue  # a broken or foreign folder must not hide the others
                found.setdefault(bundle.name, bundle)
    return [found[name] for name in sorted(found)]


def load_bundle(
    path_or_name: str | os.PathLike[str],
    roots: Sequence[str | os.PathLike[str]] | None = None,
) -> Bundle:
    """Open a bundle by folder, ``bundle.json`` file, checkpoint file or name.

    Args:
        path_or_name: A bundle folder, its ``bundle.json``, a training checkpoint (``.pt``)
            or the name of a bundle under the search roots.
        roots: Folders searched for a name (see :func:`list_bundles`).

    Returns:
        The bundle.

    Raises:
        KeyError: For a name that matches no bundle (the message lists the known ones).
        BundleError: For a folder or file that is not a valid bundle.
    """
    path = Path(path_or_name)
    if path.is_dir():
        return _read_bundle_folder(path)
    if path.is_file():
        if path.name == BUNDLE_FILE:
            return _read_bundle_folder(path.parent)
        return bundle_from_checkpoint(path)
    name = str(path_or_name)
    for root in _search_roots(roots):
        if (root / name / BUNDLE_FILE).is_file():
            return _read_bundle_folder(root / name)
    known = ", ".join(bundle.name for bundle in list_bundles(roots)) or "none"
    raise KeyError(
        f"Unknown bundle '{name}' (not a folder or file either). Known bundles: {known}."
    )


def bundle_from_checkpoint(path: str | os.PathLike[str], name: str | None = None) -> Bundle:
    """Treat a training checkpoint as a bundle (its weights are read from the checkpoint).

    Args:
        path: A checkpoint written by :func:`models.checkpoint.save_checkpoint`.
        name: Bundle name; defaults to ``<run folder>/<file stem>``.

    Returns:
        The bundle, ``trained=True``, ``threshold`` from ``metrics["threshold"]`` if present.
    """
    checkpoint_path = Path(path)
    try:
        checkpoint = read_checkpoint(checkpoint_path)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from exc
    threshold = checkpoint.metrics.get("threshold")
    return bundle_from_config(
        name or f"{checkpoint_path.parent.name}/{checkpoint_path.stem}",
        checkpoint.model_name,
        checkpoint.model_config,
        weights_path=checkpoint_path,
        trained=True,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
        description=f"{checkpoint.model_name} checkpoint at step {checkpoint.step}",
        path=checkpoint_path,
    )


def _read_bundle_folder(folder: Path) -> Bundle:
    json_path = folder / BUNDLE_FILE
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{folder} is not a bundle: it has no {BUNDLE_FILE}.") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{json_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{json_path} must hold a JSON object.")
    missing = [key for key in ("name", "model_name", "config") if key not in data]
    if missing:
        raise BundleError(f"{json_path} is missing {missing}.")
    if int(data.get("format_version", 1)) > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{json_path} has bundle format {data['format_version']}; this version reads up to "
            f"{BUNDLE_FORMAT_VERSION}."
        )
    weights_name = data.get("weights")
    weights_path = folder / weights_name if weights_name else None
    trained = bool(data.get("trained", weights_path is not None))
    if weights_path is not None and not weights_path.is_file():
        raise BundleError(f"{folder}: the weights file {weights_name} is missing.")
    if trained and weights_path is None:
        raise BundleError(f"{json_path} says trained but names no weights file.")
    card_name = data.get("model_card")
    card_path = folder / card_name if card_name and (folder / card_name).is_file() else None
    try:
        base = bundle_from_config(
            str(data["name"]), str(data["model_name"]), data["config"], weights_path, trained
        )
    except (TypeError, ValueError) as exc:
        raise BundleError(
            f"{json_path}: the config does not fit '{data['model_name']}': {exc}"
        ) from exc
    known = {f.name for f in dataclasses.fields(Bundle)}
    threshold = data.get("threshold")
    return dataclasses.replace(
        base,
        sample_rate=int(data.get("sample_rate", base.sample_rate)),
        sources=tuple(data.get("sources", base.sources)),
        prompts=tuple(data.get("prompts", base.prompts)),
        model_card_path=card_path,
        threshold=float(threshold) if threshold is not None else None,
        description=str(data.get("description", "")),
        chunk_seconds=data.get("chunk_seconds"),
        overlap_seconds=data.get("overlap_seconds"),
        path=folder,
        extra={key: value for key, value in data.items() if key not in known},
    )


def save_bundle(
    folder: str | os.PathLike[str],
    model: nn.Module,
    model_name: str,
    name: str | None = None,
    config: Any | None = None,
    trained: bool = True,
    threshold: float | None = None,
    description: str = "",
    model_card: str | None = None,
    chunk_seconds: float | None = None,
    overlap_seconds: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Bundle:
    """Write ``model`` as a bundle folder (weights first, then ``bundle.json``, both atomic).

    Args:
        folder: Destination folder, created if needed (``resources/bundles/<name>`` to ship).
        model: The model; only its state dict is written, moved to CPU.
        model_name: Registry name.
        name: Bundle name; defaults to the folder name.
        config: Config dataclass or dict; defaults to ``model.config``.
        trained: False marks an untrained placeholder.
        threshold: Speaker models: calibrated accept threshold.
        description: One line for pickers.
        model_card: Markdown text of the model card, written to ``MODEL_CARD.md``.
        chunk_seconds: Preferred offline chunk length.
        overlap_seconds: Preferred offline crossfade.
        extra: Further plain JSON metadata (e.g. training run, metrics).

    Returns:
        The bundle as :func:`load_bundle` will read it.
    """
    destination = Path(folder)
    destination.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("Pass config=...: the model has no .config attribute.")
    task, sample_rate, sources, prompts = _model_io(model_name, config)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    atomic_torch_save(state, destination / WEIGHTS_FILE)
    if model_card is not None:
        _atomic_write_text(destination / MODEL_CARD_FILE, model_card)
    config_dict = (
        registry.config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    )
    data = {
        **dict(extra or {}),
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": name or destination.name,
        "model_name": model_name,
        "task": task,
        "sample_rate": sample_rate,
        "sources": list(sources),
        "prompts": list(prompts),
        "config": config_dict,
        "weights": WEIGHTS_FILE,
        "model_card": MODEL_CARD_FILE if model_card is not None else None,
        "trained": trained,
        "threshold": threshold,
        "description": description,
        "chunk_seconds": chunk_seconds,
        "overlap_seconds": overlap_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": library_versions(),
    }
    _atomic_write_text(destination / BUNDLE_FILE, json.dumps(data, indent=2) + "\n")
    return _read_bundle_folder(destination)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def get_model(
    bundle: Bundle | str | os.PathLike[str], device: str | torch.device = "cpu"
) -> nn.Module:
    """Build a bundle's model, load its weights safely and switch it to ``eval()``.

    Args:
        bundle: A :class:`Bundle`, or anything :func:`load_bundle` accepts.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when available) or a device.

    Returns:
        The model in evaluation mode on ``device``. An untrained placeholder gets the
        reproducible random initialisation of :data:`PLACEHOLDER_SEED`.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    target = resolve_device(device)
    if bundle.weights_path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PLACEHOLDER_SEED)
            model = registry.build_model(bundle.model_name, bundle.config)
    else:
        model = registry.build_model(bundle.model_name, bundle.config)
        state = safe_torch_load(bundle.weights_path)
        if isinstance(state, Mapping) and "format_version" in state and "model" in state:
            state = state["model"]  # a training checkpoint opened as a bundle
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise BundleError(
                f"The weights in {bundle.weights_path} do not fit '{bundle.model_name}': {exc}"
            ) from exc
    return model.to(target).eval()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` / ``None`` -> CUDA when available, else CPU; other values as given."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but is not available on this machine.")
    return resolved


@dataclass(frozen=True)
class DefaultBundle:
    """Which bundle the app opens with for a task, and the placeholder when none is shipped.

    Attributes:
        bundle_name: Folder name under ``resources/bundles``.
        model_name: Registry name of the placeholder architecture.
        preset: Preset of the placeholder.
        description: One line for pickers.
    """

    bundle_name: str
    model_name: str
    preset: str
    description: str


#: Default bundle per task key (the keys the separation panel, CLI and live panel use).
DEFAULT_BUNDLES: dict[str, DefaultBundle] = {
    "tuss": DefaultBundle("tuss", "tuss", "small", "TUSS prompted separation, 8 prompts"),
    "mtass": DefaultBundle("mtass", "mtass", "small", "Speech / music / noise (MTASS)"),
    "speech": DefaultBundle(
        "speech-separator", "conv_tasnet", "small", "Two-talker speech separation"
    ),
    "live": DefaultBundle(
        "live-enhancement", "conv_tasnet", "causal_small", "Causal low-latency enhancement"
    ),
    "speaker": DefaultBundle("speaker-encoder", "dtdnn", "small", "Speaker embeddings"),
}


def default_bundle(task: str, roots: Sequence[str | os.PathLike[str]] | None = None) -> Bundle:
    """The shipped bundle for ``task``, or an untrained placeholder when none is shipped.

    Args:
        task: A key of :data:`DEFAULT_BUNDLES` (``tuss``, ``mtass``, ``speech``, ``live``,
            ``speaker``).
        roots: Folders searched for the shipped bundle (see :func:`list_bundles`).

    Returns:
        The bundle; a placeholder has ``trained=False``, no weights and a description that
        starts with ``"UNTRAINED"``.
    """
    if task not in DEFAULT_BUNDLES:
        raise KeyError(f"Unknown task '{task}'. Valid tasks: {', '.join(DEFAULT_BUNDLES)}.")
    default = DEFAULT_BUNDLES[task]
    for root in _search_roots(roots):
        if (root / default.bundle_name / BUNDLE_FILE).is_file():
            return _read_bundle_folder(root / default.bundle_name)
    config = registry.get_spec(default.model_name).config(default.preset)
    # A distinct name: voiceprints and thresholds are filed under the bundle name, and must
    # never be compared with those of the trained bundle that later takes the plain name.
    return bundle_from_config(
        f"{default.bundle_name}-untrained",
        default.model_name,
        config,
        weights_path=None,
        trained=False,
        description=(
            f"UNTRAINED placeholder ({default.model_name} '{default.preset}' preset with random "
            f"weights): {default.description}. Outputs are not meaningful until a trained "
            "bundle is shipped or selected."
        ),
    )
