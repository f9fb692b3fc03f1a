"""Prosody of a clip's voice, measured with Praat (through ``praat-parselmouth``).

Measures and the methods behind them:

- **F0** (pitch): Praat's autocorrelation pitch tracker (Boersma 1993, "Accurate short-term analysis of the
  fundamental frequency and the harmonics-to-noise ratio of a sampled sound", IFA Proceedings 17), 10 ms step,
  in two passes (75–600 Hz, then the speaker's own range, De Looze & Hirst 2008, "Detecting changes in key and
  range for the automatic modelling and coding of intonation", Speech Prosody). Reported over voiced frames:
  mean, robust minimum
  and maximum (5th / 95th percentiles), range in semitones, the peak of the smoothed contour and its time, the
  linear slope in semitones per second, and a 10 Hz contour.
- **Energy**: Praat intensity (dB re 2·10⁻⁵ Pa, taking sample values as pascal), mean and range over sounding
  frames, and a 10 Hz contour.
- **Speaking rate**: syllable nuclei as intensity peaks that are voiced, stand out by ≥ 2 dB from the dip before
  them and lie within 25 dB of the loudest frame (de Jong & Wempe 2009, "Praat script to detect syllable nuclei
  and measure speech rate automatically", Behavior Research Methods 41:385–390); speech rate = nuclei per second
  of clip, articulation rate = nuclei per second of sounding time, nucleus rate = nuclei per second between the
  first and the last nucleus (finer than whole-syllable counts on clips of a few seconds).
- **Voice quality**: local jitter and local shimmer from a periodic cross-correlation point process, and the
  mean harmonics-to-noise ratio (Praat's standard voice report settings: periods 0.1–20 ms, maximum period
  factor 1.3, maximum amplitude factor 1.6; Boersma & Weenink, *Praat manual*, "Voice"). These are what the
  vocal-emotion literature reports as "microstructural irregularity" (Juslin & Laukka 2003).

Every measure is ``None`` when it cannot be measured (no voiced frames, too few periods), never a made-up 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

PITCH_FLOOR_HZ = 75.0
PITCH_CEILING_HZ = 600.0
CONTOUR_STEP_S = 0.1
_SILENCE_BELOW_MAX_DB = 25.0  # de Jong & Wempe 2009: sounding = within 25 dB of the 0.99 quantile
_MIN_DIP_DB = 2.0  # de Jong & Wempe 2009: a nucleus stands ≥ 2 dB above the dip before it


@dataclass
class ProsodyMeasurement:
    """Per-clip prosody; what vocal-cue sentences cite and the vocal-claims checker holds them to."""

    duration_s: float
    voiced_fraction: float
    f0_mean_hz: float | None = None
    f0_min_hz: float | None = None  # 5th percentile of voiced frames
    f0_max_hz: float | None = None  # 95th percentile of voiced frames
    f0_range_st: float | None = None  # 12·log2(max / min)
    f0_peak_hz: float | None = None  # peak of the contour smoothed over 50 ms
    f0_peak_time_s: float | None = None
    f0_slope_st_per_s: float | None = None  # linear trend of the voiced contour
    intensity_mean_db: float | None = None  # over sounding frames
    intensity_range_db: float | None = None  # 95th − 5th percentile over sounding frames
    syllables: int = 0
    speech_rate_syl_per_s: float | None = None  # nuclei / clip duration
    nucleus_rate_syl_per_s: float | None = None  # (nuclei − 1) / time from first to last nucleus
    articulation_rate_syl_per_s: float | None = None  # nuclei / sounding time
    jitter_local_pct: float | None = None
    shimmer_local_pct: float | None = None
    hnr_db: float | None = None
    f0_contour: list[tuple[float, float | None]] = field(default_factory=list)  # (s, Hz), 10 Hz
    intensity_contour: list[tuple[float, float | None]] = field(default_factory=list)  # (s, dB), 10 Hz

    def to_dict(self) -> dict:
        data = asdict(self)
        data["f0_contour"] = [list(p) for p in self.f0_contour]
        data["intensity_contour"] = [list(p) for p in self.intensity_contour]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ProsodyMeasurement:
        data = dict(data)
        for key in ("f0_contour", "intensity_contour"):
            data[key] = [tuple(p) for p in data.get(key, [])]
        return cls(**data)

    @property
    def rate_syl_per_s(self) -> float | None:
        """Speaking rate for descriptions: nucleus spacing when there are ≥ 3 nuclei (a 2 s clip counts whole
        syllables, so nuclei / duration moves in steps of 0.5 syllables per second), else nuclei / duration."""
        return self.nucleus_rate_syl_per_s if self.nucleus_rate_syl_per_s is not None else self.speech_rate_syl_per_s

    def f0_at(self, time_s: float) -> float | None:
        """The contour's F0 nearest ``time_s`` (None when unvoiced there)."""
        if not self.f0_contour:
            return None
        return min(self.f0_contour, key=lambda p: abs(p[0] - time_s))[1]


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def measure_prosody(waveform: np.ndarray, sample_rate: int) -> ProsodyMeasurement:
    """Measure ``waveform`` (mono float, any rate ≥ 8 kHz). Pure: same samples → same numbers."""
    import parselmouth
    from parselmouth.praat import call

    samples = np.asarray(waveform, dtype=np.float64).reshape(-1)
    duration = len(samples) / sample_rate if sample_rate else 0.0
    if duration < 0.1 or not np.any(samples):
        return ProsodyMeasurement(duration_s=_round(duration, 3) or 0.0, voiced_fraction=0.0)
    sound = parselmouth.Sound(samples, sampling_frequency=float(sample_rate))

    pitch = _two_pass_pitch(sound)
    f0 = pitch.selected_array["frequency"]
    f0_times = pitch.xs()
    voiced = f0 > 0
    intensity = sound.to_intensity(minimum_pitch=PITCH_FLOOR_HZ, time_step=0.01)
    db = intensity.values[0]
    db_times = intensity.xs()
    sounding = db >= np.quantile(db, 0.99) - _SILENCE_BELOW_MAX_DB if len(db) else np.zeros(0, bool)

    out = ProsodyMeasurement(duration_s=round(duration, 3),
                             voiced_fraction=round(float(voiced.mean()) if len(voiced) else 0.0, 3))
    if voiced.sum() >= 3:
        hz = f0[voiced]
        lo, hi = np.percentile(hz, [5, 95])
        smooth = _smooth_voiced(f0, 5)
        peak = int(np.nanargmax(smooth))
        semitones = 12 * np.log2(hz / 100.0)
        slope = np.polyfit(f0_times[voiced], semitones, 1)[0] if np.ptp(f0_times[voiced]) > 0 else 0.0
        out.f0_mean_hz, out.f0_min_hz, out.f0_max_hz = _round(hz.mean(), 1), _round(lo, 1), _round(hi, 1)
        out.f0_range_st = _round(12 * math.log2(hi / lo) if lo > 0 else None)
        out.f0_peak_hz, out.f0_peak_time_s = _round(smooth[peak], 1), _round(f0_times[peak], 2)
        out.f0_slope_st_per_s = _round(slope)
    if sounding.any():
        loud = db[sounding]
        out.intensity_mean_db = _round(loud.mean(), 1)
        out.intensity_range_db = _round(np.percentile(loud, 95) - np.percentile(loud, 5), 1)
    nuclei = syllable_nuclei(db, db_times, f0, f0_times)
    out.syllables = len(nuclei)
    out.speech_rate_syl_per_s = _round(len(nuclei) / duration)
    if len(nuclei) >= 3 and nuclei[-1] > nuclei[0]:
        out.nucleus_rate_syl_per_s = _round((len(nuclei) - 1) / (nuclei[-1] - nuclei[0]))
    sounding_time = float(sounding.sum()) * 0.01
    out.articulation_rate_syl_per_s = _round(len(nuclei) / sounding_time) if sounding_time > 0.1 else None

    if voiced.sum() >= 10:
        points = call(sound, "To PointProcess (periodic, cc)", PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
        jitter = call(points, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)
        shimmer = call([sound, points], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6)
        harmonicity = sound.to_harmonicity_cc(time_step=0.01, minimum_pitch=PITCH_FLOOR_HZ,
                                              silence_threshold=0.1, periods_per_window=1.0)
        hnr = call(harmonicity, "Get mean", 0, 0)
        out.jitter_local_pct = _round(jitter * 100 if jitter == jitter else None)
        out.shimmer_local_pct = _round(shimmer * 100 if shimmer == shimmer else None)
        out.hnr_db = _round(hnr if hnr == hnr else None, 1)
    out.f0_contour = _contour(f0_times, np.where(voiced, f0, np.nan), duration, 1)
    out.intensity_contour = _contour(db_times, np.where(sounding, db, np.nan), duration, 1)
    return out


def _two_pass_pitch(sound):
    """Praat pitch with the speaker-adapted range of De Looze & Hirst (2008): a first pass over 75–600 Hz, then
    floor = 0.75 × first quartile and ceiling = 1.5 × third quartile (clamped to 75–600 Hz), which removes most
    octave jumps."""
    first = sound.to_pitch_ac(time_step=0.01, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    hz = first.selected_array["frequency"]
    hz = hz[hz > 0]
    if len(hz) < 10:
        return first
    q1, q3 = np.percentile(hz, [25, 75])
    floor, ceiling = max(PITCH_FLOOR_HZ, 0.75 * q1), min(PITCH_CEILING_HZ, 1.5 * q3)
    if ceiling <= floor * 1.5:
        return first
    return sound.to_pitch_ac(time_step=0.01, pitch_floor=floor, pitch_ceiling=ceiling)


def syllable_nuclei(db: np.ndarray, db_times: np.ndarray, f0: np.ndarray, f0_times: np.ndarray) -> list[float]:
    """Times of syllable nuclei (de Jong & Wempe 2009): voiced intensity peaks above the silence threshold
    that rise ≥ 2 dB above the lowest point since the previous nucleus."""
    if len(db) < 3:
        return []
    threshold = max(np.quantile(db, 0.99) - _SILENCE_BELOW_MAX_DB, float(db.min()))
    peaks = [i for i in range(1, len(db) - 1) if db[i] >= db[i - 1] and db[i] > db[i + 1] and db[i] > threshold]
    nuclei: list[float] = []
    last = 0
    for i in peaks:
        dip = db[last:i + 1].min() if i > last else db[i]
        if nuclei and db[i] - dip < _MIN_DIP_DB:
            continue
        j = int(np.argmin(np.abs(f0_times - db_times[i])))
        if f0[j] > 0:
            nuclei.append(float(db_times[i]))
            last = i
    return nuclei


def _smooth_voiced(f0: np.ndarray, width: int) -> np.ndarray:
    """Moving average over voiced frames only (NaN where unvoiced)."""
    values = np.where(f0 > 0, f0, np.nan)
    out = np.full_like(values, np.nan)
    half = width // 2
    for i in range(len(values)):
        if not np.isnan(values[i]):
            window = values[max(0, i - half):i + half + 1]
            out[i] = np.nanmean(window)
    return out


def _contour(times: np.ndarray, values: np.ndarray, duration: float, digits: int) -> list[tuple[float, float | None]]:
    """Mean of ``values`` (NaN = undefined) in 100 ms bins, labelled by bin centre."""
    points = []
    for k in range(int(math.ceil(duration / CONTOUR_STEP_S - 1e-9))):
        lo, hi = k * CONTOUR_STEP_S, (k + 1) * CONTOUR_STEP_S
        sel = values[(times >= lo) & (times < hi)]
        sel = sel[~np.isnan(sel)]
        points.append((round(lo + CONTOUR_STEP_S / 2, 2), round(float(sel.mean()), digits) if len(sel) else None))
    return points
