"""Temporal AU analysis: per AU onset, apex and offset frames (and seconds), peak intensity A–E,
co-activation and which AUs lead. Images (no per-frame values) get peaks only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emoreason.cot.evidence import AUEvidence
from emoreason.knowledge.facs import intensity_letter


@dataclass
class AUTrack:
    au: int
    peak: float
    letter: str
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None  # first frame back below threshold after the apex (None: still active at the end)
    onset_s: float | None = None
    apex_s: float | None = None
    offset_s: float | None = None


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


def analyse(evidence: AUEvidence, threshold: float = 0.5) -> TemporalAnalysis:
    """Onset = first frame at or above ``threshold``; apex = the maximum; offset = first frame after the apex
    below threshold."""
    present = evidence.present(threshold)
    if not evidence.frames:
        tracks = [AUTrack(au, evidence.peaks[au], intensity_letter(evidence.peaks[au]) or "A") for au in present]
        return TemporalAnalysis(tracks)
    fps = evidence.fps
    n = max(len(v) for v in evidence.frames.values())
    tracks = []
    for au in present:
        values = np.asarray(evidence.frames.get(au, []), dtype=float)
        if not len(values):
            continue
        active = np.flatnonzero(values >= threshold)
        if not len(active):
            continue
        apex = int(np.nanargmax(values))  # NaN = not measured (no face, region covered)
        after = np.flatnonzero(values[apex:] < threshold)
        offset = int(apex + after[0]) if len(after) else None
        onset = int(active[0])
        track = AUTrack(au, float(values[apex]), intensity_letter(float(values[apex])) or "A", onset, apex, offset)
        if fps:
            track.onset_s, track.apex_s = onset / fps, apex / fps
            track.offset_s = offset / fps if offset is not None else None
        tracks.append(track)
    tracks.sort(key=lambda t: (t.onset, t.au))
    leaders = [t.au for t in tracks if t.onset == tracks[0].onset] if tracks else []
    coactive = []
    for i, a in enumerate(tracks):
        for b in tracks[i + 1:]:
            both = np.flatnonzero((np.asarray(evidence.frames[a.au]) >= threshold)
                                  & (np.asarray(evidence.frames[b.au]) >= threshold))
            if len(both):
                coactive.append((a.au, b.au, int(both[0])))
    return TemporalAnalysis(tracks, n, fps, leaders, coactive)
