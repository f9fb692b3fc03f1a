"""Rationale composition: a seeded template grammar that turns a temporal AU analysis into the project's
three-part response (observations, interpretation, conclusion), then the answer.

Interpretations follow FACS knowledge (``emoreason.knowledge``): e.g. AU6 with AU12 is the Duchenne marker of
felt enjoyment while AU12 alone reads as a social smile (Ekman, Davidson & Friesen 1990); AU1 with AU4 is the
oblique brow of sadness; AU1+2+5 with AU26 is the surprise configuration. Every AU named is either in the
evidence or explicitly negated, so the parser-based verifier can hold the text to the evidence.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from emoreason.cot.temporal import AUTrack, TemporalAnalysis
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
_TIMING = (
    " rises from frame {on} and peaks at frame {apex}",
    " begins at frame {on} ({on_s}) and reaches its apex at frame {apex}",
    " appears around {on_s} and is strongest at frame {apex}",
    " builds from frame {on} to a peak at frame {apex}",
    " is visible from frame {on}, peaking at {apex_s}",
    " sets in at frame {on} and culminates at frame {apex}",
)
_OFFSET = (" before fading by frame {off}", ", relaxing again by frame {off}", " and subsides at frame {off}")
_STATIC = (" is visible", " is present", " shows clearly", " can be seen")
_OPENERS_VIDEO = ("", "Over the clip, ", "Across the frames, ", "In this video, ", "Frame by frame, ",
                  "Watching the sequence, ")
_OPENERS_IMAGE = ("", "In this image, ", "On this face, ", "Here, ")
_JOIN = ("; ", ". ", "; meanwhile ")
_LEAD = (" AU{a} leads the movement.", " The first to move is AU{a}.", " AU{a} moves first.")
_COACTIVE = (" AU{a} and AU{b} are active together from frame {f}.",
             " From frame {f} on, AU{a} and AU{b} co-occur.")
_ABSENT_ONE = ("There is no AU{n} ({name}).", "No AU{n} ({name}) appears.", "AU{n} ({name}) is absent.")
_ABSENT_MANY = ("There is no sign of {list}.", "Neither {a} nor {b} appears.", "{list} stay absent.")
_NEUTRAL_OBS = ("No emotion-relevant action unit departs from the resting face",
                "The face stays close to its neutral configuration",
                "No facial muscle movement of emotional relevance is visible",
                "The expression remains at rest throughout")
_PROTO_OBS = ("No AU measurements exist for this sample; the label implies the FACS prototype of {emo}: {refs}.",
              "Only the emotion label is available, so the expected FACS prototype of {emo} stands in: {refs}.",
              "AU evidence is prototype-based (from the label {emo}): {refs}.")


def _seconds(x: float | None) -> str:
    return f"{x:.1f} s" if x is not None else "?"


def _ref(track: AUTrack, rng: random.Random) -> str:
    name = au_name(track.au)
    return rng.choice(_REFS).format(n=track.au, name=name, cap_name=name[0].upper() + name[1:], L=track.letter)


def _observation(track: AUTrack, rng: random.Random, timed: bool) -> str:
    text = _ref(track, rng)
    if timed and track.onset is not None:
        template = rng.choice(_TIMING)
        if ("{on_s}" in template or "{apex_s}" in template) and track.onset_s is None:
            template = _TIMING[0]
        text += template.format(on=track.onset, apex=track.apex, on_s=_seconds(track.onset_s),
                                apex_s=_seconds(track.apex_s))
        if track.offset is not None and rng.random() < 0.5:
            text += rng.choice(_OFFSET).format(off=track.offset)
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
                         observed: bool = True, emotion: str | None = None) -> str:
    if not observed:
        refs = ", ".join(f"AU{t.au} ({au_name(t.au)})" for t in analysis.tracks)
        if not refs:
            return "Only the emotion label is available and it implies a face at rest."
        return rng.choice(_PROTO_OBS).format(emo=display_name(emotion or "neutral"), refs=refs)
    timed = analysis.timed
    tracks = list(analysis.tracks)
    if not tracks:
        text = rng.choice(_NEUTRAL_OBS) + "."
        return text + _absent_sentence(absent, rng)
    if rng.random() < 0.3:
        rng.shuffle(tracks)
    parts = [_observation(t, rng, timed) for t in tracks]
    opener = rng.choice(_OPENERS_VIDEO if timed else _OPENERS_IMAGE)
    joiner = rng.choice(_JOIN)
    body = parts[0]
    for part in parts[1:]:
        body += joiner + (part[0].upper() + part[1:] if joiner == ". " else part)
    text = opener + body
    text = text[0].upper() + text[1:] + "."
    if timed and analysis.leaders and len(tracks) > 1 and rng.random() < 0.5:
        text += rng.choice(_LEAD).format(a=analysis.leaders[0])
    if timed and analysis.coactive and rng.random() < 0.4:
        a, b, f = rng.choice(analysis.coactive)
        text += rng.choice(_COACTIVE).format(a=a, b=b, f=f)
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


def _distinguishing(emotion: str, present: set[int]) -> list[tuple[int, str]]:
    """(absent AU, competing emotion) pairs: hallmark AUs of other emotions that are not in the evidence."""
    hallmarks = {"happiness": 12, "sadness": 15, "surprise": 2, "fear": 20, "anger": 7, "disgust": 9,
                 "contempt": 14}
    own = {emotion, *get_emotion(emotion).components}  # a compound does not rule out its components
    return [(au, other) for other, au in hallmarks.items() if other not in own and au not in present]


def compose_interpretation(analysis: TemporalAnalysis, emotion: str, rng: random.Random,
                           observed: bool = True) -> tuple[str, list[int]]:
    """Interpretation text and the AUs it negates (for the observations' absent list)."""
    present = set(analysis.aus)
    label = get_emotion(emotion).name
    expressive = present - NON_EMOTIONAL_AUS
    sentences: list[str] = []
    negated: list[int] = []
    if not expressive:
        sentences.append(rng.choice(_NEUTRAL_INTERP))
    applicable = [r for r in _RULES if r.needs <= present and not (r.lacks & present)]
    rng.shuffle(applicable)
    for rule in applicable[:3]:
        sentences.append(rng.choice(rule.variants))
        negated.extend(sorted(rule.lacks & {a for a in rule.lacks if f"AU{a}" in sentences[-1]}))
    if expressive and label != "neutral":
        protos = prototypes_for(label)
        best = max(protos, key=lambda p: len(p.aus & present), default=None)
        shared = sorted(best.aus & present) if best else []
        if len(shared) >= 2 or (shared and len(expressive) == 1):
            codes = "+".join(str(a) for a in shared)
            sentences.append(rng.choice(_PROTOTYPE_MATCH).format(codes=codes, emo=display_name(label)))
    if observed and label != "neutral" and rng.random() < 0.7:
        options = _distinguishing(label, present)
        if options:
            au, other = rng.choice(options)
            sentences.append(rng.choice(_RULES_OUT).format(n=au, name=au_name(au), other=display_name(other)))
            negated.append(au)
    if rng.random() < 0.3 and len(sentences) > 1:
        first = sentences.pop(0)
        sentences.insert(rng.randrange(len(sentences) + 1), first)
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


def compose_conclusion(analysis: TemporalAnalysis, emotion: str, rng: random.Random) -> str:
    label = get_emotion(emotion).name
    template = rng.choice(_CONCLUSIONS)
    expressive = [t for t in sorted(analysis.tracks, key=lambda t: -t.peak) if t.au not in NON_EMOTIONAL_AUS]
    if label == "neutral" or not expressive:
        why = rng.choice(_NEUTRAL_WHY)
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
                      observed: bool = True, valence: float | None = None,
                      arousal: float | None = None) -> ComposedRationale:
    """Compose one response for ``emotion`` from ``analysis``; same inputs and seed → same text."""
    rng = random.Random(seed)
    interpretation, negated = compose_interpretation(analysis, emotion, rng, observed)
    extra_absent: list[int] = []
    if observed and rng.random() < 0.35:
        candidates = sorted({au for au, _ in _distinguishing(get_emotion(emotion).name, set(analysis.aus))}
                            - set(negated))
        if candidates:
            extra_absent = sorted(rng.sample(candidates, k=min(len(candidates), rng.choice((1, 2)))))
    observations = compose_observations(analysis, rng, extra_absent, observed, emotion)
    conclusion = compose_conclusion(analysis, emotion, rng)
    content = ResponseContent(emotion=emotion, observations=observations, interpretation=interpretation,
                              conclusion=conclusion, valence=valence, arousal=arousal, aus=analysis.aus)
    text = format_response(content, style=style)
    return ComposedRationale(text, content, sorted(set(negated) | set(extra_absent)))
