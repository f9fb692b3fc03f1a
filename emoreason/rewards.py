"""GRPO rewards, a registry by name: ``get_reward(name, **options)``.

Every reward follows TRL's convention ``fn(prompts, completions, **columns) -> list[float | None]``: TRL passes
every dataset column except ``prompt`` as a keyword list, one value per completion. Rewards are total — any
completion string (empty, truncated, 100 kB of garbage) gets a number — and return ``None`` for rows whose
ground truth lacks the field the reward needs, which TRL then leaves out of that reward's mean.

* ``format`` — tags present, ordered, one answer; full credit needs the three reasoning sections.
* ``emotion`` — canonical-label match (``emoreason.knowledge``) in the row's label set as the eval scores it
  (``label_set``, else ``source``: "calm" is neutral on a protocol without calm), optional credit graded by
  valence–arousal distance (``va_credit``, off by default — see ``_emotion``) or for a label inside the true
  compound.
* ``au_f1`` — 2·Fβ − 1 between non-negated claimed AUs and the row's evidence AUs (Facial-R1's AU reward), on
  the AUs the evidence source codes; optionally intensity-aware (a hit's credit falls with the distance of its
  letter from the evidence, and a missing letter earns none — the prompt asks for letters).
* ``au_consistency`` — how well the claimed AUs support the answered emotion (FACS prototype score), counting
  only claims the row's evidence can judge (coded AUs), as ``au_f1`` does.

AU rewards read the training row's AU contract (``emoreason.records``): ``aus``, ``au_intensity``, ``au_coded``
and ``au_observed``. A row without observed AUs (label-only, prototype evidence) gets ``None`` from every AU
reward — never ±1, which would teach the model to stop citing AUs (or to cite the label's prototype).

Every reward also takes ``rarity_scale`` / ``rarity_floor``: Facial-R1's per-sample AU-rarity weight (Wu et al.,
"Facial-R1", AAAI 2026; they scale every reward by 10 × the sample's min–max normalised rarity, the ``au_rarity``
column ``synth-cot`` writes), as ``value × scale × (floor + (1 − floor) × au_rarity)`` on rows that have it.
Under TRL's ``scale_rewards: group`` a per-sample factor cancels in the advantages; use ``batch`` or ``none``
for it to matter.

A reward that raises on a row is a bug, not a 0: the row gets ``None`` (TRL leaves it out of that reward), the
failure is logged with its traceback, counted per reward (``reward_error_counts()``) and reported each step
through TRL's ``log_metric`` as ``rewards/<name>/errors``.
* ``valence_arousal`` — 1 − mean absolute error / 2 of predicted (JSON answer, else the answer's anchor) VA.
* ``length`` — 0 normally, down to −1 for overlong or repetitive completions.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from functools import partial

from emoreason.knowledge import (
    DATASET_LABEL_MAPS,
    EMOTIONS,
    canonical_emotion,
    prediction_in_label_set,
    prototype_scores,
    va_anchor,
)
from emoreason.knowledge.facs import intensity_letter, intensity_value
from emoreason.reasoning import ParsedResponse, parse_response

log = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]
_REGISTRY: dict[str, Callable[..., float | None]] = {}
_ERRORS: Counter = Counter()  # reward name → rows it raised on, this process
_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "completion_ids", "environments")


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
def _emotion(parsed: ParsedResponse, row: dict, va_credit: float = 0.0, va_radius: float = 1.0,
             soft_compound: float = 0.0) -> float | None:
    """1 for the right label, else optional partial credit.

    ``va_credit``: up to this much for a wrong label whose circumplex anchor lies within ``va_radius`` of the
    true one, falling linearly with the distance. Off by default, for DFEW's sake: its errors concentrate among
    the negative high-arousal classes (anger, disgust, fear) and between fear and surprise (Jiang et al., "DFEW",
    ACM MM 2020, per-class results; the same pattern in later DFEW baselines), and those anchors are the
    closest on the circumplex (anger–fear 0.10, anger–disgust 0.40, fear–disgust 0.41): any credit by
    valence–arousal proximity pays most for exactly DFEW's hardest confusions. (The former quadrant credit gave
    anger, fear, disgust and contempt full mutual credit.) ``soft_compound``: credit for a component of the
    true compound emotion or a compound containing the true one."""
    truth = canonical_emotion(row.get("emotion")) if isinstance(row.get("emotion"), str) else None
    if truth is None:
        return None
    predicted = parsed.emotion
    if predicted is None:
        return 0.0
    label_set = _label_set(row)
    if label_set is not None:  # as the eval scores it: "calm" is neutral where the protocol has no calm
        predicted = prediction_in_label_set(label_set, predicted)
    if predicted == truth:
        return 1.0
    credit = 0.0
    if soft_compound and (predicted in EMOTIONS[truth].components or truth in EMOTIONS[predicted].components):
        credit = max(credit, soft_compound)
    if va_credit and va_radius > 0:
        distance = math.dist(va_anchor(predicted), va_anchor(truth))
        credit = max(credit, va_credit * max(0.0, 1.0 - distance / va_radius))
    return credit


def _label_set(row: dict) -> str | None:
    """The label set a row's emotion is scored in (``emoreason.knowledge.DATASET_LABEL_MAPS``): its ``label_set``
    (the protocol ``synth-cot`` prompted with, e.g. ``ravdess7``), else the dataset it came from (``source``,
    rows written before ``label_set``); None (open vocabulary, the answer as parsed) when neither is known."""
    for key in ("label_set", "source"):
        name = row.get(key)
        if isinstance(name, str) and name in DATASET_LABEL_MAPS:
            return name
    return None


def _observed_truth(row: dict) -> set[int] | None:
    """The row's evidence AUs, or None when it has no observed AUs (prototype / label-only rows)."""
    if row.get("au_observed") is False:
        return None
    return _aus(row.get("aus"))


@_register("au_f1")
def _au_f1(parsed: ParsedResponse, row: dict, beta: float = 1.0, intensity_aware: bool = False) -> float | None:
    truth = _observed_truth(row)
    if truth is None:
        return None
    coded = _aus(row.get("au_coded"))
    if coded is not None and not coded | truth:  # the source measured no AU: nothing to score a claim against
        return None
    claimed = _judged_claims(parsed, row)  # an uncoded AU is unknown, not wrong; evidence AUs are always judged
    if not truth and not claimed:
        return 1.0
    hits = claimed & truth
    if intensity_aware:
        true_int = _intensity(row.get("au_intensity"))
        tp = 0.0
        for au in hits:
            letter = parsed.au_intensities.get(au)
            target = intensity_letter(true_int[au]) if au in true_int else None
            if target is None:  # the evidence has no intensity for this AU (occurrence-only): not judged
                tp += 1.0
            elif letter is not None:  # a missing letter earns nothing: the prompt asks for one
                tp += 1.0 - abs(intensity_value(letter) - intensity_value(target)) / 4.0
    else:
        tp = float(len(hits))
    precision = tp / len(claimed) if claimed else 0.0
    recall = tp / len(truth) if truth else 0.0
    if precision + recall == 0:
        return -1.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall)
    return 2.0 * f - 1.0


def _judged_claims(parsed: ParsedResponse, row: dict) -> set[int]:
    """The claimed AUs the row's evidence can judge: all of them, or, when the source declares its coded AUs,
    those coded (or in the evidence) — an AU the source never measured is neither right nor wrong."""
    coded = _aus(row.get("au_coded"))
    if coded is None:
        return set(parsed.aus)
    return set(parsed.aus) & (coded | (_observed_truth(row) or set()))


@_register("au_consistency")
def _au_consistency(parsed: ParsedResponse, row: dict) -> float | None:
    """How well the claimed AUs support the answered emotion. Only claims the evidence can judge count: citing
    an AU the source does not code (the label's prototype AU4 on a detector row) would otherwise earn credit
    that ``au_f1`` cannot take back, and GRPO would learn to cite unobserved prototype AUs."""
    if row.get("au_observed") is False:  # label-only rows: rewarding the label's prototype AUs is circular
        return None
    if parsed.emotion is None:
        return 0.0
    return float(prototype_scores(_judged_claims(parsed, row), emotions=[parsed.emotion]).get(parsed.emotion, 0.0))


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


def reward_error_counts() -> dict[str, int]:
    """Rows each reward raised on in this process (a reward that raises is a bug to fix, not a 0)."""
    return dict(_ERRORS)


def _check_options(name: str, options: dict) -> None:
    if name == "emotion" and "soft_quadrant" in options:
        raise ValueError("emotion: soft_quadrant was removed (one quadrant holds anger, fear, disgust and contempt, "
                         "so it paid for DFEW's hardest confusions); use va_credit (graded by valence–arousal "
                         "distance, off by default)")
    accepted = [p for p in inspect.signature(_REGISTRY[name]).parameters if p not in ("parsed", "row", "text")]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it takes {', '.join(accepted) or 'none'}"
            raise ValueError(f"reward {name!r} has no option {key!r}{hint}")


def get_reward(name: str, rarity_scale: float | None = None, rarity_floor: float = 0.0, **options) -> RewardFn:
    """A TRL reward function by name, with options bound (e.g. ``get_reward("au_f1", beta=2)``); an unknown
    option is an error naming the closest one. ``rarity_scale``/``rarity_floor``: Facial-R1's AU-rarity weight."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join(REWARD_NAMES)}")
    _check_options(name, options)
    core = partial(_REGISTRY[name], **options) if options else _REGISTRY[name]
    metric = f"rewards/{name}_reward/errors"

    def reward(prompts=None, completions=None, **columns) -> list[float | None]:
        log_metric = columns.get("log_metric")
        columns = {k: v for k, v in columns.items() if k not in _TRL_KWARGS}
        completions = list(completions or [])
        out: list[float | None] = []
        errors = 0
        for i, completion in enumerate(completions):
            row = {k: (v[i] if isinstance(v, list | tuple) and len(v) == len(completions) else v)
                   for k, v in columns.items()}
            text = completion_text(completion)
            try:
                parsed = parse_response(text)
                value = core(parsed, row, text=text) if name == "length" else core(parsed, row)
                if value is not None and rarity_scale is not None and _float(row.get("au_rarity")) is not None:
                    value *= rarity_scale * (rarity_floor + (1.0 - rarity_floor) * _float(row["au_rarity"]))
            except Exception:
                errors += 1
                _ERRORS[name] += 1
                if _ERRORS[name] <= 3 or _ERRORS[name] % 100 == 0:
                    log.warning("reward %s raised on row %d (id %s); %d failures so far", name, i, row.get("id"),
                                _ERRORS[name], exc_info=True)
                value = None
            out.append(None if value is None else float(value))
        if callable(log_metric):  # TRL's hook: averaged over the step's calls and processes, logged every step
            log_metric(metric, float(errors))
        return out

    reward.__name__ = f"{name}_reward"
    return reward
