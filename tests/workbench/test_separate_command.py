"""``workbench separate`` through real subprocesses on generated mixtures.

Checks: stems keep each input's rate, channel count and exact length (mono 16 kHz over
several decode blocks, stereo 44.1 kHz, 6-channel 48 kHz) and equal the in-process
``Separator`` result; TUSS with a repeated prompt names its stems ``1_speech``,
``2_speech``...; JSON progress lines parse; bad inputs are refused with one plain line and
nothing written; existing stems are kept unless ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench.commands.separate import READ_BLOCK_SECONDS

ERROR_PREFIX = "workbench separate: error:"


def run_separate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("WORKBENCH_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "workbench", "separate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
    )


def write_mixture(
    path: Path, sample_rate: int, seconds: float, channels: int, subtype: str = "PCM_16"
) -> np.ndarray:
    """A two-tone-plus-noise mixture, different in every channel; returns what was written."""
    frames = round(sample_rate * seconds)
    time = np.arange(frames) / sample_rate
    generator = np.random.default_rng(frames + channels)
    columns = [
        0.3 * np.sin(2 * np.pi * (220 + 55 * c) * time)
        + 0.2 * np.sin(2 * np.pi * (1300 + 90 * c) * time)
        + 0.05 * generator.standard_normal(frames)
        for c in range(channels)
    ]
    samples = np.stack(columns, axis=1).astype(np.float32)
    sf.write(path, samples[:, 0] if channels == 1 else samples, sample_rate, subtype=subtype)
    return samples


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def untrained(family: str) -> bool:
    from models.bundles import default_bundle

    return not default_bundle(family).trained


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of the speech separator on three layouts, with JSON progress."""
    root = tmp_path_factory.mktemp("separate")
    inputs = root / "in"
    inputs.mkdir()
    # Longer than two decode blocks, and not a whole number of them.
    mono_seconds = 2 * READ_BLOCK_SECONDS + 0.1007
    layouts = {
        "mono16k": (16000, mono_seconds, 1, "PCM_16"),
        "stereo44k": (44100, 0.23, 2, "PCM_24"),
        "six48k": (48000, 0.1, 6, "FLOAT"),
    }
    written = {}
    for name, (rate, seconds, channels, subtype) in layouts.items():
        extension = "flac" if subtype == "PCM_24" else "wav"
        written[name] = write_mixture(
            inputs / f"{name}.{extension}", rate, seconds, channels, subtype
        )
    out = root / "out"
    result = run_separate(inputs, "--model", "speech", "--out", out, "--progress", "json")
    return {"result": result, "inputs": inputs, "out": out, "layouts": layouts}


def test_stems_keep_rate_channels_and_exact_length(speech_run: dict) -> None:
    result, out = speech_run["result"], speech_run["out"]
    assert result.returncode == 0, result.stderr
    for name, (rate, seconds, channels, _) in speech_run["layouts"].items():
        source = next(speech_run["inputs"].glob(f"{name}.*"))
        frames = sf.info(str(source)).frames
        assert frames == round(rate * seconds)
        for stem in ("speaker1", "speaker2"):
            info = sf.info(str(out / name / f"{stem}.wav"))
            assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames)
            assert info.subtype == "FLOAT"  # separated stems may exceed full scale
            data, _ = sf.read(str(out / name / f"{stem}.wav"), dtype="float32")
            assert np.isfinite(data).all() and np.abs(data).max() > 0
    # Nothing but the final stems: no temporary files are left behind.
    assert [p.relative_to(out).as_posix() for p in files_under(out)] == sorted(
        f"{name}/{stem}.wav" for name in speech_run["layouts"] for stem in ("speaker1", "speaker2")
    )
    # Stems get a plain new file's permissions (not the owner-only ones of a temp file).
    probe = speech_run["inputs"] / "probe"
    probe.touch()
    assert (out / "mono16k" / "speaker1.wav").stat().st_mode == probe.stat().st_mode
    probe.unlink()
    if untrained("speech"):
        assert "UNTRAINED" in result.stderr and "not meaningful" in result.stderr


def test_stems_equal_in_process_separation(speech_run: dict) -> None:
    """The block-by-block writer reproduces the in-memory separation sample for sample."""
    import torch

    from models.bundles import default_bundle
    from models.inference import Separator

    torch.set_num_threads(1)
    separator = Separator(default_bundle("speech"), device="cpu")
    for name in ("mono16k", "six48k"):
        source = next(speech_run["inputs"].glob(f"{name}.*"))
        mixture, rate = sf.read(str(source), dtype="float32", always_2d=True)
        expected = separator.separate(mixture, rate)
        for stem in ("speaker1", "speaker2"):
            written, _ = sf.read(
                str(speech_run["out"] / name / f"{stem}.wav"), dtype="float32", always_2d=True
            )
            np.testing.assert_allclose(written, expected[stem], atol=1e-5, rtol=0)


def test_json_progress_lines_parse(speech_run: dict) -> None:
    lines = speech_run["result"].stdout.splitlines()
    events = [json.loads(line) for line in lines]  # every stdout line is JSON
    progress = [event for event in events if event["event"] == "progress"]
    done = [event for event in events if event["event"] == "done"]
    assert len(done) == 3
    for event in progress:
        assert set(event) == {"event", "file", "fraction", "eta_seconds", "message"}
        assert 0.0 <= event["fraction"] <= 1.0
        assert event["eta_seconds"] is None or event["eta_seconds"] >= 0.0
        assert isinstance(event["message"], str) and event["message"]
    for finished in done:
        fractions = [e["fraction"] for e in progress if e["file"] == finished["file"]]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0
        assert fractions == sorted(fractions)
        assert all(Path(path).is_file() for path in finished["outputs"])


def test_tuss_repeated_prompts_are_numbered(tmp_path: Path) -> None:
    write_mixture(tmp_path / "scene.wav", 22050, 0.2, 2)
    out = tmp_path / "out"
    result = run_separate(
        tmp_path / "scene.wav", "--model", "tuss", "--prompts", "speech,speech,sfx", "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in files_under(out)] == ["1_speech.wav", "2_speech.wav", "3_sfx.wav"]
    for path in files_under(out):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (22050, 2, 4410)
    assert "scene.wav ->" in result.stdout


def make_bad_input(kind: str, folder: Path) -> tuple[list[str], str]:
    """Arguments for one kind of bad input, and a word the error line must contain."""
    good = folder / "good.wav"
    write_mixture(good, 16000, 0.1, 1)
    if kind == "missing":
        return [str(folder / "nope.wav"), "--model", "speech"], "does not exist"
    if kind == "corrupt":
        (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + os.urandom(300))
        return [str(folder / "corrupt.wav"), "--model", "speech"], "not an audio file"
    if kind == "empty_file":
        (folder / "empty.wav").write_bytes(b"")
        return [str(folder / "empty.wav"), "--model", "speech"], "empty"
    if kind == "zero_frames":
        sf.write(folder / "silent.wav", np.zeros((0, 1), np.float32), 16000)
        return [str(folder / "silent.wav"), "--model", "speech"], "no audio"
    if kind == "folder_without_audio":
        (folder / "notes").mkdir()
        (folder / "notes" / "readme.txt").write_text("no audio here")
        return [str(folder / "notes"), "--model", "speech"], "no audio files"
    if kind == "nan_samples":
        samples = write_mixture(folder / "nan.wav", 16000, 0.3, 1, subtype="FLOAT")
        samples[3000, 0] = np.nan
        sf.write(folder / "nan.wav", samples[:, 0], 16000, subtype="FLOAT")
        return [str(folder / "nan.wav"), "--model", "speech"], "NaN"
    if kind == "unknown_prompt":
        return [str(good), "--model", "tuss", "--prompts", "speech,guitar"], "guitar"
    if kind == "prompts_for_fixed_outputs":
        return [str(good), "--model", "mtass", "--prompts", "speech"], "takes no --prompts"
    if kind == "unknown_model":
        return [str(good), "--model", "no-such-model"], "no-such-model"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "corrupt",
        "empty_file",
        "zero_frames",
        "folder_without_audio",
        "nan_samples",
        "unknown_prompt",
        "prompts_for_fixed_outputs",
        "unknown_model",
    ],
)
def test_bad_input_is_refused_with_one_line_and_nothing_written(kind: str, tmp_path: Path) -> None:
    arguments, expected = make_bad_input(kind, tmp_path)
    out = tmp_path / "out"
    result = run_separate(*arguments, "--out", out)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]  # the error is the last word
    assert "Traceback" not in result.stderr
    assert expected in errors[0]
    assert files_under(out) == []  # no stems, no temporary files
    assert not (out / "nan").exists()  # a folder made for a failed file is removed again


def test_existing_stems_are_kept_without_overwrite(tmp_path: Path) -> None:
    write_mixture(tmp_path / "take.wav", 8000, 0.2, 1)
    out = tmp_path / "out"
    stem = out / "take" / "speaker1.wav"
    stem.parent.mkdir(parents=True)
    stem.write_bytes(b"keep me")
    refused = run_separate(tmp_path / "take.wav", "--model", "speech", "--out", out)
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--overwrite" in refused.stderr
    assert stem.read_bytes() == b"keep me"
    assert [p.name for p in files_under(out)] == ["speaker1.wav"]

    replaced = run_separate(tmp_path / "take.wav", "--model", "speech", "--out", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sf.info(str(stem)).frames == 1600
    assert [p.name for p in files_under(out)] == ["speaker1.wav", "speaker2.wav"]
