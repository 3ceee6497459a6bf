"""Generated fixtures for the data tests: tiny audio files and a mini corpus (never real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.data import synthetic
from models.data.manifest import ManifestRow

RATE = 8000


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tone(seconds: float, rate: int = RATE, frequency: float = 220.0, seed: int = 0) -> np.ndarray:
    """A short harmonic tone plus a little noise (float32, peak < 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * frequency * t) + 0.1 * np.sin(2 * np.pi * 2 * frequency * t)
    return (signal + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write(path: Path, signal: np.ndarray, rate: int = RATE, format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal, rate, format=format)
    return path


def _row(
    root: Path, relative: str, signal: np.ndarray, kind: str, split: str, **extra: str
) -> ManifestRow:
    write(root / relative, signal)
    extra.setdefault("identity", "")
    return ManifestRow(
        path=relative,
        kind=kind,
        source="fixture",
        licence="CC0 (generated)",
        duration=signal.size / RATE,
        sample_rate=RATE,
        split=split,
        **extra,
    )


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ManifestRow]]:
    """A corpus-shaped folder: speech of 4 speakers per split, music, sfx, noise, stems, rooms."""
    root = tmp_path_factory.mktemp("corpus")
    rows: list[ManifestRow] = []
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for speaker in range(4):
            for utterance in range(3):
                signal = synthetic.speech_like(
                    int(0.7 * RATE), RATE, rng, speaker + 10 * (split == "validation")
                )
                rows.append(
                    _row(
                        root,
                        f"speech/{split}/s{speaker}/{utterance}.wav",
                        signal,
                        "speech",
                        split,
                        identity=f"fixture:{split}{speaker}",
                        origin="tts" if speaker % 2 else "recorded",
                    )
                )
        for number in range(2):
            rows.append(
                _row(
                    root,
                    f"music/{split}/{number}.wav",
                    synthetic.music_mix(2 * RATE, RATE, rng),
                    "music",
                    split,
                )
            )
            rows.append(
                _row(
                    root,
                    f"sfx/{split}/{number}.wav",
                    synthetic.chirps(int(0.5 * RATE), RATE, rng),
                    "sfx",
                    split,
                    label="chirp",
                )
            )
            rows.append(
                _row(
                    root,
                    f"noise/{split}/{number}.wav",
                    0.1 * synthetic.coloured_noise("pink", 2 * RATE, rng),
                    "noise",
                    split,
                    label="pink",
                )
            )
            for label in ("drums", "bass", "vocals", "other"):
                signal = synthetic.GENERATORS[label](2 * RATE, RATE, rng)
                rows.append(
                    _row(
                        root,
                        f"stems/{split}/{number}/{label}.wav",
                        signal,
                        "stem",
                        split,
                        label=label,
                        group=f"song{number}",
                    )
                )
            rows.append(
                _row(
                    root,
                    f"rooms/{split}/{number}.wav",
                    synthetic.room_response(RATE, rng),
                    "rir",
                    split,
                )
            )
    return root, rows
