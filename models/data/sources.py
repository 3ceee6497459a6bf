"""The declarative table of every audio source the corpus builder uses, and the reserved list.

Each :class:`Source` says where audio comes from (Debian packages, a TTS engine, MIDI files, a
generator), which split it belongs to, its licence and how to name identities. The split is by
package or by voice, never by file, because the same person speaks in many files of one
package (``shared/DATA.md``).

The reserved list names packages, voices and files kept apart for independent evaluation of the
product. :func:`check_package_allowed`, :func:`check_member_allowed` and
:func:`check_voice_allowed` raise :class:`ReservedSourceError` for them; the builder calls them
before downloading a package, before unpacking each member and before rendering each voice, so
no code path can touch reserved data even if the table below were edited by mistake.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# --------------------------------------------------------------------------- reserved


class ReservedSourceError(ValueError):
    """Raised for any attempt to use a package, file or voice on the reserved list."""


#: Whole packages (shell patterns) that must never be downloaded, unpacked or decoded.
RESERVED_PACKAGES: tuple[str, ...] = (
    "kajongg",
    "asterisk-*",
    "hyperrogue-music",
    "extremetuxracer-data",
    "fretsonfire-songs-*",
    "megaglest-data",
    "sound-theme-freedesktop",
    "oxygen-sounds",
    "deepin-sound-theme",
    "yaru-theme-sound",
    "lomiri-sounds",
    "gnome-audio",
    "bucklespring-data",
    "musescore-general-soundfont*",
    # The MBROLA voice packages on the reserved list, and the Festival voices built on them.
    "mbrola-us3",
    "mbrola-en1",
    "mbrola-de6",
    "mbrola-fr6",
    "mbrola-it4",
    "mbrola-nl3",
    "mbrola-es3",
    "mbrola-pl1",
    "festvox-us3",
    "festvox-en1",
)

#: MBROLA voices on the reserved list (also in their ``-en``/``-grc`` espeak variants).
RESERVED_VOICES: frozenset[str] = frozenset(
    {"us3", "en1", "de6", "fr6", "it4", "nl3", "es3", "pl1"}
)

#: Files inside otherwise usable packages that are reserved (shell patterns on member paths).
RESERVED_MEMBERS: dict[str, tuple[str, ...]] = {
    # Description clips in be, es, ro, ru and English; other languages are train data.
    "tuxpaint-stamps-default": (
        "*_desc.ogg",
        "*_desc.wav",
        "*_desc_be.*",
        "*_desc_es.*",
        "*_desc_ro.*",
        "*_desc_ru.*",
    ),
    # English speech; only the music folder of this package is used (validation).
    "fillets-ng-data": ("*/fillets-ng/sound/*", "*/fillets-ng/font/*"),
    # Sound effects and voices; only the Music folder is used (validation).
    "hedgewars-data": ("*/hedgewars/Data/Sounds/*",),
    "hydrogen-drumkits": (
        "*/drumkits/ColomboAcoustic*",
        "*/drumkits/Millo_MultiLayered3*",
        "*/drumkits/circAfrique*",
        "*/drumkits/rumpf_kit*",
    ),
    "avldrums.lv2-soundfont": ("*Black_Pearl*",),
}


def is_reserved_package(package: str) -> bool:
    """Whether a whole package is on the reserved list."""
    return any(fnmatch.fnmatchcase(package, pattern) for pattern in RESERVED_PACKAGES)


def check_package_allowed(package: str) -> None:
    """Raise :class:`ReservedSourceError` if ``package`` is reserved as a whole."""
    if is_reserved_package(package):
        raise ReservedSourceError(
            f"package {package!r} is on the reserved list (kept for independent evaluation): "
            "it must not be downloaded, unpacked or decoded"
        )


def is_reserved_member(package: str, member: str) -> bool:
    """Whether file ``member`` (a path inside ``package``) is reserved."""
    if is_reserved_package(package):
        return True
    member = member.lstrip("./")
    return any(
        fnmatch.fnmatchcase(member, pattern) for pattern in RESERVED_MEMBERS.get(package, ())
    )


def check_member_allowed(package: str, member: str) -> None:
    """Raise :class:`ReservedSourceError` if ``member`` of ``package`` is reserved."""
    if is_reserved_member(package, member):
        raise ReservedSourceError(
            f"{member!r} in package {package!r} is on the reserved list and must not be used"
        )


def check_voice_allowed(voice: str) -> None:
    """Raise :class:`ReservedSourceError` for a reserved MBROLA voice (``us3``, ``mb-us3-en``)."""
    base = voice.removeprefix("mb-").split("-")[0]
    if base in RESERVED_VOICES:
        raise ReservedSourceError(f"voice {voice!r} is on the reserved list and must not be used")


# --------------------------------------------------------------------------- sources

#: The ``--only`` groups of ``workbench data build``.
GROUPS: tuple[str, ...] = ("speech", "music", "stems", "sfx", "rirs", "speakers")

#: Canonical sampling rates. Speech, sfx and noise at 16 kHz (every speech model here runs at
#: 8 or 16 kHz and most of this audio has no content above 8 kHz); music and stems at 44.1 kHz,
#: the rate of the music as shipped, so the 48 kHz prompted model sees real high bands.
SPEECH_RATE = 16_000
MUSIC_RATE = 44_100
RIR_RATE = 44_100


@dataclass(frozen=True)
class Voice:
    """One TTS voice: engine-specific id, text language, gender."""

    name: str
    language: str
    gender: str = ""


@dataclass(frozen=True)
class Source:
    """One entry of the source table.

    Attributes:
        name: Unique source name; also the folder under ``audio/`` and the manifest name.
        kind: Manifest kind of its rows.
        split: ``train`` or ``validation``.
        licence: Licence of the audio as distributed.
        method: How to get it: ``deb`` (files in packages), ``deb-zip`` (files in a zip inside
            a package), ``queen`` (speech in the Flight of the Amazon Queen resource file),
            ``espeak``, ``flite``, ``pico``, ``festival`` (TTS), ``midi`` (MIDI files from
            packages), ``mma`` (grooves), ``music21`` (scores), ``rooms`` or ``noise``.
        packages: Debian packages to download and unpack (data only, never installed).
        include: Shell patterns on member paths (no leading ``./``) to use.
        exclude: Shell patterns on member paths to skip.
        identity: How to name the identity of a file: ``source`` (the source name),
            ``folder:N`` (path component ``N`` from the end, ``-2`` is the parent folder),
            ``regex:PATTERN`` (group 1 of ``PATTERN`` searched in the file name) or ``none``.
        groups: ``--only`` groups that select it.
        origin: Manifest origin of its rows.
        language: Language of the speech, when one.
        voices: TTS voices to render (TTS methods).
        tools: Executables it needs (checked before it runs).
        apt_tools: Debian packages that provide ``tools`` (installed when running as root).
        python_modules: Python modules it needs (the ``data`` extra).
        inner: For ``deb-zip``: shell pattern of the zip inside the package; its members are
            matched against ``include``/``exclude``.
        limit: Upper bound on items (files, utterances per voice, songs, rooms), 0 = none.
        seconds: Per-item duration bound in seconds (MIDI songs are cut), 0 = none.
        seed: Base seed of generated items (rooms, noise, TTS text choice).
        soundfonts: For MIDI methods: soundfont files (package, path pattern) to render with.
        label: Manifest label of every row when the method does not set one.
    """

    name: str
    kind: str
    split: str
    licence: str
    method: str
    packages: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    identity: str = "source"
    groups: tuple[str, ...] = ()
    origin: str = "recorded"
    language: str = ""
    voices: tuple[Voice, ...] = ()
    tools: tuple[str, ...] = ()
    apt_tools: tuple[str, ...] = ()
    python_modules: tuple[str, ...] = ()
    inner: str = ""
    limit: int = 0
    seconds: float = 0.0
    seed: int = 0
    soundfonts: tuple[str, ...] = ()
    label: str = ""

    @property
    def sample_rate(self) -> int:
        if self.kind in ("music", "stem"):
            return MUSIC_RATE
        if self.kind == "rir":
            return RIR_RATE
        return SPEECH_RATE

    def identity_of(self, member: str) -> str:
        """The identity of a file from its member path, following :attr:`identity`."""
        rule = self.identity
        if rule == "none":
            return ""
        if rule == "source":
            return self.name
        if rule == "voice":
            return f"{self.name}:{member}"
        if rule.startswith("folder:"):
            parts = member.strip("/").split("/")
            index = int(rule.split(":", 1)[1])
            return f"{self.name}:{parts[index]}" if len(parts) >= -index else ""
        if rule.startswith("regex:"):
            match = re.search(rule.split(":", 1)[1], member.rsplit("/", 1)[-1])
            return f"{self.name}:{match.group(1)}" if match else ""
        raise ValueError(f"unknown identity rule {rule!r} in source {self.name!r}")

    def wants(self, member: str) -> bool:
        """Whether a member path matches ``include`` and not ``exclude``."""
        member = member.lstrip("./")
        return any(fnmatch.fnmatchcase(member, pattern) for pattern in self.include) and not any(
            fnmatch.fnmatchcase(member, pattern) for pattern in self.exclude
        )


AUDIO = ("ogg", "wav", "flac", "opus", "mp3", "au", "aif", "aiff")


def _audio(*folders: str) -> tuple[str, ...]:
    """Include patterns for every audio extension under each folder pattern."""
    return tuple(f"{folder}/*.{extension}" for folder in folders for extension in AUDIO)


_SPEECH = ("speech", "speakers")
_GPL2 = "GPL-2+"

# MBROLA voices with an espeak-ng mapping (bz1 and hn1 have none), minus the reserved ones.
# Language is what espeak-ng calls it; the text for a voice must be in its language.
_MBROLA_TRAIN: tuple[Voice, ...] = tuple(
    Voice(name, language, gender)
    for name, language, gender in (
        ("af1", "af", "male"),
        ("ar1", "ar", "male"),
        ("ar2", "ar", "male"),
        ("br1", "pt-br", "male"),
        ("br2", "pt-br", "female"),
        ("br3", "pt-br", "male"),
        ("cn1", "zh", "male"),
        ("cr1", "hr", "male"),
        ("cz1", "cs", "female"),
        ("cz2", "cs", "male"),
        ("nl1", "nl", "male"),
        ("nl2", "nl", "male"),
        ("ee1", "et", "male"),
        ("ca1", "fr-ca", "male"),
        ("ca2", "fr-ca", "male"),
        ("fr1", "fr", "male"),
        ("fr3", "fr", "male"),
        ("fr4", "fr", "female"),
        ("fr5", "fr-be", "male"),
        ("fr7", "fr", "male"),
        ("de1", "de", "female"),
        ("de2", "de", "male"),
        ("de4", "de", "male"),
        ("de5", "de", "female"),
        ("de7", "de", "female"),
        ("de8", "de", "male"),
        ("gr1", "el", "male"),
        ("gr2", "el", "male"),
        ("hb1", "he", "male"),
        ("hb2", "he", "female"),
        ("in1", "hi", "male"),
        ("in2", "hi", "female"),
        ("hu1", "hu", "female"),
        ("ic1", "is", "male"),
        ("id1", "id", "male"),
        ("it1", "it", "male"),
        ("it2", "it", "female"),
        ("it3", "it", "male"),
        ("jp1", "ja", "male"),
        ("jp2", "ja", "female"),
        ("jp3", "ja", "female"),
        ("la1", "la", "male"),
        ("lt1", "lt", "male"),
        ("lt2", "lt", "male"),
        ("ma1", "ms", "female"),
        ("nz1", "mi", "male"),
        ("mx1", "es-mx", "male"),
        ("mx2", "es-mx", "male"),
        ("ir1", "fa", "male"),
        ("pt1", "pt", "female"),
        ("es1", "es", "male"),
        ("es2", "es", "male"),
        ("es4", "es", "male"),
        ("sw1", "sv", "male"),
        ("tl1", "te", "female"),
        ("tr1", "tr", "male"),
        ("us2", "en-us", "male"),
        ("vz1", "es-vz", "male"),
    )
)

_MBROLA_VALIDATION: tuple[Voice, ...] = (
    Voice("us1", "en-us", "female"),
    Voice("de3", "de", "female"),
    Voice("fr2", "fr", "female"),
    Voice("br4", "pt-br", "female"),
    Voice("sw2", "sv", "female"),
    Voice("tr2", "tr", "female"),
    Voice("ro1", "ro", "male"),
)

_TTS_TOOLS = ("espeak-ng", "mbrola")
_MIDI_TOOLS = ("fluidsynth",)
_GAME = "usr/share/games"

SOURCES: tuple[Source, ...] = (
    # ---------------------------------------------------------------- real speech, train
    Source(
        "fillets-cs",
        "speech",
        "train",
        _GPL2,
        "deb",
        packages=("fillets-ng-data-cs",),
        include=(f"{_GAME}/fillets-ng/sound/*/cs/*.ogg",),
        # File names are LEVEL-SPEAKER-LINE: m = small fish, v = big fish, others minor roles.
        identity=r"regex:^[a-z0-9]+-([a-z]+)-",
        groups=_SPEECH,
        language="cs",
    ),
    Source(
        "festvox-ru",
        "speech",
        "train",
        "GPL-3 and BSD-like (festvox-ru recordings)",
        "deb",
        packages=("festvox-ru",),
        include=("usr/share/festival/voices/russian/*/wav/*.wav",),
        groups=_SPEECH,
        language="ru",
    ),
    Source(
        "tuxpaint-desc",
        "speech",
        "train",
        "GPL-2",
        "deb",
        packages=("tuxpaint-stamps-default",),
        # Most clips are .ogg; pt_BR ships .wav and one da clip is named .ogg.ogg.
        include=tuple(
            f"usr/share/tuxpaint/stamps/*_desc_{language}.{extension}"
            for language in ("bg", "ca", "da", "el", "fr", "nl", "lt", "ml", "pt_BR")
            for extension in ("ogg", "wav")
        ),
        identity=r"regex:_desc_([A-Za-z_]+)\.",
        groups=_SPEECH,
    ),
    Source(
        "klettres",
        "speech",
        "train",
        _GPL2,
        "deb",
        packages=("klettres-data",),
        include=_audio("usr/share/klettres/*/*"),
        identity="folder:-3",
        groups=_SPEECH,
    ),
    Source(
        "ktuberling",
        "speech",
        "train",
        _GPL2,
        "deb",
        packages=("ktuberling-data",),
        include=_audio("usr/share/ktuberling/sounds/*"),
        exclude=tuple(f"usr/share/ktuberling/sounds/{lang}/*" for lang in ("en", "de", "uk")),
        identity="folder:-2",
        groups=_SPEECH,
    ),
    Source(
        "gcin-voice",
        "speech",
        "train",
        "GPL-3 or LGPL-3 (gcin-voice)",
        "deb",
        packages=("gcin-voice",),
        include=("usr/share/gcin-voice/ogg/*/*.ogg",),
        groups=_SPEECH,
        language="zh",
    ),
    Source(
        "fotaq",
        "speech",
        "train",
        "Flight-of-the-Amazon-Queen freeware licence",
        "queen",
        packages=("flight-of-the-amazon-queen",),
        include=("usr/share/scummvm/flight-of-the-amazon-queen/queen.1c",),
        # Line files are DDNNNN[J|P]k.SB: J is Joe (one actor); P is the character Joe talks to
        # in dialogue file DD. Lines of other shapes (narration, cut scenes) get no identity.
        groups=_SPEECH,
        language="en",
    ),
    # ---------------------------------------------------------------- real speech, validation
    Source(
        "fillets-nl",
        "speech",
        "validation",
        _GPL2,
        "deb",
        packages=("fillets-ng-data-nl",),
        include=(f"{_GAME}/fillets-ng/sound/*/nl/*.ogg",),
        identity=r"regex:^[a-z0-9]+-([a-z]+)-",
        groups=_SPEECH,
        language="nl",
    ),
    Source(
        "ktuberling-validation",
        "speech",
        "validation",
        _GPL2,
        "deb",
        packages=("ktuberling-data",),
        include=_audio(*(f"usr/share/ktuberling/sounds/{lang}" for lang in ("en", "de", "uk"))),
        identity="folder:-2",
        groups=_SPEECH,
    ),
    # ---------------------------------------------------------------- TTS
    Source(
        "mbrola",
        "speech",
        "train",
        "MBROLA voices: non-commercial use only",
        "espeak",
        voices=_MBROLA_TRAIN,
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=_TTS_TOOLS,
        apt_tools=("espeak-ng", "mbrola"),
        limit=25,
        seed=1,
    ),
    Source(
        "mbrola-validation",
        "speech",
        "validation",
        "MBROLA voices: non-commercial use only",
        "espeak",
        voices=_MBROLA_VALIDATION,
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=_TTS_TOOLS,
        apt_tools=("espeak-ng", "mbrola"),
        limit=40,
        seed=2,
    ),
    Source(
        "flite",
        "speech",
        "train",
        "BSD-like (CMU Flite voices)",
        "flite",
        voices=(Voice("awb", "en", "male"), Voice("rms", "en", "male")),
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=("flite",),
        apt_tools=("flite",),
        limit=40,
        seed=3,
    ),
    Source(
        "flite-validation",
        "speech",
        "validation",
        "BSD-like (CMU Flite voices)",
        "flite",
        voices=(Voice("slt", "en", "female"),),
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=("flite",),
        apt_tools=("flite",),
        limit=40,
        seed=4,
    ),
    Source(
        "pico",
        "speech",
        "train",
        "non-free (SVOX Pico lingware)",
        "pico",
        voices=(
            Voice("en-US", "en", "female"),
            Voice("en-GB", "en", "female"),
            Voice("de-DE", "de", "female"),
            Voice("es-ES", "es", "female"),
            Voice("fr-FR", "fr", "female"),
            Voice("it-IT", "it", "female"),
        ),
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=("pico2wave",),
        apt_tools=("libttspico-utils",),
        limit=40,
        seed=5,
    ),
    Source(
        "festival",
        "speech",
        "train",
        "BSD-like (Festvox diphone voices)",
        "festival",
        voices=(
            Voice("kal_diphone", "en", "male"),
            Voice("ked_diphone", "en", "male"),
            Voice("rab_diphone", "en", "male"),
            Voice("don_diphone", "en", "male"),
        ),
        identity="voice",
        groups=_SPEECH,
        origin="tts",
        tools=("text2wave",),
        apt_tools=(
            "festival",
            "festvox-kallpc16k",
            "festvox-kdlpc16k",
            "festvox-rablpc16k",
            "festvox-don",
        ),
        limit=25,
        seed=6,
    ),
    # ---------------------------------------------------------------- real music, train
    Source(
        "warzone2100-music",
        "music",
        "train",
        "GPL-2+",
        "deb",
        packages=("warzone2100-music",),
        include=_audio(f"{_GAME}/warzone2100/music", f"{_GAME}/warzone2100/music/*"),
        groups=("music",),
    ),
    Source(
        "0ad-music",
        "music",
        "train",
        "CC-BY-SA-3.0",
        "deb-zip",
        packages=("0ad-data",),
        inner="*/mods/public/public.zip",
        include=("audio/music/*.ogg",),
        groups=("music",),
    ),
    Source(
        "planetblupi-music",
        "music",
        "train",
        "GPL-3+",
        "deb",
        packages=("planetblupi-music-ogg",),
        include=_audio("usr/share/planetblupi/music"),
        groups=("music",),
    ),
    Source(
        "wesnoth-music",
        "music",
        "train",
        "GPL-2+",
        "deb",
        packages=("wesnoth-1.16-music",),
        include=_audio(f"{_GAME}/wesnoth/*/data/core/music"),
        groups=("music",),
    ),
    Source(
        "supertux-music",
        "music",
        "train",
        "GPL-3+ / CC-BY-SA (supertux-data)",
        "deb",
        packages=("supertux-data",),
        include=_audio(f"{_GAME}/supertux2/music", f"{_GAME}/supertux2/music/*"),
        groups=("music",),
    ),
    Source(
        "colobot-music",
        "music",
        "train",
        "GPL-3+",
        "deb",
        packages=("colobot-common-sounds",),
        include=_audio(f"{_GAME}/colobot/music"),
        groups=("music",),
    ),
    Source(
        "singularity-music",
        "music",
        "train",
        "CC-BY-SA (singularity-music)",
        "deb",
        packages=("singularity-music",),
        include=_audio(f"{_GAME}/singularity/music"),
        groups=("music",),
    ),
    Source(
        "freedroidrpg-music",
        "music",
        "train",
        "GPL-2+",
        "deb",
        packages=("freedroidrpg-data",),
        include=_audio("usr/share/freedroidrpg/data/sound/music"),
        groups=("music",),
    ),
    Source(
        "drascula-music",
        "music",
        "train",
        "Drascula freeware licence",
        "deb",
        packages=("drascula-music",),
        # The language folders are symlinks to audio/: links are skipped, which dedupes.
        include=_audio("usr/share/scummvm/drascula/*"),
        groups=("music",),
    ),
    Source(
        "asc-music",
        "music",
        "train",
        "GPL-2+",
        "deb",
        packages=("asc-music",),
        include=_audio(f"{_GAME}/asc/music"),
        groups=("music",),
    ),
    # ---------------------------------------------------------------- real music, validation
    Source(
        "hedgewars-music",
        "music",
        "validation",
        "GPL-2 (hedgewars-data)",
        "deb",
        packages=("hedgewars-data",),
        include=_audio(f"{_GAME}/hedgewars/Data/Music"),
        groups=("music",),
    ),
    Source(
        "fillets-music",
        "music",
        "validation",
        _GPL2,
        "deb",
        packages=("fillets-ng-data",),
        include=_audio(f"{_GAME}/fillets-ng/music"),
        groups=("music",),
    ),
    Source(
        "warmux-music",
        "music",
        "validation",
        "GPL-2+ (warmux-data)",
        "deb",
        packages=("warmux-data",),
        include=_audio(f"{_GAME}/warmux/music/*"),
        groups=("music",),
    ),
    # ---------------------------------------------------------------- music as stems
    Source(
        "midi-stems",
        "stem",
        "train",
        "GPL-2+ / Artistic (MIDI) rendered with MIT / GPL-2 soundfonts",
        "midi",
        packages=(
            "simutrans-data",
            "openttd-openmsx",
            "planetblupi-music-midi",
            "fluid-soundfont-gm",
            "timgm6mb-soundfont",
            "denemo-data",
            "avldrums.lv2-soundfont",
            "hydrogen-drumkits",
        ),
        include=("usr/share/games/simutrans/music/*.mid", "*/openmsx/*.mid", "*/planetblupi/*.mid"),
        soundfonts=("*/FluidR3_GM.sf2", "*/TimGM6mb.sf2", "*/A320U.sf2"),
        groups=("stems",),
        origin="midi",
        tools=_MIDI_TOOLS,
        apt_tools=("fluidsynth",),
        python_modules=("mido",),
        # fluidsynth runs at 10-20x real time per stem on a shared 2-core machine: songs are
        # cut to 45 s and 24 songs are drawn, which keeps this source near 5 minutes.
        limit=24,
        seconds=45.0,
        seed=13,
    ),
    Source(
        "mma-stems",
        "stem",
        "train",
        "GPL-2+ (MMA grooves) rendered with MIT / GPL-2 soundfonts",
        "mma",
        packages=("fluid-soundfont-gm", "timgm6mb-soundfont", "denemo-data", "hydrogen-drumkits"),
        soundfonts=("*/FluidR3_GM.sf2", "*/TimGM6mb.sf2", "*/A320U.sf2"),
        groups=("stems",),
        origin="midi",
        tools=("mma", "fluidsynth"),
        apt_tools=("mma", "fluidsynth"),
        python_modules=("mido",),
        limit=24,
        seconds=36.0,
        seed=7,
    ),
    Source(
        "music21-stems",
        "stem",
        "train",
        "BSD-3-Clause (music21 corpus, public-domain scores) rendered with MIT / GPL-2 soundfonts",
        "music21",
        packages=("fluid-soundfont-gm", "timgm6mb-soundfont", "denemo-data"),
        soundfonts=("*/FluidR3_GM.sf2", "*/TimGM6mb.sf2", "*/A320U.sf2"),
        groups=("stems",),
        origin="midi",
        tools=_MIDI_TOOLS,
        apt_tools=("fluidsynth",),
        python_modules=("music21", "mido"),
        limit=20,
        seconds=45.0,
        seed=8,
    ),
    # Validation stems: held-out compositions (other grooves, other chorales) rendered with a
    # soundfont no training stem uses (GeneralUser from minuet-data).
    Source(
        "mma-stems-validation",
        "stem",
        "validation",
        "GPL-2+ (MMA grooves) rendered with the GeneralUser GS licence soundfont",
        "mma",
        packages=("minuet-data",),
        soundfonts=("*/GeneralUser*.sf2",),
        groups=("stems",),
        origin="midi",
        tools=("mma", "fluidsynth"),
        apt_tools=("mma", "fluidsynth"),
        python_modules=("mido",),
        limit=8,
        seconds=36.0,
        seed=9,
    ),
    Source(
        "music21-stems-validation",
        "stem",
        "validation",
        "BSD-3-Clause (music21 corpus) rendered with the GeneralUser GS licence soundfont",
        "music21",
        packages=("minuet-data",),
        soundfonts=("*/GeneralUser*.sf2",),
        groups=("stems",),
        origin="midi",
        tools=_MIDI_TOOLS,
        apt_tools=("fluidsynth",),
        python_modules=("music21", "mido"),
        limit=8,
        seconds=45.0,
        seed=10,
    ),
    # ---------------------------------------------------------------- sound effects, train
    Source(
        "0ad-sfx",
        "sfx",
        "train",
        "CC-BY-SA-3.0",
        "deb-zip",
        packages=("0ad-data",),
        inner="*/mods/public/public.zip",
        include=("audio/*.ogg",),
        # Voices are soldiers' shouts: speech, not effects.
        exclude=("audio/music/*", "audio/voice/*"),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "tuxpaint-sounds",
        "sfx",
        "train",
        "GPL-2",
        "deb",
        packages=("tuxpaint-stamps-default",),
        include=_audio("usr/share/tuxpaint/stamps/*"),
        exclude=("*_desc*",),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "qabcs-noises",
        "sfx",
        "train",
        "GPL-3+ / CC0 (qabcs-data)",
        "deb",
        packages=("qabcs-data",),
        include=_audio("usr/share/qabcs/abcs/all/noises"),
        groups=("sfx",),
    ),
    Source(
        "sonic-pi-samples",
        "sfx",
        "train",
        "CC0 / CC-BY-SA-4.0 (sonic-pi-samples)",
        "deb",
        packages=("sonic-pi-samples",),
        include=_audio("usr/share/sonic-pi/samples"),
        groups=("sfx",),
    ),
    Source(
        "lmms-samples",
        "sfx",
        "train",
        "GPL-2+ (lmms-common)",
        "deb",
        packages=("lmms-common",),
        include=_audio("usr/share/lmms/samples/*"),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "scratch-sounds",
        "sfx",
        "train",
        "CC-BY-SA-3.0 (scratch media)",
        "deb",
        packages=("scratch",),
        include=_audio("usr/share/scratch/Media/Sounds/*"),
        # Vocals and Human hold singing and speech.
        exclude=("*/Sounds/Vocals/*", "*/Sounds/Human/*"),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "hydrogen-effects",
        "sfx",
        "train",
        "GPL-2+ / CC-BY-3.0 (hydrogen-drumkits-effects)",
        "deb",
        packages=("hydrogen-drumkits-effects",),
        include=_audio("usr/share/hydrogen/data/drumkits/*"),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "emacspeak-icons",
        "sfx",
        "train",
        "GPL-2+ (emacspeak)",
        "deb",
        packages=("emacspeak",),
        include=_audio("usr/share/emacs/site-lisp/emacspeak/sounds/*"),
        # Prompts are spoken words.
        exclude=("*/sounds/prompts/*",),
        identity="folder:-2",
        groups=("sfx",),
    ),
    Source(
        "noise",
        "noise",
        "train",
        "CC0 (generated)",
        "noise",
        groups=("sfx",),
        origin="generated",
        limit=60,
        seconds=10.0,
        seed=11,
    ),
    # ---------------------------------------------------------------- sound effects, validation
    Source(
        "wesnoth-sfx",
        "sfx",
        "validation",
        "GPL-2+ (wesnoth-1.16-data)",
        "deb",
        packages=("wesnoth-1.16-data",),
        include=_audio(
            f"{_GAME}/wesnoth/*/data/core/sounds",
            f"{_GAME}/wesnoth/*/data/core/sounds/*",
            f"{_GAME}/wesnoth/*/sounds",
        ),
        groups=("sfx",),
    ),
    Source(
        "supertux-sfx",
        "sfx",
        "validation",
        "GPL-3+ / CC-BY-SA (supertux-data)",
        "deb",
        packages=("supertux-data",),
        include=_audio(f"{_GAME}/supertux2/sounds"),
        groups=("sfx",),
    ),
    Source(
        "colobot-sfx",
        "sfx",
        "validation",
        "GPL-3+",
        "deb",
        packages=("colobot-common-sounds",),
        include=_audio(f"{_GAME}/colobot/sounds"),
        groups=("sfx",),
    ),
    Source(
        "noise-validation",
        "noise",
        "validation",
        "CC0 (generated)",
        "noise",
        groups=("sfx",),
        origin="generated",
        limit=15,
        seconds=10.0,
        seed=12,
    ),
    # ---------------------------------------------------------------- rooms
    Source(
        "rooms",
        "rir",
        "train",
        "CC0 (simulated with pyroomacoustics)",
        "rooms",
        groups=("rirs",),
        origin="simulated",
        python_modules=("pyroomacoustics",),
        limit=200,
        seed=100_000,
    ),
    Source(
        "rooms-validation",
        "rir",
        "validation",
        "CC0 (simulated with pyroomacoustics)",
        "rooms",
        groups=("rirs",),
        origin="simulated",
        python_modules=("pyroomacoustics",),
        limit=50,
        seed=900_000,
    ),
)

#: RT60 range of the simulated rooms per split, in seconds (DATA.md: 0.2-0.8 s for training,
#: up to 1.2 s for validation).
ROOM_RT60: dict[str, tuple[float, float]] = {"train": (0.2, 0.8), "validation": (0.2, 1.2)}


def source_by_name(name: str) -> Source:
    for source in SOURCES:
        if source.name == name:
            return source
    raise KeyError(f"unknown source {name!r}; known: {', '.join(s.name for s in SOURCES)}")


def validate_table(sources: tuple[Source, ...] = SOURCES) -> None:
    """Check the table: unique names, no reserved package or voice, one split per unit.

    Raises:
        ReservedSourceError: a source names a reserved package or voice.
        ValueError: duplicate names, or a package/voice used in both splits without disjoint
            include patterns.
    """
    names = [source.name for source in sources]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"duplicate source names: {sorted(duplicates)}")
    voice_split: dict[tuple[str, str], str] = {}
    for source in sources:
        for package in source.packages:
            check_package_allowed(package)
        for voice in source.voices:
            if source.method == "espeak":
                check_voice_allowed(voice.name)
            key = (source.method, voice.name)
            if voice_split.setdefault(key, source.split) != source.split:
                raise ValueError(f"voice {voice.name!r} ({source.method}) is in both splits")
