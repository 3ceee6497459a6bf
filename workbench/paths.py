"""Where the workbench keeps its files (per-user data, logs, recordings)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "audio-workbench"


def data_dir() -> Path:
    """Per-user data folder (``$WORKBENCH_DATA_DIR`` or XDG data home), created on demand."""
    root = os.environ.get("WORKBENCH_DATA_DIR")
    if root:
        path = Path(root)
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg) / APP_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_file() -> Path:
    return log_dir() / "workbench.log"


def recordings_dir() -> Path:
    path = data_dir() / "recordings"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """The shipped ``resources/`` folder (bundles, icons, default configs)."""
    return Path(__file__).resolve().parent.parent / "resources"
