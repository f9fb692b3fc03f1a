"""Verification of a rationale against its evidence and label, with the project's parser.

Reasons a rationale is rejected (counted per reason by the pipeline):
``format`` (tags or the three sections missing), ``wrong_answer`` (answer ≠ label), ``hallucinated_au`` (claims
an AU absent from the evidence), ``negated_present_au`` (says a present AU is absent), ``missing_key_au``
(omits an evidence AU at or above the key threshold), ``invalid_au`` (an AU number FACS does not define).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from emoreason.knowledge import canonical_emotion
from emoreason.reasoning import ParsedResponse, parse_response

REJECTION_REASONS = ("format", "wrong_answer", "hallucinated_au", "negated_present_au", "missing_key_au",
                     "invalid_au")


@dataclass
class Verdict:
    ok: bool
    reasons: list[str]
    parsed: ParsedResponse
    details: dict = field(default_factory=dict)


def verify_rationale(text: str, label: str, evidence_aus: Iterable[int], key_aus: Iterable[int] = (),
                     require_sections: bool = True) -> Verdict:
    parsed = parse_response(text)
    present, key = set(evidence_aus), set(key_aus)
    reasons: list[str] = []
    details: dict = {}
    if not parsed.format_ok or (require_sections and not parsed.sections_ok):
        reasons.append("format")
        details["format_issues"] = parsed.issues
    if parsed.emotion is None or parsed.emotion != canonical_emotion(label):
        reasons.append("wrong_answer")
        details["answer"] = parsed.emotion_raw
    hallucinated = sorted(set(parsed.aus) - present)
    if hallucinated:
        reasons.append("hallucinated_au")
        details["hallucinated"] = hallucinated
    negated = sorted((set(parsed.negated_aus) | set(parsed.conflicting_aus)) & present)
    if negated:
        reasons.append("negated_present_au")
        details["negated_present"] = negated
    missing = sorted(key - set(parsed.aus))
    if missing:
        reasons.append("missing_key_au")
        details["missing"] = missing
    if parsed.invalid_aus:
        reasons.append("invalid_au")
        details["invalid"] = parsed.invalid_aus
    return Verdict(not reasons, reasons, parsed, details)
