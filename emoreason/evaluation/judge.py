"""EMER-style clue/label overlap scored by an LLM judge through any OpenAI-compatible endpoint (optional).

EMER (Lian et al., "Explainable Multimodal Emotion Reasoning", 2023) scores a model's explanation by how many
of the reference's emotional clues it recovers and whether the emotion it reaches overlaps the reference
label, with an LLM as judge. The prompt below is the project's, kept here so every run uses the same one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

JUDGE_PROMPT = """You compare an explanation of a person's emotion against a reference explanation.
Reference explanation: {reference}
Reference emotion: {label}
Candidate explanation: {candidate}
Candidate emotion: {answer}

1. clue_overlap: how many of the reference's facial and contextual clues does the candidate mention, on a 0-10
   scale (0 = none, 10 = all, wording may differ)?
2. label_overlap: does the candidate's emotion agree with the reference emotion, on a 0-10 scale (10 = same
   emotion, 5 = related or partly right, 0 = unrelated)?
Reply with JSON only: {{"clue_overlap": <0-10>, "label_overlap": <0-10>}}"""

_SCORES = re.compile(r'"?(clue_overlap|label_overlap)"?\s*[:=]\s*([0-9]+(?:\.[0-9]+)?)')


def parse_judgement(text: str | None) -> dict[str, float] | None:
    """{'clue_overlap': 0..1, 'label_overlap': 0..1} from the judge's reply, or None if it gave no scores."""
    if not text:
        return None
    scores: dict[str, float] = {}
    try:
        start, end = text.find("{"), text.rfind("}")
        data = json.loads(text[start:end + 1]) if start >= 0 and end > start else {}
        for key in ("clue_overlap", "label_overlap"):
            if key in data:
                scores[key] = float(data[key])
    except (ValueError, TypeError):
        pass
    for key, value in _SCORES.findall(text):
        scores.setdefault(key, float(value))
    if len(scores) != 2:
        return None
    return {k: max(0.0, min(10.0, v)) / 10.0 for k, v in scores.items()}


def judge_overlap(endpoint: dict, candidates: Sequence[str], answers: Sequence[str | None],
                  references: Sequence[str], labels: Sequence[str | None]) -> dict:
    """Mean clue and label overlap over the samples the judge scored; failures are counted, not guessed."""
    from emoreason.client import EndpointConfig, run_chat_batch

    batch = [[{"role": "user", "content": JUDGE_PROMPT.format(reference=ref, label=label or "unknown",
                                                              candidate=cand or "(none)", answer=ans or "(none)")}]
             for cand, ans, ref, label in zip(candidates, answers, references, labels, strict=True)]
    results = run_chat_batch(EndpointConfig(**endpoint), batch, temperature=0.0, max_tokens=64)
    judged = [parse_judgement(r.text) for r in results]
    scored = [j for j in judged if j is not None]
    return {"judged": len(scored), "judge_failures": len(judged) - len(scored),
            "clue_overlap": sum(j["clue_overlap"] for j in scored) / len(scored) if scored else None,
            "label_overlap": sum(j["label_overlap"] for j in scored) / len(scored) if scored else None}
