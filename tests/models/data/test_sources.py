"""The source table follows DATA.md: splits by package or voice, nothing reserved."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from models.data import sources
from models.data.manifest import (
    ManifestRow,
    format_summary,
    read_manifest,
    summarize,
    write_manifest,
)
from models.data.sources import (
    SOURCES,
    ReservedSourceError,
    check_member_allowed,
    check_package_allowed,
    check_voice_allowed,
    source_by_name,
    validate_table,
)


def test_table_is_valid_and_names_are_unique() -> None:
    validate_table()
    assert len({s.name for s in SOURCES}) == len(SOURCES)
    for source in SOURCES:
        assert source.licence and source.split in ("train", "validation")
        assert set(source.groups) <= set(sources.GROUPS)


@pytest.mark.parametrize(
    "package",
    [
        "kajongg",
        "asterisk-sounds-main",
        "asterisk-moh-opsound-wav",
        "hyperrogue-music",
        "extremetuxracer-data",
        "fretsonfire-songs-muldjord",
        "megaglest-data",
        "sound-theme-freedesktop",
        "oxygen-sounds",
        "deepin-sound-theme",
        "yaru-theme-sound",
        "lomiri-sounds",
        "gnome-audio",
        "bucklespring-data",
        "musescore-general-soundfont",
        "musescore-general-soundfont-lossless",
        "mbrola-us3",
        "mbrola-pl1",
        "festvox-us3",
    ],
)
def test_reserved_packages_are_refused(package: str) -> None:
    with pytest.raises(ReservedSourceError):
        check_package_allowed(package)


def test_reserved_members_and_voices_are_refused() -> None:
    refused = [
        ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/a/cat_desc.ogg"),
        ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/a/cat_desc_ru.ogg"),
        ("tuxpaint-stamps-default", "./usr/share/tuxpaint/stamps/a/cat_desc_es.ogg"),
        ("fillets-ng-data", "usr/share/games/fillets-ng/sound/cave/en/x.ogg"),
        ("hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/voices/Default/Hello.ogg"),
        ("hydrogen-drumkits", "usr/share/hydrogen/data/drumkits/circAfrique v4/x.flac"),
        ("avldrums.lv2-soundfont", "usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2"),
    ]
    for package, member in refused:
        with pytest.raises(ReservedSourceError):
            check_member_allowed(package, member)
    check_member_allowed("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/a/cat_desc_fr.ogg")
    check_member_allowed("hedgewars-data", "usr/share/games/hedgewars/Data/Music/Art.ogg")
    check_member_allowed("fillets-ng-data", "usr/share/games/fillets-ng/music/menu.ogg")
    for voice in ("us3", "mb-en1", "mb-de6-en", "fr6", "it4", "nl3", "es3", "pl1"):
        with pytest.raises(ReservedSourceError):
            check_voice_allowed(voice)
    check_voice_allowed("us1")


def test_no_source_include_pattern_reaches_a_reserved_member() -> None:
    for source in SOURCES:
        for package in source.packages:
            for pattern in sources.RESERVED_MEMBERS.get(package, ()):
                # A pattern that is itself a reserved path must not be an include.
                assert not any(fnmatch.fnmatchcase(inc, pattern) for inc in source.include), (
                    source.name,
                    pattern,
                )


def test_validation_split_matches_data_md() -> None:
    validation_voices = {v.name for s in SOURCES if s.split == "validation" for v in s.voices}
    assert {"us1", "de3", "fr2", "br4", "sw2", "tr2", "ro1", "slt"} <= validation_voices
    train_voices = {v.name for s in SOURCES if s.split == "train" for v in s.voices}
    assert not validation_voices & train_voices
    assert not train_voices & sources.RESERVED_VOICES
    validation_packages = {p for s in SOURCES if s.split == "validation" for p in s.packages}
    assert {
        "fillets-ng-data-nl",
        "hedgewars-data",
        "fillets-ng-data",
        "warmux-data",
        "wesnoth-1.16-data",
        "supertux-data",
        "colobot-common-sounds",
        "minuet-data",
    } <= validation_packages
    assert source_by_name("ktuberling-validation").wants("usr/share/ktuberling/sounds/en/a.ogg")
    assert not source_by_name("ktuberling").wants("usr/share/ktuberling/sounds/en/a.ogg")
    assert source_by_name("ktuberling").wants("usr/share/ktuberling/sounds/fr/a.ogg")
    # A package in both splits must give each split different members.
    shared = {p for s in SOURCES if s.split == "train" for p in s.packages} & validation_packages
    for package in shared - {"minuet-data"}:
        train = [s for s in SOURCES if package in s.packages and s.split == "train"]
        held = [s for s in SOURCES if package in s.packages and s.split == "validation"]
        for a in train:
            for b in held:
                for pattern in b.include:
                    example = pattern.replace("*", "x")
                    assert not a.wants(example), (package, a.name, b.name, example)
    # The training stems never use the validation soundfont.
    for source in SOURCES:
        if source.kind == "stem" and source.split == "train":
            assert not any("GeneralUser" in font for font in source.soundfonts)


def test_identity_rules() -> None:
    fillets = source_by_name("fillets-cs")
    assert fillets.identity_of("usr/share/games/fillets-ng/sound/x/cs/bar-v-ahoj.ogg") == (
        "fillets-cs:v"
    )
    assert source_by_name("ktuberling").identity_of("usr/share/ktuberling/sounds/fr/a.ogg") == (
        "ktuberling:fr"
    )
    assert source_by_name("tuxpaint-desc").identity_of("a/b/cat_desc_pt_BR.ogg") == (
        "tuxpaint-desc:pt_BR"
    )


def test_manifest_round_trip_and_summary(tmp_path: Path) -> None:
    rows = [
        ManifestRow("a.flac", "speech", "pkg", "alice", "GPL-2+", 3600.0, 16000, "train"),
        ManifestRow(
            "b.flac",
            "speech",
            "pkg",
            "bob",
            "GPL-2+",
            1800.0,
            16000,
            "train",
            language="cs",
            gender="male",
        ),
        ManifestRow(
            "c.flac",
            "stem",
            "midi",
            "FluidR3",
            "MIT",
            60.0,
            44100,
            "validation",
            label="drums",
            group="song",
            origin="midi",
        ),
    ]
    for name in ("m.csv", "m.jsonl"):
        write_manifest(tmp_path / name, rows)
        assert read_manifest(tmp_path / name) == rows
    table = summarize(rows)
    assert table["speech"]["train"] == {"hours": 1.5, "files": 2, "identities": 2}
    assert "| stem | validation | 0.02 | 1 | 1 |" in format_summary(table)
    with pytest.raises(ValueError, match="licence"):
        ManifestRow("d.flac", "speech", "pkg", "", "", 1.0, 16000, "train")
    with pytest.raises(ValueError, match="kind"):
        ManifestRow("d.flac", "video", "pkg", "", "MIT", 1.0, 16000, "train")
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        write_manifest(tmp_path / "m.txt", rows)
