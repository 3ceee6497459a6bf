"""A session: the tracks the user is looking at and listening to (no Qt, no torch).

The mixture is the first track; separated stems, residuals and recordings are added after
it. Which tracks are audible follows the usual mixer rules: if any track is soloed only soloed
tracks play, muted tracks never play. The A/B switch swaps between the mixture alone (A) and
the current solo/mute selection (B) without touching the flags.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_ids = itertools.count(1)


@dataclass(eq=False)
class Track:
    """One audio track.

    Attributes:
        name: Label shown in the track header and used for export names.
        samples: ``float32`` (or ``float64`` for 32-bit sources) array, shape
            ``(frames, channels)``.
        sample_rate: Samples per second.
        path: File it came from (or was recorded to), if any.
        kind: ``"mixture"``, ``"stem"``, ``"residual"`` or ``"recording"``.
        source_subtype: soundfile subtype of the original file (``PCM_16``...), so exports
            can keep it.
        muted, solo, gain: Mixer state; ``gain`` is linear.
        parent_id: For stems, the id of the mixture they were separated from.
    """

    name: str
    samples: np.ndarray
    sample_rate: int
    path: Path | None = None
    kind: str = "mixture"
    source_subtype: str | None = None
    muted: bool = False
    solo: bool = False
    gain: float = 1.0
    parent_id: int | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self) -> None:
        if self.samples.ndim == 1:
            self.samples = self.samples[:, None]
        if self.samples.ndim != 2:
            raise ValueError(f"Track samples must be (frames, channels), got {self.samples.shape}")
        if self.samples.dtype not in (np.float32, np.float64):
            self.samples = self.samples.astype(np.float32)

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


Listener = Callable[[str, Track | None], None]


class Session:
    """An ordered list of tracks plus the A/B state, with change notifications.

    Listeners are called as ``listener(event, track)`` with events ``"added"``,
    ``"removed"``, ``"changed"`` (mixer flags or gain) and ``"cleared"``.
    """

    def __init__(self) -> None:
        self._tracks: list[Track] = []
        self._listeners: list[Listener] = []
        self.ab_mixture_only = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, event: str, track: Track | None) -> None:
        for listener in list(self._listeners):
            listener(event, track)

    def __iter__(self) -> Iterator[Track]:
        return iter(list(self._tracks))

    def __len__(self) -> int:
        return len(self._tracks)

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def get(self, track_id: int) -> Track | None:
        return next((t for t in self._tracks if t.id == track_id), None)

    def add(self, track: Track) -> Track:
        self._tracks.append(track)
        self._notify("added", track)
        return track

    def remove(self, track: Track) -> None:
        if track in self._tracks:
            self._tracks.remove(track)
            self._notify("removed", track)

    def clear(self) -> None:
        self._tracks.clear()
        self._notify("cleared", None)

    def set_flags(
        self,
        track: Track,
        *,
        muted: bool | None = None,
        solo: bool | None = None,
        gain: float | None = None,
    ) -> None:
        if muted is not None:
            track.muted = muted
        if solo is not None:
            track.solo = solo
        if gain is not None:
            track.gain = float(gain)
        self._notify("changed", track)

    def set_ab(self, mixture_only: bool) -> None:
        """A/B: ``True`` plays the mixture alone (A), ``False`` the selection (B)."""
        self.ab_mixture_only = mixture_only
        self._notify("changed", None)

    @property
    def mixture(self) -> Track | None:
        return next((t for t in self._tracks if t.kind == "mixture"), None)

    def audible_tracks(self) -> list[Track]:
        """Tracks that playback should mix right now, after solo, mute and A/B."""
        if self.ab_mixture_only:
            mixture = self.mixture
            return [mixture] if mixture is not None else []
        soloed = [t for t in self._tracks if t.solo]
        if soloed:
            return soloed
        # Without solo, stems would double the mixture: play the mixture unless it is
        # muted, plus any unmuted non-mixture tracks the user has explicitly un-muted.
        return [t for t in self._tracks if not t.muted]

    @property
    def sample_rate(self) -> int | None:
        """The playback rate: the first track's (stems keep their mixture's rate)."""
        return self._tracks[0].sample_rate if self._tracks else None

    @property
    def frames(self) -> int:
        return max((t.frames for t in self._tracks), default=0)
