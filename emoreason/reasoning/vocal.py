"""The vocal-cues part of a response and the claims it makes, read by a total parser.

An audio-visual rationale gains one optional line between the facial observations and the interpretation::

    Observations: AU6 (cheek raiser, C) and AU12 (lip corner puller, D) rise from frame 6 and peak at frame 11.
    Vocal cues: pitch averages 240 Hz and rises to 310 Hz at 1.2 s (a 6.5-semitone range); loud, fast speech
    at 5.5 syllables per second.
    Interpretation: ...

:func:`parse_vocal_claims` turns such text into :class:`VocalClaim` records — pitch level (Hz or "high/low"),
pitch peak (Hz at a time), pitch range (semitones), pitch direction (rising / falling / flat), loudness ("loud",
"soft", dB), speaking rate ("fast", "slow", syllables per second), jitter / shimmer (%), harmonics-to-noise
ratio (dB) — with simple negation ("not loud", "neither fast nor loud"). It never raises. Checking claims
against measurements is :func:`emoreason.audio.cues.check_vocal_claims`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VOCAL_SECTION = "Vocal cues"

CLAIM_KINDS = ("pitch_mean", "pitch_peak", "pitch_range", "pitch_direction", "pitch_level", "loudness",
               "loudness_db", "rate", "rate_value", "jitter", "shimmer", "hnr")


@dataclass(frozen=True)
class VocalClaim:
    kind: str  # one of CLAIM_KINDS
    value: float | str  # Hz / semitones / dB / syllables per second / % — or a category word
    text: str  # the words the claim was read from
    time_s: float | None = None  # pitch_peak: when
    negated: bool = False


_NUM = r"(\d+(?:\.\d+)?)"
_HZ = _NUM + r"\s*(?:hz|hertz)\b"
_SECONDS = _NUM + r"\s*(?:s|sec|secs|seconds?)\b"
_PITCH = r"(?:pitch|f0|fundamental(?:\s+frequency)?|voice)"
_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (  # earlier patterns claim their words first
    ("pitch_peak", re.compile(
        r"\b(?:rises|rising|climbs|climbing|jumps|goes\s+up|peaks|peaking|reaches|reaching|tops\s+out)"
        r"\s+(?:at|to|near|around|about)?\s*(?:a\s+peak\s+of\s+)?" + _HZ + r"(?:(?!\d)[^.;]){0,12}?\b"
        r"(?:at|around|near|by)\s+" + _SECONDS, re.I)),
    ("pitch_peak", re.compile(r"\bpeak(?:s|ing)?\s+(?:pitch\s+|f0\s+)?(?:of\s+|at\s+)?" + _HZ
                              + r"(?:(?!\d)[^.;]){0,12}?\b(?:at|around|near|by)\s+" + _SECONDS, re.I)),
    ("pitch_mean", re.compile(
        r"(?:" + _PITCH + r"\s+(?:averages?|averaging|centres?\s+on|centers?\s+on|sits?\s+at|is\s+around|"
        r"hovers\s+around)|(?:mean|average)\s+" + _PITCH + r"(?:\s+(?:of|is|at|around|about))?)\s*(?:about\s+|"
        r"around\s+|roughly\s+)?" + _HZ, re.I)),
    ("hnr", re.compile(r"\b(?:hnr|harmonics[\s-]+to[\s-]+noise(?:\s+ratio)?)\b[^.;\d]{0,20}" + _NUM + r"\s*db\b",
                       re.I)),
    ("jitter", re.compile(r"\bjitter\b[^.;\d]{0,20}" + _NUM + r"\s*%", re.I)),
    ("shimmer", re.compile(r"\bshimmer\b[^.;\d]{0,20}" + _NUM + r"\s*%", re.I)),
    ("pitch_range", re.compile(r"\b" + _NUM + r"[\s-]*(?:semitones?|st)\b(?:\s+(?:pitch\s+)?range)?|"
                               r"\brange\s+(?:of\s+)?" + _NUM + r"\s*(?:semitones?|st)\b", re.I)),
    ("pitch_direction", re.compile(
        r"\b(rising|falling|flat|monotone|level|descending|ascending)\s+(?:pitch|intonation|contour|melody|f0)\b|"
        r"\b(?:pitch|intonation|f0|melody)(?:\s+contour)?\s+(rises|falls|stays\s+flat|drops)\s+"
        r"(?:over|across|through|throughout|during)\b", re.I)),
    ("pitch_level", re.compile(r"\b(high|low|raised|lowered)[\s-]+(?:pitched|pitch)\b", re.I)),
    ("rate_value", re.compile(r"\b" + _NUM + r"\s*(?:syllables?|syl)\s*(?:per\s+second|/\s*s|a\s+second)\b",
                              re.I)),
    ("loudness_db", re.compile(r"\b" + _NUM + r"\s*(?:db|decibels?)\b", re.I)),
)
_LOUD = {"loud": "loud", "louder": "loud", "raised": "loud", "forceful": "loud", "intense": "loud",
         "soft": "soft", "quiet": "soft", "faint": "soft", "hushed": "soft", "subdued": "soft"}
_RATE = {"fast": "fast", "rapid": "fast", "quick": "fast", "hurried": "fast", "slow": "slow", "unhurried": "slow",
         "sluggish": "slow", "drawn-out": "slow"}
_SPEECH_NOUN = r"(?:speech|voice|delivery|speaking|talk(?:ing)?|tempo|rate|pace|articulation)"
_WORD_CLAIM = re.compile(r"\b(" + "|".join(sorted({*_LOUD, *_RATE}, key=len, reverse=True)).replace("-", r"\-")
                         + r")\b(?=(?:[\s,]+(?:and|or|nor|but|yet)?\s*(?:" + "|".join(
                             sorted({*_LOUD, *_RATE}, key=len, reverse=True)).replace("-", r"\-") + r")\b)*[\s,]*"
                         + _SPEECH_NOUN + r"\b)", re.I)
_PREDICATE = re.compile(r"\b(?:speech|voice|delivery|speaking|tempo|pace)\s+(?:is|was|sounds|stays|remains|gets)"
                        r"\s+(?:not\s+)?(?:(?:very|quite|rather|fairly|slightly|a\s+bit)\s+)?(" +
                        "|".join(sorted({*_LOUD, *_RATE}, key=len, reverse=True)) + r")\b", re.I)
_CHAINED = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+)(" + "|".join(
    sorted({*_LOUD, *_RATE}, key=len, reverse=True)) + r")\b", re.I)
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|without|isn't|wasn't|hardly)\b[^.;]{0,25}$", re.I)
_DIRECTION = {"rising": "rising", "ascending": "rising", "rises": "rising", "falling": "falling",
              "descending": "falling", "falls": "falling", "drops": "falling", "flat": "flat",
              "monotone": "flat", "level": "flat", "stays flat": "flat"}
_LEVEL = {"high": "high", "raised": "high", "low": "low", "lowered": "low"}


def parse_vocal_claims(text: object) -> list[VocalClaim]:
    """Every vocal claim in ``text`` (a vocal-cues section or any prose), in reading order. Total."""
    try:
        return _parse(text if isinstance(text, str) else ("" if text is None else str(text)))
    except Exception:  # a parser bug must never break a reward or an eval run
        return []


def _negated(text: str, start: int) -> bool:
    clause = re.split(r"[.;:,]\s|\bbut\b|\bwhile\b", text[max(0, start - 40):start])[-1]
    return bool(_NEGATION.search(clause))


def _parse(text: str) -> list[VocalClaim]:
    claims: list[tuple[int, VocalClaim]] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, claim: VocalClaim) -> None:
        if any(s <= start < e or s < end <= e for s, e in taken):
            return
        taken.append((start, end))
        claims.append((start, claim))

    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            numbers = [g for g in m.groups() if g is not None]
            span = m.group(0).strip()
            negated = _negated(text, m.start())
            if kind == "pitch_peak":
                add(m.start(), m.end(), VocalClaim(kind, float(numbers[0]), span, float(numbers[1]), negated))
            elif kind == "pitch_direction":
                word = " ".join(numbers[0].lower().split())
                add(m.start(), m.end(), VocalClaim(kind, _DIRECTION.get(word, word), span, None, negated))
            elif kind == "pitch_level":
                add(m.start(), m.end(), VocalClaim(kind, _LEVEL[numbers[0].lower()], span, None, negated))
            else:
                add(m.start(), m.end(), VocalClaim(kind, float(numbers[0]), span, None, negated))
    for pattern in (_PREDICATE, _WORD_CLAIM):
        for m in pattern.finditer(text):
            words = [(m.start(1), m.end(1))]
            if pattern is _PREDICATE:  # "the voice is soft and slow": the chained predicates too
                cursor = m.end(1)
                while (more := _CHAINED.match(text, cursor)) is not None:
                    words.append((more.start(1), more.end(1)))
                    cursor = more.end(1)
            for start, end in words:
                word = text[start:end].lower()
                kind, value = ("loudness", _LOUD[word]) if word in _LOUD else ("rate", _RATE[word])
                add(start, end, VocalClaim(kind, value, text[start:end], None, _negated(text, start)))
    return [c for _, c in sorted(claims, key=lambda x: x[0])]
