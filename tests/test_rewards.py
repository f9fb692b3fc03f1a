"""GRPO rewards: hand-built completions, None where ground truth lacks the field, total on any input,
and called exactly the way TRL's GRPOTrainer calls them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoreason.rewards import REWARD_NAMES, get_reward

GOOD = ("<think>\nObservations: AU6 (cheek raiser, C) and AU12 (lip corner puller, D) rise; no AU4.\n"
        "Interpretation: AU6 with AU12 is a Duchenne smile.\nConclusion: The face shows happiness.\n</think>\n"
        "<answer>happiness</answer>")
ROW = {"emotion": "happiness", "aus": [6, 12], "au_intensity": '{"6": 3.0, "12": 4.0}', "valence": 0.8,
       "arousal": 0.4}


def call(name: str, completions, rows: list[dict] | None = None, **options):
    rows = rows or [ROW] * len(completions)
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r}}
    return get_reward(name, **options)(prompts=[[{"role": "user", "content": "x"}]] * len(completions),
                                       completions=completions, **columns)


def test_registry():
    assert set(REWARD_NAMES) == {"format", "emotion", "au_f1", "au_consistency", "valence_arousal", "length"}
    with pytest.raises(KeyError):
        get_reward("nope")


def test_format():
    no_sections = "<think>AU12 rises.</think><answer>happy</answer>"
    assert call("format", [GOOD, no_sections, "happy", "", "<think>x</think>"]) == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert call("format", [no_sections], require_sections=False) == [1.0]


def test_emotion_and_graded_credit():
    wrong = GOOD.replace("<answer>happiness</answer>", "<answer>anger</answer>")
    surprised = GOOD.replace("<answer>happiness</answer>", "<answer>surprise</answer>")
    assert call("emotion", [GOOD, wrong, "no answer"]) == [1.0, 0.0, 0.0]
    assert call("emotion", [surprised]) == [0.0]  # off by default
    # graded by circumplex distance: happiness (0.8, 0.4) – surprise (0.2, 0.8) is 0.72 apart
    assert call("emotion", [surprised], va_credit=0.5)[0] == pytest.approx(0.5 * (1 - 0.7211), abs=1e-3)
    assert call("emotion", [wrong], va_credit=0.5) == [0.0]  # 1.5 apart: beyond the radius
    anger_row = {**ROW, "emotion": "anger"}
    fear = GOOD.replace("<answer>happiness</answer>", "<answer>fear</answer>")
    assert call("emotion", [fear], [anger_row], va_credit=0.5)[0] == pytest.approx(0.45)  # why it is off
    compound = {**ROW, "emotion": "happily_surprised"}
    assert call("emotion", [GOOD], [compound], soft_compound=0.5) == [0.5]
    assert call("emotion", [GOOD], [{**ROW, "emotion": None}]) == [None]
    with pytest.raises(ValueError, match="soft_quadrant was removed"):
        get_reward("emotion", soft_quadrant=0.2)
    with pytest.raises(ValueError, match="did you mean 'va_credit'"):
        get_reward("emotion", va_credt=0.2)



@pytest.mark.parametrize("benchmark", ["dfew", "mafw", "ravdess", "ravdess_7class", "mer2023", "synthfacs"])
def test_a_calm_answer_earns_what_the_eval_scores_it(benchmark):
    """GRPO's emotion reward agrees with the eval on the row's label set: "calm" on a neutral clip is right where
    the protocol has no calm (DFEW, MAFW, RAVDESS with calm merged: the eval's prediction_in_label_set), wrong on
    8-class RAVDESS, where calm is its own class; a row names its label set (``label_set``, which synth-cot writes),
    else the dataset it came from (``source``)."""
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.runner import score
    from emoreason.records import SampleRecord

    spec = load_benchmark(benchmark)
    spec.metrics = ["recognition"]
    calm, neutral = (GOOD.replace("<answer>happiness</answer>", f"<answer>{x}</answer>") for x in ("calm", "neutral"))
    for truth in ("neutral", "calm"):
        if truth not in spec.protocol()["classes"]:
            continue
        record = SampleRecord(id="a", dataset="x", media={"type": "video", "path": "a.mp4"}, emotion=truth)
        for answer in (calm, neutral):
            scored = score(spec, [record], {"a": {"text": answer}})["recognition"]["war"]
            row = {**ROW, "emotion": truth, "label_set": spec.label_set, "source": "x"}
            assert call("emotion", [answer], [row]) == [scored], (benchmark, truth, answer)
    source_only = {**ROW, "emotion": "neutral", "source": "dfew"}  # rows written before label_set
    assert call("emotion", [calm], [source_only]) == [1.0]
    assert call("emotion", [calm], [{**ROW, "emotion": "neutral"}]) == [0.0]  # open vocabulary: as the eval

def test_au_f1_rewards_grounding():
    hallucinated = GOOD.replace("AU6 (cheek raiser, C)", "AU6 (cheek raiser, C), AU9")
    negated_true = ("<think>\nObservations: AU12 rises; there is no AU6.\nInterpretation: a social smile.\n"
                    "Conclusion: happiness.\n</think>\n<answer>happiness</answer>")
    values = call("au_f1", [GOOD, hallucinated, negated_true, "garbage"])
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(2 * 0.8 - 1)  # P=2/3, R=1 → F1=0.8
    assert values[2] == pytest.approx(2 * (2 / 3) - 1)  # the negated AU6 is not a claim: P=1, R=1/2
    assert values[3] == pytest.approx(-1.0)
    assert call("au_f1", [GOOD], [{**ROW, "aus": None}]) == [None]
    hedged = GOOD.replace("rise; no AU4.", "rise; no doubt AU9 wrinkles the nose.")
    assert call("au_f1", [hedged])[0] == pytest.approx(2 * 0.8 - 1)  # a rhetorical mention is a claim


def test_intensity_aware_au_f1_scores_letters():
    exact = call("au_f1", [GOOD], intensity_aware=True)[0]
    off = call("au_f1", [GOOD.replace("puller, D", "puller, A")], intensity_aware=True)[0]
    missing = call("au_f1", [GOOD.replace(", D)", ")").replace(", C)", ")")], intensity_aware=True)[0]
    assert exact == pytest.approx(1.0) and off < exact
    assert missing == pytest.approx(-1.0)  # the prompt asks for letters: none given, no credit
    unknown = {**ROW, "au_intensity": '{"12": 4.0}'}  # AU6 occurrence-only: its letter is not judged
    assert call("au_f1", [GOOD.replace(", C)", ")")], [unknown], intensity_aware=True)[0] == pytest.approx(1.0)


def test_au_rewards_are_none_without_observed_aus_and_score_coded_aus_only():
    prototype = {**ROW, "au_observed": False, "au_source": "prototype"}
    for name in ("au_f1", "au_consistency"):
        assert call(name, [GOOD, ""], [prototype, prototype]) == [None, None]
    assert call("emotion", [GOOD], [prototype]) == [1.0]
    # AU9 is not coded by the row's source: claiming it is unknown, not a false positive
    coded = {**ROW, "au_coded": [1, 2, 4, 6, 12, 15]}
    with_au9 = GOOD.replace("AU6 (cheek raiser, C)", "AU6 (cheek raiser, C), AU9")
    assert call("au_f1", [with_au9], [coded]) == [pytest.approx(1.0)]
    assert call("au_f1", [with_au9]) == [pytest.approx(0.6)]


def test_au_f1_judges_present_aus_even_outside_the_coded_set_and_abstains_when_nothing_is_coded():
    """Evidence AUs are always judged (an AU seen on a few frames is present though not measured often enough to
    be declared coded), and a row whose source measured no AU at all has nothing to score against: None."""
    partly = {**ROW, "au_observed": True, "au_coded": [6]}  # AU12 present, but seen on too few frames to be coded
    assert call("au_f1", [GOOD], [partly]) == [pytest.approx(1.0)]
    nothing = {**ROW, "au_observed": True, "aus": [], "au_intensity": "{}", "au_coded": []}
    assert call("au_f1", [GOOD, "<answer>happiness</answer>"], [nothing, nothing]) == [None, None]


def test_citing_an_uncoded_prototype_au_earns_nothing_extra():
    """A landmark-detector row (AU4 is not a validated detector AU, so not coded): a completion that adds the
    unobserved AU4 of sadness's prototype (1+4+15) must not out-score the one citing only the evidence — else
    GRPO (au_f1 + au_consistency, as the DFEW recipes use) pays the policy to hallucinate prototype AUs."""
    row = {"emotion": "sadness", "aus": [1, 15], "au_intensity": '{"1": 2.0, "15": 3.0}', "au_observed": True,
           "au_coded": [1, 2, 12, 15, 23, 25, 26, 45]}
    text = ("<think>\nObservations: {}.\nInterpretation: the brows and mouth corners move.\n"
            "Conclusion: The face shows sadness.\n</think>\n<answer>sadness</answer>")
    evidence = text.format("AU1 (inner brow raiser, B) and AU15 (lip corner depressor, C) rise")
    with_prototype = text.format("AU1 (inner brow raiser, B), AU4 (brow lowerer, B) and AU15 (lip corner "
                                 "depressor, C) rise")
    scores = {name: call(name, [evidence, with_prototype], [row, row]) for name in ("au_f1", "au_consistency")}
    assert scores["au_f1"] == [1.0, 1.0]  # AU4 is not coded: neither right nor wrong
    assert scores["au_consistency"][0] == scores["au_consistency"][1] > 0, scores


def test_facial_r1_rarity_weight():
    rare, common = {**ROW, "au_rarity": 1.0}, {**ROW, "au_rarity": 0.25}
    assert call("au_f1", [GOOD, GOOD], [rare, common], rarity_scale=10.0) == [10.0, 2.5]
    assert call("emotion", [GOOD], [common], rarity_scale=2.0, rarity_floor=0.5) == [pytest.approx(1.25)]
    assert call("emotion", [GOOD], [{**ROW, "au_rarity": None}], rarity_scale=10.0) == [1.0]


def test_a_reward_that_raises_is_counted_logged_and_reported_not_a_silent_zero(caplog):
    from emoreason.rewards import reward_error_counts

    before = reward_error_counts().get("length", 0)
    metrics: dict[str, list[float]] = {}
    fn = get_reward("length", max_chars="2000")  # a string where a number belongs: raises on every row
    with caplog.at_level("WARNING", logger="emoreason.rewards"):
        values = fn(prompts=["p"] * 3, completions=[GOOD, "x", ""], emotion=["happiness"] * 3,
                    log_metric=lambda name, value: metrics.setdefault(name, []).append(value))
    assert values == [None, None, None]
    assert reward_error_counts()["length"] - before == 3
    assert metrics == {"rewards/length_reward/errors": [3.0]}
    assert "reward length raised" in caplog.text and "TypeError" in caplog.text
    clean: dict[str, list[float]] = {}
    get_reward("format")(prompts=["p"], completions=[GOOD], log_metric=lambda n, v: clean.setdefault(n, []).append(v))
    assert clean == {"rewards/format_reward/errors": [0.0]}


def test_au_consistency_and_valence_arousal():
    inconsistent = GOOD.replace("<answer>happiness</answer>", "<answer>anger</answer>")
    c = call("au_consistency", [GOOD, inconsistent, ""])
    assert c[0] == 1.0 and c[1] < 0.5 and c[2] == 0.0
    json_answer = GOOD.replace("<answer>happiness</answer>",
                               '<answer>{"emotion": "happy", "aus": [6, 12], "valence": 0.8, "arousal": 0.4}</answer>')
    va = call("valence_arousal", [json_answer, GOOD, inconsistent])
    assert va[0] == pytest.approx(1.0) and va[1] > va[2]
    assert call("valence_arousal", [GOOD], [{**ROW, "valence": None}]) == [None]


def test_length_penalises_overlong_and_repetitive():
    repetitive = GOOD.replace("Interpretation:", "Interpretation: " + "the same words again " * 60)
    values = call("length", [GOOD, repetitive, "x" * 6000], max_chars=2000)
    assert values[0] == 0.0 and values[1] < 0.0 and values[2] == -1.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.sampled_from(REWARD_NAMES),
       st.sampled_from([ROW, {"emotion": "bogus", "aus": "not json", "au_intensity": 5, "valence": "x"}, {}]))
def test_never_raises(text, name, row):
    values = call(name, [text, [{"role": "assistant", "content": text}]], [row, row])
    assert len(values) == 2 and all(v is None or isinstance(v, float) for v in values)


def test_huge_garbage_completion():
    garbage = "<answer>" * 5000 + "AU12 " * 10000
    for name in REWARD_NAMES:
        assert len(call(name, [garbage[:100_000]])) == 1


def test_called_like_trl(tiny_model_dirs, tmp_path):
    """TRL's GRPOTrainer._calculate_rewards with our functions and dataset columns as keyword lists."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": "Which emotion?"}], **ROW}] * 2
    dataset = Dataset.from_list(rows)
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, num_generations=2,
                      per_device_train_batch_size=2, max_completion_length=8, report_to="none")
    trainer = GRPOTrainer(model=str(tiny_model_dirs["qwen2_5_vl"]),
                          reward_funcs=[get_reward(n) for n in REWARD_NAMES], args=args, train_dataset=dataset)
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "nonsense"}]]
    inputs = [dict(r) for r in rows]
    rewards = trainer._calculate_rewards(inputs, [r["prompt"] for r in rows], completions, [[1], [1]])
    assert rewards.shape == (2, len(REWARD_NAMES))
    by_name = dict(zip(REWARD_NAMES, rewards[0].tolist(), strict=True))
    assert by_name["format"] == 1.0 and by_name["emotion"] == 1.0 and by_name["au_f1"] == pytest.approx(1.0)
    assert torch.all(rewards[1, :3] <= 0.0)
    # TRL hands rewards its log_metric hook: each reward reports its error count for the step
    assert {f"rewards/{n}_reward/errors" for n in REWARD_NAMES} <= set(trainer._pending_metrics)
