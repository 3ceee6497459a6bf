"""Per-clip checks before enrolment: length, speech activity and clipping (NumPy only).

The speech detector is deliberately simple (frame energy against an adaptive floor): it
only has to tell "mostly silence" or "too short" from usable speech, not transcribe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SPEECH_SECONDS = 2.0
CLIP_LEVEL = 0.999
MAX_CLIPPED_FRACTION = 0.001
FRAME_SECONDS = 0.03


@dataclass
class ClipCheck:
    """What the checks found.

    Attributes:
        duration: Seconds of audio.
        speech_seconds: Seconds of frames judged to hold speech.
        clipped_fraction: Share of samples at full scale.
        problems: Reasons the clip cannot be used (silent, empty).
        warnings: Reasons it may give poor results (short speech, clipping).
    """

    duration: float
    speech_seconds: float
    clipped_fraction: float
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems


def speech_frames(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """Boolean mask of 30-ms frames that carry speech-level energy, shape ``(frames,)``."""
    hop = max(int(FRAME_SECONDS * sample_rate), 1)
    count = len(mono) // hop
    if count == 0:
        return np.zeros(0, dtype=bool)
    frames = mono[: count * hop].reshape(count, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    floor = np.percentile(level, 10)
    threshold = max(floor + 12.0, -55.0)
    return level > threshold


def check_clip(samples: np.ndarray, sample_rate: int) -> ClipCheck:
    """Check ``samples`` (``(frames,)`` or ``(frames, channels)``) for enrolment."""
    data = np.asarray(samples, dtype=np.float32)
    mono = data if data.ndim == 1 else data.mean(axis=1)
    duration = len(mono) / sample_rate if sample_rate > 0 else 0.0
    result = ClipCheck(duration=duration, speech_seconds=0.0, clipped_fraction=0.0)
    if len(mono) == 0:
        result.problems.append("The clip is empty.")
        return result
    if not np.isfinite(mono).all():
        result.problems.append("The clip contains invalid samples (NaN or infinity).")
        return result
    peak = float(np.max(np.abs(data)))
    if peak < 1e-4:
        result.problems.append("The clip is silent. Check the microphone and its level.")
        return result
    result.clipped_fraction = float(np.mean(np.abs(data) >= CLIP_LEVEL))
    result.speech_seconds = float(speech_frames(mono, sample_rate).sum() * FRAME_SECONDS)
    if result.speech_seconds < 0.3:
        result.problems.append("No speech was found in the clip.")
    elif result.speech_seconds < MIN_SPEECH_SECONDS:
        result.warnings.append(
            f"Only {result.speech_seconds:.1f} s of speech; {MIN_SPEECH_SECONDS:.0f} s or more "
            "gives a more reliable voiceprint."
        )
    if result.clipped_fraction > MAX_CLIPPED_FRACTION:
        result.warnings.append(
            f"{100 * result.clipped_fraction:.1f} % of the samples are clipped; lower the "
            "input level and record again if you can."
        )
    return result
