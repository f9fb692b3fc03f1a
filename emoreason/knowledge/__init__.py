"""The project's single source of truth for emotion labels and FACS knowledge.

Everything that names an emotion or an Action Unit (CoT synthesis, rewards, metrics, prompts, parsers)
imports it from here.
"""

from emoreason.knowledge.coded_aus import CODED_AUS, OCCURRENCE_ONLY, coded_aus
from emoreason.knowledge.facs import (
    ACTION_UNITS,
    AU_ALIASES,
    COMPOUND_PROTOTYPES,
    EMOTION_PROTOTYPES,
    ActionUnit,
    Prototype,
    au_name,
    get_au,
    intensity_letter,
    intensity_value,
    is_consistent,
    prototype_scores,
    prototypes_for,
)
from emoreason.knowledge.label_maps import (
    DATASET_LABEL_MAPS,
    UnknownLabelError,
    dataset_label_set,
    map_dataset_label,
    prediction_in_label_set,
)
from emoreason.knowledge.taxonomy import (
    BASIC_EMOTIONS,
    COMPOUND_EMOTIONS,
    EMOTIONS,
    MAFW_EMOTIONS,
    OTHER_EMOTIONS,
    Emotion,
    canonical_emotion,
    display_name,
    emotion_mentions,
    find_emotions,
    get_emotion,
    va_anchor,
    va_quadrant,
)

__all__ = [
    "ACTION_UNITS",
    "AU_ALIASES",
    "BASIC_EMOTIONS",
    "CODED_AUS",
    "COMPOUND_EMOTIONS",
    "COMPOUND_PROTOTYPES",
    "DATASET_LABEL_MAPS",
    "EMOTIONS",
    "EMOTION_PROTOTYPES",
    "MAFW_EMOTIONS",
    "OTHER_EMOTIONS",
    "OCCURRENCE_ONLY",
    "ActionUnit",
    "Emotion",
    "Prototype",
    "UnknownLabelError",
    "au_name",
    "canonical_emotion",
    "coded_aus",
    "dataset_label_set",
    "display_name",
    "emotion_mentions",
    "find_emotions",
    "get_au",
    "get_emotion",
    "intensity_letter",
    "intensity_value",
    "is_consistent",
    "prediction_in_label_set",
    "map_dataset_label",
    "prototype_scores",
    "prototypes_for",
    "va_anchor",
    "va_quadrant",
]
