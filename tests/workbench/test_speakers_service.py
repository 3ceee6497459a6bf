"""The speaker service on real SQLite files, real audio files and the real (untrained) model.

The default speaker bundle is an untrained placeholder, so speakers are synthetic voices
that even random weights tell apart: a sawtooth glottal source at the speaker's pitch,
shaped by vowel formants scaled by the speaker's vocal-tract factor, in 4-Hz syllables.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.bundles import default_bundle
from models.inference import Verifier
from workbench.errors import AudioFileError
from workbench.speaker_scoring import AdaptiveSNorm, cosine
from workbench.speakers import (
    AS_NORM_SUFFIX,
    DEFAULT_AS_NORM_THRESHOLD,
    DEFAULT_COSINE_THRESHOLD,
    EnrollmentRefused,
    SpeakerService,
    SpeakerServiceError,
    read_trials,
)
from workbench.speakers_db import SpeakerDatabase, SpeakerDatabaseError

RATE = 16000
#: (mean pitch in Hz, vocal-tract scale) per synthetic speaker; the first two are close.
SPEAKERS = {"ann": (110.0, 1.0), "amy": (116.0, 1.02), "bob": (210.0, 1.2), "cid": (160.0, 0.9)}
#: Vowel formants (Hz) shared by every speaker before the vocal-tract scaling.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [640, 1190, 2390]]
)


def synthetic_voice(
    pitch: float, tract: float, seconds: float, seed: int, speech_seconds: float | None = None
) -> np.ndarray:
    """A speech-like clip of one synthetic speaker, shape ``(frames,)`` at 16 kHz.

    Args:
        pitch: Mean fundamental frequency in Hz (drifts by about 8 % over the clip).
        tract: Formant scale factor (a shorter vocal tract has higher formants).
        seconds: Clip length.
        seed: Chooses the pitch contour, the vowel sequence and the noise floor.
        speech_seconds: Syllables only in the first this-many seconds (silence after).
    """
    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    time = np.arange(frames) / RATE
    drift = np.interp(time, np.linspace(0, seconds, 6), 1 + 0.08 * rng.standard_normal(6))
    contour = pitch * drift * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * time))
    source = (np.cumsum(contour) / RATE) % 1.0 - 0.5  # sawtooth: harmonics fall as 1/k
    syllable = RATE // 4
    voiced = int(0.8 * syllable)
    gate = np.sin(np.pi * np.arange(voiced) / voiced)
    frequencies = np.fft.rfftfreq(syllable, 1 / RATE)
    wave = np.zeros(frames)
    end = int((speech_seconds if speech_seconds is not None else seconds) * RATE)
    for start in range(0, end - syllable + 1, syllable):
        formants = VOWELS[rng.integers(len(VOWELS))] * tract
        envelope = sum(
            (1 / (k + 1)) / (1 + ((frequencies - f) / 90.0) ** 2) for k, f in enumerate(formants)
        )
        shaped = np.fft.irfft(np.fft.rfft(source[start : start + syllable]) * envelope, syllable)
        wave[start : start + voiced] = shaped[:voiced] * gate
    wave = 0.3 * wave / (np.abs(wave).max() + 1e-9)
    return (wave + 1e-3 * rng.standard_normal(frames)).astype(np.float32)


def write_voices(folder: Path, names: tuple[str, ...], count: int = 3) -> dict[str, list[Path]]:
    """``count`` 2.5-s WAV clips per speaker under ``folder``, named ``<name><index>.wav``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    for number, name in enumerate(names):
        pitch, tract = SPEAKERS[name]
        files[name] = []
        for index in range(count):
            path = folder / f"{name}{index}.wav"
            sf.write(path, synthetic_voice(pitch, tract, 2.5, seed=100 * number + index), RATE)
            files[name].append(path)
    return files


def write_trials(path: Path, files: dict[str, list[Path]]) -> None:
    """Every pair of clips (first clip of each pair as enrolment), paths relative to ``path``."""
    clips = [(name, clip) for name, paths in files.items() for clip in paths]
    lines = [
        f"{int(a_name == b_name)} {a.relative_to(path.parent)} {b.relative_to(path.parent)}"
        for i, (a_name, a) in enumerate(clips)
        for b_name, b in clips[i + 1 :]
    ]
    path.write_text("# label enroll test\n" + "\n".join(lines) + "\n", encoding="utf-8")


def independent_eer_and_min_dcf(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """EER (linear interpolation where FRR crosses FAR) and minDCF(p=0.01), by brute force."""
    targets, nontargets = scores[labels], scores[~labels]
    points = []
    for threshold in [*sorted(set(scores.tolist())), np.inf]:
        false_accept = sum(value >= threshold for value in nontargets) / len(nontargets)
        false_reject = sum(value < threshold for value in targets) / len(targets)
        points.append((false_accept, false_reject))
    eer = None
    for (fa0, fr0), (fa1, fr1) in zip(points, points[1:]):
        if fr0 - fa0 < 0 <= fr1 - fa1:
            weight = (fa0 - fr0) / ((fr1 - fa1) - (fr0 - fa0))
            eer = fr0 + weight * (fr1 - fr0)
            break
    if eer is None:  # the curves meet at the very first point
        eer = points[0][1]
    min_dcf = min((0.01 * fr + 0.99 * fa) / 0.01 for fa, fr in points)
    return float(eer), float(min_dcf)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_voices(tmp_path_factory.mktemp("voices"), tuple(SPEAKERS))


@pytest.fixture(scope="module")
def service_for(tmp_path_factory: pytest.TempPathFactory):
    """Services on fresh databases sharing one model: the untrained placeholder, pinned (no
    search roots) so these tests do not change meaning once a trained bundle ships."""
    torch.set_num_threads(1)
    placeholder = default_bundle("speaker", roots=[])
    verifier = Verifier(placeholder, device="cpu")

    def make(db_path: Path, cohort: Path | None = None) -> SpeakerService:
        service = SpeakerService(db_path, device="cpu", cohort=cohort)
        service._bundle, service._verifier = placeholder, verifier
        return service

    return make


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        return list(raw.iterdump())


def test_default_bundle_is_the_untrained_placeholder(service_for, tmp_path: Path) -> None:
    service = service_for(tmp_path / "s.db")
    assert service.bundle_name == "speaker-encoder-untrained"
    assert service.trained is False
    assert service.embedding_dim == 128
    embedding = service.embed(synthetic_voice(110, 1.0, 1.0, 0), RATE)
    assert embedding.shape == (128,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)


def test_enrol_checks_each_clip(service_for, tmp_path: Path) -> None:
    service = service_for(tmp_path / "s.db")
    good = synthetic_voice(110, 1.0, 2.5, 1)
    short = synthetic_voice(110, 1.0, 2.5, 2, speech_seconds=1.0)
    silent = np.zeros(2 * RATE, dtype=np.float32)
    stereo = np.stack([good, 0.5 * good], axis=1)
    assert service.check(short, RATE).usable and service.check(short, RATE).warnings
    assert not service.check(silent, RATE).usable

    report = service.enroll(
        "ann",
        [(good, RATE, "good"), (short, RATE, "short"), (silent, RATE, "mic"), (stereo, RATE, "st")],
    )
    used = {clip.source: clip.used for clip in report.clips}
    assert used == {"good": True, "short": True, "mic": False, "st": True}
    by_source = {clip.source: clip for clip in report.clips}
    assert "silent" in by_source["mic"].problems[0]
    assert any("speech" in warning for warning in by_source["short"].warnings)
    assert by_source["good"].warnings == () and by_source["good"].speech_seconds > 2.0
    assert (report.used, report.skipped) == (3, 1) and "3 of 4" in report.message
    with SpeakerDatabase(tmp_path / "s.db") as db:
        assert db.embeddings("ann", "speaker-encoder-untrained").shape == (3, 128)

    # Adding clips appends; replace re-enrols.
    service.enroll("ann", [(good, RATE, "again")])
    assert service.list()[0].clips == 4
    service.enroll("ann", [(good, RATE, "only")], replace=True)
    assert service.list()[0].clips == 1


def test_nothing_is_written_when_no_clip_or_file_is_usable(
    service_for, voices, tmp_path: Path
) -> None:
    service = service_for(tmp_path / "s.db")
    service.enroll_files("ann", voices["ann"][:1])
    before = _dump(tmp_path / "s.db")
    silent = np.zeros(RATE, dtype=np.float32)
    with pytest.raises(EnrollmentRefused) as refused:
        service.enroll("bob", [(silent, RATE, "a"), (silent + 1e-5, RATE, "b")])
    assert [clip.used for clip in refused.value.report.clips] == [False, False]
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    with pytest.raises(AudioFileError, match="not an audio file"):
        service.enroll_files("bob", [voices["bob"][0], not_audio])
    with pytest.raises(AudioFileError, match="does not exist"):
        service.enroll_files("ann", [tmp_path / "missing.wav"])
    with pytest.raises(SpeakerServiceError, match="name"):
        service.enroll("  ", [(silent, RATE, "a")])
    with pytest.raises(ValueError, match=r"\(frames,\) or \(frames, channels\)"):
        service.enroll("bob", [(np.zeros((2, 3, 4), np.float32), RATE, "cube")])
    with pytest.raises(ValueError, match="sample rate"):
        service.check(silent, 0)
    assert _dump(tmp_path / "s.db") == before


def test_verify_identify_rename_remove(service_for, voices, tmp_path: Path) -> None:
    service = service_for(tmp_path / "s.db")
    for name in ("ann", "bob", "cid"):
        service.enroll_files(name, voices[name][:2])
    assert [s.name for s in service.list()] == ["ann", "bob", "cid"]
    assert service.threshold() == (DEFAULT_COSINE_THRESHOLD, "default")
    assert service.threshold(as_norm=True) == (DEFAULT_AS_NORM_THRESHOLD, "default")

    for name in ("ann", "bob", "cid"):
        test, rate = sf.read(voices[name][2], dtype="float32")
        ranking = service.identify(test, rate, top=3)
        assert [entry[0] for entry in ranking][0] == name
        assert [value for _, value in ranking] == sorted((v for _, v in ranking), reverse=True)
        assert len(service.identify(test, rate, top=1)) == 1
        decision = service.verify(name, test, rate)
        # The score is the cosine between the clip and the mean of the enrolment clips.
        with SpeakerDatabase(tmp_path / "s.db") as db:
            voiceprint = db.embeddings(name, "speaker-encoder-untrained").mean(axis=0)
        assert decision.score == pytest.approx(cosine(voiceprint, service.embed(test, rate)))
        assert decision.threshold == DEFAULT_COSINE_THRESHOLD and not decision.normalised
        assert decision.margin == pytest.approx(decision.score - decision.threshold)
        assert decision.accepted == (decision.score >= decision.threshold)
        impostor = service.verify(next(n for n in ("ann", "bob") if n != name), test, rate)
        assert impostor.score < decision.score

    with pytest.raises(SpeakerDatabaseError, match="No speaker called"):
        service.verify("zoe", test, rate)
    with pytest.raises(SpeakerServiceError, match="silent"):
        service.verify("ann", np.zeros(RATE, np.float32), RATE)

    service.rename("ann", "Ann B.")
    service.remove("bob")
    assert [s.name for s in service.list()] == ["Ann B.", "cid"]
    assert service.identify(test, rate)[0][0] == "cid"
    with pytest.raises(SpeakerDatabaseError):
        service.remove("bob")
    assert service_for(tmp_path / "empty.db").identify(test, rate) == []


def test_score_trials_matches_independent_numpy(service_for, voices, tmp_path: Path) -> None:
    trials = voices["ann"][0].parent / "trials.txt"
    write_trials(trials, voices)
    service = service_for(tmp_path / "s.db")
    result = service.score_trials(trials)
    entries = read_trials(trials)
    assert result.scores.shape == (len(entries),) == (66,)
    assert result.num_targets == 12 and result.num_nontargets == 54
    files = {path for entry in entries for path in entry[1:3]}
    embeddings = {path: service.embed(*sf.read(path, dtype="float32")) for path in files}
    expected = [cosine(embeddings[entry[1]], embeddings[entry[2]]) for entry in entries]
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)

    eer, min_dcf = independent_eer_and_min_dcf(result.scores, result.labels)
    assert 0 < result.eer < 0.5  # the close pair ann/amy overlaps; the others do not
    assert result.eer == pytest.approx(eer, abs=1e-12)
    assert result.min_dcf == pytest.approx(min_dcf, abs=1e-12)
    # At the EER threshold both error rates are close to the EER.
    far = np.mean(result.scores[~result.labels] >= result.eer_threshold)
    frr = np.mean(result.scores[result.labels] < result.eer_threshold)
    assert min(far, frr) <= result.eer + 1e-9 <= max(far, frr) + 1e-9
    assert result.target_counts.sum() == 12 and result.nontarget_counts.sum() == 54
    assert len(result.as_dict()["trials"]) == 66


def test_calibrate_stores_the_threshold_that_verify_uses(
    service_for, voices, tmp_path: Path
) -> None:
    trials = voices["ann"][0].parent / "trials-cal.txt"
    write_trials(trials, voices)
    service = service_for(tmp_path / "s.db")
    service.enroll_files("bob", voices["bob"][:2])
    calibration = service.calibrate(trials, target_false_accept=0.05)
    nontargets = calibration.scores.scores[~calibration.scores.labels]
    assert calibration.false_accept == pytest.approx(np.mean(nontargets >= calibration.threshold))
    assert calibration.false_accept <= 0.05
    # It is the lowest such threshold: the next lower score would let too many impostors in.
    lower = calibration.scores.scores[calibration.scores.scores < calibration.threshold]
    assert lower.size and np.mean(nontargets >= lower.max()) > 0.05
    assert calibration.warnings == ()

    fresh = service_for(tmp_path / "s.db")  # a new instance reads it from the database
    assert fresh.threshold() == (calibration.threshold, "calibrated")
    test, rate = sf.read(voices["bob"][2], dtype="float32")
    assert fresh.verify("bob", test, rate).threshold == calibration.threshold
    with SpeakerDatabase(tmp_path / "s.db") as db:
        assert db.threshold("speaker-encoder-untrained") == calibration.threshold
        assert db.threshold("speaker-encoder-untrained" + AS_NORM_SUFFIX) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        service.calibrate(trials, target_false_accept=1.5)


def test_as_norm_with_enrolled_speakers_and_a_cohort_file(
    service_for, voices, tmp_path: Path
) -> None:
    service = service_for(tmp_path / "s.db")
    service.enroll_files("ann", voices["ann"][:2])
    test, rate = sf.read(voices["ann"][2], dtype="float32")
    with pytest.raises(SpeakerServiceError, match="cohort"):
        service.verify("ann", test, rate, as_norm=True)  # nobody else to compare with

    cohort_path = tmp_path / "cohort.npy"
    np.save(cohort_path, service.embed_files(voices["cid"]))
    service = service_for(tmp_path / "s.db", cohort=cohort_path)
    service.enroll_files("bob", voices["bob"][:2])
    decision = service.verify("ann", test, rate, as_norm=True)
    with SpeakerDatabase(tmp_path / "s.db") as db:
        voiceprint = db.voiceprint("ann", "speaker-encoder-untrained")
        cohort = np.concatenate(
            [db.embeddings("bob", "speaker-encoder-untrained"), np.load(cohort_path)]
        )
    expected = AdaptiveSNorm(cohort)(voiceprint, service.embed(test, rate))
    assert decision.normalised and decision.score == pytest.approx(expected)
    assert decision.threshold == DEFAULT_AS_NORM_THRESHOLD
    ranking = service.identify(test, rate, as_norm=True)
    assert ranking[0][0] == "ann" and len(ranking) == 2

    trials = voices["ann"][0].parent / "trials-norm.txt"
    write_trials(trials, {name: voices[name] for name in ("ann", "bob")})
    calibration = service.calibrate(trials, target_false_accept=0.2, as_norm=True)
    assert calibration.normalised and calibration.scores.normalised
    assert service.threshold(as_norm=True) == (calibration.threshold, "calibrated")
    assert service.threshold() == (DEFAULT_COSINE_THRESHOLD, "default")

    np.save(cohort_path, np.ones((3, 7)))
    with pytest.raises(SpeakerServiceError, match=r"\(count, 128\)"):
        service.verify("ann", test, rate, as_norm=True)


def test_bad_trial_lists_are_refused_plainly(service_for, voices, tmp_path: Path) -> None:
    service = service_for(tmp_path / "s.db")
    folder = voices["ann"][0].parent
    cases = {
        "missing.txt": None,
        "bad-label.txt": "yes ann0.wav ann1.wav\n",
        "short.txt": "1 ann0.wav\n",
        "one-class.txt": "1 ann0.wav ann1.wav\n",
        "empty.txt": "# nothing\n",
        "missing-audio.txt": "1 ann0.wav gone.wav\n0 ann0.wav bob0.wav\n",
    }
    messages = {}
    for name, text in cases.items():
        if text is not None:
            (folder / name).write_text(text)
        with pytest.raises(SpeakerServiceError) as error:
            service.score_trials(folder / name)
        messages[name] = error.value.message
    assert "does not exist" in messages["missing.txt"]
    assert "Line 1" in messages["bad-label.txt"] and "Line 1" in messages["short.txt"]
    assert "both target" in messages["one-class.txt"]
    assert "no trials" in messages["empty.txt"]
    assert "gone.wav" in messages["missing-audio.txt"]
    with pytest.raises(SpeakerServiceError, match="Unknown bundle"):
        unknown = SpeakerService(tmp_path / "s.db", bundle="no-such-bundle")
        unknown.identify(synthetic_voice(110, 1.0, 1.0, 0), RATE)


def test_methods_run_from_a_worker_thread(service_for, voices, tmp_path: Path) -> None:
    """The window calls the service from worker threads: no connection may cross threads."""
    service = service_for(tmp_path / "s.db")
    service.enroll_files("cid", voices["cid"][:1])
    test, rate = sf.read(voices["cid"][1], dtype="float32")
    results: list[object] = []

    def work() -> None:
        try:
            results.append(service.list()[0].name)
            results.append(service.verify("cid", test, rate).score)
            service.rename("cid", "Cid")
        except Exception as exc:  # reported below, on the test's thread
            results.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert results[0] == "cid" and isinstance(results[1], float), results
    assert [s.name for s in service.list()] == ["Cid"]
