"""AU evidence for a sample, from whichever source exists (in this order):

1. per-frame AU values the dataset ships (SynthFACS ground truth, DISFA, BP4D, Aff-Wild2 AU) — ``dataset_frames``
   (``synthetic`` for SynthFACS);
2. peak AU labels the dataset ships (CK+ FACS files, FEA-20K) — ``dataset_labels``;
3. an AU CSV in OpenFace 2.x layout (OpenFace's FeatureExtraction or ``emoreason au-detect``) — ``openface``;
4. a detector behind the ``AUDetector`` interface (``detector: landmarks`` — ``emoreason.au.LandmarkAUDetector``)
   — ``detector:<name>``; one that saw no usable face returns ``{}`` and the sample falls through to 5;
5. nothing but the emotion label: the FACS prototype of that emotion — ``prototype``, ``observed=False``, so the
   rationale never presents it as observed.

Where the CSV for a clip lives (the convention ``synth-cot`` documents):

* a video ``clips/a.mp4`` → ``clips/a.csv`` beside it;
* a frame folder ``Clip/clip_224x224/00001/`` → ``Clip/clip_224x224/00001.csv`` beside the folder (the name
  OpenFace's ``-fdir`` gives its output);
* an image ``img/a.jpg`` → ``img/a.csv``;
* or, with ``au_dir``, the same relative path under ``au_dir`` as the media has under the dataset root
  (``au_dir/Clip/clip_224x224/00001.csv``), for CSVs kept outside a read-only dataset tree — or flat,
  ``au_dir/00001.csv``, as ``emoreason au-detect ... --out AU_DIR`` names its outputs.

A CSV with ``emoreason au-detect``'s ``<name>.au.json`` beside it is recorded as ``detector:landmarks``
evidence, and only the AUs validated for its baseline mode count (``landmark_aus``, the same rule as
``detector: landmarks``: docs/au_estimator.md); any other as ``csv_source`` (``openface`` by default). An AU
measured on fewer than ``min_face_fraction`` of the face frames (a hand over the mouth all clip long) is not
coded: unknown, never "absent".

A CSV must match its media: the same number of frames (exactly for frame folders and images, within 2 % for
videos, whose containers miscount by a frame or two) and, for videos, the same frame rate within 5 %. A mismatch
is a per-sample ``EvidenceError``, never silently used. Frames without a tracked face (OpenFace ``success`` 0 or
low ``confidence``, a detector's NaN) are unknown (NaN), not "no AU active"; a clip with too few face frames has
no evidence from that source at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from emoreason.datasets.openface import OpenFaceError, read_openface_csv
from emoreason.knowledge import OCCURRENCE_ONLY, coded_aus, prototypes_for
from emoreason.knowledge.coded_aus import OPENFACE_AUS
from emoreason.records import SampleRecord
from emoreason.video import frame_files

log = logging.getLogger(__name__)

# Relative tolerances between a CSV and its media (see the module docstring).
VIDEO_FRAME_TOLERANCE = 0.02
FPS_TOLERANCE = 0.05


class EvidenceError(ValueError):
    """Evidence that exists but cannot be used for this sample (e.g. a CSV that does not match its media)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class AUDetector(Protocol):
    """Any AU detector: per-frame intensities (0–5, NaN where no face was found) per AU for a record's media,
    plus the frame rate of those frames; ``{}`` when the media shows no usable face. ``aus`` (optional
    attribute): a list of the AUs it estimates (otherwise the AUs it returns count as coded). ``fingerprint()``
    (optional method): a string that changes whenever its output would (model, version, settings); ``synth-cot``
    rebuilds resumed shards made under another one."""

    name: str

    def detect(self, record: SampleRecord) -> tuple[dict[int, np.ndarray], float | None]: ...


_DETECTORS: dict[str, Callable[..., AUDetector]] = {}


def register_detector(name: str, factory: Callable[..., AUDetector]) -> None:
    """Make a detector available to ``synth-cot`` as ``detector: NAME`` (or ``{name: NAME, **options}``)."""
    _DETECTORS[name] = factory


def make_detector(spec: str | dict | None, options: dict | None = None) -> AUDetector | None:
    """The detector a CoT config names (``detector: NAME`` + ``detector_options``, or ``{name: NAME, ...}``):
    one registered here, else one of ``emoreason.au``'s (``landmarks``, the `[au]` extra)."""
    if spec is None or spec == "":
        return None
    options = dict(options or {})
    if isinstance(spec, dict):
        options.update({k: v for k, v in spec.items() if k != "name"})
        name = str(spec.get("name", ""))
    else:
        name = str(spec)
    if name in _DETECTORS:
        return _DETECTORS[name](**options)
    try:
        from emoreason.au.detector import DETECTORS, build_detector
    except ImportError as exc:
        raise ValueError(f"unknown AU detector {name!r} (registered: {', '.join(sorted(_DETECTORS)) or 'none'}); "
                         f"`landmarks` needs the landmark AU estimator: pip install 'emoreason[au]' ({exc})") from exc
    if name not in DETECTORS:
        known = ", ".join(sorted({*_DETECTORS, *DETECTORS}))
        raise ValueError(f"unknown AU detector {name!r} (known: {known})")
    return build_detector(name, **options)


@dataclass
class AUEvidence:
    source: str  # synthetic | dataset_frames | dataset_labels | openface | detector:<name> | prototype
    observed: bool  # False only for prototype-conditioned evidence
    peaks: dict[int, float | None]  # AU → peak intensity 0–5; None: present, intensity unknown (occurrence-only)
    frames: dict[int, np.ndarray] | None = None  # AU → per-frame values (NaN = unknown), when timing is known
    fps: float | None = None
    coded: frozenset[int] | None = None  # AUs this source codes (absences only for these); None = unknown
    occurrence: frozenset[int] = frozenset()  # AUs whose frames are 0/1 occurrence, not intensity
    detail: dict = field(default_factory=dict)

    def present(self, threshold: float) -> list[int]:
        """AUs present: peak at or above ``threshold``, or labelled present with unknown intensity."""
        return sorted(au for au, v in self.peaks.items() if v is None or v >= threshold)

    @property
    def n_frames(self) -> int | None:
        return max((len(v) for v in self.frames.values()), default=0) if self.frames else None

    @property
    def duration_s(self) -> float | None:
        n = self.n_frames
        return n / self.fps if n and self.fps else None


def _numeric(values: list) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def _record_fps(record: SampleRecord) -> float | None:
    fps = record.media.get("fps")
    return float(fps) if fps else None


def _measured(frames: dict[int, np.ndarray], face: np.ndarray, min_fraction: float) -> frozenset[int]:
    """AUs measured (finite) on at least ``min_fraction`` of the frames with a face. An AU whose region was
    covered (or not estimated) all clip long is unknown, not absent: it is left out of the coded set, so no
    rationale may call it absent and no reward counts citing it as a false positive."""
    n_face = int(face.sum())
    need = max(1.0, min_fraction * n_face)
    return frozenset(a for a, v in frames.items() if n_face and np.isfinite(v[:len(face)][face[:len(v)]]).sum() >= need)


def _landmark_sidecar_mode(csv_path: Path, record: SampleRecord) -> str:
    """The baseline mode (video | image) ``emoreason au-detect`` recorded beside its CSV."""
    sidecar = csv_path.with_suffix(".au.json")
    try:
        return str(json.loads(sidecar.read_text())["baseline_mode"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvidenceError("evidence_unreadable", f"{sidecar}: no readable baseline_mode ({type(exc).__name__}: "
                                                   f"{exc}) (sample {record.id})") from exc


def _peak(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else 0.0


# --- media facts -------------------------------------------------------------------------------------------------

def media_frame_count(record: SampleRecord) -> tuple[int, float | None]:
    """(frames, fps) of a record's media without decoding pixels: image files in a frame folder (fps from the
    record), 1 for an image, the container's count and rate for a video."""
    kind, path = record.media["type"], record.media["path"]
    if kind == "image":
        return 1, None
    if kind == "frames":
        files = path if isinstance(path, list) else frame_files(path)
        return len(files), _record_fps(record)
    try:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        return len(reader), float(reader.get_avg_fps() or 0.0) or _record_fps(record)
    except Exception:  # decord missing or unable: PyAV's header, then a full count
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 0.0) or _record_fps(record)
            count = int(stream.frames or 0) or sum(1 for _ in container.decode(stream))
            return count, fps


# --- CSV evidence ------------------------------------------------------------------------------------------------

def au_csv_path(record: SampleRecord, au_dir: str | Path | None = None,
                dataset_root: str | Path | None = None) -> Path | None:
    """Where the AU CSV of ``record``'s media lives by the convention above, or None when there is none."""
    media = record.media["path"]
    if isinstance(media, list):  # image lists: the CSV of their folder
        media = str(Path(media[0]).parent) if media else ""
    path = Path(str(media))
    if not str(media):
        return None
    is_folder = record.media["type"] == "frames"
    name = (path.name + ".csv") if is_folder else path.with_suffix(".csv").name
    candidates = []
    if au_dir:
        try:
            rel = path.relative_to(Path(dataset_root)) if dataset_root else Path(path.name)
        except ValueError:  # media outside the dataset root: mirror its name only
            rel = Path(path.name)
        candidates.append(Path(au_dir) / rel.parent / name)
        candidates.append(Path(au_dir) / name)  # flat, as `emoreason au-detect INPUTS --out AU_DIR` writes
    candidates.append(path.parent / name)
    return next((c for c in candidates if c.is_file()), None)


def _check_against_media(record: SampleRecord, csv_path: Path, n_rows: int, csv_fps: float | None) -> float | None:
    """Raise EvidenceError when the CSV's frames do not match the media; return the frame rate to use."""
    frames, media_fps = media_frame_count(record)
    kind = record.media["type"]
    tolerance = 0 if kind in ("frames", "image") else max(2, int(round(VIDEO_FRAME_TOLERANCE * frames)))
    if abs(n_rows - frames) > tolerance:
        raise EvidenceError("evidence_mismatch", f"{csv_path}: {n_rows} frames in the CSV but {frames} in the "
                                                 f"{kind} {record.media['path']} (sample {record.id})")
    # OpenFace gives image folders 30 fps timestamps whatever the source rate: only videos are checked.
    if kind == "video" and csv_fps and media_fps and abs(csv_fps - media_fps) > FPS_TOLERANCE * media_fps:
        raise EvidenceError("evidence_mismatch", f"{csv_path}: {csv_fps:.2f} fps in the CSV but {media_fps:.2f} fps "
                                                 f"in the video {record.media['path']} (sample {record.id})")
    return media_fps if kind != "image" else None


def _csv_evidence(record: SampleRecord, csv_path: Path, source: str, min_confidence: float,
                  min_face_fraction: float, landmark_aus: str | list[int] = "reliable") -> AUEvidence | str:
    """Evidence from one CSV, or a note (``no_face`` | ``few_face_frames``) when the face was not tracked.
    ``landmark_aus``: which AUs of an ``au-detect`` CSV count (the same rule as ``detector: landmarks``)."""
    landmark_mode = None
    if csv_path.with_suffix(".au.json").is_file():  # written by `emoreason au-detect`, not by OpenFace
        source = "detector:landmarks"
        landmark_mode = _landmark_sidecar_mode(csv_path, record)
    try:
        track = read_openface_csv(csv_path)
    except (OpenFaceError, FileNotFoundError) as exc:
        raise EvidenceError("evidence_unreadable", f"{exc} (sample {record.id})") from exc
    faces = sorted(set(track.face_id.tolist())) if track.face_id is not None else [0]
    if len(faces) > 1:  # several faces: the one tracked in most frames
        best = max(faces, key=lambda f: int((track.valid(min_confidence) & (track.face_id == f)).sum()))
        track = track.select(track.face_id == best)
    fps = _check_against_media(record, csv_path, len(track), track.fps)
    valid = track.valid(min_confidence)
    if not valid.any():
        return "no_face"
    if valid.mean() < min_face_fraction:
        return "few_face_frames"
    frames = {au: np.where(valid, values, np.nan) for au, values in track.intensity.items()}
    if landmark_mode is not None:  # only the AUs validated for its mode, unless asked otherwise
        from emoreason.au.geometry import cited_aus

        keep = cited_aus(landmark_aus, landmark_mode, frames)
        frames = {au: v for au, v in frames.items() if au in keep}
    peaks = {a: _peak(v) for a, v in frames.items() if _peak(v) > 0}
    coded = _measured(frames, valid, min_face_fraction) | frozenset(peaks)  # what was seen is coded, however rarely
    coded = coded & frozenset(OPENFACE_AUS) if source == "openface" else coded
    return AUEvidence(source, True, peaks, frames if record.media["type"] != "image" else None, fps, coded,
                      detail={"csv": str(csv_path), "face_fraction": round(float(valid.mean()), 3),
                              **({"faces": len(faces)} if len(faces) > 1 else {})})


# --- the lookup ---------------------------------------------------------------------------------------------------

def evidence_for(record: SampleRecord, detector: AUDetector | None = None, use_openface: bool = True,
                 allow_prototype: bool = True, min_confidence: float = 0.8, au_dir: str | Path | None = None,
                 dataset_root: str | Path | None = None, csv_source: str = "openface",
                 min_face_fraction: float = 0.5, notes: list[str] | None = None,
                 landmark_aus: str | list[int] = "reliable") -> AUEvidence | None:
    """The best AU evidence for ``record``, or None when there is none (no AUs and prototypes disallowed).
    ``landmark_aus``: the AUs of ``emoreason au-detect`` CSVs that count (``reliable`` | ``all`` | a list).

    Raises EvidenceError for evidence that exists but does not fit the sample. ``notes`` (when given) collects
    why a source was passed over (``csv:no_face``, ``detector:few_face_frames``, …)."""
    notes = notes if notes is not None else []
    dataset = (record.dataset or "").lower()
    if record.au_frames is not None:  # {} is evidence too: coded, and nothing was active
        frames = {int(a): _numeric(v) for a, v in record.au_frames.items()}
        occurrence = frozenset(int(a) for a in record.meta.get("occurrence_aus", frames if dataset in
                                                                 OCCURRENCE_ONLY else ()))
        known = {int(a): float(v) for a, v in record.au_intensity.items()}
        peaks: dict[int, float | None] = {}
        for au, values in frames.items():
            if au in occurrence:  # 0/1 per frame: present or not; the letter only from a shipped peak intensity
                if _peak(values) >= 1:
                    peaks[au] = known.get(au)
            elif _peak(values) > 0:
                peaks[au] = _peak(values)
        coded = coded_aus(dataset)
        if "au_set" in record.meta:
            coded = frozenset(int(a) for a in record.meta["au_set"])
        source = "synthetic" if dataset == "synthfacs" else "dataset_frames"
        return AUEvidence(source, True, peaks, frames, _record_fps(record), coded or frozenset(frames),
                          occurrence)
    if record.au_intensity or record.aus:
        peaks = {int(a): float(v) for a, v in record.au_intensity.items()}
        for au in record.aus:  # labelled present without an intensity: present, intensity unknown
            peaks.setdefault(int(au), None)
        return AUEvidence("dataset_labels", True, peaks, coded=coded_aus(dataset))
    if use_openface:
        csv_path = au_csv_path(record, au_dir, dataset_root)
        if csv_path is not None:
            found = _csv_evidence(record, csv_path, csv_source, min_confidence, min_face_fraction, landmark_aus)
            if isinstance(found, AUEvidence):
                return found
            notes.append(f"csv:{found}")
    if detector is not None:
        frames, fps = detector.detect(record)
        frames = {int(a): np.asarray(v, dtype=float) for a, v in frames.items()}
        n = max((len(v) for v in frames.values()), default=0)
        face = np.zeros(n, dtype=bool)
        for values in frames.values():
            face[:len(values)] |= np.isfinite(values)
        if not face.any():
            notes.append("detector:no_face")
        elif face.mean() < min_face_fraction:
            notes.append("detector:few_face_frames")
        else:
            peaks = {a: _peak(v) for a, v in frames.items() if _peak(v) > 0}
            declared = getattr(detector, "aus", None)  # a detector may declare the AUs it estimates
            coded = frozenset(int(a) for a in declared) if isinstance(declared, list | tuple | set | frozenset) \
                else frozenset(frames)
            coded -= frozenset(frames) - _measured(frames, face, min_face_fraction) - frozenset(peaks)  # never seen
            timed = frames if record.media["type"] != "image" else None
            return AUEvidence(f"detector:{detector.name}", True, peaks, timed, fps, coded,
                              detail={"face_fraction": round(float(face.mean()), 3)})
    if allow_prototype and record.emotion:
        protos = prototypes_for(record.emotion)
        aus = sorted(protos[0].aus) if protos else []
        # nothing was observed: no intensity, no timing, and no AU may be called absent (coded = ∅)
        return AUEvidence("prototype", False, dict.fromkeys(aus), coded=frozenset(),
                          detail={"prototype_source": protos[0].source if protos else None})
    return None
