"""Fit the landmark AU estimator's intensity steps and occurrence thresholds from SynthFACS, and write
``emoreason/au/calibration.py``.

Data (all rendered here, exact AU ground truth; identities 0–23 only — the validation uses others):
1. single-AU ramps: per identity and AU, 4 neutral frames then the AU at 0.5 … 5; a measure's step is the
   median over identities of the least-squares slope (through 0) of its displacement from the neutral
   frames against the rendered intensity;
2. SynthFACS emotion clips (``generate_clip``, easy + medium) of the same identities: each AU's
   ``_c`` threshold is the intensity cut that maximises frame-level F1 for "present" (truth ≥ 1).
FaceMesh does not follow every cartoon AU; a measure whose displacement does not track the rendered
intensity (median r < 0.6) gets its step from the stated fallback instead (see FALLBACKS).

Usage: python scripts/au_calibrate.py [--identities 24] [--clips 160] [--cache /tmp/au-calib]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emoreason.au.geometry import AU_SPECS, compute_measures, estimate, frontalise  # noqa: E402
from emoreason.au.landmarks import FaceLandmarker, LandmarkerConfig  # noqa: E402
from emoreason.synth import ClipSpec, Identity, Pose, generate_clip, render_face  # noqa: E402

RAMP_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43)
ESTIMATED_AS = {24: 23, 43: 45}  # rendered AU → the estimator AU that stands for it (AU23/24, AU43/45)
LEVELS = np.r_[np.zeros(4), np.linspace(0.5, 5.0, 10)]
SIZE = 256
MIN_RELATIVE_STEP = 0.2
# A measure FaceMesh does not see move on the cartoon borrows its step from a measure of the same geometry
# that it does see (documented in docs/au_estimator.md).
FALLBACKS = {
    (25, "lip_gap"): (26, "lip_gap", "AU25's lip separation is drawn as a line FaceMesh does not open; the "
                                     "lip-gap step of the AU26 ramp (where the lips do separate) is used"),
    (5, "upper_lid"): (43, "upper_lid", "the cartoon's AU5 shows more sclera but barely moves the lid "
                                        "points; the upper-lid step of the eye-closure ramp is used"),
    (5, "eye_open"): (43, "eye_open", "as above: the eye-opening step of the eye-closure ramp"),
    (9, "alae"): (12, "alae", "the cartoon's nose wrinkle does not move FaceMesh's alae; the alae "
                              "displacement seen under AU12 (cheek lift) is used as the step"),
}


def ramps(identities: range, cache: Path) -> list[dict]:
    path = cache / f"ramps-{identities.start}-{identities.stop}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    out = []
    for i in identities:
        identity = Identity.sample(i, np.random.default_rng(1000 + i))
        for au in RAMP_AUS:
            frames = [render_face(identity, {au: float(v)} if v > 0 else {}, Pose(), SIZE) for v in LEVELS]
            with FaceLandmarker(LandmarkerConfig(hand_every=0)) as marker:
                track = marker.track(frames, fps=8.0)
            out.append({"identity": i, "au": au, "points": track.points})
        print(f"ramps: identity {i} done", flush=True)
    path.write_bytes(pickle.dumps(out))
    return out


def clips(identities: range, n: int, cache: Path, seed: int) -> list[dict]:
    path = cache / f"clips-{identities.start}-{identities.stop}-{n}-{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    rng = np.random.default_rng(seed)
    emotions = ["happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt", "neutral"]
    out = []
    for k in range(n):
        ident_id = int(rng.integers(identities.start, identities.stop))
        identity = Identity.sample(ident_id, np.random.default_rng(1000 + ident_id))
        spec = ClipSpec(k, f"c{k}", emotions[k % len(emotions)], identity, "calib", int(rng.integers(1 << 30)),
                        frames=24, size=SIZE, fps=8.0, difficulty=("easy", "medium")[k % 2])
        frames, truth = generate_clip(spec)
        with FaceLandmarker(LandmarkerConfig(hand_every=0)) as marker:
            track = marker.track(frames, fps=8.0)
        out.append({"identity": ident_id, "truth": truth, "points": track.points})
        if k % 20 == 0:
            print(f"clips: {k}/{n}", flush=True)
    path.write_bytes(pickle.dumps(out))
    return out


def fit_steps(data: list[dict]) -> tuple[dict, dict]:
    """(step per (AU, measure), report) from the ramps."""
    per: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for item in data:
        measures = compute_measures(frontalise(item["points"]).points)
        neutral = LEVELS == 0
        for name, values in measures.items():
            delta = values[~neutral] - np.nanmean(values[neutral])
            lv = LEVELS[~neutral]
            if not np.isfinite(delta).all() or delta.std() == 0:
                continue
            per.setdefault((item["au"], name), []).append((float(lv @ delta / (lv @ lv)),
                                                           float(np.corrcoef(lv, delta)[0, 1])))
    # a measure must move under the AU at least this fraction as much as under the AU that moves it most
    # (otherwise a tiny slope would blow noise up into high intensities)
    largest = {}
    for (_, name), values in per.items():
        largest[name] = max(largest.get(name, 0.0), abs(float(np.median([s for s, _ in values]))))
    steps, report = {}, {}
    for au, spec in AU_SPECS.items():
        rendered = au if au in RAMP_AUS else next(r for r, e in ESTIMATED_AS.items() if e == au)
        for name, sign in spec.components:
            values = per.get((rendered, name), [])
            slope = float(np.median([s for s, _ in values])) if values else 0.0
            r = float(np.median([c for _, c in values])) if values else 0.0
            source = f"SynthFACS AU{rendered} ramp"
            if sign * slope <= 0 or sign * r < 0.6 or abs(slope) < MIN_RELATIVE_STEP * largest[name]:
                if (au, name) not in FALLBACKS:
                    raise SystemExit(f"AU{au} {name}: no usable step (slope {slope:+.3f}, r {r:+.2f}) and no "
                                     "fallback")
                other_au, other_name, why = FALLBACKS[(au, name)]
                fallback = per[(other_au, other_name)]
                slope = abs(float(np.median([s for s, _ in fallback])))
                r = float(np.median([c for _, c in fallback]))
                source = f"fallback: {why}"
            steps[(au, name)] = abs(slope)
            report[f"AU{au}:{name}"] = {"step": round(abs(slope), 4), "r": round(r, 3), "source": source}
    # e.g. AU20 is the lip widening AU12 does not explain: how far one step of the other AU moves this AU's
    # first measure, in this AU's steps (sign-corrected)
    for au, spec in AU_SPECS.items():
        if spec.explained_by:
            name, sign = spec.components[0]
            other = float(np.median([s for s, _ in per[(spec.explained_by, name)]]))
            share = max(0.0, sign * other / steps[(au, name)])
            steps[(f"AU{au}_minus_AU{spec.explained_by}", name)] = share
            report[f"AU{au} explained by AU{spec.explained_by}"] = round(share, 3)
    return steps, report


def fit_thresholds(data: list[dict], steps: dict) -> tuple[dict, dict]:
    calib = {"units": steps, "thresholds": dict.fromkeys(AU_SPECS, 1.0)}
    pred: dict[int, list] = {au: [] for au in AU_SPECS}
    true: dict[int, list] = {au: [] for au in AU_SPECS}
    for item in data:
        result = estimate(item["points"], mode="video", calibration=calib)
        frames = item["truth"]["au_frames"]
        n = len(item["points"])
        for au in AU_SPECS:
            sources = [a for a in (au, *[r for r, e in ESTIMATED_AS.items() if e == au])]
            truth = np.max([np.asarray(frames.get(str(a), np.zeros(n))) for a in sources], axis=0)
            pred[au].append(result.intensity[au])
            true[au].append(truth)
    thresholds, report = {}, {}
    for au in AU_SPECS:
        p, t = np.concatenate(pred[au]), np.concatenate(true[au])
        keep = np.isfinite(p) & ((t >= 1.0) | (t == 0))  # trace-only frames (0 < t < 1) are ambiguous
        p, y = p[keep], t[keep] >= 1.0
        best = (0.0, 1.0)
        if y.any():
            for cut in np.arange(0.25, 4.01, 0.05):
                hit = p >= cut
                tp = (hit & y).sum()
                f1 = 2 * tp / max(1, hit.sum() + y.sum())
                if f1 > best[0] + 1e-9:
                    best = (float(f1), float(round(cut, 2)))
        thresholds[au] = best[1]
        report[f"AU{au}"] = {"threshold": best[1], "train_f1": round(best[0], 3), "positives": int(y.sum()),
                             "frames": int(len(y))}
    return thresholds, report


def write_module(steps: dict, thresholds: dict, report: dict, path: Path) -> None:
    lines = [
        '"""Calibration of the landmark AU estimator: intensity steps and occurrence thresholds.',
        "",
        "GENERATED by ``python scripts/au_calibrate.py`` from SynthFACS identities 0–23 (single-AU ramps for the",
        "steps, emotion clips for the thresholds); do not edit by hand. ``units[(au, measure)]`` is the",
        "displacement of that measure (canonical cm, or ratio) per FACS intensity step; ``thresholds[au]`` is",
        'the intensity from which ``AUxx_c`` = 1. The fit report is in ``REPORT``."""',
        "",
        "from __future__ import annotations",
        "",
        "CALIBRATION: dict = {",
        '    "units": {',
    ]
    lines += [f"        {key!r}: {value:.5f}," for key, value in sorted(steps.items(), key=str)]
    lines += ["    },", '    "thresholds": {']
    lines += [f"        {au}: {value:.2f}," for au, value in sorted(thresholds.items())]
    lines += ["    },", "}", "", f"REPORT: dict = {json.dumps(report, indent=4, sort_keys=True)}", ""]
    path.write_text("\n".join(lines).replace("true", "True").replace("false", "False"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=24)
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--cache", default="/tmp/au-calib")
    parser.add_argument("--out", default=str(ROOT / "emoreason" / "au" / "calibration.py"))
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ids = range(0, args.identities)
    steps, step_report = fit_steps(ramps(ids, cache))
    thresholds, threshold_report = fit_thresholds(clips(ids, args.clips, cache, seed=7), steps)
    report = {"steps": step_report, "thresholds": threshold_report,
              "data": {"identities": [ids.start, ids.stop], "clips": args.clips, "size": SIZE}}
    write_module(steps, thresholds, report, Path(args.out))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
