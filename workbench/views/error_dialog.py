"""Plain-language error dialog with "Copy details" and the log file's location."""

from __future__ import annotations

import logging
import traceback

from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from workbench.errors import WorkbenchError
from workbench.paths import log_file

log = logging.getLogger(__name__)


def describe(error: BaseException) -> tuple[str, str]:
    """``(message, details)`` for any exception: our own carry plain text already."""
    if isinstance(error, WorkbenchError):
        details = error.details
        message = error.message
    else:
        message = f"Something went wrong: {error}"
        details = ""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    details = f"{details}\n\n{trace}".strip() if details else trace.strip()
    return message, details


def show_error(parent: QWidget | None, title: str, error: BaseException | str) -> QMessageBox:
    """Log ``error`` and show it without blocking the event loop (the box is non-modal)."""
    if isinstance(error, str):
        message, details = error, ""
    else:
        message, details = describe(error)
    log.error("%s: %s\n%s", title, message, details)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(message)
    box.setInformativeText(f"The log is kept in {log_file()}")
    if details:
        box.setDetailedText(details)
    copy = box.addButton("Copy details", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Close)
    copy.clicked.disconnect()
    copy.clicked.connect(
        lambda: QApplication.clipboard().setText(f"{title}\n{message}\n\n{details}")
    )
    box.setModal(False)
    box.show()
    return box
