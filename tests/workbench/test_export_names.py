"""Export naming templates and the no-silent-overwrite rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.export_names import render_name, unique_path, validate_template
from workbench.session import Track
from workbench.views.export_dialog import plan_export


def test_template_fields_and_safety() -> None:
    name = render_name(
        "{mixture}_{index}_{track}",
        track="vocals/lead",
        mixture="My Song",
        index=3,
        rate=44100,
        extension="flac",
    )
    assert name == "My Song_03_vocals_lead.flac"
    with pytest.raises(ValueError, match="Unknown field"):
        validate_template("{nope}")
    with pytest.raises(ValueError, match="empty"):
        validate_template("  ")


def test_unique_path_numbers_instead_of_overwriting(tmp_path: Path) -> None:
    existing = tmp_path / "a.wav"
    existing.write_bytes(b"x")
    assert unique_path(existing) == tmp_path / "a (2).wav"
    assert unique_path(tmp_path / "b.wav") == tmp_path / "b.wav"


def _track(name: str, subtype: str | None = "PCM_16") -> Track:
    return Track(
        name,
        np.zeros((10, 2), dtype=np.float32),
        16000,
        path=Path(f"/x/{name}.wav"),
        source_subtype=subtype,
    )


def test_plan_export_policies(tmp_path: Path) -> None:
    tracks = [_track("mix"), _track("mix")]
    (tmp_path / "mix.wav").write_bytes(b"old")
    items, notes = plan_export(tracks, tmp_path, "wav", "{track}", "number")
    assert [i.path.name for i in items] == ["mix (2).wav", "mix (3).wav"]
    assert all(i.subtype == "PCM_16" and not i.overwrite for i in items)
    items, notes = plan_export(tracks[:1], tmp_path, "wav", "{track}", "skip")
    assert items == [] and "Skipped" in notes[0]
    items, _ = plan_export(tracks[:1], tmp_path, "wav", "{track}", "overwrite")
    assert items[0].overwrite and items[0].path.name == "mix.wav"
    items, _ = plan_export([_track("f", "FLOAT")], tmp_path, "flac", "{track}")
    assert items[0].subtype == "PCM_24"
    items, _ = plan_export([_track("o")], tmp_path, "ogg", "{track}")
    assert items[0].subtype == "VORBIS"
