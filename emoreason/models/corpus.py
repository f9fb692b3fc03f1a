"""The text the embedded tiny tokenizer is trained on: the project's own domain language.

Built from the knowledge base and the response formatter, so the tokenizer compresses what the models
read and write (AU codes and names, emotion words, the prompt and the response format). Deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from emoreason.knowledge import ACTION_UNITS, EMOTIONS, prototypes_for
from emoreason.knowledge.facs import INTENSITY_LETTERS, INTENSITY_WORDS
from emoreason.reasoning import (
    AUObservation,
    ResponseContent,
    build_instruction,
    default_conclusion,
    default_interpretation,
    format_response,
)
from emoreason.reasoning.prompts import SYSTEM_PROMPT

_GENERAL = (
    "The face is seen from the front. The person looks at the camera and then turns slightly to the left.",
    "Over the clip the expression changes: it starts neutral, builds to a peak and relaxes again.",
    "Evidence from the eyes and the mouth is combined before a conclusion is drawn.",
    "A genuine smile involves the muscles around the eyes as well as the lip corners.",
    "Short videos of faces are sampled at a few frames per second; each frame is an image.",
    "The answer names one emotion. Valence and arousal are numbers between -1 and 1.",
    "Hello! How can I help you today? Please describe what you see in the picture.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 30 32 43 45 46.",
)


def corpus_lines() -> Iterator[str]:
    yield SYSTEM_PROMPT
    yield from _GENERAL
    for media in ("video", "image", "frames", None):
        for style in ("tags", "json"):
            yield build_instruction(media, labels=list(EMOTIONS)[:8], style=style)
            yield build_instruction(media, labels=None, style=style)
        for task in ("au_perception", "emotion"):
            yield build_instruction(media, labels=list(EMOTIONS)[:8], task=task)
    for au in ACTION_UNITS.values():
        yield f"{au.code} ({au.name}) is produced by the {au.muscles}; it acts on the {au.region}."
        yield " ".join((au.name, *au.aliases))
    for letter in INTENSITY_LETTERS:
        yield f"Intensity {letter} means {INTENSITY_WORDS[letter]}."
    for emotion in EMOTIONS.values():
        yield f"{emotion.display}: " + ", ".join(emotion.synonyms)
        for proto in prototypes_for(emotion.name):
            aus = sorted(proto.aus)
            for style, (onset, apex, unit) in itertools.product(("tags", "json"), ((2, 6, "frame"), (5, 11, "frame"),
                                                                                   (0.4, 1.1, "s"), (1.2, 2.5, "s"))):
                observations = [
                    AUObservation(au, INTENSITY_LETTERS[int(au + apex) % 5], onset + i / 10, apex + i / 10, unit=unit)
                    for i, au in enumerate(aus)
                ]
                yield format_response(ResponseContent(
                    emotion=emotion.name, observations=observations,
                    interpretation=default_interpretation(aus, emotion.name),
                    conclusion=default_conclusion(emotion.name),
                    absent_aus=[4] if 4 not in proto.aus else [12],
                    valence=emotion.valence, arousal=emotion.arousal), style=style)
