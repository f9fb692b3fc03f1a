"""Temporal AU analysis — per AU onset, apex and offset (frames of the evidence and seconds), peak intensity
A–E, co-activation and which AUs lead — and the ``Timeline`` that says how a rationale writes times.

Rationales speak about what the model sees: a time is written in seconds from the start of the clip (the
default; Qwen2.5-VL/Qwen3-VL encode absolute time in their video positions), or as the number (from 1) of the
frame the model is shown under the recipe's frame policy — never as a source frame number (frame 37 of a 25 fps
clip means nothing to a model shown 8 frames). Images have peaks only.

NaN per-frame values (no face, not annotated) are unknown: they never start, end or peak an AU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emoreason.cot.evidence import AUEvidence
from emoreason.knowledge.facs import intensity_letter
from emoreason.video import FramePolicy, sampled_indices

TIME_UNITS = ("seconds", "sampled_frames")


@dataclass
class Timeline:
    """The clip's time axis and how rationales write a time on it."""

    unit: str  # seconds | sampled_frames
    fps: float
    n_frames: int  # frames of the evidence (= of the media: CSVs are checked against it)
    sampled: list[int] | None = None  # source index of each frame the model is shown (sampled_frames)

    @classmethod
    def build(cls, unit: str, fps: float, n_frames: int, policy: FramePolicy | None = None) -> Timeline:
        if unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {TIME_UNITS}, got {unit!r}")
        if unit == "sampled_frames":
            if policy is None:
                raise ValueError("time_unit sampled_frames needs the recipe's frame policy (frame_policy: {fps, "
                                 "max_frames, ...})")
            return cls(unit, fps, n_frames, sampled_indices(n_frames, fps, policy))
        return cls(unit, fps, n_frames)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    @property
    def shown(self) -> int:
        """Frames the model is shown (sampled_frames), or 0."""
        return len(self.sampled or [])

    def seconds(self, frame: int) -> float:
        return frame / self.fps

    def sampled_number(self, frame: int) -> int:
        """1-based number of the shown frame nearest to source frame ``frame``."""
        assert self.sampled
        return int(np.argmin([abs(s - frame) for s in self.sampled])) + 1

    def say(self, frame: int) -> str:
        """How a rationale writes the time of source frame ``frame``."""
        if self.unit == "sampled_frames":
            return f"frame {self.sampled_number(frame)}"
        return f"{self.seconds(frame):.1f} s"

    def claim_seconds(self, value: float, unit: str) -> float | None:
        """A claimed time (value + unit ``s`` | ``frame``) in seconds on this clip; None when the unit is not the
        timeline's own (a source frame number in a seconds rationale cannot be placed)."""
        if unit == "s" and self.unit == "seconds":
            return value
        if unit == "frame" and self.unit == "sampled_frames":
            k = int(round(value))
            if 1 <= k <= self.shown:
                return self.seconds(self.sampled[k - 1])
            return -1.0 if k < 1 else float("inf")  # outside the frames shown
        return None

    def tolerance_s(self, base: float) -> float:
        """How far a claimed time may sit from the evidence: ``base`` seconds, at least one shown-frame step."""
        if self.unit == "sampled_frames" and self.shown > 1:
            step = (self.sampled[-1] - self.sampled[0]) / (self.shown - 1) / self.fps
            return max(base, step)
        return max(base, 0.5 / self.fps)


@dataclass
class AUTrack:
    au: int
    peak: float | None  # None: present, intensity unknown (occurrence-only labels, prototypes)
    letter: str | None
    onset: int | None = None
    apex: int | None = None  # None for occurrence-only AUs (0/1 has no apex)
    offset: int | None = None  # first frame back below threshold after the apex (None: active to the end)
    last_active: int | None = None
    onset_s: float | None = None
    apex_s: float | None = None
    offset_s: float | None = None
    last_active_s: float | None = None


@dataclass
class TemporalAnalysis:
    tracks: list[AUTrack]  # present AUs, ordered by onset (then AU number)
    n_frames: int | None = None
    fps: float | None = None
    leaders: list[int] = field(default_factory=list)  # AUs with the earliest onset
    coactive: list[tuple[int, int, int]] = field(default_factory=list)  # (AU a, AU b, first frame both on)

    @property
    def aus(self) -> list[int]:
        return sorted(t.au for t in self.tracks)

    @property
    def timed(self) -> bool:
        return any(t.onset is not None for t in self.tracks)

    @property
    def duration_s(self) -> float | None:
        return self.n_frames / self.fps if self.n_frames and self.fps else None

    def track(self, au: int) -> AUTrack | None:
        return next((t for t in self.tracks if t.au == au), None)


def _letter(peak: float | None) -> str | None:
    return None if peak is None else intensity_letter(peak) or "A"


def analyse(evidence: AUEvidence, threshold: float = 0.5) -> TemporalAnalysis:
    """Onset = first frame at or above ``threshold`` (1 for occurrence); apex = the maximum; offset = first frame
    after the apex (after the onset, for occurrence) below threshold. NaN frames are skipped."""
    present = evidence.present(threshold)
    if not evidence.frames:
        tracks = [AUTrack(au, evidence.peaks[au], _letter(evidence.peaks[au])) for au in present]
        return TemporalAnalysis(tracks)
    fps = evidence.fps
    n = evidence.n_frames
    tracks = []
    active_masks: dict[int, np.ndarray] = {}
    for au in present:
        values = np.asarray(evidence.frames.get(au, []), dtype=float)
        occurrence = au in evidence.occurrence
        on_level = 1.0 if occurrence else threshold
        with np.errstate(invalid="ignore"):
            active = np.isfinite(values) & (values >= on_level)
            below = np.isfinite(values) & (values < on_level)
        if not active.any():
            continue
        onset = int(np.flatnonzero(active)[0])
        apex = None if occurrence else int(np.nanargmax(values))
        after = np.flatnonzero(below[(apex if apex is not None else onset):])
        offset = int((apex if apex is not None else onset) + after[0]) if len(after) else None
        last = int(np.flatnonzero(active)[-1])
        peak = evidence.peaks.get(au)
        track = AUTrack(au, peak, _letter(peak), onset, apex, offset, last)
        if fps:
            track.onset_s, track.last_active_s = onset / fps, last / fps
            track.apex_s = apex / fps if apex is not None else None
            track.offset_s = offset / fps if offset is not None else None
        tracks.append(track)
        active_masks[au] = active
    tracks.sort(key=lambda t: (t.onset, t.au))
    leaders = [t.au for t in tracks if t.onset == tracks[0].onset] if tracks else []
    coactive = []
    for i, a in enumerate(tracks):
        for b in tracks[i + 1:]:
            both = np.flatnonzero(active_masks[a.au] & active_masks[b.au])
            if len(both):
                coactive.append((a.au, b.au, int(both[0])))
    return TemporalAnalysis(tracks, n, fps, leaders, coactive)
