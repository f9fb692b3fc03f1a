"""Emotion taxonomy: canonical labels, word forms, valence–arousal anchors.

Canonical labels are lowercase snake_case ids (``happiness``, ``happily_surprised``); the display form
(``happily surprised``) is what prompts and answers use. Categories:

* the seven EMFACS emotions plus neutral (Ekman & Friesen 1978; Friesen & Ekman 1983, EMFACS-7);
* MAFW's three extra single labels anxiety, helplessness, disappointment (Liu et al., ACM MM 2022);
* the compound emotions of Du, Tao & Martinez, "Compound facial expressions of emotion", PNAS 111(15), 2014;
* calm, which RAVDESS's 8-class protocol scores apart from neutral (Livingstone & Russo, PLoS ONE 2018).

Valence–arousal anchors are approximate category positions on the affective circumplex (Russell, "A
circumplex model of affect", J. Pers. Soc. Psychol. 39(6), 1980; Posner, Russell & Peterson, Dev.
Psychopathol. 17(3), 2005), scaled to −1..1. Compound anchors are the mean of their components except the
three named compounds (appalled, hatred, awed), placed by hand beside their nearest components.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Emotion:
    """One emotion category."""

    name: str  # canonical id, e.g. "happily_surprised"
    kind: str  # "neutral" | "basic" | "mafw" | "compound"
    valence: float
    arousal: float
    synonyms: tuple[str, ...] = ()
    components: tuple[str, ...] = field(default=())  # for compounds: the basic emotions combined

    @property
    def display(self) -> str:
        return self.name.replace("_", " ")


_BASIC: list[Emotion] = [
    Emotion("neutral", "neutral", 0.0, 0.0,
            ("neutral", "neutrality", "expressionless", "no emotion", "blank", "poker face")),
    Emotion("happiness", "basic", 0.8, 0.4,
            ("happiness", "happy", "happily", "joy", "joyful", "joyous", "delighted", "delight", "glad",
             "smiling", "smile", "pleased", "cheerful", "amused", "amusement", "elated", "pleasure")),
    Emotion("sadness", "basic", -0.7, -0.4,
            ("sadness", "sad", "sadly", "sorrow", "sorrowful", "unhappy", "unhappiness", "grief", "grieving",
             "melancholy", "melancholic", "depressed", "gloomy", "downcast")),
    Emotion("surprise", "basic", 0.2, 0.8,
            ("surprise", "surprised", "surprising", "shocked", "shock", "astonished", "astonishment", "amazed",
             "amazement", "startled")),
    Emotion("fear", "basic", -0.6, 0.7,
            ("fear", "fearful", "fearfully", "afraid", "scared", "frightened", "terrified", "terror", "fright",
             "panic", "panicked")),
    Emotion("disgust", "basic", -0.7, 0.3,
            ("disgust", "disgusted", "disgustedly", "disgusting", "revulsion", "revolted", "repulsed",
             "grossed out")),
    Emotion("anger", "basic", -0.7, 0.7,
            ("anger", "angry", "angrily", "mad", "furious", "fury", "rage", "enraged", "irritated", "irritation",
             "annoyed", "annoyance", "hostile")),
    Emotion("contempt", "basic", -0.5, 0.1,
            ("contempt", "contemptuous", "contemptuously", "scorn", "scornful", "disdain", "disdainful",
             "sneer", "sneering")),
]

_MAFW: list[Emotion] = [
    Emotion("anxiety", "mafw", -0.5, 0.6, ("anxiety", "anxious", "nervous", "nervousness", "worried", "worry",
                                           "uneasy", "unease")),
    Emotion("helplessness", "mafw", -0.6, -0.4, ("helplessness", "helpless", "powerless", "powerlessness")),
    Emotion("disappointment", "mafw", -0.6, -0.3, ("disappointment", "disappointed", "let down", "dismay",
                                                   "dismayed")),
]

# Categories a benchmark scores beside the basic set. Calm: RAVDESS's 8-class protocol (Livingstone & Russo, PLoS ONE
# 13(5), 2018) keeps it apart from neutral; on the circumplex it sits pleasant and low in arousal (Russell 1980,
# Fig. 2: "calm", "relaxed", "serene").
_OTHER: list[Emotion] = [
    Emotion("calm", "other", 0.4, -0.6, ("calm", "calmness", "relaxed", "serene", "serenity", "tranquil")),
]

# Du, Tao & Martinez (2014), Table 1: the 15 compound categories and the basic emotions they combine.
_COMPOUND_SPECS: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[float, float] | None]] = [
    ("happily_surprised", ("happiness", "surprise"),
     ("happily surprised", "happy surprise", "happy and surprised", "pleasantly surprised",
      "pleasant surprise"), None),
    ("happily_disgusted", ("happiness", "disgust"), ("happily disgusted", "happy and disgusted"), None),
    ("sadly_fearful", ("sadness", "fear"), ("sadly fearful", "sad and fearful", "sad and afraid"), None),
    ("sadly_angry", ("sadness", "anger"), ("sadly angry", "sad and angry"), None),
    ("sadly_surprised", ("sadness", "surprise"), ("sadly surprised", "sad and surprised", "sad surprise"), None),
    ("sadly_disgusted", ("sadness", "disgust"), ("sadly disgusted", "sad and disgusted"), None),
    ("fearfully_angry", ("fear", "anger"), ("fearfully angry", "afraid and angry", "fearful and angry"), None),
    ("fearfully_surprised", ("fear", "surprise"),
     ("fearfully surprised", "fearful surprise", "afraid and surprised", "fearful and surprised"), None),
    ("fearfully_disgusted", ("fear", "disgust"), ("fearfully disgusted", "afraid and disgusted"), None),
    ("angrily_surprised", ("anger", "surprise"), ("angrily surprised", "angry and surprised", "angry surprise"),
     None),
    ("angrily_disgusted", ("anger", "disgust"), ("angrily disgusted", "angry and disgusted"), None),
    ("disgustedly_surprised", ("disgust", "surprise"),
     ("disgustedly surprised", "disgusted and surprised", "disgusted surprise"), None),
    ("appalled", ("disgust", "anger"), ("appalled", "appalling", "horrified"), (-0.8, 0.5)),
    ("hatred", ("anger", "disgust"), ("hatred", "hate", "hateful", "loathing"), (-0.8, 0.6)),
    ("awed", ("surprise", "fear"), ("awed", "awe", "in awe", "awestruck", "awe struck"), (0.4, 0.6)),
]


def _build_compounds(basic: dict[str, Emotion]) -> list[Emotion]:
    out = []
    for name, components, synonyms, anchor in _COMPOUND_SPECS:
        if anchor is None:
            v = sum(basic[c].valence for c in components) / len(components)
            a = sum(basic[c].arousal for c in components) / len(components)
            anchor = (round(v, 3), round(a, 3))
        out.append(Emotion(name, "compound", anchor[0], anchor[1], synonyms, components))
    return out


BASIC_EMOTIONS: tuple[str, ...] = tuple(e.name for e in _BASIC)  # neutral + the seven EMFACS emotions
MAFW_EMOTIONS: tuple[str, ...] = tuple(e.name for e in _MAFW)
_COMPOUND = _build_compounds({e.name: e for e in _BASIC})
COMPOUND_EMOTIONS: tuple[str, ...] = tuple(e.name for e in _COMPOUND)
OTHER_EMOTIONS: tuple[str, ...] = tuple(e.name for e in _OTHER)
EMOTIONS: dict[str, Emotion] = {e.name: e for e in (*_BASIC, *_MAFW, *_COMPOUND, *_OTHER)}


def normalize_text(text: str) -> str:
    """Case-, accent-width- and punctuation-insensitive form used for label lookup."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^a-z]+", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _synonym_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for emotion in EMOTIONS.values():
        for form in (emotion.name, emotion.display, *emotion.synonyms):
            key = normalize_text(form)
            if key in index and index[key] != emotion.name:
                raise AssertionError(f"synonym {form!r} maps to both {index[key]} and {emotion.name}")
            index[key] = emotion.name
    return index


@lru_cache(maxsize=1)
def _synonym_regex() -> re.Pattern[str]:
    forms = sorted(_synonym_index(), key=len, reverse=True)  # longest first: "happily surprised" over "happily"
    return re.compile(r"\b(?:" + "|".join(re.escape(f) for f in forms) + r")\b")


def canonical_emotion(text: str | None) -> str | None:
    """Map a label, synonym or short answer phrase to a canonical label, or None when unknown/ambiguous.

    ``"Happy"``, ``"JOY!"``, ``"happily-surprised"``, ``"The emotion is anger."`` all resolve; a phrase that
    names two different categories (``"happy or sad"``) does not.
    """
    if not text:
        return None
    key = normalize_text(text)
    if not key:
        return None
    index = _synonym_index()
    if key in index:
        return index[key]
    found = find_emotions(key)
    return found[0] if len(found) == 1 else None


def emotion_mentions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical label) of each emotion word or phrase in ``normalize_text(text)`` — positions are
    in the normalised text — in order, longest match first ("happily surprised" over "happily")."""
    index = _synonym_index()
    return [(m.start(), m.end(), index[m.group(0)]) for m in _synonym_regex().finditer(normalize_text(text))]


def find_emotions(text: str) -> list[str]:
    """Distinct canonical labels named in free text, in order of first mention (longest match wins)."""
    seen: list[str] = []
    for _, _, label in emotion_mentions(text):
        if label not in seen:
            seen.append(label)
    return seen


def get_emotion(name: str) -> Emotion:
    """The Emotion for a canonical label or any synonym; KeyError naming the input otherwise."""
    label = canonical_emotion(name)
    if label is None:
        raise KeyError(f"unknown emotion label: {name!r}")
    return EMOTIONS[label]


def display_name(label: str) -> str:
    return get_emotion(label).display


def va_anchor(label: str) -> tuple[float, float]:
    """(valence, arousal) circumplex anchor of a category, each in −1..1."""
    emotion = get_emotion(label)
    return emotion.valence, emotion.arousal


def va_quadrant(valence: float, arousal: float) -> str:
    """Circumplex quadrant name: 'neutral' near the origin, else e.g. 'positive-high'."""
    if abs(valence) < 0.1 and abs(arousal) < 0.1:
        return "neutral"
    return f"{'positive' if valence >= 0 else 'negative'}-{'high' if arousal >= 0 else 'low'}"
