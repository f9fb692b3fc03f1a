"""SynthFACS clip generator: emotion → AU set with intensities → temporal profile → rendered frames.

The AU set comes from the FACS prototypes (``emoreason.knowledge``) with per-subject variation: a random
prototype variant, non-core AUs sometimes dropped, intensities by difficulty. Each AU follows a temporal profile
with its own small lead/lag: ``apex_offset`` (neutral → onset → apex → offset, as MMI or in-the-wild clips) or
``onset_apex`` (neutral → onset → apex held to the last frame, as the posed CK+ sequences, Lucey et al. 2010). Distractors that are not the emotion — blinks (AU45),
talking (AU25/26 oscillation), head motion, an occluder — are drawn by difficulty and recorded exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from emoreason.knowledge import EMOTIONS, prototypes_for, va_anchor
from emoreason.knowledge.facs import intensity_letter
from emoreason.synth.face import RENDERED_AUS, Identity, Pose, render_face


@dataclass(frozen=True)
class Difficulty:
    intensity: tuple[float, float]  # peak intensity range of expression AUs (0–5)
    drop_prob: float  # chance to drop each non-core prototype AU
    blink_prob: float
    talk_prob: float
    occluder_prob: float
    head_motion: float  # scale of pose jitter/drift
    noise: float  # Gaussian pixel noise sigma
    blur: float  # Gaussian blur radius (pixels)
    lighting: float  # strength of a directional lighting gradient


DIFFICULTIES = {
    # posed: frontal, still head, full-intensity prototypes, no distractors — as posed lab corpora (CK+, Lucey et al.
    # 2010; MMI, Pantic et al. 2005) record them; only identity, skin, hair, background and lighting vary
    "posed": Difficulty((3.5, 5.0), 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.05),
    "easy": Difficulty((3.0, 5.0), 0.0, 0.2, 0.0, 0.0, 0.3, 1.5, 0.0, 0.08),
    "medium": Difficulty((2.0, 5.0), 0.15, 0.4, 0.15, 0.05, 0.7, 4.0, 0.4, 0.18),
    "hard": Difficulty((1.2, 4.0), 0.3, 0.6, 0.35, 0.2, 1.2, 8.0, 0.9, 0.3),
}


@dataclass(frozen=True)
class ClipSpec:
    index: int
    clip_id: str
    emotion: str
    identity: Identity
    split: str
    seed: int
    frames: int = 16
    size: int = 224
    fps: float = 8.0
    difficulty: str = "medium"
    profile: str = "apex_offset"
    # SynthFACS-AV: a voice track (``emoreason.synth.voice``); in a masked clip face and voice show different
    # emotions and ``emotion`` (the label) follows ``label_rule``
    audio: bool = False
    face_emotion: str | None = None  # default: ``emotion``
    voice_emotion: str | None = None  # default: ``emotion``
    label_rule: str | None = None  # "voice" | "face" for masked clips


PROFILES = ("apex_offset", "onset_apex")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def sample_expression(emotion: str, rng: np.random.Generator, difficulty: Difficulty) -> dict[int, float]:
    """Peak AU intensities for one performance of ``emotion`` (empty for neutral)."""
    protos = [p for p in prototypes_for(emotion) if p.aus & set(RENDERED_AUS)]
    if not protos:
        return {}
    proto = protos[0] if rng.uniform() < 0.5 or len(protos) == 1 else protos[rng.integers(1, len(protos))]
    aus = sorted(a for a in proto.aus if a in RENDERED_AUS)
    core = set(sorted(protos[0].aus & set(aus))[:2]) or {aus[0]}
    kept = [a for a in aus if a in core or rng.uniform() >= difficulty.drop_prob]
    lo, hi = difficulty.intensity
    return {a: float(np.round(rng.uniform(lo, hi), 2)) for a in kept}


def au_timeline(peaks: dict[int, float], n: int, rng: np.random.Generator,
                profile: str = "apex_offset") -> tuple[dict[int, np.ndarray], int]:
    """Per-frame intensities: neutral → onset → apex → offset (``onset_apex``: no offset, the apex is held to the
    end), with small per-AU leads; returns (frames, apex)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    onset = rng.uniform(0.5, max(1.0, n * 0.3))
    rise = rng.uniform(2.0, max(2.5, n * 0.3))
    hold = rng.uniform(1.0, max(1.5, n * 0.25))
    fall = rng.uniform(2.0, max(2.5, n * 0.35))
    frames = np.arange(n, dtype=float)
    out: dict[int, np.ndarray] = {}
    for au, peak in peaks.items():
        lead = float(rng.integers(-1, 3))
        start = onset + lead
        up = _smoothstep((frames - start) / rise)
        down = 1 - _smoothstep((frames - (start + rise + hold)) / fall) if profile == "apex_offset" else 1.0
        out[au] = np.round(peak * np.minimum(up, down), 3)
    if not out:
        return out, int(n // 2)
    total = sum(out.values())
    return out, int(np.argmax(total))


def _add(track: dict[int, np.ndarray], au: int, values: np.ndarray) -> None:
    track[au] = np.round(np.maximum(track.get(au, np.zeros_like(values)), values), 3)


def generate_clip(spec: ClipSpec) -> tuple[np.ndarray, dict]:
    """Render one clip; returns (frames (T, H, W, 3) uint8, ground-truth dict)."""
    frames, _, truth = generate_av_clip(spec)
    return frames, truth


def generate_av_clip(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Render one clip and, with ``spec.audio``, its voice; returns (frames, waveform (16 kHz mono) or None,
    ground truth). Without audio the frames and truth are exactly those of a video-only clip."""
    rng = np.random.default_rng(spec.seed)
    diff = DIFFICULTIES[spec.difficulty]
    n = spec.frames
    peaks = sample_expression(spec.face_emotion or spec.emotion, rng, diff)
    track, apex = au_timeline(peaks, n, rng, spec.profile)
    distractors: list[dict] = []
    speech = _speak(spec, track, peaks) if spec.audio else None
    if speech is not None:  # lips and jaw follow the syllables (drawn from the voice's own random stream)
        _add(track, 25, np.round(np.where(speech.mouth > 0.05, 1.0 + 2.0 * speech.mouth, 0.0), 3))
        _add(track, 26, np.round(3.0 * speech.mouth, 3))
        distractors.append({"type": "speech", "syllables": len(speech.syllables)})

    if rng.uniform() < diff.blink_prob:
        at = int(rng.integers(0, n))
        blink = np.zeros(n)
        blink[at] = 5.0
        if at + 1 < n:
            blink[at + 1] = 2.5
        _add(track, 45, blink)
        distractors.append({"type": "blink", "frame": at})
    if rng.uniform() < diff.talk_prob:
        phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(1.2, 2.2)
        wave = 0.5 * (1 + np.sin(phase + speed * np.arange(n)))
        _add(track, 25, np.round(1.0 + 1.5 * wave, 3))
        _add(track, 26, np.round(np.clip(2.4 * wave - 0.6, 0, None), 3))
        distractors.append({"type": "talking"})
    occluder, occ_span = None, (0, 0)
    if rng.uniform() < diff.occluder_prob:
        start = int(rng.integers(0, max(1, n - 3)))
        occ_span = (start, int(min(n, start + rng.integers(3, max(4, n // 2)))))
        occluder = (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.25, 0.4)))
        distractors.append({"type": "occluder", "frames": list(occ_span), "at": list(occluder)})

    drift = rng.normal(0, 0.01 * diff.head_motion, size=2)
    roll_drift = rng.normal(0, 2.0 * diff.head_motion)
    if diff.head_motion > 0.5:
        distractors.append({"type": "head_motion"})
    light_angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:spec.size, 0:spec.size] / spec.size - 0.5
    light = 1 + diff.lighting * (np.cos(light_angle) * xx + np.sin(light_angle) * yy) * 2
    brightness = rng.uniform(0.85, 1.1)

    frames = []
    for f in range(n):
        k = f / max(1, n - 1)
        pose = Pose(dx=float(drift[0] * k * 3 + rng.normal(0, 0.003 * diff.head_motion)),
                    dy=float(drift[1] * k * 3 + rng.normal(0, 0.003 * diff.head_motion)),
                    roll=float(roll_drift * k + rng.normal(0, 0.4 * diff.head_motion)),
                    zoom=float(1 + rng.normal(0, 0.004 * diff.head_motion)))
        aus_now = {au: float(v[f]) for au, v in track.items() if v[f] > 0}
        occ = occluder if occ_span[0] <= f < occ_span[1] else None
        img = render_face(spec.identity, aus_now, pose, spec.size, occluder=occ)
        if diff.blur > 0:
            img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(diff.blur)))
        img = img.astype(np.float32) * (light * brightness)[..., None]
        img += rng.normal(0, diff.noise, size=img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))

    au_peak = {au: float(v.max()) for au, v in track.items() if v.max() > 0}
    present = sorted(au for au, v in au_peak.items() if intensity_letter(v) is not None)
    emotion = EMOTIONS[spec.emotion]
    strength = (np.mean(list(peaks.values())) / 5.0) if peaks else 0.0
    v0, a0 = va_anchor(spec.emotion)
    truth = {
        "emotion": spec.emotion,
        "emotions": list(emotion.components) or [spec.emotion],
        "aus": present,
        "au_intensity": {str(au): round(au_peak[au], 3) for au in sorted(au_peak)},
        "au_frames": {str(au): [float(x) for x in track[au]] for au in sorted(track) if track[au].max() > 0},
        "expression_aus": sorted(peaks),
        "apex_frame": apex,
        # VA: the category anchor scaled by how strongly the expression is performed (0.5..1)
        "valence": round(v0 * (0.5 + 0.5 * strength), 3),
        "arousal": round(a0 * (0.5 + 0.5 * strength), 3),
        "distractors": distractors,
    }
    if speech is not None:
        syllables = [{"onset_s": a, "offset_s": b, "vowel": v} for a, b, v in speech.syllables]
        truth["voice"] = {"emotion": spec.voice_emotion or spec.emotion,
                          "face_emotion": spec.face_emotion or spec.emotion, "label_rule": spec.label_rule,
                          "syllables": syllables, **speech.targets, "reference": _speaker_reference(spec)}
    return np.stack(frames), (speech.waveform if speech is not None else None), truth


def _speak(spec: ClipSpec, track: dict[int, np.ndarray], peaks: dict[int, float]):
    """The clip's voice: the voice emotion's profile, swelling with the face's expression over time."""
    from emoreason.synth.voice import SpeakerVoice, activation_curve, synthesize_speech

    face = sum(track.values()) if track else np.zeros(spec.frames)
    strength = _voice_strength(spec, peaks)
    activation = activation_curve(np.asarray(face, dtype=float), strength)
    return synthesize_speech(spec.voice_emotion or spec.emotion, SpeakerVoice.for_identity(spec.identity),
                             activation, spec.fps, spec.seed)


def _speaker_reference(spec: ClipSpec) -> dict:
    from emoreason.synth.voice import SpeakerVoice, neutral_reference

    return neutral_reference(SpeakerVoice.for_identity(spec.identity), spec.frames, spec.fps)


def _voice_strength(spec: ClipSpec, peaks: dict[int, float]) -> float:
    """How strongly the voice carries its emotion: the face's expression strength when both show the same
    emotion; a masked voice leaks at the difficulty's middle intensity (the face's strength belongs to the mask)."""
    voice = spec.voice_emotion or spec.emotion
    if voice == "neutral":
        return 0.0
    if (spec.face_emotion or spec.emotion) == voice and peaks:
        return float(np.mean(list(peaks.values())) / 5.0)
    lo, hi = DIFFICULTIES[spec.difficulty].intensity
    return (lo + hi) / 10.0


def identity_summary(identity: Identity) -> dict:
    data = asdict(identity)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
