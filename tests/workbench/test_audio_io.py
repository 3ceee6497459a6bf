"""Loading and saving audio: every format, rate, depth and channel count; bad files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench.audio import io
from workbench.errors import AudioFileError

RATES = (8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000)
INT_SUBTYPES = {
    "PCM_16": (np.int16, 2**15),
    "PCM_24": (np.int32, 2**31),
    "PCM_32": (np.int32, 2**31),
}


def _signal(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.9, 0.9, size=(frames, channels))).astype(np.float32)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", (1, 2, 6))
def test_wav_any_rate_and_channel_count_loads_exactly(
    tmp_path: Path, rate: int, channels: int
) -> None:
    data = _signal(rate // 10, channels)
    path = tmp_path / "x.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    loaded = io.load(path)
    assert loaded.sample_rate == rate
    assert loaded.samples.shape == (rate // 10, channels)
    assert loaded.samples.dtype == np.float32  # FLOAT files stay float32
    np.testing.assert_array_equal(loaded.samples, data)
    assert loaded.warnings == []


@pytest.mark.parametrize(
    "extension,subtype",
    [
        ("wav", "PCM_16"),
        ("wav", "PCM_24"),
        ("wav", "PCM_32"),
        ("wav", "FLOAT"),
        ("flac", "PCM_16"),
        ("flac", "PCM_24"),
    ],
)
@pytest.mark.parametrize("channels", (1, 2, 4))
def test_lossless_round_trip_is_sample_exact(
    tmp_path: Path, extension: str, subtype: str, channels: int
) -> None:
    rng = np.random.default_rng(1)
    frames = 4000
    if subtype == "FLOAT":
        original = _signal(frames, channels)
        read_dtype = "float32"
    else:
        dtype, _ = INT_SUBTYPES[subtype]
        bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}[subtype]
        ints = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(frames, channels))
        original = (ints << (32 - bits)).astype(np.int32) if bits != 16 else ints.astype(dtype)
        read_dtype = "int16" if bits == 16 else "int32"
    source = tmp_path / f"in.{extension}"
    sf.write(source, original, 44100, subtype=subtype)
    loaded = io.load(source)
    assert loaded.info.subtype == subtype
    out = tmp_path / f"out.{extension}"
    subtype_out = io.choose_subtype(io.EXPORT_FORMATS[extension][0], loaded.info.subtype)
    io.save(out, loaded.samples, loaded.sample_rate, subtype=subtype_out)
    back, rate = sf.read(out, dtype=read_dtype, always_2d=True)
    assert rate == 44100
    np.testing.assert_array_equal(back, original)


@pytest.mark.parametrize("extension", ("ogg", "mp3"))
def test_lossy_formats_load_with_right_shape(tmp_path: Path, extension: str) -> None:
    data = _signal(22050, 2) * 0.5
    path = tmp_path / f"x.{extension}"
    sf.write(path, data, 44100)
    loaded = io.load(path)
    assert loaded.sample_rate == 44100
    assert loaded.samples.shape[1] == 2
    # Encoders may pad a little; the decoded length must be close to the original.
    assert abs(loaded.samples.shape[0] - 22050) < 3000
    assert np.abs(loaded.samples).max() > 0.1


def test_ogg_export_round_trip(tmp_path: Path) -> None:
    data = _signal(8000, 1) * 0.5
    out = io.save(tmp_path / "y.ogg", data, 16000)
    assert sf.info(out).format == "OGG"
    assert io.load(out).samples.shape[1] == 1


def test_wrong_extension_is_read_by_content(tmp_path: Path) -> None:
    data = _signal(1000, 1)
    path = tmp_path / "really_a_flac.wav"
    sf.write(path, data, 16000, format="FLAC", subtype="PCM_24")
    loaded = io.load(path)
    assert loaded.info.format == "FLAC"
    assert loaded.samples.shape == (1000, 1)


def test_text_file_with_audio_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioFileError, match="not an audio file"):
        io.load(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioFileError, match="empty"):
        io.load(path)


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio"):
        io.load(path)


def test_truncated_file_loads_what_is_there_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, _signal(16000, 2), 16000, subtype="PCM_16")
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    loaded = io.load(path)
    assert 0 < loaded.samples.shape[0] < 16000
    assert any("truncated" in w or "damaged" in w for w in loaded.warnings)


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.flac"
    sf.write(path, _signal(4000, 1), 16000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"XXXX"
    path.write_bytes(bytes(raw))
    with pytest.raises(AudioFileError):
        io.load(path)


def test_nan_and_inf_samples_become_silence_with_a_warning(tmp_path: Path) -> None:
    data = _signal(1000, 2)
    data[10, 0] = np.nan
    data[20, 1] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    loaded = io.load(path)
    assert np.isfinite(loaded.samples).all()
    assert loaded.samples[10, 0] == 0.0 and loaded.samples[20, 1] == 0.0
    assert any("2 invalid samples" in w for w in loaded.warnings)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="folder"):
        io.load(tmp_path)
    with pytest.raises(AudioFileError, match="does not exist"):
        io.load(tmp_path / "nope.wav")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.wav"
    sf.write(path, _signal(100, 1), 16000)
    path.chmod(0)
    try:
        with pytest.raises(AudioFileError, match="permission"):
            io.load(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_unreadable_file_as_root_is_reported_via_access_check(tmp_path: Path, monkeypatch) -> None:
    # Root bypasses permission bits, so exercise the same branch through os.access.
    path = tmp_path / "secret.wav"
    sf.write(path, _signal(100, 1), 16000)
    monkeypatch.setattr(io.os, "access", lambda *_: False)
    with pytest.raises(AudioFileError, match="permission"):
        io.load(path)


def test_two_hour_file_streams_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    rate, block = 8000, 8000 * 60
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as handle:
        for minute in range(120):
            t = np.arange(block) / rate
            handle.write((0.1 * np.sin(2 * np.pi * (100 + minute) * t)).astype(np.float32))
    gen = io.iter_load(path)
    fractions = []
    while True:
        try:
            fractions.append(next(gen))
        except StopIteration as stop:
            loaded = stop.value
            break
    assert loaded.samples.shape == (120 * block, 1)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(fractions) > 10


def test_too_large_is_refused_plainly(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    sf.write(path, _signal(100000, 2), 16000)
    with pytest.raises(AudioFileError, match="too long to open"):
        io.load(path, max_bytes=1000)


def test_save_never_overwrites_silently(tmp_path: Path) -> None:
    path = tmp_path / "keep.wav"
    original = _signal(100, 1)
    io.save(path, original, 16000)
    before = path.read_bytes()
    with pytest.raises(AudioFileError, match="already exists"):
        io.save(path, _signal(100, 1, seed=5), 16000)
    assert path.read_bytes() == before
    io.save(path, _signal(100, 1, seed=5), 16000, overwrite=True)
    assert path.read_bytes() != before
    assert not list(tmp_path.glob("*.part"))


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no audio"):
        io.save(tmp_path / "e.wav", np.zeros((0, 1)), 16000)
    bad = _signal(10, 1)
    bad[0] = np.nan
    with pytest.raises(AudioFileError, match="invalid samples"):
        io.save(tmp_path / "n.wav", bad, 16000)
    with pytest.raises(AudioFileError, match="Cannot save"):
        io.save(tmp_path / "x.xyz", _signal(10, 1), 16000)
    assert list(tmp_path.iterdir()) == []


def test_expand_paths_finds_audio_in_folders(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "sub/b.flac", "sub/c.txt", "d.ogg"):
        (tmp_path / name).write_bytes(b"x")
    found = io.expand_paths([tmp_path])
    assert [p.name for p in found] == ["a.wav", "d.ogg", "b.flac"] or sorted(
        p.name for p in found
    ) == ["a.wav", "b.flac", "d.ogg"]
    assert io.expand_paths([tmp_path / "sub" / "c.txt"]) == [tmp_path / "sub" / "c.txt"]
