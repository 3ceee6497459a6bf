"""Errors the user sees: a plain-language message plus technical details for the log."""

from __future__ import annotations


class WorkbenchError(Exception):
    """An error with a message meant for people, not programmers.

    Args:
        message: One or two sentences saying what went wrong and what to do about it.
        details: Technical detail (paths, library messages) shown behind "copy details".
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.details else f"{self.message} ({self.details})"


class AudioFileError(WorkbenchError):
    """A file could not be read or written as audio."""


class AudioDeviceError(WorkbenchError):
    """No usable audio device, or the device failed while in use."""
