"""Generated signals for smoke runs and tests: speech-like, music stems, effects, noise, rooms.

Nothing here sounds like real audio, but each category has the structure a separator can learn
from (harmonic speech-like sounds with formants and syllables, pitched notes, percussive hits,
chirps, coloured noise, exponentially decaying room responses), so a tiny training run on
synthetic data shows its loss going down. Every function draws from the ``numpy`` generator it
is given, so a per-index seed gives a fixed signal.
"""

from __future__ import annotations

import numpy as np

#: (F1, F2, F3) in Hz for a few vowels (adult averages).
VOWEL_FORMANTS: tuple[tuple[float, float, float], ...] = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (530, 1840, 2480),
    (570, 840, 2410),
    (300, 870, 2240),
    (660, 1720, 2410),
)


def coloured_noise(color: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise with unit RMS.

    Returns:
        float32 ``(length,)``.
    """
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}.get(color)
    if exponent is None:
        raise ValueError(f"color must be white, pink or brown, got {color!r}")
    white = rng.standard_normal(length)
    if exponent:
        spectrum = np.fft.rfft(white)
        frequencies = np.fft.rfftfreq(length)
        frequencies[0] = frequencies[1] if length > 2 else 1.0
        white = np.fft.irfft(spectrum / frequencies**exponent, n=length)
    white = white - white.mean()
    return (white / (np.sqrt(np.mean(white**2)) + 1e-12)).astype(np.float32)


def _harmonics(
    f0: np.ndarray, sample_rate: int, amplitude: callable, max_harmonics: int = 40
) -> np.ndarray:
    """Sum of harmonics of a time-varying ``f0`` (Hz per sample), amplitudes from ``amplitude``.

    ``amplitude(frequencies)`` maps an array of harmonic frequencies to gains.
    """
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    out = np.zeros_like(f0)
    for harmonic in range(1, max_harmonics + 1):
        frequency = harmonic * f0
        audible = frequency < 0.45 * sample_rate
        if not audible.any():
            break
        out += np.where(audible, amplitude(frequency) * np.sin(harmonic * phase), 0.0)
    return out


def speaker_parameters(identity: int) -> dict[str, float]:
    """Fixed voice parameters of a synthetic speaker (pitch, formant scale, speaking rate)."""
    rng = np.random.default_rng(10_000 + identity)
    female = bool(rng.integers(0, 2))
    return {
        "f0": float(rng.uniform(170, 260) if female else rng.uniform(85, 150)),
        "formant_scale": float(rng.uniform(1.05, 1.2) if female else rng.uniform(0.85, 1.0)),
        "syllable_seconds": float(rng.uniform(0.14, 0.26)),
        "breathiness": float(rng.uniform(0.02, 0.12)),
    }


def speech_like(
    length: int, sample_rate: int, rng: np.random.Generator, identity: int = 0
) -> np.ndarray:
    """A speech-like signal: voiced syllables with formants, intonation and pauses.

    Returns:
        float32 ``(length,)`` with RMS about 0.1.
    """
    voice = speaker_parameters(identity)
    time = np.arange(length) / sample_rate
    out = np.zeros(length)
    position = 0
    while position < length:
        syllable = int(voice["syllable_seconds"] * rng.uniform(0.7, 1.4) * sample_rate)
        pause = int(rng.choice([0.0, 0.05, 0.3], p=[0.6, 0.3, 0.1]) * sample_rate)
        stop = min(length, position + syllable)
        span = stop - position
        if span > 8:
            formants = np.array(VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))])
            formants = formants * voice["formant_scale"]
            bandwidths = np.array([80.0, 100.0, 140.0])
            glide = voice["f0"] * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 3) * time[:span]))

            def envelope(
                frequency: np.ndarray, formants=formants, bandwidths=bandwidths
            ) -> np.ndarray:
                gain = np.zeros_like(frequency)
                for centre, width in zip(formants, bandwidths, strict=True):
                    gain += 1.0 / (1.0 + ((frequency - centre) / width) ** 2)
                return gain / np.sqrt(1 + frequency / 500.0)

            voiced = _harmonics(glide, sample_rate, envelope)
            noise = voice["breathiness"] * rng.standard_normal(span)
            window = np.hanning(span)
            out[position:stop] += (voiced + noise) * window
        position = stop + pause
    out /= np.sqrt(np.mean(out**2)) + 1e-12
    return (0.1 * out).astype(np.float32)


def _note_sequence(
    length: int,
    sample_rate: int,
    rng: np.random.Generator,
    low: int,
    high: int,
    note_seconds: tuple[float, float],
    harmonics: int,
    decay: float,
) -> np.ndarray:
    out = np.zeros(length)
    position = 0
    while position < length:
        duration = int(rng.uniform(*note_seconds) * sample_rate)
        stop = min(length, position + duration)
        span = stop - position
        if span > 8:
            pitch = int(rng.integers(low, high + 1))
            f0 = np.full(span, 440.0 * 2 ** ((pitch - 69) / 12))
            rolloff = rng.uniform(0.6, 1.4)
            tone = _harmonics(
                f0, sample_rate, lambda f, r=rolloff, b=f0[0]: (f / b) ** -r, harmonics
            )
            attack = np.minimum(1.0, np.arange(span) / (0.01 * sample_rate))
            tone *= attack * np.exp(-decay * np.arange(span) / sample_rate)
            out[position:stop] += tone
        position = stop
    return out


def _unit(signal: np.ndarray, rms: float = 0.1) -> np.ndarray:
    return (rms * signal / (np.sqrt(np.mean(signal**2)) + 1e-12)).astype(np.float32)


def bass_line(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(_note_sequence(length, sample_rate, rng, 28, 50, (0.2, 0.6), 8, 2.0))


def other_instruments(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    chords = sum(
        _note_sequence(length, sample_rate, rng, 55, 84, (0.3, 1.0), 12, 1.0) for _ in range(3)
    )
    return _unit(chords)


def vocals_like(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sung-vowel notes: speech-like formants on long, stable pitches."""
    out = np.zeros(length)
    position = 0
    identity = int(rng.integers(0, 1000))
    scale = speaker_parameters(identity)["formant_scale"]
    while position < length:
        span = min(length - position, int(rng.uniform(0.3, 0.9) * sample_rate))
        if span > 8:
            pitch = int(rng.integers(57, 76))
            f0 = (
                440.0
                * 2 ** ((pitch - 69) / 12)
                * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(span) / sample_rate))
            )
            formants = np.array(VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))]) * scale

            def envelope(frequency: np.ndarray, formants=formants) -> np.ndarray:
                return sum(1.0 / (1.0 + ((frequency - c) / 90.0) ** 2) for c in formants)

            out[position : position + span] = _harmonics(f0, sample_rate, envelope) * np.hanning(
                span
            )
        position += span
    return _unit(out)


def drums(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Kick (decaying low sine), snare (noise burst) and hats on a random-tempo grid."""
    out = np.zeros(length)
    beat = int(60.0 / rng.uniform(80, 160) / 2 * sample_rate)
    for step, start in enumerate(range(0, length, max(beat, 1))):
        span = min(length - start, int(0.25 * sample_rate))
        t = np.arange(span) / sample_rate
        if step % 4 == 0:
            out[start : start + span] += np.sin(
                2 * np.pi * 55 * t * (1 + np.exp(-t * 30))
            ) * np.exp(-t * 12)
        elif step % 4 == 2:
            out[start : start + span] += 0.6 * rng.standard_normal(span) * np.exp(-t * 25)
        if rng.random() < 0.8:
            short = min(span, int(0.05 * sample_rate))
            hat = rng.standard_normal(short)
            hat = np.diff(hat, prepend=0.0)  # high-passed noise
            out[start : start + short] += (
                0.3 * hat * np.exp(-np.arange(short) / (0.01 * sample_rate))
            )
    return _unit(out)


def chirps(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sound-effect-like events: frequency sweeps and clicks at random times."""
    out = np.zeros(length)
    for _ in range(int(rng.integers(1, 5))):
        span = min(length, int(rng.uniform(0.1, 0.8) * sample_rate))
        start = int(rng.integers(0, max(1, length - span)))
        t = np.arange(span) / sample_rate
        low, high = sorted(rng.uniform(100, 0.4 * sample_rate, size=2))
        sweep = (
            low + (high - low) * t / max(t[-1], 1e-6)
            if rng.random() < 0.5
            else (high - (high - low) * t / max(t[-1], 1e-6))
        )
        phase = 2 * np.pi * np.cumsum(sweep) / sample_rate
        out[start : start + span] += np.sin(phase) * np.hanning(span)
    clicks = rng.integers(0, length, size=int(rng.integers(0, 6)))
    out[clicks] += rng.uniform(-1, 1, size=clicks.size)
    return _unit(out)


def music_mix(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(
        drums(length, sample_rate, rng)
        + bass_line(length, sample_rate, rng)
        + other_instruments(length, sample_rate, rng)
    )


def room_response(
    sample_rate: int, rng: np.random.Generator, rt60_range: tuple[float, float] = (0.2, 0.8)
) -> np.ndarray:
    """Exponentially decaying noise with a direct-path spike (an idealised room response).

    Returns:
        float32 ``(taps,)`` with peak 1 at the direct path.
    """
    rt60 = float(rng.uniform(*rt60_range))
    taps = int(rt60 * sample_rate)
    t = np.arange(taps) / sample_rate
    # Energy falls 60 dB in rt60 seconds: amplitude exp(-6.9 t / rt60).
    tail = rng.standard_normal(taps) * np.exp(-6.9 * t / rt60) * 0.3
    delay = int(rng.uniform(0.001, 0.004) * sample_rate)
    tail[:delay] = 0.0
    tail[0] = 1.0
    return (tail / np.max(np.abs(tail))).astype(np.float32)


#: Category name -> generator ``(length, sample_rate, rng) -> (length,)``.
GENERATORS = {
    "music": music_mix,
    "sfx": chirps,
    "drums": drums,
    "bass": bass_line,
    "vocals": vocals_like,
    "other": other_instruments,
}
