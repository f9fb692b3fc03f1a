"""FACS knowledge: the Action Unit catalog, intensity scale, and emotion prototypes.

Sources
-------
* AU numbers, names and muscular basis: Ekman, Friesen & Hager, *Facial Action Coding System: The Manual*
  and *Investigator's Guide* (2002).
* Intensity scale A–E (trace, slight, marked/pronounced, severe/extreme, maximum): FACS 2002 Manual.
* Basic-emotion prototypes and their major variants: EMFACS-7 (Friesen & Ekman, 1983) as tabulated in the
  FACS Investigator's Guide (2002), "prototypes and major variants".
* Compound-emotion AU sets: Du, Tao & Martinez, PNAS 111(15), 2014, Table 1 (AUs used by ≥ 70 % of subjects).
* Du et al. (2014) also report basic-emotion AUs (e.g. happiness 12+25, sadness 4+15); they are kept as
  additional variants so that both traditions count as support.
* MAFW's anxiety, helplessness and disappointment have no published AU prototype; the sets below are
  heuristic (derived from fear and sadness prototypes) and marked ``established=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from emoreason.knowledge.taxonomy import EMOTIONS, canonical_emotion


@dataclass(frozen=True)
class ActionUnit:
    number: int
    name: str
    muscles: str
    region: str  # brows | eyes | cheeks | nose | mouth | chin | jaw | head
    aliases: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        return f"AU{self.number}"


_CATALOG: list[ActionUnit] = [
    ActionUnit(1, "inner brow raiser", "frontalis, pars medialis", "brows",
               ("inner brow raise", "inner brows raised", "raised inner brows", "inner brow raising")),
    ActionUnit(2, "outer brow raiser", "frontalis, pars lateralis", "brows",
               ("outer brow raise", "outer brows raised", "raised outer brows", "outer brow raising")),
    ActionUnit(4, "brow lowerer", "depressor glabellae, depressor supercilii, corrugator supercilii", "brows",
               ("brow lowering", "lowered brows", "brow furrow", "furrowed brows", "knitted brows", "brow knit")),
    ActionUnit(5, "upper lid raiser", "levator palpebrae superioris", "eyes",
               ("upper lid raise", "raised upper lids", "upper lid raising", "widened eyes")),
    ActionUnit(6, "cheek raiser", "orbicularis oculi, pars orbitalis", "cheeks",
               ("cheek raise", "raised cheeks", "cheek raising")),
    ActionUnit(7, "lid tightener", "orbicularis oculi, pars palpebralis", "eyes",
               ("lid tightening", "tightened lids", "tightened eyelids")),
    ActionUnit(9, "nose wrinkler", "levator labii superioris alaeque nasi", "nose",
               ("nose wrinkle", "nose wrinkling", "wrinkled nose")),
    ActionUnit(10, "upper lip raiser", "levator labii superioris", "mouth",
               ("upper lip raise", "raised upper lip", "upper lip raising")),
    ActionUnit(11, "nasolabial deepener", "zygomaticus minor", "mouth", ("nasolabial deepening",)),
    ActionUnit(12, "lip corner puller", "zygomaticus major", "mouth",
               ("lip corner pull", "lip corners pulled up", "lip corner pulling", "raised lip corners")),
    ActionUnit(13, "sharp lip puller", "levator anguli oris (caninus)", "mouth", ("cheek puffer",)),
    ActionUnit(14, "dimpler", "buccinator", "mouth", ("dimpling",)),
    ActionUnit(15, "lip corner depressor", "depressor anguli oris (triangularis)", "mouth",
               ("lip corner depression", "lip corners pulled down", "depressed lip corners", "lowered lip corners")),
    ActionUnit(16, "lower lip depressor", "depressor labii inferioris", "mouth",
               ("lower lip depression", "lowered lower lip")),
    ActionUnit(17, "chin raiser", "mentalis", "chin", ("chin raise", "raised chin", "chin raising", "chin boss")),
    ActionUnit(18, "lip puckerer", "incisivii labii superioris and inferioris", "mouth",
               ("lip pucker", "puckered lips")),
    ActionUnit(20, "lip stretcher", "risorius with platysma", "mouth",
               ("lip stretch", "stretched lips", "lip stretching")),
    ActionUnit(22, "lip funneler", "orbicularis oris", "mouth", ("lip funnel", "funneled lips")),
    ActionUnit(23, "lip tightener", "orbicularis oris", "mouth", ("lip tightening", "tightened lips")),
    ActionUnit(24, "lip pressor", "orbicularis oris", "mouth", ("lip press", "pressed lips", "lips pressed")),
    ActionUnit(25, "lips part", "depressor labii inferioris, or relaxation of mentalis or orbicularis oris",
               "mouth", ("lip parting", "parted lips", "lips parted", "lips parting")),
    ActionUnit(26, "jaw drop", "masseter; relaxed temporalis and internal pterygoid", "jaw",
               ("dropped jaw", "jaw dropping", "dropping jaw")),
    ActionUnit(27, "mouth stretch", "pterygoids, digastric", "jaw", ("mouth stretching", "stretched mouth")),
    ActionUnit(28, "lip suck", "orbicularis oris", "mouth", ("lips sucked",)),
    ActionUnit(41, "lid droop", "relaxation of levator palpebrae superioris", "eyes",
               ("drooping lids", "drooping eyelids")),
    ActionUnit(42, "slit", "orbicularis oculi", "eyes", ("slitted eyes",)),
    ActionUnit(43, "eyes closed", "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis",
               "eyes", ("eye closure", "closed eyes", "eyes closing")),
    ActionUnit(44, "squint", "orbicularis oculi, pars palpebralis", "eyes", ("squinting",)),
    ActionUnit(45, "blink", "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis",
               "eyes", ("blinking", "blinks")),
    ActionUnit(46, "wink", "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis",
               "eyes", ("winking",)),
]

ACTION_UNITS: dict[int, ActionUnit] = {au.number: au for au in _CATALOG}

# Every surface name of an AU (lowercase) -> AU number; used by the response parser.
AU_ALIASES: dict[str, int] = {}
for _au in _CATALOG:
    for _form in (_au.name, *_au.aliases):
        AU_ALIASES[_form.lower()] = _au.number

# AUs that say little about emotion on their own (eye closure and blinks happen in any state).
NON_EMOTIONAL_AUS: frozenset[int] = frozenset({43, 45, 46})

INTENSITY_LETTERS = "ABCDE"
INTENSITY_WORDS = {"A": "trace", "B": "slight", "C": "marked", "D": "severe", "E": "maximum"}


def get_au(number: int) -> ActionUnit:
    if number not in ACTION_UNITS:
        raise KeyError(f"AU{number} is not in the FACS catalog")
    return ACTION_UNITS[number]


def au_name(number: int) -> str:
    return get_au(number).name


def intensity_letter(value: float, threshold: float = 0.5) -> str | None:
    """0–5 intensity (DISFA/BP4D scale) → FACS letter A–E; None below ``threshold`` (AU absent)."""
    if value is None or value < threshold:
        return None
    level = min(5, max(1, int(round(value))))
    return INTENSITY_LETTERS[level - 1]


def intensity_value(letter: str) -> int:
    """FACS letter A–E → 1–5."""
    letter = letter.strip().upper()
    if len(letter) != 1 or letter not in INTENSITY_LETTERS:
        raise ValueError(f"intensity must be one of A–E, got {letter!r}")
    return INTENSITY_LETTERS.index(letter) + 1


@dataclass(frozen=True)
class Prototype:
    emotion: str
    aus: frozenset[int]
    source: str
    established: bool = True


def _p(emotion: str, aus: Iterable[int], source: str, established: bool = True) -> Prototype:
    return Prototype(emotion, frozenset(aus), source, established)


_EMFACS = "EMFACS-7 (Friesen & Ekman 1983)"
_DU = "Du, Tao & Martinez (2014), Table 1"

# First entry per emotion is the canonical prototype; the rest are the literature's variants.
EMOTION_PROTOTYPES: dict[str, tuple[Prototype, ...]] = {
    "happiness": (_p("happiness", {6, 12}, _EMFACS), _p("happiness", {12}, _EMFACS),
                  _p("happiness", {12, 25}, _DU), _p("happiness", {6, 12, 25}, _DU)),
    "sadness": (_p("sadness", {1, 4, 15}, _EMFACS), _p("sadness", {1, 4, 11, 15}, _EMFACS),
                _p("sadness", {1, 4, 15, 17}, _EMFACS), _p("sadness", {6, 15}, _EMFACS),
                _p("sadness", {11, 17}, _EMFACS), _p("sadness", {4, 15}, _DU)),
    "surprise": (_p("surprise", {1, 2, 5, 26}, _EMFACS), _p("surprise", {1, 2, 5, 27}, _EMFACS),
                 _p("surprise", {1, 2, 26}, _EMFACS), _p("surprise", {5, 26}, _EMFACS),
                 _p("surprise", {1, 2, 25, 26}, _DU)),
    "fear": (_p("fear", {1, 2, 4, 5, 7, 20, 26}, _EMFACS), _p("fear", {1, 2, 4, 5, 20, 25}, _EMFACS),
             _p("fear", {1, 2, 4, 5, 25}, _EMFACS), _p("fear", {1, 2, 4, 5}, _EMFACS),
             _p("fear", {5, 20}, _EMFACS), _p("fear", {1, 4, 20, 25}, _DU)),
    "anger": (_p("anger", {4, 5, 7, 23}, _EMFACS), _p("anger", {4, 5, 7, 24}, _EMFACS),
              _p("anger", {4, 5, 7, 10, 23, 25}, _EMFACS), _p("anger", {4, 5, 7, 17, 23}, _EMFACS),
              _p("anger", {4, 7, 24}, _DU)),
    "disgust": (_p("disgust", {9, 15, 16}, _EMFACS), _p("disgust", {9}, _EMFACS),
                _p("disgust", {9, 16, 25}, _EMFACS), _p("disgust", {10}, _EMFACS),
                _p("disgust", {10, 16, 25}, _EMFACS), _p("disgust", {9, 10, 17}, _DU)),
    # Contempt is unilateral (R12A+R14A); unilaterality is not coded in AU numbers here.
    "contempt": (_p("contempt", {12, 14}, _EMFACS), _p("contempt", {14}, _EMFACS)),
    "anxiety": (_p("anxiety", {1, 4, 20}, "heuristic (fear-derived, lower intensity)", False),
                _p("anxiety", {1, 4, 24}, "heuristic", False)),
    "helplessness": (_p("helplessness", {1, 4, 15, 43}, "heuristic (sadness-derived)", False),
                     _p("helplessness", {1, 15, 41}, "heuristic", False)),
    "disappointment": (_p("disappointment", {15, 17}, "heuristic (sadness-derived)", False),
                       _p("disappointment", {4, 15, 24}, "heuristic", False)),
}

# Du, Tao & Martinez (2014), Table 1: prototypical AUs of the compound categories.
COMPOUND_PROTOTYPES: dict[str, tuple[Prototype, ...]] = {
    name: (_p(name, aus, _DU),)
    for name, aus in {
        "happily_surprised": {1, 2, 12, 25},
        "happily_disgusted": {10, 12, 25},
        "sadly_fearful": {1, 4, 20, 25},
        "sadly_angry": {4, 15},
        "sadly_surprised": {1, 4, 25, 26},
        "sadly_disgusted": {4, 10},
        "fearfully_angry": {4, 20, 25},
        "fearfully_surprised": {1, 2, 5, 20, 25},
        "fearfully_disgusted": {1, 4, 10, 20, 25},
        "angrily_surprised": {4, 25, 26},
        "angrily_disgusted": {4, 10, 17},
        "disgustedly_surprised": {1, 2, 5, 10},
        "appalled": {4, 10},
        "hatred": {4, 10},
        "awed": {1, 2, 5, 25},
    }.items()
}

_ALL_PROTOTYPES: dict[str, tuple[Prototype, ...]] = {**EMOTION_PROTOTYPES, **COMPOUND_PROTOTYPES}
# Categories with no facial prototype, shown by a face without emotion-relevant AUs: neutral, and calm (RAVDESS's
# low-arousal baseline beside neutral, Livingstone & Russo, PLoS ONE 2018; no EMFACS-7 prediction either).
EXPRESSIONLESS = frozenset({"neutral", "calm"})


def prototypes_for(emotion: str) -> tuple[Prototype, ...]:
    """Prototype and variants of an emotion (empty for neutral)."""
    label = canonical_emotion(emotion)
    if label is None:
        raise KeyError(f"unknown emotion label: {emotion!r}")
    return _ALL_PROTOTYPES.get(label, ())


def _emotional(aus: Iterable[int] | Mapping[int, float]) -> frozenset[int]:
    return frozenset(int(a) for a in aus) - NON_EMOTIONAL_AUS


def prototype_scores(aus: Iterable[int] | Mapping[int, float],
                     emotions: Iterable[str] | None = None) -> dict[str, float]:
    """How well an observed AU set supports each emotion, in 0..1.

    Per emotion: the best F1 between the observed (emotion-relevant) AUs and any of its prototypes or
    variants. Neutral and calm (``EXPRESSIONLESS``) score 1 with no emotion-relevant AU and fall as AUs are added.
    ``aus`` may be a set of AU numbers or a {AU: intensity} mapping (AUs with intensity > 0 count).
    """
    if isinstance(aus, Mapping):
        aus = [a for a, v in aus.items() if v and v > 0]
    observed = _emotional(aus)
    names = list(emotions) if emotions is not None else list(EMOTIONS)
    scores: dict[str, float] = {}
    for name in names:
        label = canonical_emotion(name) or name
        if label in EXPRESSIONLESS:
            scores[label] = 1.0 / (1.0 + len(observed))
            continue
        best = 0.0
        for proto in _ALL_PROTOTYPES.get(label, ()):
            overlap = len(observed & proto.aus)
            if overlap:
                f1 = 2 * overlap / (len(observed) + len(proto.aus))
                best = max(best, f1)
        scores[label] = round(best, 6)
    return scores


def is_consistent(aus: Iterable[int] | Mapping[int, float], emotion: str, min_score: float = 0.5,
                  margin: float = 0.35) -> bool:
    """Does this AU set support that emotion (FACS prototypes)?

    True when the emotion's prototype score reaches ``min_score`` and no other category beats it by more than
    ``margin``. Neutral and calm are consistent only with no emotion-relevant AU. Unknown labels are never consistent.
    """
    label = canonical_emotion(emotion)
    if label is None:
        return False
    scores = prototype_scores(aus)
    if label in EXPRESSIONLESS:
        return scores[label] == 1.0
    own = scores.get(label, 0.0)
    best_other = max((s for name, s in scores.items() if name != label and name not in EXPRESSIONLESS), default=0.0)
    return own >= min_score and best_other - own <= margin
