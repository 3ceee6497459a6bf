"""Starting the window: logging, Qt application, theme, the audio engine, then the window."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Sequence

from workbench.paths import log_file

log = logging.getLogger("workbench")


def setup_logging() -> None:
    """Log to a rotating file in the user data folder (and warnings to stderr)."""
    root = logging.getLogger()
    if any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        return
    handler = logging.handlers.RotatingFileHandler(
        log_file(), maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def create_settings():
    from PySide6.QtCore import QSettings

    return QSettings("audio-workbench", "Audio Workbench")


def create_window(paths: Sequence[str] = (), settings=None, engine=None):
    """Build the engine (unless given) and the window (used by :func:`run_app` and tests)."""
    from workbench.audio.engine import AudioEngine
    from workbench.compute import catalog_task, detect_task
    from workbench.services import default_services
    from workbench.views.main_window import MainWindow
    from workbench.workers import Task

    engine = engine if engine is not None else AudioEngine()
    if not engine.available:
        log.warning("%s", engine.unavailable_reason)
    window = MainWindow(
        engine, settings if settings is not None else create_settings(), default_services()
    )
    task = Task(detect_task, name="Detect compute device")
    task.returned.connect(window.set_compute_device)
    task.errored.connect(lambda exc: window.set_compute_device(f"unavailable ({exc})"))
    window.compute_task = task.start()
    catalog = Task(catalog_task, name="Read model library")
    catalog.returned.connect(window.set_model_catalog)
    catalog.errored.connect(lambda exc: log.error("Model library failed to load: %s", exc))
    window.catalog_task = catalog.start()
    if paths:
        window.open_paths(list(paths))
    return window


def run_app(paths: Sequence[str]) -> int:
    """Open the main window (with ``paths`` loaded) and run the event loop."""
    setup_logging()
    from PySide6.QtWidgets import QApplication

    from workbench.views.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Audio Workbench")
    app.setOrganizationName("audio-workbench")
    settings = create_settings()
    apply_theme(app, str(settings.value("theme", "dark")))
    window = create_window(paths, settings)
    window.show()
    return int(app.exec())
