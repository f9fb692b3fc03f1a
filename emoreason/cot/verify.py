"""Verification of a rationale against its evidence and label, with the project's parser — the gate every row
(template, teacher rewrite, self-distilled sample; CoT, AU-perception and emotion rows alike) passes.

Reasons a row is rejected (counted per reason by the pipeline):

* ``format`` — tags or the three sections missing (short tasks: anything beside the one answer block);
* ``wrong_answer`` — answer ≠ label;
* ``hallucinated_au`` — claims an AU absent from the evidence (hedged or rhetorical mentions are claims, see
  ``emoreason.reasoning.parser``); for prototype evidence, any AU outside the prototype;
* ``negated_present_au`` — says a present AU is absent;
* ``missing_key_au`` — omits an evidence AU at or above the key threshold (AU-perception rows: any present AU);
* ``invalid_au`` — an AU number FACS does not define;
* ``uncoded_absence`` — calls an AU absent that the evidence source does not code (DISFA has no AU7), or calls
  anything absent when nothing was observed;
* ``intensity_mismatch`` — an intensity letter more than one letter from the evidence, or a letter where the
  evidence has no intensity (occurrence-only labels);
* ``wrong_time_unit`` — a time in another unit than the rationale's timeline (a source frame number in a
  seconds rationale);
* ``timing_outside_clip`` — a time before the start or after the end of the clip (or of the frames shown);
* ``timing_mismatch`` — an AU's onset, apex or offset away from the evidence (apex within the tolerance of the
  evidence apex; onset between the evidence onset and apex; offset after the apex and no earlier than the
  evidence offset), or a time in a rationale whose evidence has no timing;
* ``label_first`` — the Observations name an emotion (the answer must be reached, not stated first);
* ``unmarked_prototype`` — a label-only (prototype) rationale that does not say its cues were not observed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from emoreason.cot.evidence import AUEvidence
from emoreason.cot.temporal import AUTrack, TemporalAnalysis, Timeline
from emoreason.knowledge import canonical_emotion, find_emotions, intensity_value
from emoreason.reasoning import ParsedResponse, parse_response
from emoreason.reasoning.parser import read_au_claims

REJECTION_REASONS = ("format", "wrong_answer", "hallucinated_au", "negated_present_au", "missing_key_au",
                     "invalid_au", "uncoded_absence", "intensity_mismatch", "wrong_time_unit", "timing_outside_clip",
                     "timing_mismatch", "label_first", "unmarked_prototype")

_NOT_OBSERVED = re.compile(r"\bnot\s+(?:been\s+)?(?:observed|measured|seen|verified|checked)\b|\bunobserved\b|"
                           r"\bno\s+(?:AU\s+|facial\s+)?(?:measurements?|evidence|observations?)\b|"
                           r"\bwithout\s+AU\s+evidence\b|\bnot\s+observations\b", re.IGNORECASE)
_ANSWER_ONLY = re.compile(r"\s*<answer>(?P<body>.*?)</answer>\s*", re.IGNORECASE | re.DOTALL)


@dataclass
class Grounding:
    """What a rationale is held to, beyond the AU sets: letters, timing, the coded set, observed or not."""

    present: set[int]
    key: set[int]
    letters: dict[int, str | None] = field(default_factory=dict)  # evidence letter per present AU (None: unknown)
    tracks: dict[int, AUTrack] = field(default_factory=dict)
    coded: frozenset[int] | None = None  # AUs that may be called absent (None: none)
    timeline: Timeline | None = None
    observed: bool = True
    time_tolerance_s: float = 0.25

    @classmethod
    def build(cls, analysis: TemporalAnalysis, evidence: AUEvidence, key_threshold: float,
              timeline: Timeline | None = None, time_tolerance_s: float = 0.25) -> Grounding:
        key = {t.au for t in analysis.tracks if t.peak is not None and t.peak >= key_threshold}
        if not evidence.observed:
            key = set(analysis.aus)  # a prototype rationale lists the whole expected set
        return cls(set(analysis.aus), key, {t.au: t.letter for t in analysis.tracks},
                   {t.au: t for t in analysis.tracks}, evidence.coded, timeline, evidence.observed, time_tolerance_s)


@dataclass
class Verdict:
    ok: bool
    reasons: list[str]
    parsed: ParsedResponse
    details: dict = field(default_factory=dict)


def _add(reasons: list[str], details: dict, reason: str, key: str, value: object) -> None:
    if reason not in reasons:
        reasons.append(reason)
    details.setdefault(key, [])
    if value not in details[key]:
        details[key].append(value)


def _check_au_claims(parsed: ParsedResponse, present: set[int], key: set[int], reasons: list[str], details: dict,
                     grounding: Grounding | None) -> None:
    observed = grounding is None or grounding.observed
    mentioned = set(parsed.aus) | (set() if observed else set(parsed.hypothetical_aus))
    hallucinated = sorted(mentioned - present)
    if hallucinated:
        reasons.append("hallucinated_au")
        details["hallucinated"] = hallucinated
    negated = sorted((set(parsed.negated_aus) | set(parsed.conflicting_aus)) & present)
    if negated:
        reasons.append("negated_present_au")
        details["negated_present"] = negated
    missing = sorted(key - set(parsed.aus) - (set() if observed else set(parsed.hypothetical_aus)))
    if missing:
        reasons.append("missing_key_au")
        details["missing"] = missing
    if parsed.invalid_aus:
        reasons.append("invalid_au")
        details["invalid"] = parsed.invalid_aus
    if grounding is None:
        return
    uncoded = sorted(set(parsed.negated_aus) - (grounding.coded or frozenset()) if observed else
                     set(parsed.negated_aus) | set(parsed.conflicting_aus))
    if uncoded:
        reasons.append("uncoded_absence")
        details["uncoded_absent"] = uncoded
    for au, letter in sorted(parsed.au_intensities.items()):
        if au not in present:
            continue
        truth = grounding.letters.get(au)
        if truth is None or abs(intensity_value(letter) - intensity_value(truth)) > 1:
            _add(reasons, details, "intensity_mismatch", "intensity", f"AU{au}: {letter} vs evidence {truth or '?'}")


def _check_times(parsed: ParsedResponse, grounding: Grounding, reasons: list[str], details: dict) -> None:
    timeline = grounding.timeline
    for claim in parsed.time_claims:
        said = f"{claim.value:g} {claim.unit}"
        if timeline is None:
            _add(reasons, details, "timing_mismatch", "timing", f"{said}: the evidence has no timing")
            continue
        seconds = timeline.claim_seconds(claim.value, claim.unit)
        if seconds is None:
            _add(reasons, details, "wrong_time_unit", "time_unit", f"{said} (rationale unit: {timeline.unit})")
            continue
        tol = timeline.tolerance_s(grounding.time_tolerance_s)
        if seconds < -1e-9 or seconds > timeline.duration_s + 0.05:  # 0.05: times are written to 0.1 s
            _add(reasons, details, "timing_outside_clip", "outside_clip",
                 f"{said} (clip: {timeline.duration_s:.2f} s)")
            continue
        for au in claim.aus:
            track = grounding.tracks.get(au)
            if track is None or track.onset_s is None:
                continue  # an AU not in the evidence is already a hallucination
            if not _time_fits(track, claim.role, seconds, tol, timeline.duration_s):
                _add(reasons, details, "timing_mismatch", "timing",
                     f"AU{au} {claim.role} at {said}: evidence onset {track.onset_s:.2f} s, apex "
                     f"{'-' if track.apex_s is None else f'{track.apex_s:.2f} s'}, offset "
                     f"{'-' if track.offset_s is None else f'{track.offset_s:.2f} s'}")


def _time_fits(track: AUTrack, role: str, t: float, tol: float, duration: float) -> bool:
    apex = track.apex_s
    last = track.last_active_s if track.last_active_s is not None else duration
    active = track.onset_s - tol <= t <= last + tol
    if apex is None:  # occurrence-only: on and off are known, no apex
        return active if role != "offset" else (track.offset_s or duration) - tol <= t <= duration + tol
    if role == "apex":
        return abs(t - apex) <= tol
    if role == "onset":
        return track.onset_s - tol <= t <= apex + tol
    if role == "offset":
        return max(track.offset_s if track.offset_s is not None else duration, apex) - tol <= t <= duration + tol
    return active  # "at t", "around t": while the AU is active


def verify_rationale(text: str, label: str, evidence_aus: Iterable[int], key_aus: Iterable[int] = (),
                     require_sections: bool = True, grounding: Grounding | None = None) -> Verdict:
    """Verify a full (think + answer) response. Without ``grounding`` only the AU sets are checked; with it,
    also letters, times, coded absences and the label-first / prototype wording."""
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
    _check_au_claims(parsed, present, key, reasons, details, grounding)
    if grounding is not None:
        _check_times(parsed, grounding, reasons, details)
        named = find_emotions(parsed.observations or "")
        if named:
            reasons.append("label_first")
            details["observations_name"] = named
        if not grounding.observed and not _NOT_OBSERVED.search(parsed.observations or ""):
            reasons.append("unmarked_prototype")
    return Verdict(not reasons, reasons, parsed, details)


def verify_au_list(text: str, grounding: Grounding) -> Verdict:
    """An AU-perception row: exactly one answer block listing every present AU (letters within one of the
    evidence), nothing else; "none" when no AU is present."""
    reasons: list[str] = []
    details: dict = {}
    match = _ANSWER_ONLY.fullmatch(text or "")
    body = match.group("body") if match else ""
    parsed = read_au_claims(body)
    if not match or (not parsed.aus and body.strip().lower() != "none"):
        reasons.append("format")
    _check_au_claims(parsed, grounding.present, set(grounding.present), reasons, details, grounding)
    return Verdict(not reasons, reasons, parsed, details)


def verify_emotion_answer(text: str, label: str) -> Verdict:
    """A short emotion row: exactly one answer block naming the label, and no AU claim."""
    reasons: list[str] = []
    details: dict = {}
    match = _ANSWER_ONLY.fullmatch(text or "")
    parsed = parse_response(text)
    if not match:
        reasons.append("format")
    if parsed.emotion is None or parsed.emotion != canonical_emotion(label):
        reasons.append("wrong_answer")
        details["answer"] = parsed.emotion_raw
    claims = read_au_claims(match.group("body") if match else text)
    if claims.aus:
        reasons.append("hallucinated_au")
        details["hallucinated"] = claims.aus
    return Verdict(not reasons, reasons, parsed, details)
