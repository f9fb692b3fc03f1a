"""Landmarks → per-frame AU intensities (FACS 0–5), in pure numpy.

Pipeline per clip (or single image):

1. **Pose and face size.** Each frame's 3-D FaceMesh points are mapped onto MediaPipe's canonical face with a
   similarity transform (Umeyama 1991, least-squares rotation + scale + translation) fitted on points that
   expressions barely move (forehead, temples, nose bridge). The fitted rotation gives yaw/pitch/roll; the
   scale removes face size, so every measure below is in canonical centimetres of a frontal face. The fit's
   residual on those points says how plausible the mesh is.
2. **Measures.** Named landmark geometry, one per appearance change the FACS manual describes for an AU
   (Ekman, Friesen & Hager 2002), following the feature-point tradition of Tian, Kanade & Cohn, "Recognizing
   Action Units for Facial Expression Analysis", IEEE TPAMI 23(2), 2001 (brow height, eye opening, lip
   corner and lip height features) and Pantic & Patras / Valstar & Pantic's fiducial-point displacements
   (IEEE TSMC-B 36(2), 2006; CVPR-W 2006). Eye opening is the eye-aspect ratio of Soukupová & Čech,
   "Real-Time Eye Blink Detection using Facial Landmarks", CVWW 2016.
3. **Baseline.** In a video, each AU's directional measure is referred to the clip's own most neutral frames:
   a robust low percentile over the frames with a valid face (as OpenFace 2.0's person-specific correction,
   Baltrušaitis, Mahmoud & Robinson, FG 2015). A single image has no neutral frames; it is referred to the
   canonical (population-neutral) face.
4. **Scale.** Displacement / (calibrated displacement per FACS intensity step), clipped to 0–5. The steps and
   the occurrence thresholds live in :mod:`emoreason.au.calibration`, fitted from data (see
   docs/au_estimator.md).

Frames with no face, an implausible mesh, extreme pose or an occluded region give NaN (never 0) and a flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emoreason.au.canonical import CANONICAL_FACE
from emoreason.knowledge.coded_aus import OPENFACE_AUS

# --- FaceMesh topology (indices into the 468-point mesh; subject's right = image left) --------------------
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": (160, 159, 158), "lower": (144, 145, 153)}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": (387, 386, 385), "lower": (373, 374, 380)}
INNER_BROWS = ((107, 55), (336, 285))  # (upper edge, lower edge) near the brow heads
OUTER_BROWS = ((70, 46), (300, 276))  # brow tails
CHEEKS = (50, 101, 118, 205, 280, 330, 347, 425)  # infraorbital triangle / malar eminence
ALAE = (64, 98, 129, 294, 327, 358)  # nostril wings
SUBNASALE = 2
UPPER_LIP_OUTER, UPPER_LIP_INNER = 0, 13
LOWER_LIP_INNER, LOWER_LIP_OUTER = 14, 17
UPPER_LIP_PEAKS = (37, 267)  # Cupid's bow
LIP_CORNERS = (61, 291)
MENTON = 152

# Points that facial actions barely move: the pose/scale fit uses only these (forehead, temples, bridge).
RIGID_POINTS: tuple[int, ...] = (10, 151, 109, 338, 67, 297, 103, 332, 54, 284, 21, 251, 162, 389, 127, 356,
                                 234, 454, 168, 6, 197, 195)

# Face regions each AU reads (an occluded region makes its AUs NaN).
REGIONS = ("brows", "eyes", "cheeks", "nose", "mouth", "chin")
REGION_POINTS: dict[str, tuple[int, ...]] = {
    "brows": (107, 55, 105, 52, 70, 46, 336, 285, 334, 282, 300, 276),
    "eyes": (33, 133, 159, 145, 263, 362, 386, 374),
    "cheeks": CHEEKS,
    "nose": (1, 4, *ALAE, SUBNASALE),
    "mouth": (0, 13, 14, 17, 61, 291, 37, 267, 84, 314),
    "chin": (152, 175, 199, 200, 18),
}


def _y(points: np.ndarray, idx) -> np.ndarray:
    return points[:, idx, 1] if isinstance(idx, int) else points[:, list(idx), 1].mean(axis=1)


def _dist(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[:, a] - points[:, b], axis=-1)


def _eye_aspect(points: np.ndarray, eye: dict) -> np.ndarray:
    """Soukupová & Čech (2016) eye-aspect ratio: mean lid distance / eye width."""
    lids = [_dist(points, u, lo) for u, lo in zip(eye["upper"], eye["lower"], strict=True)]
    return np.mean(lids, axis=0) / _dist(points, eye["outer"], eye["inner"])


def _eye_corner_y(points: np.ndarray) -> np.ndarray:
    return _y(points, (RIGHT_EYE["outer"], RIGHT_EYE["inner"], LEFT_EYE["outer"], LEFT_EYE["inner"]))


# Each measure: frontalised points (T, N, 3) in canonical cm (y up) → (T,). Units: cm unless a ratio.
def _m_inner_brow(p):  # AU1 raises, AU4 lowers the brow heads (FACS 2002, AU1/AU4 appearance changes)
    return _y(p, (*INNER_BROWS[0], *INNER_BROWS[1]))


def _m_outer_brow(p):  # AU2 raises the lateral brow
    return _y(p, (*OUTER_BROWS[0], *OUTER_BROWS[1]))


def _m_brow_gap(p):  # AU4 draws the brows together (corrugator)
    right = p[:, list(INNER_BROWS[0])].mean(axis=1)
    left = p[:, list(INNER_BROWS[1])].mean(axis=1)
    return np.abs(left[:, 0] - right[:, 0])


def _m_upper_lid(p):  # AU5 raises the upper lid above the corner line (Tian et al. 2001: upper-lid height)
    return _y(p, RIGHT_EYE["upper"][1]) * 0.5 + _y(p, LEFT_EYE["upper"][1]) * 0.5 - _eye_corner_y(p)


def _m_lower_lid(p):  # AU6/AU7 push the lower lid up (Tian et al. 2001: lower-lid height)
    return _y(p, RIGHT_EYE["lower"][1]) * 0.5 + _y(p, LEFT_EYE["lower"][1]) * 0.5 - _eye_corner_y(p)


def _m_eye_open(p):  # AU43/45 close the eye; AU5 widens it
    return 0.5 * (_eye_aspect(p, RIGHT_EYE) + _eye_aspect(p, LEFT_EYE))


def _m_cheek(p):  # AU6 lifts the infraorbital triangle / cheeks
    return _y(p, CHEEKS)


def _m_alae(p):  # AU9 pulls the nostril wings up
    return _y(p, ALAE)


def _m_upper_lip(p):  # AU10 raises the centre of the upper lip towards the nose
    return _y(p, (UPPER_LIP_OUTER, *UPPER_LIP_PEAKS)) - _y(p, SUBNASALE)


def _m_corner_height(p):  # AU12 pulls the lip corners up, AU15 down (relative to the nose base)
    return _y(p, LIP_CORNERS) - _y(p, SUBNASALE)


def _m_corner_vs_lips(p):  # the same, relative to the lips' midline (robust to jaw drop)
    return _y(p, LIP_CORNERS) - _y(p, (UPPER_LIP_INNER, LOWER_LIP_INNER))


def _m_mouth_width(p):  # AU12/AU20 widen, AU23 narrows the mouth
    return _dist(p, *LIP_CORNERS)


def _m_corner_depth(p):  # AU14 pulls the corners inward into the cheek (depth relative to the lip centre)
    return p[:, list(LIP_CORNERS), 2].mean(axis=1) - p[:, UPPER_LIP_OUTER, 2]


def _m_lip_gap(p):  # AU25: inner lips apart
    return _y(p, UPPER_LIP_INNER) - _y(p, LOWER_LIP_INNER)


def _m_jaw(p):  # AU26 lowers the chin; AU17 pushes it up
    return _y(p, SUBNASALE) - _y(p, MENTON)


def _m_lower_lip_raise(p):  # AU17 pushes the lower lip up relative to the corners (lips curve down)
    return _y(p, LOWER_LIP_OUTER) - _y(p, LIP_CORNERS)


def _m_lower_lip_height(p):  # AU17 pushes the lower lip up towards the nose
    return _y(p, LOWER_LIP_OUTER) - _y(p, SUBNASALE)


def _m_vermilion(p):  # AU23/AU24 narrow the red of the lips
    return (_y(p, UPPER_LIP_OUTER) - _y(p, UPPER_LIP_INNER)) + (_y(p, LOWER_LIP_INNER) - _y(p, LOWER_LIP_OUTER))


MEASURES = {
    "inner_brow": _m_inner_brow, "outer_brow": _m_outer_brow, "brow_gap": _m_brow_gap,
    "upper_lid": _m_upper_lid, "lower_lid": _m_lower_lid, "eye_open": _m_eye_open, "cheek": _m_cheek,
    "alae": _m_alae, "upper_lip": _m_upper_lip, "corner_height": _m_corner_height,
    "corner_vs_lips": _m_corner_vs_lips, "mouth_width": _m_mouth_width, "corner_depth": _m_corner_depth,
    "lip_gap": _m_lip_gap, "jaw": _m_jaw, "lower_lip_raise": _m_lower_lip_raise,
    "lower_lip_height": _m_lower_lip_height, "vermilion": _m_vermilion,
}


@dataclass(frozen=True)
class AUSpec:
    """How one AU is read: (measure, sign) components averaged after scaling, the regions it needs, the
    modes it is reliable in (``video``: against the clip's neutral frames; ``image``: against the
    population-neutral face), and the FACS appearance change it stands for. ``reliable`` records the
    validation in docs/au_estimator.md (AUC ≥ 0.8 on real faces where real labels exist, else on held-out
    SynthFACS identities, per mode); the CoT detector cites only reliable AUs by default."""

    au: int
    components: tuple[tuple[str, int], ...]
    regions: tuple[str, ...]
    reliable: tuple[str, ...]
    appearance: str
    explained_by: int | None = None  # an AU that moves the same measure: its share is subtracted


AU_SPECS: dict[int, AUSpec] = {s.au: s for s in (
    AUSpec(1, (("inner_brow", 1),), ("brows",), ("video",), "inner brow heads raised"),
    AUSpec(2, (("outer_brow", 1),), ("brows",), ("video",), "lateral brows raised"),
    AUSpec(4, (("inner_brow", -1),), ("brows",), (), "brows lowered (and drawn together)"),
    AUSpec(5, (("upper_lid", 1), ("eye_open", 1)), ("eyes",), (), "upper lid raised, eye widened"),
    # not reliable: held-out SynthFACS AUC 0.78 < 0.8, and its real-face AUC comes from a smile where AU6 and
    # AU12 share every frame (docs/au_estimator.md), which does not show AU6 apart from AU12
    AUSpec(6, (("cheek", 1), ("lower_lid", 1)), ("eyes", "cheeks"), (),
           "cheeks raised, lower lid pushed up"),
    AUSpec(7, (("lower_lid", 1), ("eye_open", -1)), ("eyes",), (), "lower lid raised and tightened"),
    AUSpec(9, (("alae", 1),), ("nose",), (), "nostril wings raised (nose wrinkled)"),
    AUSpec(10, (("upper_lip", 1),), ("mouth",), (), "upper lip centre raised"),
    AUSpec(12, (("corner_height", 1), ("corner_vs_lips", 1)), ("mouth",), ("video", "image"),
           "lip corners pulled up and out"),
    AUSpec(14, (("mouth_width", -1),), ("mouth",), (), "lip corners pulled inward (dimpler)"),
    AUSpec(15, (("corner_height", -1), ("corner_vs_lips", -1)), ("mouth",), ("video",),
           "lip corners pulled down"),
    AUSpec(17, (("lower_lip_raise", 1),), ("mouth", "chin"), (),
           "chin boss and lower lip pushed up", explained_by=15),
    AUSpec(20, (("mouth_width", 1),), ("mouth",), (), "lips stretched horizontally", explained_by=12),
    AUSpec(23, (("vermilion", -1), ("mouth_width", -1)), ("mouth",), ("video",),
           "lips tightened/pressed, red narrowed (AU23/24)"),
    AUSpec(25, (("lip_gap", 1),), ("mouth",), ("video", "image"), "lips parted"),
    AUSpec(26, (("jaw", 1),), ("mouth", "chin"), ("video",), "jaw dropped"),
    AUSpec(45, (("eye_open", -1),), ("eyes",), ("video", "image"), "eyes closed (AU43 held / AU45 blink)"),
)}

# The AU columns OpenFace 2.x writes (17 intensities; occurrence adds AU28, which we do not estimate): the
# coded-AU set of the ``openface`` source, from the one place that declares it.
OPENFACE_R_AUS: tuple[int, ...] = OPENFACE_AUS


# The directions AUs move each measure (+1: an AU increases it), for the baseline.
MEASURE_DIRECTIONS: dict[str, set[int]] = {}
for _spec in AU_SPECS.values():
    for _name, _sign in _spec.components:
        MEASURE_DIRECTIONS.setdefault(_name, set()).add(_sign)


def reliable_aus(mode: str) -> tuple[int, ...]:
    """AUs whose estimate held up in validation for ``mode`` (video | image)."""
    return tuple(au for au, spec in AU_SPECS.items() if mode in spec.reliable)


def cited_aus(cite: str | Sequence[int], mode: str, available: Iterable[int]) -> set[int]:
    """Of the AUs ``available`` in an estimate, those that may be cited as evidence: ``"reliable"`` (the AUs
    validated for the baseline ``mode``, the default of both ``detector: landmarks`` and au-detect CSVs),
    ``"all"``, or an explicit list of AU numbers."""
    available = {int(a) for a in available}
    if cite == "reliable":
        return available & set(reliable_aus(mode))
    if cite == "all":
        return available
    if isinstance(cite, str) or not isinstance(cite, Sequence):
        raise ValueError(f"aus must be 'reliable', 'all' or a list of AU numbers, got {cite!r}")
    return available & {int(a) for a in cite}


# --- pose -----------------------------------------------------------------------------------------------
def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ≈ s · R @ src + t`` with a proper rotation (Umeyama, IEEE TPAMI 13(4), 1991)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    var = (a ** 2).sum() / len(src)
    scale = float((d * sign).sum() / var) if var > 0 else 1.0
    return scale, rotation, mu_d - scale * rotation @ mu_s


def rotation_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of the head, from the rotation that maps the face onto the frontal model."""
    head = rotation.T  # frontal model → observed face, decomposed as R = Rz(roll) · Rx(pitch) · Ry(yaw)
    pitch = np.degrees(np.arcsin(np.clip(head[2, 1], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(-head[2, 0], head[2, 2]))
    roll = np.degrees(np.arctan2(-head[0, 1], head[1, 1]))
    return float(yaw) + 0.0, float(pitch) + 0.0, float(roll) + 0.0


@dataclass
class Frontalised:
    points: np.ndarray  # (T, N, 3) canonical cm, frontal; NaN rows where there was no face
    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees
    scale: np.ndarray  # (T,) pixels per canonical cm (face size in the image)
    fit_rms: np.ndarray  # (T,) rigid-fit residual in canonical cm


def frontalise(landmarks: np.ndarray) -> Frontalised:
    """Image-space landmarks (T, N≥468, 3) — x right, y down (pixels), z as FaceMesh gives it (pixels, smaller =
    nearer) — to frontal canonical coordinates. Frames whose points are NaN stay NaN."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1] < 468 or landmarks.shape[2] != 3:
        raise ValueError(f"landmarks must be (T, ≥468, 3), got {landmarks.shape}")
    t, n = landmarks.shape[:2]
    out = np.full((t, n, 3), np.nan)
    pose, scale, rms = np.full((t, 3), np.nan), np.full(t, np.nan), np.full(t, np.nan)
    target = CANONICAL_FACE[list(RIGID_POINTS)]
    for i in range(t):
        frame = landmarks[i]
        if not np.isfinite(frame[:468]).all():
            continue
        yup = frame * np.array([1.0, -1.0, -1.0])  # to the canonical model's axes (y up, z to the viewer)
        s, rot, shift = similarity_fit(yup[list(RIGID_POINTS)], target)
        out[i] = s * yup @ rot.T + shift
        pose[i] = rotation_angles(rot)
        scale[i] = 1.0 / s if s > 0 else np.nan
        rms[i] = float(np.sqrt(((out[i, list(RIGID_POINTS)] - target) ** 2).sum(axis=1).mean()))
    return Frontalised(out, pose, scale, rms)


def compute_measures(points: np.ndarray) -> dict[str, np.ndarray]:
    """All named measures of frontal points (T, N, 3)."""
    return {name: fn(points) for name, fn in MEASURES.items()}


def neutral_reference() -> dict[str, float]:
    """The measures of the canonical (population-neutral) face; lip gap 0 (the model's lips are parted)."""
    ref = {k: float(v[0]) for k, v in compute_measures(CANONICAL_FACE[None]).items()}
    ref["lip_gap"] = 0.0
    return ref


def neutral_baseline(measures: Mapping[str, np.ndarray], usable: np.ndarray, mode: str,
                     limits: QualityLimits, units: Mapping | None = None,
                     limited: dict[str, float] | None = None) -> tuple[dict[str, float], bool]:
    """Each measure's neutral value, and whether it came from the clip (else the population reference).

    Video: a robust low percentile of the measure in the direction its AUs move it (the clip's most neutral
    frames for that measure; OpenFace 2.0 corrects its outputs the same way). A measure that two opposite AUs
    share (lip corners: AU12 up / AU15 down; brow heads: AU1 / AU4; mouth width: AU20 / AU14, AU23; eye
    opening: AU5 / AU7, AU45) gets ONE neutral value, or a smile clip's smiling frames would be the neutral
    of AU15: of the two candidate ends (low and high percentile) the one nearer the population-neutral face
    is taken. The person's own shape offsets both ends alike, so it rarely changes which is nearer.

    Sanity check against the population-neutral face: a short clip with no neutral frame (DFEW/MAFW clips often
    show the expression throughout) has an expression as its "neutral", which would read a smile held all clip
    long as no AU12. For the measures in ``limits.baseline_checked`` (identity moves them little, so a far
    baseline means an expression), a clip baseline more than ``limits.max_baseline_shift`` FACS steps (``units``)
    from the population-neutral value is pulled back to that distance; ``limited`` receives measure → the
    shift in steps before the limit (reported as a warning by ``au-detect``)."""
    reference = neutral_reference()
    if mode != "video" or usable.sum() < limits.min_baseline_frames:
        return reference, False
    out = {}
    for name, values in measures.items():
        kept = values[usable & np.isfinite(values)]
        if len(kept) < limits.min_baseline_frames:
            out[name] = reference[name]
            continue
        low = float(np.percentile(kept, limits.baseline_percentile))
        high = float(np.percentile(kept, 100.0 - limits.baseline_percentile))
        signs = MEASURE_DIRECTIONS.get(name, {1})
        if signs == {1}:
            out[name] = low
        elif signs == {-1}:
            out[name] = high
        else:
            out[name] = low if abs(low - reference[name]) <= abs(high - reference[name]) else high
        if units is not None and name in limits.baseline_checked:
            out[name] = _limit_shift(name, out[name], reference[name], units, limits.max_baseline_shift, limited)
    return out, True


def _limit_shift(name: str, value: float, reference: float, units: Mapping, max_steps: float,
                 limited: dict[str, float] | None) -> float:
    """``value`` pulled to within ``max_steps`` FACS steps of ``reference``; the step is that of an AU moving
    ``name`` in the direction of the shift (no AU moves it that way: not an expression, left as it is)."""
    shift = value - reference
    direction = 1 if shift > 0 else -1
    steps = [units[(au, name)] for au, spec in AU_SPECS.items() for m, sign in spec.components
             if m == name and sign == direction and (au, name) in units]
    if not steps or shift == 0:
        return value
    step = min(steps)  # the finest step: the most AU-intensity a shift could stand for
    if abs(shift) <= max_steps * step:
        return value
    if limited is not None:
        limited[name] = round(abs(shift) / step, 2)
    return reference + direction * max_steps * step


# --- AU intensities ---------------------------------------------------------------------------------------
@dataclass
class AUFrames:
    """Per-frame AU estimates of one face track."""

    intensity: dict[int, np.ndarray]  # AU → (T,) 0–5, NaN where not measurable
    occurrence: dict[int, np.ndarray]  # AU → (T,) 0/1, NaN where not measurable
    valid: np.ndarray  # (T,) bool: a usable face
    confidence: np.ndarray  # (T,) 0–1
    flags: list[list[str]]  # per frame: why a frame or an AU is not measurable
    pose: np.ndarray  # (T, 3) yaw, pitch, roll
    mode: str  # video | image: what the baseline came from
    baseline: dict[str, float] = field(default_factory=dict)  # measure → its neutral value
    # measure → how many FACS steps the clip's own neutral sat from the population-neutral face, where that was
    # implausible (no neutral frame in the clip) and the baseline was pulled back (``neutral_baseline``)
    baseline_limited: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityLimits:
    """When a frame is not trusted. Yaw/pitch beyond FaceMesh's reliable range (its training data is mostly
    within ±45°; landmark AU methods degrade beyond ~30°, Tian et al. 2001 §6) and implausible meshes."""

    max_yaw: float = 35.0
    max_pitch: float = 30.0
    max_fit_rms: float = 1.0  # canonical cm on the rigid points; real faces give 0.3–0.55 (identity shape)
    min_eye_distance_px: float = 20.0  # inter-ocular distance below which landmarks are too coarse
    min_baseline_frames: int = 8  # fewer valid frames than this: video mode falls back to the image reference
    baseline_percentile: float = 10.0
    # A clip's neutral may sit at most this many FACS steps from the population-neutral face on the measures
    # below (docs/au_estimator.md, "Clips without neutral frames": clips with neutral frames, real and 40 held-out
    # SynthFACS identities, sit within 2.1 steps; a real clip smiling throughout sits 3.0-7.9 steps away). Brows,
    # lids, cheeks, jaw and mouth width vary by identity as much as by expression, so they are not checked.
    max_baseline_shift: float = 2.5
    baseline_checked: tuple[str, ...] = ("corner_height", "corner_vs_lips", "lip_gap")


def frame_quality(front: Frontalised, landmarks: np.ndarray, limits: QualityLimits) -> tuple[np.ndarray,
                                                                                                np.ndarray,
                                                                                                list[list[str]]]:
    """(valid, confidence, flags) per frame from face presence, fit residual, pose and face size."""
    t = len(front.points)
    flags: list[list[str]] = [[] for _ in range(t)]
    present = np.isfinite(front.fit_rms)
    eye_px = np.linalg.norm(landmarks[:, RIGHT_EYE["outer"], :2] - landmarks[:, LEFT_EYE["outer"], :2], axis=-1)
    for i in range(t):
        if not present[i]:
            flags[i].append("no_face")
            continue
        yaw, pitch, _ = front.pose[i]
        if abs(yaw) > limits.max_yaw or abs(pitch) > limits.max_pitch:
            flags[i].append("extreme_pose")
        if front.fit_rms[i] > limits.max_fit_rms:
            flags[i].append("low_confidence")
        if eye_px[i] < limits.min_eye_distance_px:
            flags[i].append("small_face")
    # OpenFace's convention: ≥ 0.8 = trust the frame. Real faces fit the canonical rigid points to 0.3–0.55 cm
    # (identity shape), so confidence falls from 1 only beyond half the limit, to 0.8 at the limit.
    half = 0.5 * limits.max_fit_rms
    confidence = np.where(present, 1.0 - 0.2 * np.clip((front.fit_rms - half) / half, 0.0, 1.0), 0.0)
    valid = np.array([not f for f in flags])
    confidence = np.where(valid, confidence, np.minimum(confidence, 0.5))
    return valid, confidence, flags


def estimate(landmarks: np.ndarray, mode: str = "auto", calibration: Mapping | None = None,
             occluded: Sequence[Sequence[str]] | None = None, limits: QualityLimits | None = None,
             aus: Sequence[int] | None = None) -> AUFrames:
    """Per-frame AU intensities and occurrences of one face track.

    ``landmarks``: (T, N≥468, 3) image-space FaceMesh points, NaN rows where no face was found.
    ``mode``: "video" (baseline = the clip's own neutral frames), "image" (population-neutral reference), or
    "auto" (video when the track has at least ``limits.min_baseline_frames`` valid frames).
    ``occluded``: per frame, the face regions covered (e.g. by a hand); their AUs become NaN.
    ``calibration``: {"units": {(au, measure): step}, "thresholds": {au: value}} (defaults: the fitted ones).
    """
    from emoreason.au.calibration import CALIBRATION

    calibration = calibration or CALIBRATION
    limits = limits or QualityLimits()
    landmarks = np.asarray(landmarks, dtype=np.float64)
    front = frontalise(landmarks)
    valid, confidence, flags = frame_quality(front, landmarks, limits)
    t = len(valid)
    occluded = [list(o) for o in occluded] if occluded is not None else [[] for _ in range(t)]
    if len(occluded) != t:
        raise ValueError(f"occlusion list has {len(occluded)} frames, landmarks have {t}")
    for i, regions in enumerate(occluded):
        flags[i].extend(f"occluded:{r}" for r in regions if valid[i])
    if mode == "auto":
        mode = "video" if valid.sum() >= limits.min_baseline_frames else "image"
    if mode not in ("video", "image"):
        raise ValueError(f"mode must be video, image or auto, got {mode!r}")
    measures = compute_measures(np.where(valid[:, None, None], front.points, np.nan))
    units, thresholds = calibration["units"], calibration["thresholds"]
    unoccluded = valid & np.array([not any(f.startswith("occluded:") for f in flags[i]) for i in range(t)])
    limited: dict[str, float] = {}
    reference, from_clip = neutral_baseline(measures, unoccluded, mode, limits, units, limited)
    intensity: dict[int, np.ndarray] = {}
    occurrence: dict[int, np.ndarray] = {}
    baseline: dict[str, float] = {}
    unclipped: dict[int, np.ndarray] = {}
    wanted = set(aus or AU_SPECS)
    needed = wanted | {AU_SPECS[a].explained_by for a in wanted if AU_SPECS[a].explained_by}
    for au in sorted(needed):
        spec = AU_SPECS[au]
        parts = []
        for name, sign in spec.components:
            baseline[name] = reference[name]
            parts.append(sign * (measures[name] - reference[name]) / units[(au, name)])
        value = np.mean(parts, axis=0)
        if spec.explained_by in unclipped:  # e.g. lip widening that AU12 explains is not AU20
            share = units[(f"AU{au}_minus_AU{spec.explained_by}", spec.components[0][0])]
            value = value - share * np.nan_to_num(np.maximum(unclipped[spec.explained_by], 0.0))
        unclipped[au] = value  # before the 0–5 clip: a saturated AU12 still explains all the widening
        value = np.clip(value, 0.0, 5.0)
        blocked = np.array([any(f"occluded:{r}" in flags[i] for r in spec.regions) for i in range(t)], dtype=bool)
        value = np.where(valid & ~blocked, value, np.nan)
        intensity[au] = value
        occurrence[au] = np.where(np.isfinite(value), (value >= thresholds[au]).astype(float), np.nan)
    intensity = {au: v for au, v in intensity.items() if au in wanted}
    occurrence = {au: v for au, v in occurrence.items() if au in wanted}
    return AUFrames(intensity, occurrence, valid, confidence, flags, front.pose,
                    mode if from_clip else "image", baseline, limited)
