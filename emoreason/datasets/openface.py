"""OpenFace 2.x per-frame CSV reader (FeatureExtraction output).

Columns: ``frame, face_id, timestamp, confidence, success, …, AU01_r … AU45_r, AU01_c … AU45_c`` — written
with ", " separators. ``_r`` is intensity 0–5 (17 AUs), ``_c`` occurrence 0/1 (18 AUs, AU28 has no _r).
Baltrušaitis et al., "OpenFace 2.0", FG 2018.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_AU_COLUMN = re.compile(r"^AU(\d{2})_([rc])$")


class OpenFaceError(ValueError):
    pass


@dataclass
class OpenFaceTrack:
    path: str
    frame: np.ndarray
    timestamp: np.ndarray
    confidence: np.ndarray
    success: np.ndarray
    intensity: dict[int, np.ndarray] = field(default_factory=dict)  # AU → per-frame 0–5
    occurrence: dict[int, np.ndarray] = field(default_factory=dict)  # AU → per-frame 0/1
    face_id: np.ndarray | None = None  # per row; several ids when a multi-face tracker wrote the file

    def __len__(self) -> int:
        return len(self.frame)

    def select(self, mask: np.ndarray) -> OpenFaceTrack:
        """The rows where ``mask`` holds (e.g. one face of a multi-face file)."""
        return OpenFaceTrack(self.path, self.frame[mask], self.timestamp[mask], self.confidence[mask],
                             self.success[mask], {a: v[mask] for a, v in self.intensity.items()},
                             {a: v[mask] for a, v in self.occurrence.items()},
                             self.face_id[mask] if self.face_id is not None else None)

    def valid(self, min_confidence: float = 0.8) -> np.ndarray:
        return (self.success > 0) & (self.confidence >= min_confidence)

    def au_frames(self, min_confidence: float = 0.8) -> dict[int, np.ndarray]:
        """Per-frame intensities, NaN (unknown — not "inactive") where tracking failed or confidence is low."""
        ok = self.valid(min_confidence)
        return {au: np.where(ok, values, np.nan) for au, values in self.intensity.items()}

    @property
    def fps(self) -> float | None:
        if len(self.timestamp) < 2:
            return None
        span = float(self.timestamp[-1] - self.timestamp[0])
        return (len(self.timestamp) - 1) / span if span > 0 else None


def read_openface_csv(path: str | Path) -> OpenFaceTrack:
    """Read one OpenFace CSV; OpenFaceError names the file and line of anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OpenFace CSV not found")
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    if not rows:
        raise OpenFaceError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    for needed in ("frame", "confidence", "success"):
        if needed not in header:
            raise OpenFaceError(f"{path}:1: missing column {needed!r}")
    columns: dict[str, list[float]] = {h: [] for h in header}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise OpenFaceError(f"{path}:{number}: expected {len(header)} values, found {len(row)}")
        try:
            for name, value in zip(header, row, strict=True):
                columns[name].append(float(value))
        except ValueError as exc:
            raise OpenFaceError(f"{path}:{number}: {exc}") from exc
    track = OpenFaceTrack(
        path=str(path), frame=np.asarray(columns["frame"], dtype=int),
        timestamp=np.asarray(columns.get("timestamp", columns["frame"]), dtype=float),
        confidence=np.asarray(columns["confidence"]), success=np.asarray(columns["success"]),
        face_id=np.asarray(columns["face_id"], dtype=int) if "face_id" in columns else None)
    for name, values in columns.items():
        match = _AU_COLUMN.match(name)
        if match:
            target = track.intensity if match.group(2) == "r" else track.occurrence
            target[int(match.group(1))] = np.asarray(values, dtype=float)
    return track


def write_openface_csv(path: str | Path, au_frames: dict[int, list[float]], fps: float = 30.0,
                       confidence: float = 0.98, success: list[bool] | None = None) -> Path:
    """Write a CSV in OpenFace's layout (", " separators); used to make fixtures and by detectors' exports.
    ``success`` (per frame) marks frames where no face was tracked (written with confidence 0)."""
    path = Path(path)
    n = max((len(v) for v in au_frames.values()), default=0)
    r_aus = sorted(au_frames)
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"AU{a:02d}_r" for a in r_aus] + [f"AU{a:02d}_c" for a in r_aus]
    lines = [", ".join(header)]
    for i in range(n):
        tracked = success is None or bool(success[i])
        values = [str(i + 1), "0", f"{i / fps:.3f}", f"{confidence if tracked else 0.0:.2f}", str(int(tracked))]
        values += [f"{au_frames[a][i]:.2f}" for a in r_aus]
        values += ["1.00" if au_frames[a][i] >= 1.0 else "0.00" for a in r_aus]
        lines.append(", ".join(values))
    path.write_text("\n".join(lines) + "\n")
    return path
