"""Recognition metrics as the field reports them.

* WAR (weighted average recall) = accuracy; UAR (unweighted average recall) = mean per-class recall over the
  classes present in the ground truth — the DFEW / FERV39K / MAFW protocol (Jiang et al. 2020; Wang et al. 2022;
  Liu et al. 2022). Unparseable answers count as wrong (predicted class None).
* Macro and weighted F1, per-class recall, confusion matrix.
* AU detection: per-AU F1 and the mean over the benchmark's AU set (BP4D 12, DISFA 8, ABAW 12 AUs).
* Valence/arousal: concordance correlation coefficient (Lin 1989) and RMSE.
* Multi-fold: mean ± std over folds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


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
                        labels: Sequence[str] | None = None) -> dict:
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} ground-truth labels but {len(pred)} predictions")
    n = len(truth)
    classes = _classes(truth, pred, labels)
    correct = sum(t == p for t, p in zip(truth, pred, strict=True))
    per_class_recall, per_class_f1, support = {}, {}, {}
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(truth, pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(truth, pred, strict=True))
        support[c] = tp + fn
        recall = tp / (tp + fn) if tp + fn else 0.0
        precision = tp / (tp + fp) if tp + fp else 0.0
        per_class_recall[c] = recall
        per_class_f1[c] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    present = [c for c in classes if support[c] > 0]
    uar = sum(per_class_recall[c] for c in present) / len(present) if present else 0.0
    macro_f1 = sum(per_class_f1[c] for c in classes) / len(classes) if classes else 0.0
    weighted_f1 = sum(per_class_f1[c] * support[c] for c in classes) / n if n else 0.0
    return {
        "n": n, "war": correct / n if n else 0.0, "uar": uar, "macro_f1": macro_f1, "weighted_f1": weighted_f1,
        "per_class_recall": per_class_recall, "per_class_f1": per_class_f1, "support": support,
        "labels": classes, "confusion_matrix": confusion_matrix(truth, pred, classes),
        "unparseable": sum(p is None for p in pred),
    }


def au_f1(truth: Sequence[Iterable[int]], pred: Sequence[Iterable[int]], au_set: Sequence[int]) -> dict:
    """Per-AU F1 over samples (occurrence) and the mean over ``au_set``."""
    per_au = {}
    for au in au_set:
        tp = fp = fn = 0
        for t, p in zip(truth, pred, strict=True):
            in_t, in_p = au in set(t), au in set(p)
            tp += in_t and in_p
            fp += in_p and not in_t
            fn += in_t and not in_p
        per_au[au] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"per_au_f1": per_au, "mean_f1": sum(per_au.values()) / len(per_au) if per_au else 0.0}


def ccc(truth: Sequence[float], pred: Sequence[float]) -> float:
    """Concordance correlation coefficient (Lin 1989): 2·cov / (var_t + var_p + (mean_t − mean_p)²)."""
    n = len(truth)
    if n == 0:
        return float("nan")
    mt, mp = sum(truth) / n, sum(pred) / n
    vt = sum((t - mt) ** 2 for t in truth) / n
    vp = sum((p - mp) ** 2 for p in pred) / n
    cov = sum((t - mt) * (p - mp) for t, p in zip(truth, pred, strict=True)) / n
    denominator = vt + vp + (mt - mp) ** 2
    return 2 * cov / denominator if denominator else float("nan")


def rmse(truth: Sequence[float], pred: Sequence[float]) -> float:
    n = len(truth)
    return math.sqrt(sum((t - p) ** 2 for t, p in zip(truth, pred, strict=True)) / n) if n else float("nan")


def fold_summary(values: Sequence[float]) -> dict:
    """Mean ± (population) std over folds."""
    n = len(values)
    if not n:
        return {"mean": float("nan"), "std": float("nan"), "folds": 0}
    mean = sum(values) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n), "folds": n}
