"""Rationale quality: is the explanation grounded in the AUs actually present, and does it agree with its answer?

* AU grounding precision / recall / F1 of claimed (non-negated) AUs against ground truth, micro-averaged, and
  the hallucination rate (share of claimed AUs absent from ground truth; share of responses with any). Which
  samples and AUs count is ``emoreason.evaluation.metrics.au_ground_truth``, the rule AU detection F1 uses too;
  without AU ground truth these metrics are None (not measured), never 0.
* Reasoning–answer consistency: FACS prototype support of the answer by the claimed AUs
  (``emoreason.knowledge.is_consistent``), and whether the conclusion names the answered emotion.
* Format validity (tags) and section completeness.
* ROUGE-L F (Lin 2004) against a reference rationale where the benchmark has one (EMER, FEA-20K, SynthFACS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from emoreason.evaluation.metrics import AUTruth, ratio
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


def rationale_metrics(parsed: Sequence[ParsedResponse], truth_aus: Sequence[AUTruth | Iterable[int] | None],
                      references: Sequence[str | None] | None = None) -> dict:
    """``truth_aus`` per response: an ``AUTruth`` (or a plain AU list, all AUs known), or None where the sample
    has no AU ground truth. Ratios with nothing to count are None."""
    n = len(parsed)
    tp = claimed = true_total = 0
    hallucinating = 0
    grounded_rows = 0
    for p, t in zip(parsed, truth_aus, strict=True):
        if t is None:
            continue
        truth, known = (set(t.present), set(t.known)) if isinstance(t, AUTruth) else (set(t), None)
        claims = set(p.aus) if known is None else set(p.aus) & known
        grounded_rows += 1
        tp += len(claims & truth)
        claimed += len(claims)
        true_total += len(truth)
        hallucinating += bool(claims - truth)
    grounded = grounded_rows > 0
    answered = [p for p in parsed if p.emotion is not None]
    consistent = sum(is_consistent(p.aus, p.emotion) for p in answered)
    concluded = sum(p.emotion in p.conclusion_emotions for p in answered)
    errors = (claimed - tp) + (true_total - tp)
    out = {
        "n": n, "au_grounded_samples": grounded_rows,
        "au_precision": ratio(tp, claimed) if grounded else None,
        "au_recall": ratio(tp, true_total) if grounded else None,
        "au_f1": ratio(2 * tp, 2 * tp + errors) if grounded else None,
        "hallucination_rate": ratio(claimed - tp, claimed) if grounded else None,
        "responses_with_hallucination": ratio(hallucinating, grounded_rows),
        "negated_mentions_per_response": ratio(sum(len(p.negated_aus) for p in parsed), n),
        "answer_supported_by_aus": ratio(consistent, len(answered)),
        "conclusion_matches_answer": ratio(concluded, len(answered)),
        "format_valid": ratio(sum(p.format_ok for p in parsed), n),
        "sections_complete": ratio(sum(p.sections_ok for p in parsed), n),
        "answer_parsed": ratio(len(answered), n),
    }
    if references is not None:
        pairs = [(p.think or "", r) for p, r in zip(parsed, references, strict=True) if r]
        out["rouge_l"] = sum(rouge_l(c, r) for c, r in pairs) / len(pairs) if pairs else None
    return out
