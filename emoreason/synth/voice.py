"""SynthFACS-AV voices: a speech-like track whose prosody follows the clip's emotion and intensity over time.

Procedural source-filter synthesis in numpy (Fant 1960, *Acoustic Theory of Speech Production*): a glottal pulse
train — Rosenberg (1971) pulses, differentiated for lip radiation — at an F0 contour, with cycle-to-cycle period
perturbation (jitter), amplitude perturbation (shimmer) and aspiration noise (breathiness), through a cascade of
second-order formant resonators (Klatt 1980, "Software for a cascade/parallel formant synthesizer", JASA 67) set
per syllable to a vowel (F1–F3 of Peterson & Barney 1952, scaled by the speaker's vocal-tract length). Syllables
follow each other at the speaking rate with a raised-cosine energy envelope; a per-syllable pitch accent and an
utterance-level contour shape the intonation. Deterministic per seed; needs nothing outside numpy.

The emotion sets how the voice departs from the speaker's neutral voice (:data:`VOCAL_PROFILES`), in the
directions of the published vocal-emotion profiles:

- Juslin & Laukka (2003), "Communication of emotions in vocal expression and music performance: different
  channels, same code?", *Psychological Bulletin* 129:770–814, Table 7 (cross-channel cue patterns): anger —
  fast, loud, high and variable F0, rising contour, irregular; fear — fast, low intensity (except panic), high but
  *little-varying* F0, rising contour, much irregularity; happiness — fast, medium-high intensity, high and
  variable F0, rising contour, very regular; sadness — slow, soft, low and monotone F0, falling contour, irregular.
- Scherer (2003), "Vocal communication of emotion: a review of research paradigms", *Speech Communication*
  40:227–256, Table 2 (same directions for anger, fear, sadness, joy).
- Banse & Scherer (1996), "Acoustic profiles in vocal emotion expression", *JPSP* 70:614–636: disgust and
  contempt — lowered F0, softer and slower speech.
- Surprise has no meta-analytic profile; it is given high, wide-ranging F0 with a strongly rising contour (the
  pattern of surprise/interest vocalisations), marked as extrapolated in :data:`VOCAL_PROFILES`.

The directions come from those tables; the magnitudes (e.g. anger F0 × 1.3, +8 dB; sadness F0 × 0.88, −8 dB,
rate × 0.78) are this module's choice, large enough to be measured reliably on 2-second clips (see
docs/benchmarks.md for measured vs target prosody per emotion). The profile is scaled by the clip's expression
strength and, over time, by the face's activation (onset → apex → offset), so the voice peaks with the face.
Compound emotions average their components' profiles.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from emoreason.knowledge import get_emotion

SAMPLE_RATE = 16000
_VOICE_STREAM = 6151  # separates voice randomness from face randomness

# F1, F2, F3 (Hz) of adult male vowels, Peterson & Barney (1952) Table II; ``open`` = jaw opening for lip motion
VOWELS: dict[str, tuple[tuple[float, float, float], float]] = {
    "a": ((730.0, 1090.0, 2440.0), 1.0),
    "e": ((530.0, 1840.0, 2480.0), 0.65),
    "i": ((270.0, 2290.0, 3010.0), 0.3),
    "o": ((570.0, 840.0, 2410.0), 0.8),
    "u": ((300.0, 870.0, 2240.0), 0.4),
}
_BANDWIDTHS = (80.0, 100.0, 150.0)


@dataclass(frozen=True)
class VocalProfile:
    """How a voice departs from its neutral state at full expression (multipliers are 1 and offsets 0 for
    neutral)."""

    f0_ratio: float  # F0 level
    range_ratio: float  # size of pitch accents (F0 variability)
    intensity_db: float  # level
    rate_ratio: float  # syllables per second
    jitter_ratio: float  # period irregularity
    shimmer_ratio: float  # amplitude irregularity
    contour_st: float  # utterance pitch movement start → end in semitones (rising > 0)
    breathiness: float  # aspiration noise, 0..1
    source: str


VOCAL_PROFILES: dict[str, VocalProfile] = {
    "neutral": VocalProfile(1.0, 1.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.05, "baseline (mild declination)"),
    "happiness": VocalProfile(1.25, 1.6, 4.0, 1.12, 0.8, 0.85, 2.0, 0.05, "Juslin & Laukka 2003 Tab. 7; Scherer 2003 Tab. 2"),
    "anger": VocalProfile(1.3, 1.5, 8.0, 1.15, 1.4, 1.3, 1.5, 0.05, "Juslin & Laukka 2003 Tab. 7; Scherer 2003 Tab. 2"),
    "fear": VocalProfile(1.35, 0.7, -1.0, 1.22, 1.8, 1.5, 2.0, 0.3, "Juslin & Laukka 2003 Tab. 7; Scherer 2003 Tab. 2"),
    "sadness": VocalProfile(0.88, 0.55, -8.0, 0.78, 1.4, 1.35, -3.0, 0.4, "Juslin & Laukka 2003 Tab. 7; Scherer 2003 Tab. 2"),
    "disgust": VocalProfile(0.92, 0.9, -3.0, 0.82, 1.15, 1.15, -1.5, 0.2, "Banse & Scherer 1996"),
    "contempt": VocalProfile(0.9, 0.9, -4.0, 0.86, 1.0, 1.0, -2.0, 0.15, "Banse & Scherer 1996"),
    "surprise": VocalProfile(1.3, 1.8, 3.0, 1.0, 1.0, 1.0, 4.0, 0.1, "extrapolated (no meta-analytic profile)"),
}


def vocal_profile(emotion: str) -> VocalProfile:
    """The profile of ``emotion``; a compound averages its components (ratios geometrically)."""
    label = get_emotion(emotion)
    if label.name in VOCAL_PROFILES:
        return VOCAL_PROFILES[label.name]
    parts = [VOCAL_PROFILES[c] for c in label.components if c in VOCAL_PROFILES]
    if not parts:
        return VOCAL_PROFILES["neutral"]

    def geo(name: str) -> float:
        return float(math.exp(np.mean([math.log(getattr(p, name)) for p in parts])))

    def mean(name: str) -> float:
        return float(np.mean([getattr(p, name) for p in parts]))

    return VocalProfile(geo("f0_ratio"), geo("range_ratio"), mean("intensity_db"), geo("rate_ratio"),
                        geo("jitter_ratio"), geo("shimmer_ratio"), mean("contour_st"), mean("breathiness"),
                        "mean of " + " and ".join(label.components))


@dataclass(frozen=True)
class SpeakerVoice:
    """A synthetic speaker's neutral voice."""

    f0_hz: float  # neutral F0 level
    rate_syl_per_s: float  # neutral syllable rate
    jitter_pct: float  # neutral local jitter
    shimmer_pct: float  # neutral local shimmer
    tract_scale: float  # formant scaling (shorter vocal tract → higher formants)
    accent_st: float  # neutral pitch-accent size (semitones)

    @staticmethod
    def for_identity(identity) -> SpeakerVoice:
        """Deterministic from the identity's own (seeded) features, so the same face always has the same voice."""
        key = [int(identity.identity_id), int(round(identity.scale * 1e9)), int(round(identity.face_height * 1e9))]
        rng = np.random.default_rng([*key, _VOICE_STREAM])
        low = rng.uniform() < 0.5  # a lower (adult-male-like) or higher (adult-female-like) voice
        f0 = rng.uniform(100.0, 135.0) if low else rng.uniform(185.0, 235.0)
        return SpeakerVoice(f0_hz=round(float(f0), 1), rate_syl_per_s=round(float(rng.uniform(4.0, 5.0)), 2),
                            jitter_pct=round(float(rng.uniform(0.35, 0.6)), 3),
                            shimmer_pct=round(float(rng.uniform(2.5, 3.5)), 3),
                            tract_scale=round(float(1.0 if low else rng.uniform(1.12, 1.2)), 3),
                            accent_st=round(float(rng.uniform(1.5, 2.5)), 2))


@dataclass
class Speech:
    """A synthesised utterance with its ground truth."""

    waveform: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int
    syllables: list[tuple[float, float, str]]  # (onset s, offset s, vowel)
    mouth: np.ndarray  # per video frame, 0..1 mouth opening (drives AU25/AU26)
    targets: dict  # prosody the synthesis aimed at (what the manifest records)


def activation_curve(face_activation: np.ndarray, strength: float, floor: float = 0.5) -> np.ndarray:
    """Per-frame vocal activation 0..1: the emotion colours the whole utterance (``floor``) and swells with the
    face's expression (onset → apex → offset), scaled by how strongly the expression is performed."""
    face = np.asarray(face_activation, dtype=float)
    peak = face.max() if face.size and face.max() > 0 else 1.0
    return strength * (floor + (1 - floor) * face / peak)


def synthesize_speech(emotion: str, speaker: SpeakerVoice, activation: np.ndarray, fps: float, seed: int,
                      sample_rate: int = SAMPLE_RATE) -> Speech:
    """Synthesise ``len(activation) / fps`` seconds of speech-like audio for ``emotion``.

    ``activation`` (per video frame, 0..1) scales the profile over time (see :func:`activation_curve`).
    """
    rng = np.random.default_rng([seed, _VOICE_STREAM])
    profile = vocal_profile(emotion)
    n_frames = len(activation)
    duration = n_frames / fps
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    frame_times = np.arange(n_frames) / fps
    act = np.interp(t, frame_times, activation)  # per sample

    def towards(ratio: float, a: np.ndarray) -> np.ndarray:  # multiplicative deviation scaled by activation
        return np.exp(np.log(ratio) * a)

    # --- syllable schedule: the rate follows the activation ---------------------------------------------------
    syllables: list[tuple[float, float, str]] = []
    cursor = float(rng.uniform(0.04, 0.12))
    vowel_names = list(VOWELS)
    while True:
        a_now = float(np.interp(cursor, frame_times, activation))
        rate = speaker.rate_syl_per_s * float(towards(profile.rate_ratio, np.array(a_now)))
        period = 1.0 / rate * float(rng.uniform(0.85, 1.15))
        if cursor + 0.6 * period > duration - 0.05:
            break
        voiced = period * float(rng.uniform(0.6, 0.72))
        syllables.append((round(cursor, 4), round(cursor + voiced, 4), vowel_names[int(rng.integers(len(vowel_names)))]))
        cursor += period
    # --- F0 contour: level × accents × utterance contour ------------------------------------------------------
    level = speaker.f0_hz * towards(profile.f0_ratio, act)
    accent_size = speaker.accent_st * towards(profile.range_ratio, act)
    accents = np.zeros(n)
    for onset, offset, _ in syllables:
        if rng.uniform() < 0.55:  # about every other syllable carries a pitch accent
            centre, width = (onset + offset) / 2, (offset - onset) * 0.8
            accents += float(rng.uniform(0.6, 1.0)) * np.exp(-0.5 * ((t - centre) / max(width / 2, 1e-3)) ** 2)
    # utterance contour: the neutral declination (−1 st start → end) bends towards the emotion's contour
    neutral_st = VOCAL_PROFILES["neutral"].contour_st
    contour = (neutral_st + (profile.contour_st - neutral_st) * act) * (t / max(duration, 1e-6) - 0.5)
    f0 = level * 2 ** ((accent_size * accents + contour) / 12)
    # --- energy: level (dB) and per-syllable raised-cosine envelopes -----------------------------------------
    gain = 10 ** (profile.intensity_db * act / 20)
    envelope = np.zeros(n)
    vowel_at = np.full(n, -1)
    for k, (onset, offset, _) in enumerate(syllables):
        i0, i1 = int(onset * sample_rate), min(n, int(offset * sample_rate))
        length = i1 - i0
        if length <= 4:
            continue
        x = np.linspace(0, 1, length)
        attack = np.clip(x / 0.2, 0, 1)
        decay = np.clip((1 - x) / 0.25, 0, 1)
        envelope[i0:i1] = np.sin(0.5 * np.pi * attack) ** 2 * np.sin(0.5 * np.pi * decay) ** 2
        vowel_at[i0:i1] = k
    # --- glottal source: one Rosenberg pulse per period, with jitter and shimmer -----------------------------
    jitter = speaker.jitter_pct / 100 * towards(profile.jitter_ratio, act)
    shimmer = speaker.shimmer_pct / 100 * towards(profile.shimmer_ratio, act)
    source = np.zeros(n)
    periods: list[tuple[int, int]] = []
    pos = 0.0
    while pos < n - 1:
        i = int(pos)
        # local jitter = mean |ΔT| / T; for independent perturbations of sd σ that is 2σ/√π
        period = sample_rate / f0[i] * (1 + jitter[i] * math.sqrt(math.pi) / 2 * float(rng.standard_normal()))
        amp = 1 + shimmer[i] * math.sqrt(math.pi) / 2 * float(rng.standard_normal())
        amp *= math.sqrt(speaker.f0_hz / f0[i])  # same power at any F0: loudness is set by the gain alone
        length = max(8, int(round(period)))
        if envelope[i] > 0:
            source[i:i + length] += amp * _rosenberg_derivative(length)[:n - i]
            periods.append((i, length))
        pos += period
    # aspiration noise, relative to the pulses' peak (1): breathier voices lower the harmonics-to-noise ratio
    noise = rng.standard_normal(n) * (0.01 + 0.12 * profile.breathiness * act)
    voiced = source + noise * (envelope > 0)
    # --- vocal tract: formant filter per syllable (FFT of the resonator cascade), overlap-added ---------------
    speech = np.zeros(n)
    pad = int(0.03 * sample_rate)
    for k, (_, _, vowel) in enumerate(syllables):
        idx = np.flatnonzero(vowel_at == k)
        if len(idx) == 0:
            continue
        i0, i1 = idx[0], idx[-1] + 1
        segment = voiced[i0:i1] * envelope[i0:i1] * gain[i0:i1]
        formants = [f * speaker.tract_scale for f in VOWELS[vowel][0]]
        filtered = _formant_filter(np.concatenate([segment, np.zeros(pad)]), formants, sample_rate)
        filtered /= _vowel_loudness(tuple(formants), sample_rate)  # every vowel equally loud at equal gain
        speech[i0:i0 + len(filtered)] += filtered[:n - i0]
    speech *= 0.2 / _NEUTRAL_PEAK
    speech += rng.standard_normal(n) * 2e-4  # a faint noise floor: real rooms are never digitally silent
    waveform = np.clip(speech, -0.99, 0.99).astype(np.float32)

    mouth = np.zeros(n_frames)
    for f, time_s in enumerate(frame_times):
        i = min(n - 1, int(time_s * sample_rate))
        if vowel_at[i] >= 0:
            mouth[f] = envelope[i] * VOWELS[syllables[vowel_at[i]][2]][1]
    targets = _targets(f0, envelope, gain, jitter, shimmer, syllables, act, profile, speaker, duration, t)
    return Speech(waveform, sample_rate, syllables, np.round(mouth, 3), targets)


# Peak of a neutral unit-gain utterance after filtering, roughly, measured over speakers: scales a neutral voice to
# peaks near 0.2 (about −14 dBFS), so the loudest profile (anger, +8 dB) keeps headroom below full scale.
_NEUTRAL_PEAK = 0.18


def _rosenberg_derivative(length: int, open_q: float = 0.4, close_q: float = 0.16) -> np.ndarray:
    """One period of the differentiated Rosenberg (1971) glottal flow pulse (glottal flow + lip radiation)."""
    tp, tn = max(2, int(open_q * length)), max(1, int(close_q * length))
    flow = np.zeros(length)
    x = np.arange(tp)
    flow[:tp] = 0.5 * (1 - np.cos(np.pi * x / tp))
    y = np.arange(tn)
    flow[tp:tp + tn] = np.cos(0.5 * np.pi * y / tn)
    slope = np.diff(flow, prepend=0.0)
    return slope / np.abs(slope).max()


@functools.lru_cache(maxsize=256)
def _vowel_loudness(formants: tuple[float, ...], sample_rate: int) -> float:
    """RMS of the vowel filter's response to a 200 Hz pulse train: divides it out so that loudness is set by the
    emotion's gain, not by which vowels a clip happens to draw (open vowels are otherwise several dB louder)."""
    pulses = np.zeros(sample_rate // 5)
    period = sample_rate // 200
    for start in range(0, len(pulses) - period, period):
        pulses[start:start + period] += _rosenberg_derivative(period)
    return float(np.sqrt(np.mean(_formant_filter(pulses, list(formants), sample_rate) ** 2))) / 0.05


def _formant_filter(signal: np.ndarray, formants: list[float], sample_rate: int) -> np.ndarray:
    """Cascade of Klatt (1980) second-order resonators, applied in the frequency domain."""
    spectrum = np.fft.rfft(signal)
    z = np.exp(-2j * np.pi * np.fft.rfftfreq(len(signal), 1 / sample_rate) / sample_rate)
    response = np.ones_like(z)
    period = 1 / sample_rate
    for freq, bw in zip(formants, _BANDWIDTHS, strict=True):
        c = -math.exp(-2 * math.pi * bw * period)
        b = 2 * math.exp(-math.pi * bw * period) * math.cos(2 * math.pi * freq * period)
        a = 1 - b - c
        response *= a / (1 - b * z - c * z ** 2)
    return np.fft.irfft(spectrum * response, n=len(signal))


def _targets(f0, envelope, gain, jitter, shimmer, syllables, act, profile, speaker, duration, t) -> dict:
    """The prosody the synthesis aimed at, in the units :mod:`emoreason.audio.prosody` measures."""
    voiced = envelope > 0.2
    hz = f0[voiced] if voiced.any() else f0
    lo, hi = np.percentile(hz, [5, 95])
    peak = int(np.argmax(np.where(voiced, f0, 0))) if voiced.any() else 0
    level_db = 20 * np.log10(np.maximum(gain[voiced] if voiced.any() else gain, 1e-9))
    return {
        "f0_mean_hz": round(float(hz.mean()), 1),
        "f0_min_hz": round(float(lo), 1),
        "f0_max_hz": round(float(hi), 1),
        "f0_range_st": round(float(12 * math.log2(hi / lo)), 2),
        "f0_peak_hz": round(float(f0[peak]), 1),
        "f0_peak_time_s": round(float(t[peak]), 2),
        "contour_st": round(float(VOCAL_PROFILES["neutral"].contour_st + (profile.contour_st - VOCAL_PROFILES[
            "neutral"].contour_st) * act.mean()), 2),
        "level_db_re_neutral": round(float(level_db.mean()), 1),
        "syllable_count": len(syllables),
        "speech_rate_syl_per_s": round(len(syllables) / duration, 2),
        "jitter_pct": round(float(jitter[voiced].mean() * 100 if voiced.any() else 0.0), 3),
        "shimmer_pct": round(float(shimmer[voiced].mean() * 100 if voiced.any() else 0.0), 3),
        "speaker": asdict(speaker),
        "profile": asdict(profile),
    }


_REFERENCE_SEEDS = (0, 1, 2)  # a few neutral utterances: one is a noisy baseline


@functools.lru_cache(maxsize=512)
def neutral_reference(speaker: SpeakerVoice, frames: int, fps: float) -> dict:
    """The speaker's neutral voice, measured (:class:`emoreason.audio.cues.ProsodyReference` as a dict): what
    "loud", "fast" or "high-pitched" are judged against for this speaker's clips. Deterministic; cached."""
    from emoreason.audio.cues import ProsodyReference
    from emoreason.audio.prosody import measure_prosody

    takes = [measure_prosody(synthesize_speech("neutral", speaker, np.zeros(frames), fps, seed=seed).waveform,
                             SAMPLE_RATE) for seed in _REFERENCE_SEEDS]

    def mean(name: str) -> float | None:
        values = [getattr(m, name) for m in takes if getattr(m, name) is not None]
        return round(float(np.mean(values)), 2) if values else None

    return ProsodyReference(mean("f0_mean_hz"), mean("intensity_mean_db"), mean("rate_syl_per_s"),
                            source=f"speaker neutral (synthesised, mean of {len(takes)} utterances)").to_dict()
