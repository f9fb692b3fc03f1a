"""Vocal evidence for rationales: describe a clip's measured prosody in words, and hold vocal claims to it.

Pure functions over :class:`~emoreason.audio.prosody.ProsodyMeasurement`:

- :func:`describe` sorts a measurement into the categories a sentence can name (high/low pitch, rising/falling/
  flat contour, loud/soft, fast/slow) relative to a :class:`ProsodyReference` — the speaker's own neutral voice
  where it is known (SynthFACS speakers; a speaker's neutral clips in CREMA-D / RAVDESS), else corpus norms.
  Judging loudness and rate against the same speaker follows the vocal-emotion literature, which reports
  emotion effects as departures from a speaker's neutral baseline (Banse & Scherer 1996; Juslin & Laukka 2003).
- :func:`compose_vocal_cues` writes the ``Vocal cues:`` sentence (seeded template choice, like the facial
  composer in ``emoreason.cot.compose``): numbers only where they are measured, words only where a reference
  allows them.
- :func:`check_vocal_claims` reads claims with the project's parser (``emoreason.reasoning.vocal``) and checks
  each against the measurement with :class:`VocalTolerance`; a claim it cannot check is "unverifiable", never
  silently accepted.

Thresholds: pitch "high"/"low" at ±10 % of the reference F0 (about 1.7 semitones, above the ~1 semitone
just-noticeable difference for speech intonation, 't Hart, Collier & Cohen 1990); "loud"/"soft" at ±3 dB of the
reference intensity (a clearly audible level change); "fast"/"slow" at ±10 % of the reference rate; a contour
"rises"/"falls" when its trend exceeds ±0.75 semitones per second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from emoreason.audio.prosody import ProsodyMeasurement
from emoreason.reasoning.vocal import VOCAL_SECTION, VocalClaim, parse_vocal_claims

PITCH_RATIO = 0.10
LOUDNESS_DB = 3.0
RATE_RATIO = 0.10
SLOPE_ST_PER_S = 0.75


@dataclass(frozen=True)
class ProsodyReference:
    """The baseline that makes "loud", "fast" or "high-pitched" mean something: a speaker's neutral voice."""

    f0_mean_hz: float | None = None
    intensity_mean_db: float | None = None
    rate_syl_per_s: float | None = None
    source: str = "speaker neutral"

    @classmethod
    def from_measurement(cls, neutral: ProsodyMeasurement, source: str = "speaker neutral") -> ProsodyReference:
        return cls(neutral.f0_mean_hz, neutral.intensity_mean_db, neutral.rate_syl_per_s, source)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VocalDescription:
    """The categories a measurement falls in (None where undetermined or without a reference)."""

    pitch_level: str | None = None  # high | low | typical
    contour: str | None = None  # rising | falling | flat
    loudness: str | None = None  # loud | soft | typical
    rate: str | None = None  # fast | slow | typical


def describe(measurement: ProsodyMeasurement, reference: ProsodyReference | None = None) -> VocalDescription:
    ref = reference or ProsodyReference()

    def relative(value: float | None, base: float | None, ratio: float, up: str, down: str) -> str | None:
        if value is None or base is None or base <= 0:
            return None
        return up if value >= base * (1 + ratio) else down if value <= base * (1 - ratio) else "typical"

    loudness = None
    if measurement.intensity_mean_db is not None and ref.intensity_mean_db is not None:
        delta = measurement.intensity_mean_db - ref.intensity_mean_db
        loudness = "loud" if delta >= LOUDNESS_DB else "soft" if delta <= -LOUDNESS_DB else "typical"
    contour = None
    if measurement.f0_slope_st_per_s is not None:
        slope = measurement.f0_slope_st_per_s
        contour = "rising" if slope >= SLOPE_ST_PER_S else "falling" if slope <= -SLOPE_ST_PER_S else "flat"
    return VocalDescription(
        pitch_level=relative(measurement.f0_mean_hz, ref.f0_mean_hz, PITCH_RATIO, "high", "low"),
        contour=contour, loudness=loudness,
        rate=relative(measurement.rate_syl_per_s, ref.rate_syl_per_s, RATE_RATIO, "fast", "slow"))


# --- composing ----------------------------------------------------------------------------------------------

_MEAN = ("pitch averages {mean:.0f} Hz", "mean pitch is about {mean:.0f} Hz", "the voice centres on {mean:.0f} Hz")
_PEAK = (" and rises to {peak:.0f} Hz at {t:.1f} s", ", peaking at {peak:.0f} Hz around {t:.1f} s",
         " and climbs to {peak:.0f} Hz at {t:.1f} s")
_RANGE = (" (a {rng:.1f}-semitone range)", " over a range of {rng:.1f} semitones")
_CONTOUR = {"rising": ("rising intonation", "a rising pitch contour"),
            "falling": ("falling intonation", "a falling pitch contour"),
            "flat": ("flat intonation", "a flat pitch contour")}
_LEVEL = {"high": "high-pitched", "low": "low-pitched"}
_LOUD = {"loud": ("loud",), "soft": ("soft", "quiet")}
_RATE = {"fast": ("fast", "rapid"), "slow": ("slow",)}


def compose_vocal_cues(measurement: ProsodyMeasurement, reference: ProsodyReference | None = None,
                       seed: int = 0, with_voice_quality: bool = False) -> str:
    """One ``Vocal cues`` sentence for ``measurement``, e.g. "pitch averages 240 Hz and rises to 310 Hz at 1.2 s
    (a 6.5-semitone range), with rising intonation; loud, fast speech at 5.5 syllables per second."

    Everything it states passes :func:`check_vocal_claims` against the same measurement and reference.
    """
    rng = random.Random(seed)
    desc = describe(measurement, reference)
    clauses: list[str] = []
    if measurement.f0_mean_hz is not None:
        pitch = rng.choice(_MEAN).format(mean=measurement.f0_mean_hz)
        if measurement.f0_peak_hz is not None and measurement.f0_peak_time_s is not None:
            pitch += rng.choice(_PEAK).format(peak=measurement.f0_peak_hz, t=measurement.f0_peak_time_s)
        if measurement.f0_range_st is not None:
            pitch += rng.choice(_RANGE).format(rng=measurement.f0_range_st)
        if desc.contour is not None:
            pitch += ", with " + rng.choice(_CONTOUR[desc.contour])
        if desc.pitch_level in _LEVEL:
            pitch += f"; a {_LEVEL[desc.pitch_level]} voice"
        clauses.append(pitch)
    else:
        clauses.append("no voiced speech is detected")
    words = [rng.choice(_LOUD[desc.loudness])] if desc.loudness in _LOUD else []
    words += [rng.choice(_RATE[desc.rate])] if desc.rate in _RATE else []
    if measurement.rate_syl_per_s is not None and measurement.syllables:
        rate = f"{measurement.rate_syl_per_s:.1f} syllables per second"
        clauses.append((", ".join(words) + " speech at " if words else "speech at ") + rate)
    elif words:
        clauses.append(", ".join(words) + " speech")
    if with_voice_quality and measurement.jitter_local_pct is not None:
        quality = f"jitter {measurement.jitter_local_pct:.1f} %"
        if measurement.hnr_db is not None:
            quality += f", HNR {measurement.hnr_db:.0f} dB"
        clauses.append(quality)
    text = "; ".join(clauses) + "."
    return text[0].upper() + text[1:]


def vocal_cues_section(measurement: ProsodyMeasurement, reference: ProsodyReference | None = None,
                       seed: int = 0) -> str:
    """The whole line as it appears in a response: ``Vocal cues: …``."""
    return f"{VOCAL_SECTION}: {compose_vocal_cues(measurement, reference, seed)}"


# --- checking -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VocalTolerance:
    """How far a stated number may be from the measurement."""

    pitch_ratio: float = 0.08  # Hz claims: ±8 %
    peak_time_s: float = 0.25  # a peak "at 1.2 s" must be reached within ±0.25 s
    range_st: float = 1.5
    loudness_db: float = 3.0
    rate_ratio: float = 0.2  # numeric rate: ±20 % (or ±0.75 syllables per second, whichever is larger)
    rate_abs: float = 0.75
    jitter_pct: float = 0.5  # percentage points (or ±40 %, whichever is larger)
    shimmer_pct: float = 3.0
    hnr_db: float = 3.0


@dataclass
class ClaimCheck:
    claim: VocalClaim
    status: str  # "ok" | "mismatch" | "unverifiable"
    measured: float | str | None = None
    note: str = ""


@dataclass
class VocalVerdict:
    ok: bool  # no mismatch (and, when strict, nothing unverifiable)
    checks: list[ClaimCheck] = field(default_factory=list)

    @property
    def mismatches(self) -> list[ClaimCheck]:
        return [c for c in self.checks if c.status == "mismatch"]

    @property
    def unverifiable(self) -> list[ClaimCheck]:
        return [c for c in self.checks if c.status == "unverifiable"]


def check_vocal_claims(text_or_claims: str | list[VocalClaim], measurement: ProsodyMeasurement,
                       reference: ProsodyReference | None = None, tolerance: VocalTolerance = VocalTolerance(),
                       strict: bool = False) -> VocalVerdict:
    """Check every vocal claim against ``measurement``. Negated claims ("not loud") hold when the category
    does not apply. ``strict``: claims that cannot be checked (no reference for "loud", unvoiced clip) fail."""
    claims = parse_vocal_claims(text_or_claims) if isinstance(text_or_claims, str) else list(text_or_claims)
    desc = describe(measurement, reference)
    checks = [_check(claim, measurement, desc, tolerance) for claim in claims]
    ok = not any(c.status == "mismatch" or (strict and c.status == "unverifiable") for c in checks)
    return VocalVerdict(ok, checks)


def _within(value: float, measured: float | None, ratio: float = 0.0, absolute: float = 0.0) -> bool | None:
    if measured is None:
        return None
    return abs(value - measured) <= max(abs(measured) * ratio, absolute)


def _check(claim: VocalClaim, m: ProsodyMeasurement, desc: VocalDescription, tol: VocalTolerance) -> ClaimCheck:
    kind, value = claim.kind, claim.value
    category = {"pitch_direction": desc.contour, "pitch_level": desc.pitch_level, "loudness": desc.loudness,
                "rate": desc.rate}
    if kind in category:
        measured = category[kind]
        if measured is None:
            return ClaimCheck(claim, "unverifiable", None, "no reference or no voiced speech to judge it by")
        holds = (measured == value) != claim.negated
        return ClaimCheck(claim, "ok" if holds else "mismatch", measured)
    if not isinstance(value, float | int):
        return ClaimCheck(claim, "unverifiable", None, "unknown claim")
    if kind == "pitch_peak":
        return _check_peak(claim, float(value), m, tol)
    numeric = {
        "pitch_mean": (m.f0_mean_hz, tol.pitch_ratio, 0.0),
        "pitch_range": (m.f0_range_st, 0.0, tol.range_st),
        "loudness_db": (m.intensity_mean_db, 0.0, tol.loudness_db),
        "rate_value": (m.rate_syl_per_s, tol.rate_ratio, tol.rate_abs),
        "jitter": (m.jitter_local_pct, 0.4, tol.jitter_pct),
        "shimmer": (m.shimmer_local_pct, 0.4, tol.shimmer_pct),
        "hnr": (m.hnr_db, 0.0, tol.hnr_db),
    }
    if kind not in numeric:
        return ClaimCheck(claim, "unverifiable", None, "unknown claim")
    measured, ratio, absolute = numeric[kind]
    verdict = _within(float(value), measured, ratio, absolute)
    if verdict is None:
        return ClaimCheck(claim, "unverifiable", None, "not measurable in this clip")
    return ClaimCheck(claim, "ok" if verdict != claim.negated else "mismatch", measured)


def _check_peak(claim: VocalClaim, hz: float, m: ProsodyMeasurement, tol: VocalTolerance) -> ClaimCheck:
    """"Pitch rises to X Hz at T s" holds when the F0 contour reaches X (±tolerance) within T ± the time
    tolerance — it need not be the clip's global peak."""
    if not m.f0_contour or claim.time_s is None:
        return ClaimCheck(claim, "unverifiable", None, "no F0 contour")
    near = [f for t, f in m.f0_contour if f is not None and abs(t - claim.time_s) <= tol.peak_time_s + 0.05]
    candidates = near + ([m.f0_peak_hz] if m.f0_peak_time_s is not None and m.f0_peak_hz is not None
                         and abs(m.f0_peak_time_s - claim.time_s) <= tol.peak_time_s else [])
    if not candidates:
        return ClaimCheck(claim, "mismatch", None, f"unvoiced around {claim.time_s:.1f} s")
    best = max(candidates)
    holds = abs(best - hz) <= hz * tol.pitch_ratio or (min(candidates) <= hz <= best)
    return ClaimCheck(claim, "ok" if holds != claim.negated else "mismatch", best,
                      f"F0 around {claim.time_s:.1f} s reaches {best:.0f} Hz")
