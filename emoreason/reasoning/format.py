"""The response format every model output follows, and the formatter that renders it.

Tag variant (what SFT targets, GRPO rewards, eval and serving read)::

    <think>
    Observations: AU6 (cheek raiser, C) and AU12 (lip corner puller, D) rise from 0.4 s and peak at 1.1 s.
    Interpretation: <how the AU pattern combines, what it rules out>
    Conclusion: <the emotion and why>
    </think>
    <answer>happiness</answer>

Audio-visual rationales add an optional ``Vocal cues:`` line after the observations (claims about pitch, loudness,
rate and voice quality; see ``emoreason.reasoning.vocal``); text-only rationales are unchanged.

JSON variant: the same ``<think>`` block, then ``<answer>{"emotion": ..., "aus": [...], "valence": ...,
"arousal": ...}</answer>``. The three-part reasoning follows ExpLLM's observation → interpretation →
conclusion chain (Lan et al., 2024).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from emoreason.knowledge import ACTION_UNITS, EMOTIONS, au_name, display_name, get_emotion, prototypes_for
from emoreason.reasoning.vocal import VOCAL_SECTION

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
SECTION_NAMES = ("Observations", "Interpretation", "Conclusion")
STYLES = ("tags", "json")


@dataclass
class AUObservation:
    """One AU as seen in a clip: FACS intensity letter and, for videos, timing — in seconds from the start
    (``unit="s"``) or as numbers of the frames the model is shown (``unit="frame"``), never source frames."""

    au: int
    intensity: str | None = None  # "A".."E"
    onset: float | None = None
    apex: float | None = None
    offset: float | None = None
    unit: str = "frame"  # "frame" | "s"

    def _at(self, value: float) -> str:
        return f"{value:.1f} s" if self.unit == "s" else f"frame {int(value)}"

    def render(self) -> str:
        head = f"AU{self.au} ({au_name(self.au)}" + (f", {self.intensity})" if self.intensity else ")")
        if self.onset is not None and self.apex is not None:
            timing = f" rises from {self._at(self.onset)} and peaks at {self._at(self.apex)}"
            if self.offset is not None:
                timing += f", fading by {self._at(self.offset)}"
            return head + timing
        if self.apex is not None:
            return head + f" peaks at {self._at(self.apex)}"
        return head + " is visible"


@dataclass
class ResponseContent:
    """Structured content of one response; ``observations`` may be pre-rendered text."""

    emotion: str
    observations: list[AUObservation] | str
    interpretation: str
    conclusion: str
    absent_aus: Sequence[int] = field(default_factory=tuple)
    valence: float | None = None
    arousal: float | None = None
    aus: Sequence[int] | None = None  # AUs for the JSON answer when observations are pre-rendered text
    vocal_cues: str | None = None  # audio-visual rationales: the "Vocal cues" part, after the observations

    @property
    def observed_aus(self) -> list[int]:
        if self.aus is not None:
            return sorted(set(self.aus))
        if isinstance(self.observations, str):
            return []
        return sorted({o.au for o in self.observations})


def render_observations(observations: Sequence[AUObservation], absent_aus: Sequence[int] = ()) -> str:
    if observations:
        text = "; ".join(o.render() for o in observations) + "."
    else:
        text = "No facial action unit departs from the neutral face."
    if absent_aus:
        listed = ", ".join(f"AU{a} ({au_name(a)})" for a in absent_aus)
        text += f" There is no {listed}." if len(absent_aus) == 1 else f" There is no sign of {listed}."
    return text


def default_interpretation(aus: Sequence[int], emotion: str) -> str:
    """A plain interpretation tying observed AUs to the emotion's FACS prototype."""
    label = get_emotion(emotion).name
    if label == "neutral" or not aus:
        return "Without emotion-relevant muscle activity the face stays at rest."
    best = max(prototypes_for(label), key=lambda p: len(p.aus & set(aus)), default=None)
    shared = sorted(best.aus & set(aus)) if best else []
    if shared:
        codes = "+".join(str(a) for a in shared)
        return f"The combination AU{codes} matches the FACS prototype of {display_name(label)}."
    return f"The observed pattern is closest to {display_name(label)}."


def default_conclusion(emotion: str) -> str:
    return f"The expression shows {display_name(emotion)}."


def render_think(content: ResponseContent) -> str:
    obs = content.observations
    obs_text = obs if isinstance(obs, str) else render_observations(obs, content.absent_aus)
    names, parts = list(SECTION_NAMES), [obs_text, content.interpretation, content.conclusion]
    if content.vocal_cues:
        names.insert(1, VOCAL_SECTION)
        parts.insert(1, content.vocal_cues)
    return "\n".join(f"{name}: {text.strip()}" for name, text in zip(names, parts, strict=True))


def answer_json(content: ResponseContent) -> str:
    payload: dict[str, object] = {"emotion": display_name(content.emotion), "aus": content.observed_aus}
    if content.valence is not None:
        payload["valence"] = round(float(content.valence), 3)
    if content.arousal is not None:
        payload["arousal"] = round(float(content.arousal), 3)
    return json.dumps(payload, ensure_ascii=False)


def format_response(content: ResponseContent, style: str = "tags") -> str:
    """Render a response in the project's format (``style`` "tags" or "json")."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if content.emotion not in EMOTIONS:
        content = ResponseContent(**{**content.__dict__, "emotion": get_emotion(content.emotion).name})
    answer = display_name(content.emotion) if style == "tags" else answer_json(content)
    return f"{THINK_OPEN}\n{render_think(content)}\n{THINK_CLOSE}\n{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def answer_json_schema(labels: Sequence[str] | None = None) -> dict:
    """JSON Schema of the JSON variant's answer (what :func:`answer_json` writes): the emotion (one of
    ``labels`` when given, as the prompt lists them), the AUs by FACS number, valence and arousal in [-1, 1]."""
    emotion: dict = ({"type": "string", "enum": [display_name(x) for x in labels]} if labels
                     else {"type": "string", "minLength": 1, "maxLength": 40})
    unit = {"type": "number", "minimum": -1, "maximum": 1}
    return {"type": "object", "additionalProperties": False, "required": ["emotion", "aus"],
            "properties": {"emotion": emotion,
                           "aus": {"type": "array", "items": {"type": "integer", "enum": sorted(ACTION_UNITS)}},
                           "valence": unit, "arousal": unit}}


def json_response_format(labels: Sequence[str] | None = None, think_max_tokens: int | None = None) -> dict:
    """An OpenAI ``response_format`` that makes a guided-decoding server (vLLM with xgrammar) produce the JSON
    variant: free reasoning inside ``<think>`` (at most ``think_max_tokens`` tokens, so the answer always
    fits), then ``<answer>`` holding JSON that satisfies :func:`answer_json_schema`, then the end of the reply.

    A plain ``json_schema`` response format would force the whole reply to be JSON and drop the reasoning the
    model was trained to write first; the structural tag keeps both and constrains the answer."""
    think: dict = {"type": "any_text"}
    if think_max_tokens is not None:
        think["max_tokens"] = int(think_max_tokens)
    answer = {"type": "json_schema", "json_schema": answer_json_schema(labels), "max_whitespace_cnt": 1}
    return {"type": "structural_tag", "format": {"type": "sequence", "elements": [
        {"type": "tag", "begin": f"{THINK_OPEN}\n", "content": think, "end": f"\n{THINK_CLOSE}\n"},
        {"type": "tag", "begin": ANSWER_OPEN, "content": answer, "end": ANSWER_CLOSE}]}}
