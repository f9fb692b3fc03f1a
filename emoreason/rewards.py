"""GRPO rewards, a registry by name: ``get_reward(name, **options)``.

Every reward follows TRL's convention ``fn(prompts, completions, **columns) -> list[float | None]``: TRL passes
every dataset column except ``prompt`` as a keyword list, one value per completion. Rewards are total — any
completion string (empty, truncated, 100 kB of garbage) gets a number — and return ``None`` for rows whose
ground truth lacks the field the reward needs, which TRL then leaves out of that reward's mean.

* ``format`` — tags present, ordered, one answer; full credit needs the three reasoning sections.
* ``emotion`` — canonical-label match (``emoreason.knowledge``), optional soft credit for the same
  valence–arousal quadrant or a label inside the true compound (and vice versa).
* ``au_f1`` — 2·Fβ − 1 between non-negated claimed AUs and ground-truth AUs (Facial-R1's AU reward), optionally
  weighting each hit by how close its claimed intensity letter is to the true intensity.
* ``au_consistency`` — how well the claimed AUs support the answered emotion (FACS prototype score).
* ``valence_arousal`` — 1 − mean absolute error / 2 of predicted (JSON answer, else the answer's anchor) VA.
* ``length`` — 0 normally, down to −1 for overlong or repetitive completions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial

from emoreason.knowledge import EMOTIONS, canonical_emotion, prototype_scores, va_anchor, va_quadrant
from emoreason.knowledge.facs import intensity_letter, intensity_value
from emoreason.reasoning import ParsedResponse, parse_response

RewardFn = Callable[..., list[float | None]]
_REGISTRY: dict[str, Callable[..., float | None]] = {}


def completion_text(completion: object) -> str:
    """Text of a TRL completion: a string, or conversational ``[{"role": "assistant", "content": ...}]``."""
    try:
        if isinstance(completion, str):
            return completion
        if isinstance(completion, list) and completion:
            content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
        return "" if completion is None else str(completion)
    except Exception:
        return ""


def _aus(value: object) -> set[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    try:
        return {int(str(a).upper().removeprefix("AU")) for a in value}
    except (TypeError, ValueError):
        return None


def _intensity(value: object) -> dict[int, float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    out = {}
    for k, v in value.items():
        try:
            if v is not None:
                out[int(str(k).upper().removeprefix("AU"))] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _float(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


@_register("format")
def _format(parsed: ParsedResponse, row: dict, require_sections: bool = True) -> float:
    if not parsed.format_ok:
        return 0.0
    return 1.0 if parsed.sections_ok or not require_sections else 0.5


@_register("emotion")
def _emotion(parsed: ParsedResponse, row: dict, soft_quadrant: float = 0.0, soft_compound: float = 0.0) -> float | None:
    truth = canonical_emotion(row.get("emotion")) if isinstance(row.get("emotion"), str) else None
    if truth is None:
        return None
    predicted = parsed.emotion
    if predicted is None:
        return 0.0
    if predicted == truth:
        return 1.0
    credit = 0.0
    if soft_compound and (predicted in EMOTIONS[truth].components or truth in EMOTIONS[predicted].components):
        credit = max(credit, soft_compound)
    if soft_quadrant and va_quadrant(*va_anchor(predicted)) == va_quadrant(*va_anchor(truth)):
        credit = max(credit, soft_quadrant)
    return credit


@_register("au_f1")
def _au_f1(parsed: ParsedResponse, row: dict, beta: float = 1.0, intensity_aware: bool = False) -> float | None:
    truth = _aus(row.get("aus"))
    if truth is None:
        return None
    claimed = set(parsed.aus)
    if not truth and not claimed:
        return 1.0
    hits = claimed & truth
    if intensity_aware:
        true_int = _intensity(row.get("au_intensity"))
        tp = 0.0
        for au in hits:
            letter = parsed.au_intensities.get(au)
            target = intensity_letter(true_int.get(au, 0.0))
            tp += 1.0 if letter is None or target is None else 1.0 - abs(intensity_value(letter) -
                                                                           intensity_value(target)) / 4.0
    else:
        tp = float(len(hits))
    precision = tp / len(claimed) if claimed else 0.0
    recall = tp / len(truth) if truth else 0.0
    if precision + recall == 0:
        return -1.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall)
    return 2.0 * f - 1.0


@_register("au_consistency")
def _au_consistency(parsed: ParsedResponse, row: dict) -> float:
    if parsed.emotion is None:
        return 0.0
    return float(prototype_scores(parsed.aus, emotions=[parsed.emotion]).get(parsed.emotion, 0.0))


@_register("valence_arousal")
def _valence_arousal(parsed: ParsedResponse, row: dict) -> float | None:
    v, a = _float(row.get("valence")), _float(row.get("arousal"))
    if v is None or a is None:
        return None
    pv, pa = parsed.valence, parsed.arousal
    if pv is None or pa is None:
        if parsed.emotion is None:
            return 0.0
        pv, pa = va_anchor(parsed.emotion)
    pv, pa = max(-1.0, min(1.0, pv)), max(-1.0, min(1.0, pa))
    return 1.0 - (abs(pv - v) + abs(pa - a)) / 4.0


@_register("length")
def _length(parsed: ParsedResponse, row: dict, text: str = "", max_chars: int = 2000, ngram: int = 4,
            max_repeat_ratio: float = 0.3) -> float:
    penalty = 0.0
    if len(text) > max_chars:
        penalty -= min(1.0, (len(text) - max_chars) / max_chars)
    words = text.split()
    grams = [tuple(words[i:i + ngram]) for i in range(max(0, len(words) - ngram + 1))]
    if grams:
        repeated = 1.0 - len(set(grams)) / len(grams)
        if repeated > max_repeat_ratio:
            penalty -= min(1.0, (repeated - max_repeat_ratio) / (1.0 - max_repeat_ratio))
    return max(-1.0, penalty)


REWARD_NAMES = tuple(_REGISTRY)


def get_reward(name: str, **options) -> RewardFn:
    """A TRL reward function by name, with options bound (e.g. ``get_reward("au_f1", beta=2)``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join(REWARD_NAMES)}")
    core = partial(_REGISTRY[name], **options) if options else _REGISTRY[name]

    def reward(prompts=None, completions=None, **columns) -> list[float | None]:
        completions = list(completions or [])
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            row = {k: (v[i] if isinstance(v, list | tuple) and len(v) == len(completions) else v)
                   for k, v in columns.items()}
            text = completion_text(completion)
            try:
                parsed = parse_response(text)
                value = core(parsed, row, text=text) if name == "length" else core(parsed, row)
            except Exception:  # a malformed ground-truth column must not stop training
                value = 0.0
            out.append(None if value is None else float(value))
        return out

    reward.__name__ = f"{name}_reward"
    return reward
