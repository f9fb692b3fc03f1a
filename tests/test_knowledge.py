"""Emotion taxonomy, per-dataset maps and FACS prototypes against the published tables."""

from __future__ import annotations

import pytest

from emoreason.knowledge import (
    ACTION_UNITS,
    BASIC_EMOTIONS,
    COMPOUND_EMOTIONS,
    COMPOUND_PROTOTYPES,
    EMOTION_PROTOTYPES,
    EMOTIONS,
    UnknownLabelError,
    canonical_emotion,
    dataset_label_set,
    intensity_letter,
    intensity_value,
    is_consistent,
    map_dataset_label,
    prototype_scores,
    va_anchor,
    va_quadrant,
)

SYNONYMS = [
    ("happy", "happiness"), ("Joy", "happiness"), ("joyful", "happiness"), ("smiling", "happiness"),
    ("HAPPINESS.", "happiness"), ("angry", "anger"), ("mad", "anger"), ("Anger!", "anger"), ("sad", "sadness"),
    ("sorrow", "sadness"), ("surprised", "surprise"), ("shocked", "surprise"), ("afraid", "fear"),
    ("scared", "fear"), ("fearful", "fear"), ("disgusted", "disgust"), ("contemptuous", "contempt"),
    ("neutral", "neutral"), ("calm", "calm"), ("anxious", "anxiety"), ("helpless", "helplessness"),
    ("disappointed", "disappointment"), ("happily surprised", "happily_surprised"),
    ("Happily-Surprised", "happily_surprised"), ("happily_disgusted", "happily_disgusted"),
    ("sadly angry", "sadly_angry"), ("awe", "awed"), ("appalled", "appalled"), ("hatred", "hatred"),
    ("  the emotion is: fear  ", "fear"), ("ｈａｐｐｙ", "happiness"),
]


@pytest.mark.parametrize(("raw", "label"), SYNONYMS)
def test_synonyms(raw, label):
    assert canonical_emotion(raw) == label


@pytest.mark.parametrize("raw", ["", "   ", "banana", "happy or sad", "angry and afraid and sad", None, "12"])
def test_unknown_or_ambiguous_is_none(raw):
    assert canonical_emotion(raw) is None


def test_category_inventory():
    assert set(BASIC_EMOTIONS) == {"neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger",
                                   "contempt"}
    assert len(COMPOUND_EMOTIONS) == 15  # Du, Tao & Martinez (2014): 15 compound categories
    for name in COMPOUND_EMOTIONS:
        assert all(c in BASIC_EMOTIONS for c in EMOTIONS[name].components)


DATASET_CASES = [
    ("dfew", 1, "happiness"), ("dfew", "3", "neutral"), ("dfew", 7, "fear"),
    ("ferv39k", 0, "anger"), ("ferv39k", "Happy", "happiness"), ("ferv39k", 6, "surprise"),
    ("mafw", 8, "contempt"), ("mafw", 11, "disappointment"), ("mafw", "helplessness", "helplessness"),
    ("rafdb", 1, "surprise"), ("rafdb", 7, "neutral"), ("rafdb_compound", 1, "happily_surprised"),
    ("rafdb_compound", 11, "disgustedly_surprised"),
    ("affectnet8", 7, "contempt"), ("affectnet8", 9, None), ("affectnet7", 1, "happiness"),
    ("ckplus", 2, "contempt"), ("ckplus", "7", "surprise"), ("afew", "Sad", "sadness"),
    ("affwild2_expr", 4, "happiness"), ("affwild2_expr", -1, None), ("affwild2_expr", 7, None),
    ("fea20k", "Angry", "anger"), ("synthfacs", "fearfully_surprised", "fearfully_surprised"),
]


@pytest.mark.parametrize(("dataset", "raw", "label"), DATASET_CASES)
def test_dataset_maps(dataset, raw, label):
    assert map_dataset_label(dataset, raw) == label


def test_dataset_unknown_label_names_place():
    with pytest.raises(UnknownLabelError, match=r"dfew: unknown label 9 \(set_1.csv line 4\)"):
        map_dataset_label("dfew", 9, where="set_1.csv line 4")
    with pytest.raises(UnknownLabelError):
        map_dataset_label("affectnet7", "contempt")
    assert len(dataset_label_set("mafw")) == 11 and len(dataset_label_set("affectnet7")) == 7


# Published combinations: EMFACS prototypes (DESIGN.md card) and Du, Tao & Martinez 2014 Table 1.
PUBLISHED = {
    "happiness": {6, 12}, "sadness": {1, 4, 15}, "surprise": {1, 2, 5, 26}, "fear": {1, 2, 4, 5, 7, 20, 26},
    "anger": {4, 5, 7, 23}, "disgust": {9, 15, 16}, "contempt": {12, 14},
}
DU_2014 = {
    "happily_surprised": {1, 2, 12, 25}, "happily_disgusted": {10, 12, 25}, "sadly_fearful": {1, 4, 20, 25},
    "sadly_angry": {4, 15}, "sadly_surprised": {1, 4, 25, 26}, "sadly_disgusted": {4, 10},
    "fearfully_angry": {4, 20, 25}, "fearfully_surprised": {1, 2, 5, 20, 25},
    "fearfully_disgusted": {1, 4, 10, 20, 25}, "angrily_surprised": {4, 25, 26}, "angrily_disgusted": {4, 10, 17},
    "disgustedly_surprised": {1, 2, 5, 10}, "appalled": {4, 10}, "hatred": {4, 10}, "awed": {1, 2, 5, 25},
}


def test_prototypes_match_published_tables():
    for emotion, aus in PUBLISHED.items():
        assert EMOTION_PROTOTYPES[emotion][0].aus == aus
        assert prototype_scores(aus)[emotion] == 1.0
    for emotion, aus in DU_2014.items():
        assert COMPOUND_PROTOTYPES[emotion][0].aus == aus
    for protos in (*EMOTION_PROTOTYPES.values(), *COMPOUND_PROTOTYPES.values()):
        for proto in protos:
            assert proto.aus <= set(ACTION_UNITS), proto


def test_prototype_scores_rank_the_right_emotion():
    for emotion, aus in PUBLISHED.items():
        scores = prototype_scores(aus, emotions=list(PUBLISHED))
        assert max(scores, key=scores.get) == emotion
    assert prototype_scores(set())["neutral"] == 1.0
    assert prototype_scores({45})["neutral"] == 1.0  # a blink is not an expression
    assert prototype_scores({6: 2.0, 12: 3.5, 4: 0.0})["happiness"] == 1.0


@pytest.mark.parametrize(("aus", "emotion", "expected"), [
    ({6, 12}, "happiness", True), ({12}, "happiness", True), ({6, 12}, "anger", False),
    ({1, 4, 15}, "sadness", True), ({1, 4, 15}, "happiness", False), ({4, 5, 7, 23}, "anger", True),
    ({1, 2, 5, 26}, "surprise", True), ({9, 15, 16}, "disgust", True), (set(), "neutral", True),
    ({6, 12}, "neutral", False), ({6, 12}, "not-an-emotion", False),
])
def test_consistency(aus, emotion, expected):
    assert is_consistent(aus, emotion) is expected


def test_intensity_scale():
    assert [intensity_letter(v) for v in (0, 0.4, 1, 2.4, 3, 4, 5, 7)] == [None, None, "A", "B", "C", "D", "E", "E"]
    assert [intensity_value(x) for x in "ABCDE"] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        intensity_value("F")


def test_va_anchors():
    for name in EMOTIONS:
        v, a = va_anchor(name)
        assert -1 <= v <= 1 and -1 <= a <= 1
    assert va_quadrant(*va_anchor("happiness")) == "positive-high"
    assert va_quadrant(*va_anchor("sadness")) == "negative-low"
    assert va_quadrant(*va_anchor("neutral")) == "neutral"


def test_calm_is_judged_like_neutral_by_the_au_prototypes():
    """Calm (RAVDESS's 8th class) has no EMFACS prototype: like neutral it is consistent with a face without
    emotion-relevant AUs, not with a smile — otherwise au_consistency pays 0 for every calm answer, right or wrong."""
    from emoreason.knowledge import is_consistent, prototype_scores

    assert prototype_scores([], emotions=["calm"]) == {"calm": 1.0}
    assert prototype_scores({6: 3.0, 12: 3.0}, emotions=["calm"])["calm"] < 0.5
    assert is_consistent([], "calm") and not is_consistent([6, 12], "calm")
    assert is_consistent([6, 12], "happiness")  # unchanged for the others
