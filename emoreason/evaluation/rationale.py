"""Rationale quality: is the explanation grounded in the AUs actually present, and does it agree with its answer?

* AU grounding precision / recall / F1 of claimed (non-negated) AUs against ground truth, micro-averaged, and
  the hallucination rate (share of claimed AUs absent from ground truth; share of responses with any).
* Reasoning–answer consistency: FACS prototype support of the answer by the claimed AUs
  (``emoreason.knowledge.is_consistent``), and whether the conclusion names the answered emotion.
* Format validity (tags) and section completeness.
* ROUGE-L F (Lin 2004) against a reference rationale where the benchmark has one (EMER, FEA-20K, SynthFACS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from emoreason.knowledge import is_consistent
from emoreason.reasoning import ParsedResponse

_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lowercase word tokens (longest common subsequence)."""
    a, b = _TOKEN.findall(candidate.lower()), _TOKEN.findall(reference.lower())
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def rationale_metrics(parsed: Sequence[ParsedResponse], truth_aus: Sequence[Iterable[int] | None],
                      references: Sequence[str | None] | None = None) -> dict:
    n = len(parsed)
    tp = claimed = true_total = 0
    hallucinating = 0
    grounded_rows = 0
    for p, t in zip(parsed, truth_aus, strict=True):
        if t is None:
            continue
        grounded_rows += 1
        truth, claims = set(t), set(p.aus)
        tp += len(claims & truth)
        claimed += len(claims)
        true_total += len(truth)
        hallucinating += bool(claims - truth)
    precision = tp / claimed if claimed else 0.0
    recall = tp / true_total if true_total else 0.0
    answered = [p for p in parsed if p.emotion is not None]
    consistent = sum(is_consistent(p.aus, p.emotion) for p in answered)
    concluded = sum(p.emotion in p.conclusion_emotions for p in answered)
    out = {
        "n": n,
        "au_precision": precision, "au_recall": recall,
        "au_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "hallucination_rate": (claimed - tp) / claimed if claimed else 0.0,
        "responses_with_hallucination": hallucinating / grounded_rows if grounded_rows else 0.0,
        "negated_mentions_per_response": sum(len(p.negated_aus) for p in parsed) / n if n else 0.0,
        "answer_supported_by_aus": consistent / len(answered) if answered else 0.0,
        "conclusion_matches_answer": concluded / len(answered) if answered else 0.0,
        "format_valid": sum(p.format_ok for p in parsed) / n if n else 0.0,
        "sections_complete": sum(p.sections_ok for p in parsed) / n if n else 0.0,
        "answer_parsed": len(answered) / n if n else 0.0,
    }
    if references is not None:
        pairs = [(p.think or "", r) for p, r in zip(parsed, references, strict=True) if r]
        out["rouge_l"] = sum(rouge_l(c, r) for c, r in pairs) / len(pairs) if pairs else None
    return out
