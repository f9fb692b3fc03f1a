"""A total parser for model responses: never raises, whatever the string.

It reads the answer (raw and canonical), whether the tag format is valid, the three reasoning sections, and
the AUs the reasoning claims — from codes ("AU12", "AU 12", "au12", "AU12D", "AU 6+12", "AUs 1, 2 and 5") and
from FACS names ("lip corner puller") — keeping negated mentions ("no AU4", "absence of brow lowerer",
"without AU9", "AU4 is not present") and hypothetical ones ("AU4 would indicate anger") out of the claims.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from emoreason.knowledge import ACTION_UNITS, AU_ALIASES, canonical_emotion, emotion_mentions, find_emotions
from emoreason.knowledge.taxonomy import normalize_text

_TAG = re.compile(r"<\s*(/?)\s*(think|answer)\s*>", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff]")
_TRAILING_SPECIAL = re.compile(r"(?:\s*<\|(?:im_end|endoftext|eot_id|end)\|>)+\s*$")
_SECTION = re.compile(r"(?im)^[\s*#>-]*(observations?|vocal\s+cues?|interpretation|conclusion)\s*[*]*\s*:")

_AU_ITEM = r"[LRTUB]?(\d{1,2})([A-E])?\b(?!\s*(?:frames?\b|s\b|sec|seconds?\b|ms\b|%|th\b|st\b|nd\b|rd\b|\.\d))"
_AU_CODE = re.compile(
    r"\b(?:AUs?|action\s+units?)\s*[-_#:]?\s*" + _AU_ITEM +
    r"(?P<rest>(?:\s*(?:\+|/|,|&|\band\b|\bor\b)\s*(?:AUs?\s*[-_]?\s*)?" + _AU_ITEM + r")*)",
    re.IGNORECASE)
_AU_REST_ITEM = re.compile(r"(?:AUs?\s*[-_]?\s*)?" + _AU_ITEM, re.IGNORECASE)

_CLAUSE_BREAK = re.compile(r"[.;!?:\n]|\b(?:but|however|whereas|while|although|though|yet)\b", re.IGNORECASE)
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|absence|absent|lack|lacks|lacking|neither|nor|never|none|instead\s+of|rather\s+than|"
    r"free\s+of|rules?\s+out|ruled\s+out|ruling\s+out|excluding|except|nothing)\b|n't\b", re.IGNORECASE)
_PRE_HYPOTHETICAL = re.compile(
    r"\b(?:if|would|could|might|whether|typically|usually|expected|such\s+as|e\.g)\b", re.IGNORECASE)
_POST_GAP = r"(?:[\s,+&/\x01()]|\band\b|\bor\b|\bnor\b|\([^()\n]{0,80}\))*"
_POST_NEGATION = re.compile(
    _POST_GAP + r"(?:(?:is|are|was|were|remains?|stays?|appears?|seems?|looks?|being)\s+)?"
    r"(?:not\b|never\b|absent\b|inactive\b|missing\b|no\s+longer\b|isn't|aren't|wasn't|weren't|doesn't|don't|"
    r"didn't|hasn't|haven't|(?:does|do|did|has|have|had)\s+not\b)", re.IGNORECASE)
_POST_HYPOTHETICAL = re.compile(_POST_GAP + r"(?:would|could|might|typically|usually)\b", re.IGNORECASE)
_PAREN_INTENSITY = re.compile(r"\s*\((?:[^()]*?[,;]\s*)?(?:intensity\s*)?([A-E])(?:\s*[-–]\s*[a-z]+)?\s*\)")
_FALLBACK_ANSWER = re.compile(
    r"\b(?:final\s+answer|answer|emotion|prediction|label)\s*(?:is\s*:?|:|=)\s*\**\s*([A-Za-z][A-Za-z _-]{1,40})",
    re.IGNORECASE)


# --- the answer path: which emotion an answer names, negation-aware (AU claims have their own rules below) ----
# Phrases that negate what follows, rewritten before clauses are split ("anything but calm" = "not calm").
_ANSWER_NEGATING_PHRASES = re.compile(
    r"\b(?:anything\s+but|far\s+from|rather\s+than|instead\s+of|other\s+than|as\s+opposed\s+to)\b", re.IGNORECASE)
_ANSWER_CLAUSE = re.compile(r"[.;!?:,()\[\]\n]|\b(?:but|however|rather|instead|whereas|while|though|although|yet)\b",
                            re.IGNORECASE)
_ANSWER_CUE = re.compile(r"\b(?:not|no|never|neither|nor|without|hardly|barely|scarcely|nothing|none|lacks?|"
                         r"lacking|absent|absence|except)\b|\b\w*n t\b")  # on normalised text: "isn't" → "isn t"
_ANSWER_POST_NEGATION = re.compile(r"^\s*(?:(?:is|are|was|were|seems?|looks?|appears?)\s+)?(?:not|never|absent)\b|"
                                   r"^\s*\w*n t\b")


def answer_emotion(text: str | None) -> tuple[str | None, bool]:
    """(canonical emotion, negated) of an answer text.

    An emotion named under a negation in its own clause ("not happy", "it is not anger", "neither X nor Y", "not
    really sad", "anything but calm", "anger is not it") is not the answer. Clause breaks (punctuation, "but",
    "rather", "instead", …) end a negation's scope, so "not anger but disgust" answers disgust and "not sure, but
    happiness" answers happiness: hedging is not negation. Exactly one affirmed emotion is the answer; two are
    ambiguous (None); none affirmed with some negated gives (None, True). Whole-answer synonyms win first, so
    "no emotion" (= neutral) and "unhappy" (= sadness) keep their meaning."""
    if not text:
        return None, False
    key = normalize_text(text)
    if not _ANSWER_CUE.search(key) and not _ANSWER_NEGATING_PHRASES.search(text):
        return canonical_emotion(text), False
    whole = emotion_mentions(key)
    if len(whole) == 1 and (whole[0][0], whole[0][1]) == (0, len(key)):
        return whole[0][2], False
    affirmed: list[str] = []
    negated = False
    for clause in _ANSWER_CLAUSE.split(_ANSWER_NEGATING_PHRASES.sub(" , not ", text)):
        words = normalize_text(clause)
        for start, end, label in emotion_mentions(words):
            if _ANSWER_CUE.search(words[:start]) or _ANSWER_POST_NEGATION.match(words[end:]):
                negated = True
            elif label not in affirmed:
                affirmed.append(label)
    if len(affirmed) == 1:
        return affirmed[0], False
    return None, negated and not affirmed


_WORD = re.compile(r"[A-Za-z]+")
_NAME_SEPARATOR = re.compile(r"[\s-]+")
_FIRST_WORDS: dict[str, int] = {}  # first word of a FACS name → most words a name starting with it has
for _name in AU_ALIASES:
    _first, _count = _name.split()[0], len(_name.split())
    _FIRST_WORDS[_first] = max(_FIRST_WORDS.get(_first, 0), _count)


def _name_mentions(text: str) -> list[tuple[int, int, int]]:
    """(start, end, AU) of FACS names in ``text``: longest word n-gram found in ``AU_ALIASES``, words joined
    by spaces or hyphens, case-insensitive. A dictionary walk over words, much faster than one big regex."""
    words = [(m.start(), m.end(), m.group(0).lower()) for m in _WORD.finditer(text)]
    found: list[tuple[int, int, int]] = []
    i = 0
    while i < len(words):
        longest = _FIRST_WORDS.get(words[i][2])
        if longest is None:
            i += 1
            continue
        for n in range(min(longest, len(words) - i), 0, -1):
            span = words[i:i + n]
            phrase = " ".join(w[2] for w in span)
            if phrase in AU_ALIASES and all(_NAME_SEPARATOR.fullmatch(text[a[1]:b[0]])
                                            for a, b in zip(span, span[1:], strict=False)):
                found.append((span[0][0], span[-1][1], AU_ALIASES[phrase]))
                i += n
                break
        else:
            i += 1
    return found


@dataclass
class ParsedResponse:
    emotion: str | None = None  # canonical label
    emotion_raw: str | None = None  # answer text as written
    aus: list[int] = field(default_factory=list)  # AUs claimed present (catalog AUs, not negated)
    negated_aus: list[int] = field(default_factory=list)  # AUs only ever mentioned as absent
    format_ok: bool = False  # exactly <think>…</think><answer>…</answer>, nothing else outside
    au_intensities: dict[int, str] = field(default_factory=dict)
    conflicting_aus: list[int] = field(default_factory=list)  # mentioned both present and absent
    hypothetical_aus: list[int] = field(default_factory=list)  # only mentioned hypothetically
    invalid_aus: list[int] = field(default_factory=list)  # AU numbers that FACS does not define
    think: str | None = None
    answer: str | None = None  # raw content of the answer block used
    answers: list[str] = field(default_factory=list)  # every answer block found
    answer_source: str | None = None  # "tag" | "json" | "fallback"
    observations: str | None = None
    vocal_cues: str | None = None  # the optional audio-visual part (claims: emoreason.reasoning.vocal)
    interpretation: str | None = None
    conclusion: str | None = None
    sections_ok: bool = False
    conclusion_emotions: list[str] = field(default_factory=list)
    valence: float | None = None
    arousal: float | None = None
    issues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["au_intensities"] = {str(k): v for k, v in self.au_intensities.items()}
        return data


@dataclass
class _Mention:
    start: int
    end: int
    aus: list[tuple[int, str | None]]


def parse_response(text: object) -> ParsedResponse:
    """Parse one model response. Total: any input (even non-strings) yields a ParsedResponse."""
    result = ParsedResponse()
    try:
        _parse_into(result, text)
    except Exception as exc:  # a parser bug must not crash a training step; record it instead
        result.issues.append(f"parser_error:{type(exc).__name__}")
        result.format_ok = False
    return result


def _clean(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else str(text)
    text = unicodedata.normalize("NFKC", text)
    return _INVISIBLE.sub("", text)


def _parse_into(result: ParsedResponse, raw: object) -> None:
    text = _TRAILING_SPECIAL.sub("", _clean(raw))
    tags = [(m.start(), m.end(), m.group(1) == "/", m.group(2).lower()) for m in _TAG.finditer(text)]
    kinds = [("/" if closing else "") + name for _, _, closing, name in tags]

    # --- think block ---------------------------------------------------------------------------------------
    think_span: tuple[int, int] | None = None
    opens = [t for t in tags if t[3] == "think" and not t[2]]
    if opens:
        start = opens[0][1]
        closes = [t for t in tags if t[3] == "think" and t[2] and t[0] >= start]
        if closes:
            think_span = (start, closes[0][0])
        else:
            nxt = [t for t in tags if t[3] == "answer" and t[0] >= start]
            think_span = (start, nxt[0][0] if nxt else len(text))
            result.issues.append("unclosed_think")
    elif any(t[3] == "think" for t in tags):
        closes = [t for t in tags if t[3] == "think"]
        think_span = (0, closes[0][0])
        result.issues.append("missing_think_open")
    else:
        result.issues.append("missing_think")

    # --- answer blocks ---------------------------------------------------------------------------------------
    blocks: list[tuple[int, str, bool]] = []  # (position, content, inside_think)
    answer_spans: list[tuple[int, int]] = []  # whole answer blocks, tags included
    for i, (pos, end, closing, name) in enumerate(tags):
        if name != "answer" or closing:
            continue
        nxt = next((t for t in tags[i + 1:] if t[3] == "answer"), None)
        stop = nxt[0] if nxt else len(text)
        if nxt is None or not nxt[2]:
            result.issues.append("unclosed_answer")
        answer_spans.append((pos, nxt[1] if nxt is not None and nxt[2] else stop))
        inside = think_span is not None and think_span[0] <= pos < think_span[1]
        blocks.append((pos, _TAG.sub(" ", text[end:stop]).strip(), inside))

    outside = [b for b in blocks if not b[2]]
    chosen = outside or blocks
    if blocks and not outside:
        result.issues.append("answer_in_think")
    result.answers = [b[1] for b in chosen]

    json_payload: dict | None = None
    labels: list[str | None] = []
    negated_answer = False
    for _, content, _ in chosen:
        payload = _json_object(content)
        if payload is not None and "emotion" in payload:
            json_payload = json_payload or payload
            label, negated = answer_emotion(str(payload.get("emotion") or ""))
        else:
            label, negated = answer_emotion(content)
        labels.append(label)
        negated_answer = negated_answer or negated
    if chosen:
        result.answer = chosen[0][1]
        result.emotion_raw = result.answer
        result.answer_source = "tag"
        if json_payload is not None:
            result.emotion_raw = str(json_payload.get("emotion"))
        distinct = {x for x in labels if x is not None}
        if len(chosen) > 1:
            result.issues.append("multiple_answers")
        if len(distinct) > 1:
            result.issues.append("conflicting_answers")
        elif distinct:
            result.emotion = distinct.pop()
        if result.emotion is None and not any("conflicting" in i for i in result.issues):
            result.issues.append("negated_answer" if negated_answer else
                                 "unknown_label" if result.answer else "empty_answer")
    else:
        result.issues.append("missing_answer")

    # --- whole-response JSON variant, then lenient fallback --------------------------------------------------
    reasoning_extra = ""
    if not chosen:
        payload = _json_object(text)
        if payload is not None and "emotion" in payload:
            json_payload = payload
            result.answer_source = "json"
            result.emotion_raw = str(payload.get("emotion"))
            result.emotion, negated = answer_emotion(result.emotion_raw)
            if negated:
                result.issues.append("negated_answer")
            reasoning_extra = str(payload.get("reasoning") or payload.get("think") or "")
        else:
            matches = list(_FALLBACK_ANSWER.finditer(text[-5000:]))  # the last statement wins
            match = matches[-1] if matches else None
            candidate = match.group(1) if match else (text.strip() if len(text.strip()) <= 40 else "")
            label, negated = answer_emotion(candidate) if candidate else (None, False)
            if negated:
                result.issues.append("negated_answer")
            if label is not None:
                result.answer_source = "fallback"
                result.emotion_raw = candidate.strip()
                result.emotion = label

    if json_payload is not None:
        result.valence = _float_or_none(json_payload.get("valence"))
        result.arousal = _float_or_none(json_payload.get("arousal"))

    # --- reasoning text, sections, AUs --------------------------------------------------------------------
    if think_span is not None:
        reasoning = _TAG.sub(" ", text[think_span[0]:think_span[1]])
    elif reasoning_extra:
        reasoning = reasoning_extra
    else:  # no think block: everything outside the answer blocks is the reasoning
        pieces, cursor = [], 0
        for start, stop in answer_spans:
            pieces.append(text[cursor:start])
            cursor = max(cursor, stop)
        pieces.append(text[cursor:])
        reasoning = _TAG.sub(" ", " ".join(pieces))
    result.think = reasoning.strip() if (think_span is not None or reasoning_extra) else None
    _read_sections(result, reasoning)
    _read_aus(result, reasoning)
    if json_payload is not None and isinstance(json_payload.get("aus"), list):
        for item in json_payload["aus"]:
            number = _au_number(item)
            if number is None:
                continue
            if number in ACTION_UNITS:
                if number not in result.aus:
                    result.aus.append(number)
                if number in result.negated_aus:
                    result.negated_aus.remove(number)
                    result.conflicting_aus.append(number)
            elif number not in result.invalid_aus:
                result.invalid_aus.append(number)
        result.aus.sort()
        result.conflicting_aus.sort()

    # --- structural validity ------------------------------------------------------------------------------
    structural = kinds == ["think", "/think", "answer", "/answer"]
    if structural:
        before = text[:tags[0][0]]
        between = text[tags[1][1]:tags[2][0]]
        after = text[tags[3][1]:]
        think_body = text[tags[0][1]:tags[1][0]]
        structural = not (before.strip() or between.strip() or after.strip()) and bool(think_body.strip())
        if not structural:
            result.issues.append("text_outside_tags" if think_body.strip() else "empty_think")
    elif result.answer_source == "json" and isinstance(json_payload, dict):
        structural = not tags and isinstance(json_payload.get("reasoning"), str)
    elif tags and "missing_answer" not in result.issues and "missing_think" not in result.issues:
        result.issues.append("tag_order")
    result.format_ok = bool(structural and (result.emotion_raw or "").strip())


def _json_object(text: str) -> dict | None:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[4:] if stripped.lower().startswith("json") else stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    if start < 0 or end <= start or len(stripped) > 200_000:
        return None
    try:
        value = json.loads(stripped[start:end + 1])
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _float_or_none(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) != float("inf") else None


def _au_number(item: object) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item
    match = re.fullmatch(r"\s*(?:AU)?\s*[LRTUB]?(\d{1,2})[A-E]?\s*", str(item), re.IGNORECASE)
    return int(match.group(1)) if match else None


def _read_sections(result: ParsedResponse, reasoning: str) -> None:
    marks = [(m.start(), m.end(), m.group(1).lower().rstrip("s")) for m in _SECTION.finditer(reasoning)]
    found: dict[str, str] = {}
    for i, (_, end, name) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(reasoning)
        key = {"observation": "observations", "vocal cue": "vocal_cues"}.get(" ".join(name.split()), name)
        if key not in found:
            found[key] = reasoning[end:stop].strip()
    result.observations = found.get("observations")
    result.vocal_cues = found.get("vocal_cues")
    result.interpretation = found.get("interpretation")
    result.conclusion = found.get("conclusion")
    order = [m[2] for m in marks]
    result.sections_ok = (
        all(found.get(k) for k in ("observations", "interpretation", "conclusion"))
        and order.index("observation") < order.index("interpretation") < order.index("conclusion"))
    tail = result.conclusion
    if tail is None:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", reasoning.strip()) if s]
        tail = sentences[-1] if sentences else ""
    result.conclusion_emotions = find_emotions(tail[:2000])


def _mentions(text: str) -> list[_Mention]:
    mentions: list[_Mention] = []
    for m in _AU_CODE.finditer(text):
        items = [(int(m.group(1)), m.group(2).upper() if m.group(2) else None)]
        rest = m.group("rest")
        if rest:
            for r in _AU_REST_ITEM.finditer(rest):
                items.append((int(r.group(1)), r.group(2).upper() if r.group(2) else None))
        mentions.append(_Mention(m.start(), m.end(), items))
    taken = [(x.start, x.end) for x in mentions]
    for start, end, au in _name_mentions(text):
        if any(s <= start < e for s, e in taken):
            continue
        mentions.append(_Mention(start, end, [(au, None)]))
    mentions.sort(key=lambda x: x.start)
    return mentions


def _read_aus(result: ParsedResponse, reasoning: str) -> None:
    mentions = _mentions(reasoning)
    if not mentions:
        return
    masked = list(reasoning)
    for mention in mentions:
        masked[mention.start:mention.end] = "\x01" * (mention.end - mention.start)
    masked_text = "".join(masked)
    positive: dict[int, str | None] = {}
    negated: set[int] = set()
    hypothetical: set[int] = set()
    invalid: set[int] = set()
    for mention in mentions:
        window_start = max(0, mention.start - 120)
        prefix = masked_text[window_start:mention.start]
        breaks = list(_CLAUSE_BREAK.finditer(prefix))
        if breaks:
            prefix = prefix[breaks[-1].end():]
        following = masked_text[mention.end:mention.end + 200]
        post_clause = _CLAUSE_BREAK.search(following)
        following = following[:post_clause.start()] if post_clause else following
        if _PRE_NEGATION.search(prefix) or _POST_NEGATION.match(following):
            state = "negated"
        elif _PRE_HYPOTHETICAL.search(prefix) or _POST_HYPOTHETICAL.match(following):
            state = "hypothetical"
        else:
            state = "present"
        paren = _PAREN_INTENSITY.match(reasoning, mention.end)
        for au, letter in mention.aus:
            if au not in ACTION_UNITS:
                invalid.add(au)
                continue
            if state == "negated":
                negated.add(au)
            elif state == "hypothetical":
                hypothetical.add(au)
            else:
                letter = letter or (paren.group(1) if paren and len(mention.aus) == 1 else None)
                if positive.get(au) is None:
                    positive[au] = letter
    result.aus = sorted(positive)
    result.au_intensities = {au: v for au, v in sorted(positive.items()) if v}
    result.conflicting_aus = sorted(negated & positive.keys())
    result.negated_aus = sorted(negated - positive.keys())
    result.hypothetical_aus = sorted(hypothetical - positive.keys() - negated)
    result.invalid_aus = sorted(invalid)
