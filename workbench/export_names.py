"""Export file names from a template, without ever silently replacing a file."""

from __future__ import annotations

import datetime as _dt
import re
import string
from pathlib import Path

DEFAULT_TEMPLATE = "{mixture}_{track}"
FIELDS = ("track", "mixture", "index", "date", "rate")
_UNSAFE = re.compile(r"[^\w\-. ]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (keeps letters, digits, ``-_. ``)."""
    cleaned = _UNSAFE.sub("_", text).strip(" .")
    return cleaned or "track"


def validate_template(template: str) -> None:
    """Raise ``ValueError`` in plain words if ``template`` uses an unknown field."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in FIELDS:
            raise ValueError(
                f"Unknown field {{{field}}} in the naming template. "
                f"Use any of: {', '.join('{' + f + '}' for f in FIELDS)}."
            )
    if not template.strip():
        raise ValueError("The naming template is empty.")


def render_name(
    template: str, *, track: str, mixture: str, index: int, rate: int, extension: str
) -> str:
    """Fill ``template`` and append ``.extension``; every field is made file-name safe."""
    validate_template(template)
    values = {
        "track": safe_name(track),
        "mixture": safe_name(mixture),
        "index": f"{index:02d}",
        "date": _dt.date.today().isoformat(),
        "rate": str(rate),
    }
    return safe_name(template.format(**values)) + "." + extension.lstrip(".")


def unique_path(path: Path, taken: set[Path] | None = None) -> Path:
    """``path`` itself if free, else ``name (2).ext``, ``name (3).ext``..."""
    taken = taken or set()
    if not path.exists() and path not in taken:
        return path
    number = 2
    while True:
        candidate = path.with_name(f"{path.stem} ({number}){path.suffix}")
        if not candidate.exists() and candidate not in taken:
            return candidate
        number += 1
