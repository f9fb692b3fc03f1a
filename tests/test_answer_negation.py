"""Answer parsing respects negation: a corpus of answer phrasings, each with the emotion it must give.

The rule (emoreason/reasoning/parser.py, ``answer_emotion``): an emotion named under a negation in its own clause
("not happy", "it is not anger", "neither X nor Y", "not really sad", "anything but calm") is not the answer; a
clause break ("but", "rather", ",", ";") ends the negation's scope, so "not anger but disgust" answers disgust and
"not sure, but happiness" answers happiness (hedging is not negation). Affirming idioms ("no doubt it is anger")
are not negations; a hedged emotion ("cannot rule out anger") gives way to an affirmed one. A negated answer with
nothing affirmed gives no emotion: the format stays valid, the answer is invalid (issue ``negated_answer``)."""

from __future__ import annotations

import pytest

from emoreason.reasoning import parse_response

THINK = "<think>Observations: AU6 and AU12 rise.\nInterpretation: x.\nConclusion: y.</think>"

CORPUS = [
    # plain answers still parse
    ("happiness", "happiness"),
    ("Happy", "happiness"),
    ("The emotion is anger.", "anger"),
    ("no emotion", "neutral"),  # a synonym of neutral, not a negation
    ("unhappy", "sadness"),  # a synonym, not "un-" + happy
    ("happily surprised", "happily_surprised"),
    ("maybe happiness", "happiness"),
    ("probably fear", "fear"),
    # negated: no emotion
    ("not happy", None),
    ("Not happy.", None),
    ("It is not anger", None),
    ("it is not anger.", None),
    ("not really sad", None),
    ("not at all surprised", None),
    ("isn't angry", None),
    ("The person doesn't look fearful", None),
    ("neither happy nor sad", None),
    ("Neither anger nor disgust.", None),
    ("nor sad", None),
    ("no sadness", None),
    ("never happy", None),
    ("hardly happy", None),
    ("anything but calm", None),
    ("far from happy", None),
    ("without fear", None),
    ("not neutral", None),
    ("not unhappy", None),
    # a negation whose scope a clause break ends: the affirmed emotion is the answer
    ("not anger but disgust", "disgust"),
    ("not anger, but disgust", "disgust"),
    ("disgust, not anger", "disgust"),
    ("disgust rather than anger", "disgust"),
    ("surprise instead of fear", "surprise"),
    ("not happy; sad", "sadness"),
    ("neither anger nor disgust, but contempt", "contempt"),
    ("not sure, but happiness", "happiness"),
    ("I'm not certain; sadness", "sadness"),
    ("sadness (not anger)", "sadness"),
    # affirming idioms that contain a negation word are not negations
    ("No doubt it is anger", "anger"),
    ("no doubt, happiness", "happiness"),
    ("without a doubt fear", "fear"),
    ("without doubt anger", "anger"),
    ("no question: disgust", "disgust"),
    ("none other than surprise", "surprise"),
    # a hedge names a possibility, not the answer: an affirmed emotion beside it wins
    ("I cannot rule out anger, but it's happiness", "happiness"),
    ("I can't rule out fear, but surprise", "surprise"),
    ("could be anger, but most likely fear", "fear"),
    ("happiness, maybe surprise", "happiness"),
    ("cannot rule out sadness", "sadness"),  # a hedge alone is still the model's answer
    ("might be fear", "fear"),
    ("maybe not happy", None),  # a negated hedge is a negation
    # ruling out is a negation
    ("ruling out anger", None),
    ("anger is ruled out", None),
    ("anger ruled out; fear", "fear"),
    # two affirmed emotions stay ambiguous
    ("happy or sad", None),
    ("not anger: happiness or sadness", None),
    ("not only anger but also fear", None),
    ("maybe anger, maybe fear", None),
]


@pytest.mark.parametrize(("answer", "emotion"), CORPUS)
def test_answer_phrasings(answer, emotion):
    r = parse_response(f"{THINK}<answer>{answer}</answer>")
    assert r.emotion == emotion, (answer, r.issues)
    assert r.format_ok, (answer, r.issues)  # format is about the tags, not the answer's validity


@pytest.mark.parametrize("answer", ["not happy", "It is not anger", "neither happy nor sad", "not really sad"])
def test_negated_answer_is_flagged(answer):
    r = parse_response(f"{THINK}<answer>{answer}</answer>")
    assert r.emotion is None and "negated_answer" in r.issues and r.emotion_raw == answer


def test_negation_in_json_and_fallback_answers():
    assert parse_response(f'{THINK}<answer>{{"emotion": "not happy"}}</answer>').emotion is None
    assert parse_response('{"emotion": "not happy", "reasoning": "x"}').emotion is None
    assert parse_response("The answer is: not angry").emotion is None
    assert parse_response("The answer is: angry").emotion == "anger"


def test_negation_in_the_reasoning_does_not_touch_the_answer():
    r = parse_response("<think>Not anger: no AU4. AU6 and AU12 rise.</think><answer>happiness</answer>")
    assert r.emotion == "happiness" and r.aus == [6, 12] and r.negated_aus == [4]
