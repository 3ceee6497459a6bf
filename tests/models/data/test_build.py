"""The corpus builder on generated package-shaped fixtures, without network or apt."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from models.data import build
from models.data.build import BuildOptions, build_corpus
from models.data.manifest import read_manifest
from models.data.sources import ReservedSourceError, Source
from tests.models.data.conftest import tone, write

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture
def no_apt_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with dpkg-deb but without apt-get, so nothing can be downloaded."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dpkg-deb", "tar", "xz", "zstd", "gzip"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("apt-get") is None
    return bin_dir


def make_deb(tmp_path: Path, package: str, files: dict[str, np.ndarray], rate: int = 22050) -> Path:
    """A real .deb holding generated audio at package paths (built with dpkg-deb --build)."""
    tree = tmp_path / f"tree-{package}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: generated fixture\n"
    )
    for member, signal in files.items():
        write(tree / member, signal, rate, format="OGG" if member.endswith(".ogg") else None)
    debs = tmp_path / "corpus" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{package}_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "-Zgzip", str(tree), str(deb)], check=True, capture_output=True
    )
    return deb


@needs_dpkg
def test_manifest_from_package_shaped_tree(tmp_path: Path, no_apt_path: Path) -> None:
    # Shaped like fillets-ng-data-xx: sound/LEVEL/LANG/LEVEL-SPEAKER-LINE.ogg, plus a folder
    # the source does not want and a silent file that must be dropped.
    files = {
        "usr/share/games/fillets-ng/sound/cave/xx/cav-m-hello.ogg": tone(0.6, 22050, 200, 1),
        "usr/share/games/fillets-ng/sound/cave/xx/cav-v-world.ogg": tone(0.5, 22050, 120, 2),
        "usr/share/games/fillets-ng/sound/ship/xx/shi-m-again.wav": tone(0.4, 22050, 210, 3),
        "usr/share/games/fillets-ng/sound/ship/yy/shi-m-other.ogg": tone(0.4, 22050, 210, 4),
        "usr/share/games/fillets-ng/sound/ship/xx/shi-v-silent.ogg": np.zeros(8000, np.float32),
    }
    make_deb(tmp_path, "fixture-speech-xx", files)
    source = Source(
        "fixture-speech",
        "speech",
        "validation",
        "GPL-2+",
        "deb",
        packages=("fixture-speech-xx",),
        include=(
            "usr/share/games/fillets-ng/sound/*/xx/*.ogg",
            "usr/share/games/fillets-ng/sound/*/xx/*.wav",
        ),
        identity=r"regex:^[a-z0-9]+-([a-z]+)-",
        groups=("speech",),
        language="xx",
    )
    root = tmp_path / "corpus"
    report = build_corpus(
        BuildOptions(root=root, sources=(source,), install=False, stream=io.StringIO())
    )
    rows = report.rows["fixture-speech"]
    assert sorted(row.identity for row in rows) == [
        "fixture-speech:m",
        "fixture-speech:m",
        "fixture-speech:v",
    ]
    for row in rows:
        assert row.split == "validation" and row.licence == "GPL-2+" and row.kind == "speech"
        assert row.sample_rate == 16000
        info = sf.info(str(root / row.path))
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(row.duration - info.frames / 16000) < 1e-3
    durations = sorted(round(row.duration, 1) for row in rows)
    assert durations == [0.4, 0.5, 0.6]
    # The merged manifest and summary exist; a second run resumes without work.
    assert len(read_manifest(root / "manifests" / "corpus.csv")) == 3
    assert (root / "manifests" / "summary.md").read_text().count("| speech | validation |") == 1
    stream = io.StringIO()
    again = build_corpus(BuildOptions(root=root, sources=(source,), install=False, stream=stream))
    assert "done before, 3 files" in stream.getvalue()
    assert len(again.rows["fixture-speech"]) == 3


@needs_dpkg
def test_reserved_members_are_never_unpacked(tmp_path: Path, no_apt_path: Path) -> None:
    # A generated package under a partly reserved package's name: description clips in
    # reserved languages must not reach the disk even when a pattern would match them.
    files = {
        "usr/share/tuxpaint/stamps/animals/cat_desc_fr.ogg": tone(0.3, 22050, 300, 1),
        "usr/share/tuxpaint/stamps/animals/cat_desc_es.ogg": tone(0.3, 22050, 300, 2),
        "usr/share/tuxpaint/stamps/animals/cat_desc.ogg": tone(0.3, 22050, 300, 3),
    }
    make_deb(tmp_path, "tuxpaint-stamps-default", files)
    source = Source(
        "fixture-desc",
        "speech",
        "train",
        "GPL-2",
        "deb",
        packages=("tuxpaint-stamps-default",),
        include=("usr/share/tuxpaint/stamps/*.ogg",),
        identity=r"regex:_desc_([A-Za-z_]+)\.ogg$",
        groups=("speech",),
    )
    root = tmp_path / "corpus"
    report = build_corpus(
        BuildOptions(root=root, sources=(source,), install=False, stream=io.StringIO())
    )
    assert [row.identity for row in report.rows["fixture-desc"]] == ["fixture-desc:fr"]
    unpacked = sorted(p.name for p in (root / "unpacked").rglob("*.ogg"))
    assert unpacked == ["cat_desc_fr.ogg"]


def test_missing_package_and_tool_are_skipped_with_a_message(
    tmp_path: Path, no_apt_path: Path
) -> None:
    missing_package = Source(
        "fixture-missing",
        "music",
        "train",
        "GPL-2+",
        "deb",
        packages=("no-such-package-for-tests",),
        include=("*.ogg",),
        groups=("music",),
    )
    missing_tool = Source(
        "fixture-tool",
        "speech",
        "train",
        "GPL-2+",
        "flite",
        groups=("speech",),
        tools=("no-such-tts-tool",),
        apt_tools=("no-such-tts-package",),
    )
    noise = Source(
        "fixture-noise",
        "noise",
        "train",
        "CC0 (generated)",
        "noise",
        groups=("sfx",),
        origin="generated",
        limit=3,
        seconds=0.5,
        seed=4,
    )
    stream = io.StringIO()
    report = build_corpus(
        BuildOptions(
            root=tmp_path / "corpus",
            sources=(missing_package, missing_tool, noise),
            install=True,
            stream=stream,
        )
    )
    text = stream.getvalue()
    assert "SKIPPED fixture-missing" in text and "apt-get is not on PATH" in text
    assert "no-such-package-for-tests" in report.skipped["fixture-missing"]
    assert "no-such-tts-tool" in report.skipped["fixture-tool"]
    assert "apt-get install no-such-tts-package" in report.skipped["fixture-tool"]
    # The rest still builds.
    assert len(report.rows["fixture-noise"]) == 3
    assert "fixture-missing" not in report.rows


def test_reserved_sources_are_refused(tmp_path: Path) -> None:
    for package in (
        "kajongg",
        "asterisk-core-sounds-en",
        "megaglest-data",
        "mbrola-us3",
        "musescore-general-soundfont-small",
    ):
        bad = Source(
            "fixture-bad",
            "speech",
            "train",
            "GPL",
            "deb",
            packages=(package,),
            include=("*",),
            groups=("speech",),
        )
        with pytest.raises(ReservedSourceError):
            build_corpus(
                BuildOptions(
                    root=tmp_path / "c", sources=(bad,), install=False, stream=io.StringIO()
                )
            )
        with pytest.raises(ReservedSourceError):
            build.download(BuildOptions(root=tmp_path / "c"), package)
    assert not (tmp_path / "c" / "debs").exists()


def test_unknown_only_group_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown --only"):
        build_corpus(BuildOptions(root=tmp_path, only=("films",), stream=io.StringIO()))


def test_queen_resource_speech_lines(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, tone(0.5, 16000, 180), 16000, format="MP3")
    speech = buffer.getvalue()
    entries = [
        ("020006J1.SB", speech),
        ("020006P2.SB", speech),
        ("ROOM1.BBK", b"x" * 10),
        ("02SSSSSS.SB", speech),
    ]
    header = b"QTBL" + b"CEM10\0" + b"\0\1" + b"\0" + struct.pack(">H", len(entries))
    offset = len(header) + 21 * len(entries)
    table, blobs = b"", b""
    for name, blob in entries:
        table += name.encode().ljust(12, b"\0") + b"\1" + struct.pack(">II", offset, len(blob))
        offset += len(blob)
        blobs += blob
    data = header[:13] + struct.pack(">H", len(entries)) + table + blobs
    found = build.queen_speech_entries(data)
    assert [name for name, _, _ in found] == ["020006J1.SB", "020006P2.SB", "02SSSSSS.SB"]
    assert build.queen_identity("020006J1.SB") == "fotaq:joe"
    assert build.queen_identity("020006P2.SB") == "fotaq:d02-p2"
    assert build.queen_identity("02SSSSSS.SB") == ""
    path = tmp_path / "queen.1c"
    path.write_bytes(data)
    name, start, size = found[1]
    task = build.DecodeTask(
        output="audio/q.flac",
        rate=16000,
        path=str(path),
        offset=start,
        size=size,
        row={"kind": "speech", "source": "q", "identity": "x", "licence": "free", "split": "train"},
    )
    row = build.run_decode(task, str(tmp_path))
    assert row is not None and 0.4 < row.duration < 0.7
    with pytest.raises(ValueError, match="QTBL"):
        build.queen_speech_entries(b"NOPE" + data[4:])


def test_midi_split_and_hydrogen_drums(tmp_path: Path) -> None:
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    for channel, program in ((0, 0), (1, 33), (2, 53)):
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    for step in range(8):
        for channel, note in ((9, 36 if step % 2 == 0 else 38), (0, 60), (1, 40), (2, 67)):
            track.append(mido.Message("note_on", channel=channel, note=note, velocity=100, time=0))
        track.append(mido.Message("note_off", channel=0, note=60, velocity=0, time=96))
        for channel, note in ((1, 40), (2, 67), (9, 36 if step % 2 == 0 else 38)):
            track.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=0))
    path = tmp_path / "song.mid"
    midi.save(str(path))
    stems = build.split_midi(path, seconds=2.1)
    assert sorted(stems) == ["bass", "drums", "other", "vocals"]
    drum_notes = [m for m in stems["drums"].tracks[0] if m.type == "note_on"]
    assert {m.channel for m in drum_notes} == {9}
    assert len(drum_notes) == 5  # cut after 2.1 s at 0.5 s per step
    moved = build.drums_on_melodic_channel(stems["drums"])
    assert {m.channel for m in moved.tracks[0] if m.type == "note_on"} == {0}
    # A generated Hydrogen kit: drumkit.xml plus two samples.
    kit = tmp_path / "kit"
    write(kit / "kick.wav", tone(0.2, 22050, 60), 22050)
    write(
        kit / "snare.wav",
        0.3 * np.random.default_rng(0).standard_normal(4000).astype(np.float32),
        22050,
    )
    (kit / "drumkit.xml").write_text(
        "<drumkit_info><instrumentList>"
        "<instrument><name>Kick</name><layer><filename>kick.wav</filename></layer></instrument>"
        "<instrument><name>Snare</name><layer><filename>snare.wav</filename></layer>"
        "</instrument></instrumentList></drumkit_info>"
    )
    instruments = build.hydrogen_kit(kit)
    assert [name for name, _ in instruments] == ["Kick", "Snare"]
    audio = build.render_hydrogen_drums(stems["drums"], instruments, 16000)
    assert audio.shape[0] > 2 * 16000 and float(np.abs(audio).max()) > 0.1


def test_stem_classification() -> None:
    assert build.stem_of(9, 0) == "drums"
    assert build.stem_of(3, 34) == "bass"
    assert build.stem_of(3, 52) == "vocals"
    assert build.stem_of(3, 0) == "other"


def test_cli_build_and_summary(tmp_path: Path, capsys) -> None:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    root = tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "data",
            "build",
            "--root",
            str(root),
            "--sources",
            "noise-validation",
            "--no-install",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "| noise | validation | 0.04 | 15 | 3 |" in result.stdout
    summary = subprocess.run(
        [sys.executable, "-m", "workbench", "data", "summary", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert summary.returncode == 0 and "| noise | validation |" in summary.stdout
    from workbench.cli import main

    assert main(["data", "build", "--root", str(root), "--only", "films"]) == 2
    assert "unknown group" in capsys.readouterr().err


def test_decoding_in_worker_processes(tmp_path: Path) -> None:
    tasks = []
    for index in range(3):
        path = write(tmp_path / "in" / f"{index}.wav", tone(0.3, 44100, 300, index), 44100)
        tasks.append(
            build.DecodeTask(
                output=f"audio/x/{index}.flac",
                rate=16000,
                path=str(path),
                row={
                    "kind": "sfx",
                    "source": "x",
                    "identity": "",
                    "licence": "CC0",
                    "split": "train",
                },
            )
        )
    options = BuildOptions(root=tmp_path, jobs=2, stream=io.StringIO())
    rows = build._run_tasks(options, "x", tasks, build.run_decode)
    assert [row.path for row in rows] == [f"audio/x/{i}.flac" for i in range(3)]
    assert all(row.sample_rate == 16000 and abs(row.duration - 0.3) < 1e-3 for row in rows)
