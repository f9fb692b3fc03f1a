"""Rationale composition: a seeded template grammar that turns a temporal AU analysis into the project's
three-part response (observations, interpretation, conclusion), then the answer.

Interpretations follow FACS knowledge (``emoreason.knowledge``): e.g. AU6 with AU12 is the Duchenne marker of
felt enjoyment while AU12 alone reads as a social smile (Ekman, Davidson & Friesen 1990); AU1 with AU4 is the
oblique brow of sadness; AU1+2+5 with AU26 is the surprise configuration. Every AU named is either in the
evidence or explicitly negated — and negated only when the evidence source codes it — so the parser-based
verifier can hold the text to the evidence.

Times are written on the rationale's ``Timeline`` (seconds, or the numbers of the frames the model is shown),
never as source frame numbers. Label-only samples (prototype evidence) get a rationale that starts from the cues
the FACS prototype expects, says plainly that none of them was observed, and reaches the label last.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from emoreason.cot.temporal import AUTrack, TemporalAnalysis, Timeline
from emoreason.knowledge import au_name, display_name, get_emotion, prototypes_for
from emoreason.knowledge.facs import NON_EMOTIONAL_AUS
from emoreason.reasoning import ResponseContent, format_response

# --- observations -----------------------------------------------------------------------------------------

_REFS = (
    "AU{n} ({name}, {L})",
    "AU{n} ({name}, intensity {L})",
    "the {name} (AU{n}, {L})",
    "AU{n}, the {name} ({L})",
    "{cap_name} (AU{n}, {L})",
)
_REFS_NO_LETTER = ("AU{n} ({name})", "the {name} (AU{n})", "AU{n}, the {name},", "{cap_name} (AU{n})")
_TIMING = (
    " rises from {on} and peaks at {apex}",
    " begins at {on} and reaches its apex at {apex}",
    " appears around {on} and is strongest at {apex}",
    " builds from {on} to a peak at {apex}",
    " is visible from {on}, peaking at {apex}",
    " sets in at {on} and culminates at {apex}",
)
_TIMING_AT_ONCE = (" peaks at {apex}", " is strongest at {apex}", " is already at its apex at {apex}")
_TIMING_OCCURRENCE = (" is active from {on}", " switches on at {on}", " appears from {on}")
_OFFSET = (" before fading by {off}", ", relaxing again by {off}", " and subsides at {off}")
_STATIC = (" is visible", " is present", " shows clearly", " can be seen")
_OPENERS_VIDEO = ("", "Over the clip, ", "Across the frames, ", "In this video, ", "Frame by frame, ",
                  "Watching the sequence, ")
_OPENERS_IMAGE = ("", "In this image, ", "On this face, ", "Here, ")
_JOIN = ("; ", ". ", "; meanwhile ")
_LEAD = (" AU{a} leads the movement.", " The first to move is AU{a}.", " AU{a} moves first.")
_COACTIVE = (" AU{a} and AU{b} are both active at {f}.", " At {f}, AU{a} and AU{b} are active together.")
_ABSENT_ONE = ("There is no AU{n} ({name}).", "No AU{n} ({name}) appears.", "AU{n} ({name}) is absent.")
_ABSENT_MANY = ("There is no sign of {list}.", "Neither {a} nor {b} appears.", "{list} stay absent.")
# No word here may name an emotion (the verifier rejects observations that state the label first).
_NEUTRAL_OBS = ("None of the measured action units departs from the resting face",
                "The face stays close to its resting configuration",
                "No facial muscle movement of expressive relevance is visible",
                "The expression remains at rest throughout")
# Label-only samples: what the prototype expects, plainly marked as not observed.
_PROTO_OBS = (
    "No AU measurements exist for this {noun}, so nothing below was observed. The cues to look for would be {refs}.",
    "Action units were not measured in this {noun}; these are expected cues, not observations: {refs}.",
    "Without AU evidence for this {noun}, no movement can be reported as observed. Expected cues: {refs}.",
    "This {noun} has no facial measurements, so none of the following was observed; they are the cues to "
    "expect: {refs}.",
)
_PROTO_EMPTY = ("No AU measurements exist for this {noun}, and no movement is expected: a face at rest.",
                "Action units were not measured in this {noun}; no expressive cue is expected.")


def _ref(track: AUTrack, rng: random.Random) -> str:
    name = au_name(track.au)
    if track.letter is None:
        return rng.choice(_REFS_NO_LETTER).format(n=track.au, name=name, cap_name=name[0].upper() + name[1:])
    return rng.choice(_REFS).format(n=track.au, name=name, cap_name=name[0].upper() + name[1:], L=track.letter)


def _observation(track: AUTrack, rng: random.Random, timeline: Timeline | None) -> str:
    text = _ref(track, rng)
    if timeline is not None and track.onset is not None:
        on, apex = timeline.say(track.onset), timeline.say(track.apex) if track.apex is not None else None
        if apex is None:  # occurrence-only: on and off, no apex
            text += rng.choice(_TIMING_OCCURRENCE).format(on=on)
        elif on == apex:  # rises and peaks within one written time step
            text += rng.choice(_TIMING_AT_ONCE).format(apex=apex)
        else:
            text += rng.choice(_TIMING).format(on=on, apex=apex)
        last = apex or on
        if track.offset is not None and timeline.say(track.offset) != last and (apex is None or rng.random() < 0.5):
            text += rng.choice(_OFFSET).format(off=timeline.say(track.offset))
    else:
        text += rng.choice(_STATIC)
    return text


def _absent_sentence(absent: Sequence[int], rng: random.Random) -> str:
    if not absent:
        return ""
    if len(absent) == 1:
        return " " + rng.choice(_ABSENT_ONE).format(n=absent[0], name=au_name(absent[0]))
    refs = [f"AU{a} ({au_name(a)})" for a in absent]
    template = rng.choice(_ABSENT_MANY)
    listed = ", ".join(refs[:-1]) + " or " + refs[-1]
    sentence = template.format(list=listed, a=refs[0], b=refs[1])
    if template.startswith("{list}"):
        sentence = sentence[0].upper() + sentence[1:]
    return " " + sentence


def compose_observations(analysis: TemporalAnalysis, rng: random.Random, absent: Sequence[int] = (),
                         observed: bool = True, timeline: Timeline | None = None, noun: str = "video") -> str:
    if not observed:
        refs = ", ".join(f"AU{t.au} ({au_name(t.au)})" for t in analysis.tracks)
        template = rng.choice(_PROTO_OBS if refs else _PROTO_EMPTY)
        return template.format(noun=noun, refs=refs)
    tracks = list(analysis.tracks)
    if not tracks:
        text = rng.choice(_NEUTRAL_OBS) + "."
        return text + _absent_sentence(absent, rng)
    timed = timeline is not None and analysis.timed
    if rng.random() < 0.3:
        rng.shuffle(tracks)
    parts = [_observation(t, rng, timeline if timed else None) for t in tracks]
    opener = rng.choice(_OPENERS_VIDEO if timed else _OPENERS_IMAGE)
    joiner = rng.choice(_JOIN)
    body = parts[0]
    for part in parts[1:]:
        body += joiner + (part[0].upper() + part[1:] if joiner == ". " else part)
    if opener and not body.startswith("AU"):
        body = body[0].lower() + body[1:]  # "Over the clip, the inner brow raiser …"
    text = opener + body
    text = text[0].upper() + text[1:] + "."
    if timed and len(analysis.leaders) == 1 and len(tracks) > 1 and rng.random() < 0.5:
        text += rng.choice(_LEAD).format(a=analysis.leaders[0])
    if timed and analysis.coactive and rng.random() < 0.4:
        a, b, f = rng.choice(analysis.coactive)
        text += rng.choice(_COACTIVE).format(a=a, b=b, f=timeline.say(f))
    return text + _absent_sentence(absent, rng)


# --- interpretation -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    needs: frozenset[int]
    lacks: frozenset[int]
    variants: tuple[str, ...]


def _rule(needs, lacks, *variants) -> _Rule:
    return _Rule(frozenset(needs), frozenset(lacks), variants)


# FACS knowledge stated as rules; AU codes in each text are all in ``needs`` or negated and in ``lacks``.
_RULES: tuple[_Rule, ...] = (
    _rule({6, 12}, (), "AU6 with AU12 is the Duchenne marker of felt enjoyment.",
          "Cheek raising together with lip corner pulling (AU6+AU12) signals a genuine smile.",
          "The pairing of AU6 and AU12 is the classic sign of spontaneous enjoyment.",
          "Because AU6 accompanies AU12, the smile involves the eyes and reads as felt.",
          "AU12 supported by AU6 forms a Duchenne smile."),
    _rule({12}, {6, 14}, "AU12 appears without AU6, so the smile stays at the mouth, like a social smile.",
          "The AU12 smile comes without AU6, so it lacks the eye involvement of felt enjoyment.",
          "AU12 alone (AU6 does not join it) is a polite or social smile."),
    _rule({12, 14}, (), "AU12 with AU14 gives the tightened, one-sided smile that marks contempt.",
          "The dimpler (AU14) tightening the AU12 corner produces a smirk."),
    _rule({14}, {12}, "AU14 dimples the lip corner, the unilateral tightening typical of contempt."),
    _rule({1, 4}, (), "AU1 together with AU4 draws the inner brows up and together, the oblique brow of sorrow.",
          "The combination of AU1 and AU4 produces the grief-like slant of the brows.",
          "Inner brow raising against the brow lowerer (AU1+AU4) is a reliable sadness cue."),
    _rule({15}, (), "AU15 pulls the lip corners down, a core sign of sadness.",
          "Depressed lip corners (AU15) give the mouth a downturned, sorrowful shape.",
          "AU15 turns the mouth down at the corners."),
    _rule({17}, (), "AU17 pushes the chin boss up, adding tension below the lower lip.",
          "The chin raiser (AU17) raises the lower lip and wrinkles the chin."),
    _rule({1, 2}, {4}, "AU1 and AU2 lift the whole brow, as in surprise.",
          "Both inner and outer brows rise (AU1+AU2), widening the upper face.",
          "Raised brows (AU1+AU2) open the eyes to take in something unexpected."),
    _rule({5, 26}, (), "Widened eyes (AU5) with a dropped jaw (AU26) complete the surprise configuration.",
          "AU5 and AU26 together give the wide-eyed, open-mouthed look of astonishment."),
    _rule({26}, {5}, "The dropped jaw (AU26) opens the mouth."),
    _rule({1, 2, 4}, (), "AU1+2 raised together with AU4 produce the flattened, tense brow of fear.",
          "The mix of raised brows (AU1, AU2) and brow lowering (AU4) is characteristic of fear."),
    _rule({20}, (), "AU20 stretches the lips horizontally, a hallmark of fear.",
          "The lip stretcher (AU20) pulls the mouth wide and tense, as fear does."),
    _rule({4, 7}, (), "AU4 with AU7 lowers the brows and tightens the lids into a glare.",
          "Brow lowering (AU4) combined with lid tightening (AU7) gives the hard stare of anger."),
    _rule({23}, (), "AU23 narrows and tightens the lips, a sign of restrained anger.",
          "Tightened lips (AU23) signal controlled hostility."),
    _rule({24}, (), "AU24 presses the lips together, a sign of suppressed anger or determination."),
    _rule({9}, (), "AU9 wrinkles the nose, the core of the disgust expression.",
          "The nose wrinkler (AU9) signals revulsion."),
    _rule({10}, (), "AU10 raises the upper lip, a disgust signal.",
          "The raised upper lip (AU10) expresses aversion."),
    _rule({16}, (), "AU16 lowers the lower lip, exposing the lower teeth."),
    _rule({4}, {1, 2, 7}, "AU4 lowers and knits the brows, signalling concentration or displeasure.",
          "The brow lowerer (AU4) creates vertical lines between the brows."),
    _rule({45}, (), "AU45 is a blink and carries no emotional meaning.",
          "The blink (AU45) is incidental to the expression."),
    _rule({25}, {26, 12, 20}, "Parted lips (AU25) alone carry little emotional meaning."),
)
_PROTOTYPE_MATCH = (
    "Together, AU{codes} match the FACS prototype of {emo}.",
    "The set AU{codes} corresponds to the EMFACS pattern for {emo}.",
    "Taken as a whole, AU{codes} is the prototypical configuration of {emo}.",
    "AU{codes} form the recognised FACS signature of {emo}.",
    "This AU{codes} pattern is how {emo} is coded in FACS.",
)
_RULES_OUT = (
    "The absence of AU{n} ({name}) rules out {other}.",
    "With no AU{n}, {other} is unlikely.",
    "Since AU{n} ({name}) does not appear, {other} can be excluded.",
)
_NEUTRAL_INTERP = (
    "With no emotion-relevant muscle activity, the face shows no emotional display.",
    "Nothing in the AU pattern signals an emotion; the face is at rest.",
    "The absence of any expressive AU means the face is neutral.",
)


def _distinguishing(emotion: str, present: set[int], coded: frozenset[int] | None) -> list[tuple[int, str]]:
    """(absent AU, competing emotion) pairs: hallmark AUs of other emotions that the source codes and the
    evidence lacks (an AU the source does not code is unknown, never absent)."""
    if not coded:
        return []
    hallmarks = {"happiness": 12, "sadness": 15, "surprise": 2, "fear": 20, "anger": 7, "disgust": 9,
                 "contempt": 14}
    own = {emotion, *get_emotion(emotion).components}  # a compound does not rule out its components
    return [(au, other) for other, au in hallmarks.items()
            if other not in own and au not in present and au in coded]


_FALLBACK_CUES = ("{cues} carry the expression", "The active cues are {cues}", "What moves is {cues}")
_FALLBACK_FIT = ("of the FACS prototype of {emo}, only AU{shared} is seen.",
                 "the FACS prototype of {emo} is matched only in part (AU{shared}).")
_FALLBACK_NO_FIT = ("together they form no single FACS prototype.",
                    "they do not add up to one FACS prototype on their own.")


def _fallback_interpretation(expressive: list[int], label: str, rng: random.Random) -> str:
    """An off-prototype or partial AU set (common from real detectors): name the cues and how much of the
    label's prototype they cover, without claiming more than was seen."""
    cues = " and ".join(f"AU{a} ({au_name(a)})" for a in expressive)
    opening = rng.choice(_FALLBACK_CUES).format(cues=cues)
    protos = prototypes_for(label) if label != "neutral" else []
    best = max(protos, key=lambda p: len(p.aus & set(expressive)), default=None)
    shared = sorted(best.aus & set(expressive)) if best else []
    tail = (rng.choice(_FALLBACK_FIT).format(emo=display_name(label), shared="+".join(map(str, shared)))
            if shared else rng.choice(_FALLBACK_NO_FIT))
    return f"{opening}; {tail}"


_PROTO_INTERP_OPEN = ("Were these cues present, ", "If the face showed them, ", "As expectations go, ")
_PROTO_CAVEAT = ("None of this was checked against the face.", "These cues are inferred, not seen.",
                 "The cues were not observed in this clip.")


def compose_interpretation(analysis: TemporalAnalysis, emotion: str, rng: random.Random, observed: bool = True,
                           coded: frozenset[int] | None = None) -> tuple[str, list[int]]:
    """Interpretation text and the AUs it negates (for the observations' absent list)."""
    present = set(analysis.aus)
    label = get_emotion(emotion).name
    expressive = present - NON_EMOTIONAL_AUS
    sentences: list[str] = []
    negated: list[int] = []
    if not expressive:
        sentences.append(rng.choice(_NEUTRAL_INTERP))
    allowed_absent = set(coded or ()) if observed else set()  # prototypes observed nothing: no absences
    applicable = []
    for rule in _RULES:
        if not rule.needs <= present or rule.lacks & present:
            continue
        variants = [v for v in rule.variants if all(f"AU{a}" not in v or a in allowed_absent for a in rule.lacks)]
        if variants:
            applicable.append((rule, variants))
    rng.shuffle(applicable)
    for rule, variants in applicable[:3]:
        sentences.append(rng.choice(variants))
        negated.extend(sorted(a for a in rule.lacks if f"AU{a}" in sentences[-1]))
    if expressive and label != "neutral":
        protos = prototypes_for(label)
        best = max(protos, key=lambda p: len(p.aus & present), default=None)
        shared = sorted(best.aus & present) if best else []
        if len(shared) >= 2 or (shared and len(expressive) == 1):
            codes = "+".join(str(a) for a in shared)
            sentences.append(rng.choice(_PROTOTYPE_MATCH).format(codes=codes, emo=display_name(label)))
    if observed and label != "neutral" and rng.random() < 0.7:
        options = _distinguishing(label, present, coded)
        if options:
            au, other = rng.choice(options)
            sentences.append(rng.choice(_RULES_OUT).format(n=au, name=au_name(au), other=display_name(other)))
            negated.append(au)
    if not sentences:  # no rule or prototype speaks to this set: say what is seen, and how far it fits the label
        sentences.append(_fallback_interpretation(sorted(expressive), label, rng))
    if rng.random() < 0.3 and len(sentences) > 1:
        first = sentences.pop(0)
        sentences.insert(rng.randrange(len(sentences) + 1), first)
    if not observed and sentences:
        first = sentences[0]
        sentences[0] = rng.choice(_PROTO_INTERP_OPEN) + (first if first[:2] == "AU" else first[0].lower() + first[1:])
        sentences.append(rng.choice(_PROTO_CAVEAT))
    return " ".join(sentences), sorted(set(negated))


# --- conclusion -----------------------------------------------------------------------------------------

_CONCLUSIONS = (
    "The expression is {emo}.", "The face shows {emo}.", "This is {emo}.", "Overall, the clip expresses {emo}.",
    "Taken together, the evidence points to {emo}.", "The most consistent reading is {emo}.",
    "All of this indicates {emo}.", "The emotion displayed is {emo}.", "I conclude the person feels {emo}.",
    "Everything converges on {emo}.",
)
_WHY = (" because of {key}", ", driven by {key}", ", given {key}", " on the strength of {key}",
        ", as {key} shows", "")
_NEUTRAL_WHY = (", since no expressive AU is active", ", as the face stays at rest", "")


_PROTO_CONCLUSIONS = ("If these cues hold, the expression is {emo}.", "The expected pattern is that of {emo}.",
                      "These expected cues add up to {emo}.", "On these expectations, the label is {emo}.")


def compose_conclusion(analysis: TemporalAnalysis, emotion: str, rng: random.Random, observed: bool = True) -> str:
    label = get_emotion(emotion).name
    if not observed:
        return rng.choice(_PROTO_CONCLUSIONS).format(emo=display_name(label))
    template = rng.choice(_CONCLUSIONS)
    # name first the AUs of the label's best-matching prototype, then the strongest
    protos = prototypes_for(label)
    best = max(protos, key=lambda p: len(p.aus & set(analysis.aus)), default=None)
    typical = best.aus if best else frozenset()
    expressive = [t for t in sorted(analysis.tracks, key=lambda t: (t.au not in typical, -(t.peak or 0.0)))
                  if t.au not in NON_EMOTIONAL_AUS]
    if not expressive:
        why = rng.choice(_NEUTRAL_WHY)
    elif label == "neutral":  # AUs are active: never say none is
        why = ""
    else:
        key = " and ".join(f"AU{t.au}" for t in expressive[:2])
        why = rng.choice(_WHY).format(key=key)
    sentence = template.format(emo=display_name(label))
    return sentence[:-1] + why + "." if why else sentence


# --- the whole response ---------------------------------------------------------------------------------

@dataclass
class ComposedRationale:
    text: str
    content: ResponseContent
    mentioned_absent: list[int]


def compose_rationale(analysis: TemporalAnalysis, emotion: str, seed: int, style: str = "tags",
                      observed: bool = True, valence: float | None = None, arousal: float | None = None,
                      timeline: Timeline | None = None, coded: frozenset[int] | None = None,
                      noun: str = "video") -> ComposedRationale:
    """Compose one response for ``emotion`` from ``analysis``; same inputs and seed → same text.

    ``timeline``: how times are written (None: no times); ``coded``: the AUs the evidence source codes — only
    these may be called absent; ``noun``: the media as the prompt names it."""
    rng = random.Random(seed)
    interpretation, negated = compose_interpretation(analysis, emotion, rng, observed, coded)
    extra_absent: list[int] = []
    if observed and rng.random() < 0.35:
        candidates = sorted({au for au, _ in _distinguishing(get_emotion(emotion).name, set(analysis.aus), coded)}
                            - set(negated))
        if candidates:
            extra_absent = sorted(rng.sample(candidates, k=min(len(candidates), rng.choice((1, 2)))))
    observations = compose_observations(analysis, rng, extra_absent, observed, timeline, noun)
    conclusion = compose_conclusion(analysis, emotion, rng, observed)
    content = ResponseContent(emotion=emotion, observations=observations, interpretation=interpretation,
                              conclusion=conclusion, valence=valence, arousal=arousal,
                              aus=analysis.aus if observed else [])
    text = format_response(content, style=style)
    return ComposedRationale(text, content, sorted(set(negated) | set(extra_absent)))
