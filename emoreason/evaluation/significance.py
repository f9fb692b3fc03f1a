"""Uncertainty of recognition results: is a model above chance, and is one model better than another?

* ``wilson_interval``: the Wilson score interval of a proportion (Wilson 1927; recommended over the normal
  approximation by Brown, Cai & DasGupta 2001) — the 95 % CI of WAR (accuracy) on n test samples.
* ``paired_bootstrap``: the percentile bootstrap of the difference of a corpus metric between two systems
  evaluated on the same samples (Efron & Tibshirani 1993; Koehn 2004 for its use in comparing systems): the same
  resampled indices are scored for both, so sample difficulty cancels out.
* ``per_sample``: per-sample correctness and cited-AU counts from an evaluation run's cached predictions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (two-sided, 95 % by default)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(a: Sequence, b: Sequence, metric: Callable[[Sequence], float], resamples: int = 10000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """CI of ``metric(b) - metric(a)`` over paired samples (``a[i]`` and ``b[i]`` are the same test sample).

    ``metric`` maps a list of per-sample items to a corpus score (accuracy, micro F1, …)."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired samples needed: {len(a)} vs {len(b)}")
    rng = np.random.default_rng(seed)
    n = len(a)
    deltas = np.empty(resamples)
    for k in range(resamples):
        idx = rng.integers(0, n, n)
        deltas[k] = metric([b[i] for i in idx]) - metric([a[i] for i in idx])
    lo, hi = np.quantile(deltas, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"delta": metric(b) - metric(a), "ci_low": float(lo), "ci_high": float(hi), "level": level,
            "resamples": resamples, "n": n, "excludes_zero": bool(lo > 0 or hi < 0)}


def accuracy(items: Sequence[dict]) -> float:
    return sum(x["correct"] for x in items) / len(items)


def cited_au_f1(items: Sequence[dict]) -> float:
    """Micro F1 of the AUs the responses cite against the ground-truth AUs (as ``rationale_metrics``)."""
    tp = sum(x["au_tp"] for x in items)
    claimed = sum(x["au_claimed"] for x in items)
    true = sum(x["au_true"] for x in items)
    precision = tp / claimed if claimed else 0.0
    recall = tp / true if true else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def per_sample(run_dir: str | Path, records) -> list[dict]:
    """One item per record (in ``records`` order) from ``run_dir/predictions.jsonl``: correct answer, and the
    cited AUs' true positives / count / ground-truth count. A missing prediction counts as wrong, citing nothing."""
    from emoreason.reasoning import parse_response

    rows = {}
    for line in (Path(run_dir) / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        rows[row["id"]] = row
    items = []
    for record in records:
        parsed = parse_response((rows.get(record.id) or {}).get("text") or "")
        claims, truth = set(parsed.aus), set(record.aus or [])
        items.append({"id": record.id, "correct": parsed.emotion == record.emotion, "au_tp": len(claims & truth),
                      "au_claimed": len(claims), "au_true": len(truth)})
    return items


def chance_bar(classes: int, counts, n: int | None = None) -> tuple[float, float | None]:
    """(bar, majority rate): the better of two answer-blind guesses on a split of ``n`` items (default: the sum of
    its per-class ``counts``): a uniform guess (``1 / classes``) and always answering its most frequent class (the
    majority rate; None when there are no items)."""
    counts = list(counts)
    n = sum(counts) if n is None else n
    majority = max(counts) / n if counts and n else None
    return max(1 / classes, majority or 0.0), majority


def versus_chance(run_dir: str | Path, classes: int) -> dict:
    """WAR of an evaluation run against chance: n, correct, Wilson 95 % CI and the verdict "above chance" / "at
    chance" / "below chance" (whether the CI lies above, around or below the bar). The bar is the better of two
    answer-blind guesses: a uniform guess (``1 / classes``) and always answering the test split's most frequent
    class (``majority_rate``) — on an unbalanced split a constant answer beats 1/k, so 1/k alone would call a
    model that ignores its input "above chance"."""
    if classes < 2:
        raise ValueError("chance needs at least 2 classes")
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    rec = metrics["recognition"]
    n = int(rec["n"])
    correct = round(rec["war"] * n)
    low, high = wilson_interval(correct, n) if n else (0.0, 1.0)
    chance = 1 / classes
    bar, majority = chance_bar(classes, (rec.get("support") or {}).values(), n)
    verdict = "above chance" if low > bar else "below chance" if high < bar else "at chance"
    return {"n": n, "correct": correct, "war": rec["war"], "uar": rec["uar"], "war_ci95": [low, high],
            "chance": chance, "majority_rate": majority, "bar": bar, "verdict": verdict}


def chance_table(runs: dict[str, str | Path], classes: int) -> str:
    """Markdown table: each run's WAR with its Wilson 95 % CI beside chance, and the verdict."""
    lines = ["| model | n | WAR (95 % CI) | UAR | most frequent class | vs chance |", "|---|---|---|---|---|---|"]
    for name, run_dir in runs.items():
        r = versus_chance(run_dir, classes)
        low, high = r["war_ci95"]
        majority = "–" if r["majority_rate"] is None else f"{100 * r['majority_rate']:.1f} %"
        lines.append(f"| {name} | {r['n']} | {100 * r['war']:.1f} % ({100 * low:.1f}–{100 * high:.1f}) | "
                     f"{100 * r['uar']:.1f} % | {majority} | {r['verdict']} |")
    lines.append(f"chance: {100 / classes:.1f} % (a uniform guess among {classes} classes), or always answering the "
                 f"test split's most frequent class where that scores more; a model is above chance when its whole "
                 f"Wilson 95 % CI is above both.")
    return "\n".join(lines)
