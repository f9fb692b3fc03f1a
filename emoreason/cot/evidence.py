"""AU evidence for a sample, from whichever source exists (in this order):

1. per-frame AU values the dataset ships (SynthFACS ground truth, DISFA, BP4D, Aff-Wild2 AU);
2. peak AU labels the dataset ships (CK+ FACS files, FEA-20K);
3. an OpenFace 2.x CSV beside the clip (same stem);
4. a detector behind the ``AUDetector`` interface (e.g. ``emoreason.au.LandmarkAUDetector``); one that saw no
   face returns ``{}`` and the sample falls through to 5;
5. nothing but the emotion label: the FACS prototype of that emotion, marked ``observed=False`` so the
   rationale is never presented as observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from emoreason.datasets.openface import OpenFaceError, read_openface_csv
from emoreason.knowledge import prototypes_for
from emoreason.records import SampleRecord

DEFAULT_PROTOTYPE_INTENSITY = 3.0


class AUDetector(Protocol):
    """Any AU detector: per-frame intensities (0–5) per AU for a record's media, plus the frame rate; ``{}``
    when the media shows no usable face."""

    name: str

    def detect(self, record: SampleRecord) -> tuple[dict[int, np.ndarray], float | None]: ...


@dataclass
class AUEvidence:
    source: str  # dataset_frames | dataset_labels | openface | detector:<name> | prototype
    observed: bool  # False only for prototype-conditioned evidence
    peaks: dict[int, float]  # AU → peak intensity 0–5 (present AUs only after thresholding)
    frames: dict[int, np.ndarray] | None = None  # AU → per-frame intensity, when timing is known
    fps: float | None = None
    detail: dict = field(default_factory=dict)

    def present(self, threshold: float) -> list[int]:
        return sorted(au for au, v in self.peaks.items() if v >= threshold)


def _numeric(values: list) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def _record_fps(record: SampleRecord) -> float | None:
    fps = record.media.get("fps")
    return float(fps) if fps else None


def evidence_for(record: SampleRecord, detector: AUDetector | None = None, use_openface: bool = True,
                 allow_prototype: bool = True, min_confidence: float = 0.8) -> AUEvidence | None:
    """The best AU evidence for ``record``, or None when there is none (no AUs and prototypes disallowed)."""
    if record.au_frames is not None:  # {} is evidence too: coded, and nothing was active
        frames = {int(a): np.nan_to_num(_numeric(v), nan=0.0) for a, v in record.au_frames.items()}
        peaks = {a: float(v.max()) for a, v in frames.items() if len(v) and v.max() > 0}
        return AUEvidence("dataset_frames", True, peaks, frames, _record_fps(record))
    if record.au_intensity or record.aus:
        peaks = {int(a): float(v) for a, v in record.au_intensity.items()}
        for au in record.aus:  # AUs labelled present without an intensity: count as marked (C)
            peaks.setdefault(int(au), DEFAULT_PROTOTYPE_INTENSITY)
        return AUEvidence("dataset_labels", True, peaks)
    if use_openface and record.media.get("type") == "video":
        csv_path = Path(str(record.media["path"])).with_suffix(".csv")
        if csv_path.is_file():
            try:
                track = read_openface_csv(csv_path)
            except (OpenFaceError, FileNotFoundError) as exc:
                return AUEvidence("openface_error", True, {}, detail={"error": str(exc)})
            frames = track.au_frames(min_confidence)
            peaks = {a: float(v.max()) for a, v in frames.items() if len(v) and v.max() > 0}
            return AUEvidence("openface", True, peaks, frames, track.fps, {"csv": str(csv_path)})
    if detector is not None:
        frames, fps = detector.detect(record)
        if frames:  # {} = the detector saw no usable face: no evidence (not "nothing active")
            peaks = {a: float(np.nanmax(v)) for a, v in frames.items()
                     if np.isfinite(v).any() and np.nanmax(v) > 0}  # NaN = frame not measured
            return AUEvidence(f"detector:{detector.name}", True, peaks, frames, fps)
    if allow_prototype and record.emotion:
        protos = prototypes_for(record.emotion)
        aus = sorted(protos[0].aus) if protos else []
        return AUEvidence("prototype", False, {a: DEFAULT_PROTOTYPE_INTENSITY for a in aus},
                          detail={"prototype_source": protos[0].source if protos else None})
    return None
