"""Recognition metrics as the field reports them, and one rule for what counts as AU ground truth.

* WAR (weighted average recall) = accuracy; UAR (unweighted average recall) = mean per-class recall over the
  classes present in the ground truth — the DFEW / FERV39K / MAFW protocol (Jiang et al. 2020; Wang et al. 2022;
  Liu et al. 2022). Unparseable answers count as wrong (predicted class None).
* Macro and weighted F1, per-class recall, confusion matrix.
* AU detection: per-AU F1 and the mean over the benchmark's AU set (BP4D 12, DISFA 8, ABAW 12 AUs) — frame-level
  on the AU benchmarks (one sample per annotated centre frame; Zhao et al., DRML, CVPR 2016; Shao et al.,
  JAA-Net, ECCV 2018).
* Valence/arousal: concordance correlation coefficient (Lin 1989) and RMSE.
* Multi-fold: mean ± (population) std over folds.

**None means not measured.** A metric with no ground truth to score against, or an empty denominator (the
recall of a class that never occurs, the precision of a model that never claims an AU), is ``None`` — ``null``
in metrics.json and "–" in reports — never 0.0. Means skip unmeasured entries and say how many they cover.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AUTruth:
    """The AUs a sample is scored on (``known``) and those of them present."""

    present: frozenset[int]
    known: frozenset[int]


def au_ground_truth(record, au_set: Iterable[int] | None = None) -> AUTruth | None:
    """The AU ground truth of a sample, or None when it has none (AU metrics do not count it).

    **The one AU inclusion rule**, used by AU detection F1 and by the rationale's AU grounding alike: a sample
    counts when its dataset coded AUs for it — a frame-level window (``meta["au_known"]``), per-frame AU labels
    (``au_frames``, even all zero), a coded AU list or intensities (``aus`` / ``au_intensity``), or a dataset AU
    set in ``meta["au_set"]``. All-negative samples count: they are where a model hallucinates. Only AUs known
    for the sample are scored, on both sides: AUs the dataset left uncoded there (BP4D's 9, ABAW's −1) and AUs
    outside the benchmark's ``au_set`` are neither hits nor false alarms."""
    from emoreason.knowledge import ACTION_UNITS

    meta = getattr(record, "meta", None) or {}
    if "au_known" in meta:
        known = {int(a) for a in meta["au_known"]}
    elif record.au_frames is not None or record.aus or record.au_intensity or meta.get("au_set"):
        known = {int(a) for a in meta.get("au_set") or ACTION_UNITS}
    else:
        return None
    if au_set is not None:
        known &= {int(a) for a in au_set}
    return AUTruth(frozenset(int(a) for a in record.aus if int(a) in known), frozenset(known))


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def mean_of(values: Iterable[float | None]) -> float | None:
    """Mean of the measured values (None when there are none)."""
    measured = [v for v in values if v is not None]
    return sum(measured) / len(measured) if measured else None


def _classes(truth: Sequence[str], pred: Sequence[str | None], labels: Sequence[str] | None) -> list[str]:
    """Classes reported: those of ``labels`` (the benchmark's set, in its order) that occur in the ground truth
    or the predictions — sklearn's default class set when no labels are given."""
    seen = set(truth) | {p for p in pred if p is not None}
    if labels is None:
        return sorted(seen)
    return [c for c in labels if c in seen]


def confusion_matrix(truth: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> list[list[int]]:
    """Rows = true class, columns = predicted class; predictions outside ``labels`` (or None) fall in no column."""
    index = {c: i for i, c in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, pred, strict=True):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def recognition_metrics(truth: Sequence[str], pred: Sequence[str | None],
                        labels: Sequence[str] | None = None) -> dict | None:
    """None without samples. Per-class recall of a class absent from the ground truth is None (its F1 stays in
    macro F1 as sklearn counts it: 0 when the class was predicted)."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} ground-truth labels but {len(pred)} predictions")
    n = len(truth)
    if n == 0:
        return None
    classes = _classes(truth, pred, labels)
    correct = sum(t == p for t, p in zip(truth, pred, strict=True))
    per_class_recall, per_class_f1, support = {}, {}, {}
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(truth, pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(truth, pred, strict=True))
        support[c] = tp + fn
        per_class_recall[c] = ratio(tp, tp + fn)
        per_class_f1[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    present = [c for c in classes if support[c] > 0]
    return {
        "n": n, "war": correct / n, "uar": mean_of(per_class_recall[c] for c in present),
        "macro_f1": sum(per_class_f1.values()) / len(classes) if classes else None,
        "weighted_f1": sum(per_class_f1[c] * support[c] for c in classes) / n,
        "per_class_recall": per_class_recall, "per_class_f1": per_class_f1, "support": support,
        "labels": classes, "confusion_matrix": confusion_matrix(truth, pred, classes),
        "unparseable": sum(p is None for p in pred),
    }


def au_f1(truth: Sequence[Iterable[int]], pred: Sequence[Iterable[int]], au_set: Sequence[int],
          known: Sequence[Iterable[int]] | None = None) -> dict:
    """Per-AU F1 over samples (occurrence) and the mean over ``au_set``. ``known`` (per sample): the AUs scored
    there (default: all of ``au_set``). An AU that is never present, never predicted or never known has no F1
    (None) and is left out of the mean; ``aus_measured`` says how many the mean covers."""
    per_au: dict[int, float | None] = {}
    support: dict[int, int] = {}
    knowns = [set(k) for k in known] if known is not None else [set(au_set)] * len(truth)
    for au in au_set:
        tp = fp = fn = 0
        for t, p, k in zip(truth, pred, knowns, strict=True):
            if au not in k:
                continue
            in_t, in_p = au in set(t), au in set(p)
            tp += in_t and in_p
            fp += in_p and not in_t
            fn += in_t and not in_p
        per_au[au] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        support[au] = tp + fn
    measured = [v for v in per_au.values() if v is not None]
    return {"per_au_f1": per_au, "support": support, "n": len(truth),
            "mean_f1": sum(measured) / len(measured) if measured else None,
            "aus_measured": len(measured), "aus": len(per_au)}


def ccc(truth: Sequence[float], pred: Sequence[float]) -> float | None:
    """Concordance correlation coefficient (Lin 1989): 2·cov / (var_t + var_p + (mean_t − mean_p)²); None when
    undefined (no samples, or both series constant and equal)."""
    n = len(truth)
    if n == 0:
        return None
    mt, mp = sum(truth) / n, sum(pred) / n
    vt = sum((t - mt) ** 2 for t in truth) / n
    vp = sum((p - mp) ** 2 for p in pred) / n
    cov = sum((t - mt) * (p - mp) for t, p in zip(truth, pred, strict=True)) / n
    denominator = vt + vp + (mt - mp) ** 2
    return 2 * cov / denominator if denominator else None


def rmse(truth: Sequence[float], pred: Sequence[float]) -> float | None:
    n = len(truth)
    return math.sqrt(sum((t - p) ** 2 for t, p in zip(truth, pred, strict=True)) / n) if n else None


def fold_summary(values: Sequence[float | None]) -> dict:
    """Mean ± (population) std over the folds where the metric was measured; ``folds`` counts them."""
    measured = [v for v in values if v is not None]
    n = len(measured)
    if not n:
        return {"mean": None, "std": None, "folds": 0}
    mean = sum(measured) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in measured) / n), "folds": n}
