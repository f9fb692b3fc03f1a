"""A total parser for model responses: never raises, whatever the string.

It reads the answer (raw and canonical), whether the tag format is valid, the three reasoning sections, and
the AUs the reasoning claims — from codes ("AU12", "AU 12", "au12", "AU12D", "AU 6+12", "AUs 1, 2 and 5") and
from FACS names ("lip corner puller") — keeping negated mentions ("no AU4", "absence of brow lowerer",
"without AU9", "AU4 is not present") and hypothetical ones ("AU4 would indicate anger") out of the claims, under
the scope rules written out beside ``_CLAUSE_BREAK`` (hedges and rhetorical negations are claims) — and the
times it states ("rises from 0.4 s", "peaks at frame 5"), with the AU and role each is said of.
"""

from __future__ import annotations

import bisect
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

# --- AU-claim scope -------------------------------------------------------------------------------------------
# A mention of an AU is a *claim* that it is present unless a negation or a genuine hypothetical has it in scope.
# Scope is defined, not guessed (and held by the adversarial corpus in tests/test_verifier_corpus.py):
#
# * Clauses end at . ; ! ? : newlines (not decimal points) and at but/however/whereas/while/although/though/yet.
# * Pre-negation: a negator (no, not, without, neither/nor, lacks, absence of, free of, rules out, …) earlier in
#   the clause scopes over a mention only if everything between them is filler ("sign of", "any", "visible", …)
#   or a list of other mentions ("no AU4, AU9 or AU10"). "No AU4, and AU12 rises": a comma + and/so after a
#   single negated mention ends the list.
# * Post-negation: after the mention (and its list), a copula/auxiliary + not/never + a *presence* predicate
#   ("is not present", "does not appear", "never shows"), or absent/inactive/missing. "AU9 does not fade" and
#   "AU9 is not subtle" are claims: only presence predicates negate.
# * Affirmative idioms are claims: "no doubt", "without question", "not only", "not subtle/faint/weak", "not
#   absent", "nothing but", "cannot be missed", "unmistakable", "no longer …" (it was there).
# * Negated before and after ("it is not that AU9 is absent") cancels: a claim.
# * Hedges are claims: might/may/could/possibly/perhaps/seems/likely, "as expected", "typically rises here".
# * Hypothetical (not a claim, not a negation) only for conditionals in the clause before the mention (if,
#   whether, unless, in case, "were it") and for statements of what an AU *means* ("AU4 would indicate anger",
#   "AU9 typically signals disgust").
_CLAUSE_BREAK = re.compile(r"(?<!\d)\.(?!\d)|[;!?:\n]|\b(?:but|however|whereas|while|although|though|yet)\b",
                           re.IGNORECASE)
_AFFIRMATIVE_IDIOM = re.compile(
    r"\b(?:no|without|beyond)\s+(?:a\s+|any\s+)?(?:doubt|question)\b|"
    r"\bnot\s+(?:a\s+|an\s+|at\s+all\s+|very\s+|so\s+)?(?:only|just|merely|simply|subtle|subtly|faint|faintly|weak|"
    r"weakly|slight|slightly|small|minor|mild|mildly|hidden|ambiguous|absent|missing|inactive|lacking|without|"
    r"hard\s+to|difficult\s+to|easy\s+to\s+miss|unlike)\b|"
    r"\bnothing\s+(?:but|less\s+than|short\s+of)\b|\bno\s+(?:mistaking|denying|shortage\s+of|lack\s+of|absence\s+of|less\s+than|"
    r"small|longer|one\s+(?:could|can|would)\s+miss)\b|\bnever\s+(?:absent|missing|inactive|fully\s+relax\w*)\b|"
    r"\bcan(?:not|'t|\s+not)\s+(?:be\s+)?(?:miss\w*|overlook\w*|ignor\w*|mistak\w*|den\w*)\b|"
    # a hedge is a claim: "cannot rule out AU9" asserts AU9 may be there
    r"\b(?:can(?:not|'t|\s+not)|could(?:not|n't|\s+not))\s+(?:yet\s+)?(?:be\s+)?rul(?:e|ed)\s+out\b|"
    r"\b(?:impossible|hard|difficult)\s+to\s+(?:miss|overlook|ignore)\b|\bunmistakabl\w*|"
    r"\bnot\s+(?:be\s+)?(?:overlooked|missed|ignored)\b|\bundeniabl\w*", re.IGNORECASE)
_NEGATOR = re.compile(
    r"\b(?:no|not|without|absence\s+of|absent|lack\s+of|lacks|lacking|lack|neither|nor|never|none\s+of|"
    r"instead\s+of|rather\s+than|free\s+of|rules?\s+out|ruled\s+out|ruling\s+out|excluding|except(?:\s+for)?|"
    r"cannot|can't|isn't|aren't|wasn't|weren't|doesn't|don't|didn't|hasn't|haven't)\b", re.IGNORECASE)
# Words that may stand between a negator and the AU it negates ("no clear sign of any AU4", "does not show AU4").
_NEGATION_FILLER = frozenset({
    "a", "an", "the", "any", "some", "sign", "signs", "trace", "traces", "evidence", "hint", "hints", "indication",
    "indications", "mark", "marks", "visible", "clear", "obvious", "real", "such", "single", "other", "activity",
    "activation", "movement", "movements", "action", "actions", "involvement", "of", "in", "from", "by", "for",
    "at", "all", "either", "both", "there", "is", "are", "was", "were", "be", "been", "being", "see", "seen",
    "show", "shows", "showing", "display", "displays", "displaying", "exhibit", "exhibits", "involve", "involves",
    "involving", "include", "includes", "including", "contain", "contains", "feature", "features", "reveal",
    "reveals", "has", "have", "had", "carry", "carries", "accompanying", "accompanied", "additional", "further",
    "noticeable", "detectable", "discernible", "apparent", "engagement", "contribution", "that"
})
_LIST_GLUE = frozenset({"and", "or", "nor"})
_WORDS = re.compile(r"[A-Za-z']+")
_PRESENCE = (r"present|visible|active|activated|there|seen|observed|evident|apparent|detected|detectable|shown|"
             r"showing|involved|engaged|recruited|noticeable|perceptible|discernible|found|coded|contracted|"
             r"contracting|occurring|moving|engaging|participating|in\s+play|to\s+be\s+seen|part\s+of|appear|"
             r"appears|appearing|show|shows|show\s+up|shows\s+up|occur|occurs|activate|activates|engage|engages|"
             r"rise|rises|rising|move|moves|contract|contracts|join|joins|feature|features|participate|"
             r"participates|contribute|contributes|come\s+into\s+play|comes\s+into\s+play|register|registers|"
             r"fire|fires|kick\s+in|kicks\s+in|turn\s+on|turns\s+on|switch\s+on|switches\s+on|take\s+part|"
             r"takes\s+part|play\s+a\s+(?:role|part)|plays\s+a\s+(?:role|part)|accompany|accompanies|change|"
             r"changes|depart|departs|respond|responds|happen|happens|exist|exists|emerge|emerges|develop|develops")
# possessive: the gap never gives back what it took (no backtracking blow-up on long runs of mentions)
_POST_GAP = r"(?:\([^()\n]{0,80}\)|[\s,+&/\x01()]|\band\b|\bor\b|\bnor\b)*+"
_AUX = (r"(?:is|are|was|were|remains?|stays?|appears?|seems?|looks?|being|has\s+been|have\s+been|had\s+been|"
        r"does|do|did|has|have|had|can|could|will|would|is\s+still|are\s+still)")
_NOT = r"(?:not|never|n't|isn't|aren't|wasn't|weren't|doesn't|don't|didn't|hasn't|haven't|cannot|can't|won't)"
_POST_NEGATION = re.compile(
    _POST_GAP + r"(?:(?:" + _AUX + r"\s*)?" + _NOT + r"\s*(?:(?:at\s+all|even|ever|really|actually|yet|be|been)\s+)*"
    r"(?:" + _PRESENCE + r")\b|(?:" + _AUX + r"\s+)?(?:absent|inactive|missing|nowhere\b)|" + _AUX + r"\s+" + _NOT +
    r"\s*$)", re.IGNORECASE)
_MEANING = (r"indicat\w*|signal\w*|suggest\w*|mean|means|impl(?:y|ies)|point\w*|express\w*|convey\w*|reflect\w*|"
            r"mark|marks|accompan\w+|characteri[sz]\w*|belong\w*|appear\s+in|occur\s+in|seen\s+in|expected|typical|"
            r"characteristic|a\s+sign|consistent|part\s+of|add|adds|denot\w*|correspond\w*|go\s+with|goes\s+with|"
            r"involve\w*|associated|linked|found\s+in|a\s+marker|a\s+hallmark|a\s+cue|the\s+hallmark|contribute\w*\s+to")
_POST_HYPOTHETICAL = re.compile(
    _POST_GAP + r"(?:would|could|might|may|typically|usually|generally|normally|often|tends?\s+to|"
    r"(?:is|are)\s+known\s+to)\s+(?:be\s+)?(?:" + _MEANING + r")\b", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|whether|unless|in\s+case|were\s+(?:it|they|there|this|that))\b|^\s*(?:were|had)\b",
                          re.IGNORECASE)

# --- time claims -------------------------------------------------------------------------------------------------
_TIME = re.compile(r"\bframes?\s*(?:#|no\.?\s*|number\s+)?(?P<frame>\d{1,6})\b|"
                   r"\b(?P<ordinal>\d{1,6})(?:st|nd|rd|th)\s+frame\b|"  # "the 40th frame"
                   r"(?<![\w.])(?P<sec>(?:(?<![^\s(])[-−])?\d{1,5}(?:\.\d+)?)\s*(?:s|secs?|seconds?)\b|"
                   r"(?<![\w.])(?P<min>\d{1,4}(?:\.\d+)?)\s*(?:min|mins|minutes?)\b|"
                   r"(?<![\w.])(?P<ms>\d{1,7})\s*(?:ms|milliseconds?)\b", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"(?<!\d)[.!?](?!\d)|[;\n]")
_ROLE_WORDS = re.compile(
    r"(?P<apex>\bpeak\w*|\bapex\b|\bstrongest\b|\bculminat\w*|\bmaxim\w*|\bmax\b|\bhighest\b|\bmost\s+intense\b|"
    r"\breach\w*)|(?P<offset>\bfad\w*|\brelax\w*|\bsubsid\w*|\boffset\b|\buntil\b|\btill\b|\bby\b|\bgone\b|"
    r"\breturn\w*|\bends?\b|\bending\b|\bdisappear\w*|\bvanish\w*|\brelease\w*|\bback\s+to\b|\bto\b|\bstops?\b)|"
    r"(?P<onset>\brise\w*|\brising\b|\bbegin\w*|\bbegan\b|\bstart\w*|\bonset\b|\bappear\w*|\bsets?\s+in\b|"
    r"\bemerg\w*|\bfrom\b|\bswitch\w*\s+on\b|\bkicks?\s+in\b|\bbuilds?\b)", re.IGNORECASE)
_PAREN_INTENSITY = re.compile(r"\s*\((?:[^()]*?[,;]\s*)?(?:intensity\s*)?([A-E])(?:\s*[-–]\s*[a-z]+)?\s*\)")
_FALLBACK_ANSWER = re.compile(
    r"\b(?:final\s+answer|answer|emotion|prediction|label)\s*(?:is\s*:?|:|=)\s*\**\s*([A-Za-z][A-Za-z _-]{1,40})",
    re.IGNORECASE)


# --- the answer path: which emotion an answer names, negation-aware (AU claims have their own rules below) ----
# Idioms that hold a negation word but affirm ("no doubt it is anger", "not only X but also Y"): removed first.
_ANSWER_AFFIRMING = re.compile(r"\b(?:(?:no|without(?:\s+(?:a|any))?)\s+doubt|no\s+question|not\s+only|not\s+just|"
                               r"none\s+other\s+than)\b", re.IGNORECASE)
# Hedges that name a possibility ("cannot rule out anger", "maybe", "could be"): rewritten to one marker word so
# that "cannot rule out" is not read as "not" or "rule out".
_ANSWER_HEDGING_PHRASES = re.compile(r"\b(?:can\s*not|can['’]?t|could\s*not|couldn['’]?t)\s+(?:yet\s+)?(?:rule|ruled)\s+"
                                     r"out\b|\b(?:could|might|may)\s+(?:also\s+)?be\b", re.IGNORECASE)
_ANSWER_HEDGE = re.compile(r"\b(?:maybe|perhaps|possibly)\b")  # on normalised text
# Phrases that negate what follows, rewritten before clauses are split ("anything but calm" = "not calm").
_ANSWER_NEGATING_PHRASES = re.compile(
    r"\b(?:anything\s+but|far\s+from|rather\s+than|instead\s+of|other\s+than|as\s+opposed\s+to)\b", re.IGNORECASE)
_ANSWER_CLAUSE = re.compile(r"[.;!?:,()\[\]\n]|\b(?:but|however|rather|instead|whereas|while|though|although|yet)\b",
                            re.IGNORECASE)
_ANSWER_CUE = re.compile(r"\b(?:not|no|never|neither|nor|without|hardly|barely|scarcely|nothing|none|lacks?|"
                         r"lacking|absent|absence|except|excluding|rules?\s+out|ruled\s+out|ruling\s+out)\b|"
                         r"\b\w*n t\b")  # on normalised text: "isn't" → "isn t"
_ANSWER_POST_NEGATION = re.compile(r"^\s*(?:(?:is|are|was|were|seems?|looks?|appears?)\s+)?(?:not|never|absent|"
                                   r"ruled\s+out|excluded)\b|^\s*\w*n t\b")


def answer_emotion(text: str | None) -> tuple[str | None, bool]:
    """(canonical emotion, negated) of an answer text.

    An emotion named under a negation in its own clause ("not happy", "it is not anger", "neither X nor Y", "not
    really sad", "anything but calm", "anger is not it", "ruling out anger") is not the answer. Clause breaks
    (punctuation, "but", "rather", "instead", …) end a negation's scope, so "not anger but disgust" answers disgust
    and "not sure, but happiness" answers happiness: hedging is not negation. Idioms that affirm ("no doubt it is
    anger", "not only X but also Y") are not negations. A hedged emotion ("cannot rule out anger", "maybe",
    "could be") gives way to an affirmed one ("I cannot rule out anger, but it's happiness" answers happiness) and
    is the answer when it is the only one. Exactly one emotion is the answer; two are ambiguous (None); none left
    with some negated gives (None, True). Whole-answer synonyms win first, so "no emotion" (= neutral) and
    "unhappy" (= sadness) keep their meaning."""
    if not text:
        return None, False
    key = normalize_text(text)
    whole = emotion_mentions(key)
    if len(whole) == 1 and (whole[0][0], whole[0][1]) == (0, len(key)):
        return whole[0][2], False
    text = _ANSWER_HEDGING_PHRASES.sub(" possibly ", _ANSWER_AFFIRMING.sub(" ", text))
    if not _ANSWER_CUE.search(normalize_text(text)) and not _ANSWER_NEGATING_PHRASES.search(text) \
            and not _ANSWER_HEDGE.search(normalize_text(text)):
        return canonical_emotion(text), False
    affirmed: list[str] = []
    hedged: list[str] = []
    negated = False
    for clause in _ANSWER_CLAUSE.split(_ANSWER_NEGATING_PHRASES.sub(" , not ", text)):
        words = normalize_text(clause)
        for start, end, label in emotion_mentions(words):
            if _ANSWER_CUE.search(words[:start]) or _ANSWER_POST_NEGATION.match(words[end:]):
                negated = True
            elif _ANSWER_HEDGE.search(words[:start]):
                hedged += [label] if label not in hedged else []
            elif label not in affirmed:
                affirmed.append(label)
    if len(affirmed) == 1:
        return affirmed[0], False
    if not affirmed and len(hedged) == 1:
        return hedged[0], False
    return None, negated and not affirmed and not hedged


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
class TimeClaim:
    """A time the reasoning states: ``value`` in ``unit`` (``s`` — seconds — or ``frame``), said of ``aus``
    (empty: of no AU) in a ``role`` (onset | apex | offset | any)."""

    value: float
    unit: str
    role: str
    aus: list[int] = field(default_factory=list)


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
    time_claims: list[TimeClaim] = field(default_factory=list)  # times stated in the reasoning
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


def _section_spans(text: str) -> list[tuple[str, int, int, int]]:
    """(name, heading start, body start, body end) of each section heading in ``text``, in order; a section runs
    to the next heading. Names are lower case without a plural s ("observation", "vocal cue")."""
    marks = list(_SECTION.finditer(text))
    return [(m.group(1).lower().rstrip("s"), m.start(), m.end(), marks[i + 1].start() if i + 1 < len(marks) else len(text))
            for i, m in enumerate(marks)]


def _read_sections(result: ParsedResponse, reasoning: str) -> None:
    marks = _section_spans(reasoning)
    found: dict[str, str] = {}
    for name, _, body, stop in marks:
        key = {"observation": "observations", "vocal cue": "vocal_cues"}.get(" ".join(name.split()), name)
        if key not in found:
            found[key] = reasoning[body:stop].strip()
    result.observations = found.get("observations")
    result.vocal_cues = found.get("vocal_cues")
    result.interpretation = found.get("interpretation")
    result.conclusion = found.get("conclusion")
    order = [m[0] for m in marks]
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
    # "AU12 (lip corner puller, D)", "the brow lowerer (AU4)": a parenthetical restatement is the same mention
    merged: list[_Mention] = []
    for mention in mentions:
        previous = merged[-1] if merged else None
        if previous and re.fullmatch(r"\s*\(\s*", text[previous.end:mention.start]) and \
                {a for a, _ in mention.aus} <= {a for a, _ in previous.aus}:
            continue
        merged.append(mention)
    return merged


def _mask(text: str, spans: list[tuple[int, int]], char: str) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = char * (end - start)
    return "".join(chars)


class _Clauses:
    """Clause boundaries of a masked text, found once (bisect per mention: long texts stay linear)."""

    def __init__(self, masked: str):
        found = list(_CLAUSE_BREAK.finditer(masked))
        self.starts = [m.start() for m in found]
        self.ends = [m.end() for m in found]
        self.length = len(masked)

    def around(self, start: int, end: int, back: int = 200, ahead: int = 240) -> tuple[int, int]:
        k = bisect.bisect_right(self.ends, start)
        j = bisect.bisect_left(self.starts, end)
        return (max(self.ends[k - 1] if k else 0, start - back),
                min(self.starts[j] if j < len(self.starts) else self.length, end + ahead))


def _pre_negated(masked: str, clause_start: int, mention_start: int, listed) -> bool:
    """A negator earlier in the clause whose scope reaches this mention (see the scope rules above);
    ``listed()`` counts the AUs mentioned before it in the clause."""
    last = None
    for found in _NEGATOR.finditer(masked, clause_start, mention_start):
        last = found
    if last is None:
        return False
    gap = re.sub(r"\([^()]*\)", " ", masked[last.end():mention_start])
    first, *after_mentions = re.split(r"\x01+", gap)
    # filler may sit between the negator and the first mention; after a mention only list glue may follow
    if any(w.lower() not in _NEGATION_FILLER and w.lower() not in _LIST_GLUE for w in _WORDS.findall(first)):
        return False
    if any(w.lower() not in _LIST_GLUE for part in after_mentions for w in _WORDS.findall(part)):
        return False
    # "No AU4, and AU12 rises": a comma + and/so after a single negated AU ends the negated list
    return not (len(after_mentions) == 1 and re.match(r"\s*,\s*(?:and|so)\b", after_mentions[0])
                and listed() == 1)


def _claim_state(masked: str, clauses: _Clauses, mentions: list[_Mention], index: int) -> str:
    """present | negated | hypothetical for ``mentions[index]`` in ``masked``."""
    mention = mentions[index]
    clause, clause_end = clauses.around(mention.start, mention.end)
    following = masked[mention.end:clause_end]

    def listed() -> int:
        aus: set[int] = set()
        for m in reversed(mentions[max(0, index - 64):index]):
            if m.start < clause:
                break
            aus.update(a for a, _ in m.aus)
        return len(aus)

    pre = _pre_negated(masked, clause, mention.start, listed)
    post = bool(_POST_NEGATION.match(following))
    if pre != post:  # negated on one side only; both sides is a double negation, i.e. a claim
        return "negated"
    if not (pre or post) and (_CONDITIONAL.search(masked, clause, mention.start) or
                              _POST_HYPOTHETICAL.match(following)):
        return "hypothetical"
    return "present"


def _read_aus(result: ParsedResponse, reasoning: str) -> None:
    mentions = _mentions(reasoning)
    if not mentions:
        return
    masked = _mask(reasoning, [(m.start, m.end) for m in mentions], "\x01")
    masked = _AFFIRMATIVE_IDIOM.sub(lambda m: "~" * len(m.group(0)), masked)  # idioms affirm: never negators
    positive: dict[int, str | None] = {}
    negated: set[int] = set()
    hypothetical: set[int] = set()
    invalid: set[int] = set()
    clauses = _Clauses(masked)
    for index, mention in enumerate(mentions):
        state = _claim_state(masked, clauses, mentions, index)
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
    result.time_claims = _time_claims(reasoning, mentions, _outside_vocal_cues(masked))


def _outside_vocal_cues(text: str) -> str:
    """``text`` with its ``Vocal cues`` section blanked: times there ("pitch rises to 310 Hz at 1.2 s") are claims
    about the voice, held to the measured prosody (``emoreason.audio.cues.check_vocal_claims``), not AU timings —
    a label-only clip's rationale may time its voice though its face has no timeline."""
    for name, start, _, stop in _section_spans(text):
        if name.startswith("vocal"):  # same length: offsets into the text stay valid
            text = text[:start] + " " * (stop - start) + text[stop:]
    return text


def _time_claims(text: str, mentions: list[_Mention], masked: str) -> list[TimeClaim]:
    """Every time expression, with the AU (list) it is said of and its role (onset | apex | offset | any).

    A time belongs to the nearest AU mention (with the mentions listed beside it) before it in the same
    sentence, else to the first one after it; its role is the last role word between the previous time (or that
    mention) and the time itself ("rises from 0.4 s and peaks at 1.1 s before fading by 1.6 s")."""
    groups: list[tuple[int, int, list[int]]] = []  # (start, end, AUs) of mentions joined by list glue
    for mention in mentions:
        aus = [a for a, _ in mention.aus if a in ACTION_UNITS]
        if groups and re.fullmatch(r"(?:[\s,&/+]|\band\b|\bor\b|\([^()]*\))*", text[groups[-1][1]:mention.start]):
            start, _, previous = groups[-1]
            groups[-1] = (start, mention.end, previous + [a for a in aus if a not in previous])
        else:
            groups.append((mention.start, mention.end, aus))
    claims: list[TimeClaim] = []
    last_time_end = 0
    breaks = [m.end() for m in _SENTENCE_BREAK.finditer(masked)]  # sentence k spans breaks[k-1]..breaks[k]
    group_starts = [g[0] for g in groups]
    for match in _TIME.finditer(masked):
        if match.group("frame") is not None or match.group("ordinal") is not None:
            value, unit = float(match.group("frame") or match.group("ordinal")), "frame"
        elif match.group("sec") is not None:
            value, unit = float(match.group("sec").replace("−", "-")), "s"
        elif match.group("min") is not None:
            value, unit = float(match.group("min")) * 60.0, "s"
        else:
            value, unit = float(match.group("ms")) / 1000.0, "s"
        k = bisect.bisect_right(breaks, match.start())
        sentence_start = breaks[k - 1] if k else 0
        sentence_end = breaks[k] if k < len(breaks) else len(masked)
        i = bisect.bisect_right(group_starts, match.start())  # groups[:i] start before the time
        before = groups[i - 1] if i and groups[i - 1][0] >= sentence_start and groups[i - 1][1] <= match.start() \
            else None
        after = groups[i] if i < len(groups) and groups[i][1] <= sentence_end else None
        group = before or after
        segment_start = max(sentence_start, last_time_end, before[1] if before else sentence_start)
        roles = [m.lastgroup for m in _ROLE_WORDS.finditer(masked, segment_start, match.start())]
        if not roles and not before:  # "From 0.5 s on, AU6 and AU12 co-occur"
            roles = [m.lastgroup for m in _ROLE_WORDS.finditer(masked, sentence_start, match.start())]
        claims.append(TimeClaim(value, unit, roles[-1] if roles else "any", list(group[2]) if group else []))
        last_time_end = match.end()
    return claims


def read_au_claims(text: object) -> ParsedResponse:
    """The AU claims of any text (e.g. an AU-perception answer "AU6 (cheek raiser, C), AU12 (…, D)"), read with
    the same scope rules as the reasoning of a full response: ``aus``, ``negated_aus``, ``au_intensities``, …"""
    result = ParsedResponse()
    try:
        _read_aus(result, _TAG.sub(" ", _clean(text)))
    except Exception as exc:  # total, like parse_response
        result.issues.append(f"parser_error:{type(exc).__name__}")
    return result
