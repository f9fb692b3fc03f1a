"""Evaluation: metrics equal scikit-learn's, rationale metrics on hand-built cases, benchmark files load against
their fixtures, an interrupted run resumes to the same result, and the endpoint backend works over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn import metrics as skm

from emoreason.datasets import load_records
from emoreason.evaluation.backends import EndpointBackend
from emoreason.evaluation.benchmarks import available_benchmarks, load_benchmark
from emoreason.evaluation.metrics import au_f1, ccc, fold_summary, recognition_metrics, rmse
from emoreason.evaluation.rationale import rationale_metrics, rouge_l
from emoreason.evaluation.runner import benchmark_records, evaluate
from emoreason.reasoning import parse_response
from emoreason.synth import SynthConfig, build_dataset

from dataset_fixtures import FIXTURES
from openai_stub import StubServer


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 0), (5, 1), (7, 2), (11, 3)])
def test_recognition_metrics_equal_sklearn(n_classes, seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(n_classes)]
    truth = list(rng.choice(classes[:-1] if n_classes > 2 else classes, 300))  # one class may never occur
    pred = [None if rng.random() < 0.1 else str(x) for x in rng.choice(classes, 300)]
    ours = recognition_metrics(truth, pred, classes)
    sk_pred = ["<none>" if p is None else p for p in pred]
    labels = ours["labels"]
    assert ours["war"] == pytest.approx(skm.accuracy_score(truth, sk_pred))
    assert ours["uar"] == pytest.approx(skm.balanced_accuracy_score(truth, sk_pred))
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(truth, sk_pred, labels=labels, average="macro",
                                                          zero_division=0))
    assert ours["weighted_f1"] == pytest.approx(skm.f1_score(truth, sk_pred, labels=labels, average="weighted",
                                                             zero_division=0))
    recalls = skm.recall_score(truth, sk_pred, labels=labels, average=None, zero_division=0)
    # a class absent from the ground truth has no recall (None = not measured; sklearn says 0)
    absent = {c for c in labels if c not in truth}
    assert all(ours["per_class_recall"][c] is None for c in absent)
    assert [ours["per_class_recall"][c] for c in labels if c not in absent] == pytest.approx(
        [r for c, r in zip(labels, recalls, strict=True) if c not in absent])
    assert ours["confusion_matrix"] == skm.confusion_matrix(truth, sk_pred, labels=labels).tolist()
    assert ours["unparseable"] == sum(p is None for p in pred)


def test_au_f1_equals_sklearn_per_au():
    rng = np.random.default_rng(4)
    au_set = [1, 2, 4, 6, 12]
    truth = [set(rng.choice(au_set, rng.integers(0, 4), replace=False)) for _ in range(100)]
    pred = [set(rng.choice(au_set, rng.integers(0, 4), replace=False)) for _ in range(100)]
    ours = au_f1(truth, pred, au_set)
    for au in au_set:
        expected = skm.f1_score([au in t for t in truth], [au in p for p in pred], zero_division=0)
        assert ours["per_au_f1"][au] == pytest.approx(expected)
    assert ours["mean_f1"] == pytest.approx(np.mean(list(ours["per_au_f1"].values())))
    # an AU never present nor predicted has no F1 and stays out of the mean; unknown AUs are skipped per sample
    never = au_f1([{1}, set()], [{1}, set()], [1, 2])
    assert never["per_au_f1"] == {1: 1.0, 2: None} and never["mean_f1"] == 1.0 and never["aus_measured"] == 1
    masked = au_f1([{1}, set()], [{1}, {1}], [1], known=[{1}, set()])
    assert masked["per_au_f1"][1] == 1.0  # the false alarm fell on a sample where AU1 was not coded


def test_ccc_and_rmse_on_known_vectors():
    x = [0.1, -0.4, 0.7, 0.2, -0.6]  # zero mean, so CCC(x, -x) = -1
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, [-v for v in x]) == pytest.approx(-1.0)
    assert ccc(x, [v + 0.5 for v in x]) < 1.0  # a bias lowers CCC though correlation stays 1
    assert ccc([1, 2, 3], [2, 4, 6]) == pytest.approx(2 * (4 / 3) / (2 / 3 + 8 / 3 + 4))
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert fold_summary([0.5, 0.7]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "folds": 2}
    assert fold_summary([0.5, None]) == {"mean": 0.5, "std": 0.0, "folds": 1}
    assert ccc([], []) is None and ccc([1.0, 1.0], [1.0, 1.0]) is None and rmse([], []) is None


def test_rationale_metrics_hand_built():
    responses = [
        "<think>Observations: AU6 and AU12 rise; no AU4.\nInterpretation: Duchenne.\nConclusion: happiness.</think>"
        "<answer>happiness</answer>",  # grounded, consistent
        "<think>Observations: AU4 and AU12 rise.\nInterpretation: x.\nConclusion: happiness.</think>"
        "<answer>happiness</answer>",  # AU4 hallucinated
        "<think>Observations: AU1, AU4 and AU15.\nInterpretation: x.\nConclusion: sadness.</think>"
        "<answer>happiness</answer>",  # answer not supported by its AUs; conclusion disagrees
        "garbage with no tags",  # unparseable
    ]
    truth = [[6, 12], [6, 12], [1, 4, 15], [6, 12]]
    m = rationale_metrics([parse_response(r) for r in responses], truth)
    # claimed: {6,12} + {4,12} + {1,4,15} = 7 claims, 6 true positives; 8 true AUs overall
    assert m["au_precision"] == pytest.approx(6 / 7) and m["au_recall"] == pytest.approx(6 / 9)
    assert m["hallucination_rate"] == pytest.approx(1 / 7)
    assert m["responses_with_hallucination"] == pytest.approx(1 / 4)
    assert m["answer_supported_by_aus"] == pytest.approx(2 / 3)  # AU12 still supports happiness; 1+4+15 does not
    assert m["conclusion_matches_answer"] == pytest.approx(2 / 3)
    assert m["format_valid"] == pytest.approx(3 / 4) and m["answer_parsed"] == pytest.approx(3 / 4)
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l("a b c d", "a x c y") == pytest.approx(0.5)


def test_every_benchmark_file_loads_against_its_fixture(tmp_path):
    assert {"dfew", "ferv39k", "mafw", "rafdb", "affectnet", "disfa", "bp4d", "affwild2_expr", "affwild2_au",
            "affwild2_va", "emer", "fea20k", "synthfacs"} <= set(available_benchmarks())
    for name in available_benchmarks():
        spec = load_benchmark(name)
        root = tmp_path / name
        FIXTURES[spec.dataset_format](root)
        fold = spec.folds[0] if spec.folds else None
        records = benchmark_records(spec, str(root), fold)
        assert len(records) > 0, name
        assert all(r.split == spec.split for r in records) or spec.split is None, name


@pytest.fixture(scope="module")
def synth_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalsynth")
    build_dataset(SynthConfig(out=str(root), clips=40, frames=8, size=112, identities=8, seed=3), workers=1,
                  progress=False)
    return root


def test_interrupted_eval_resumes_to_the_same_metrics(synth_test, tiny_model_dirs, tmp_path):
    base = [sys.executable, "-m", "emoreason", "eval", "--benchmark", "synthfacs", "--model",
            str(tiny_model_dirs["qwen2_5_vl"]), "--root", str(synth_test), "--batch-size", "1", "max_new_tokens=24",
            "split=null"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cache = killed / "predictions.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 5):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    subprocess.run([*base, "--out", str(killed)], check=True, capture_output=True, timeout=600)
    ids = [json.loads(x)["id"] for x in cache.read_text().splitlines() if x.strip()]
    assert len(ids) == len(set(ids)) == 40
    straight = tmp_path / "straight"
    subprocess.run([*base, "--out", str(straight)], check=True, capture_output=True, timeout=600)
    a = json.loads((killed / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    for key in ("recognition", "au", "va", "rationale"):
        assert a[key] == b[key]
    for png in ("confusion_matrix.png", "per_class_recall.png", "per_au_f1.png"):
        assert (straight / png).stat().st_size > 1000
    table = subprocess.run([sys.executable, "-m", "emoreason", "eval", "compare", str(killed), str(straight)],
                           check=True, capture_output=True, text=True).stdout
    assert "| WAR |" in table and "killed" in table and "straight" in table


def test_endpoint_backend_scores_and_records_failures(synth_test, tmp_path):
    spec = load_benchmark("synthfacs", ["split=null"])
    records = list(load_records("synthfacs", synth_test))
    truth = {r.media["path"].rsplit("/", 1)[-1]: r for r in records}

    def behaviour(messages):
        url = next(p["video_url"]["url"] for p in messages[-1]["content"] if p.get("type") == "video_url")
        record = truth[url.rsplit("/", 1)[-1]]
        if record.emotion == "anger":
            return "error", 500
        aus = " and ".join(f"AU{a}" for a in record.aus) or "no AU"
        return "ok", (f"<think>Observations: {aus}.\nInterpretation: x.\nConclusion: {record.emotion}.</think>"
                      f"<answer>{record.emotion}</answer>")

    with StubServer(behaviour) as server:  # videos under --media-dir go by file:// URL (the server samples them)
        backend = EndpointBackend({"base_url": server.base_url, "concurrency": 4, "retries": 1, "backoff_s": 0.01},
                                  spec.frames, None, "tags", batch_size=8, media_dir=str(synth_test))
        metrics = evaluate(spec, backend, tmp_path / "ep", root=str(synth_test), progress=False)
    angry = sum(r.emotion == "anger" for r in records)
    assert angry and metrics["generation_errors"] == angry
    assert metrics["recognition"]["war"] == pytest.approx((len(records) - angry) / len(records))
    assert metrics["rationale"]["hallucination_rate"] == 0.0
    rows = [json.loads(x) for x in (tmp_path / "ep" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["error"] is not None for r in rows) == angry


def test_llm_judge_overlap_through_an_endpoint():
    from emoreason.evaluation.judge import judge_overlap, parse_judgement

    assert parse_judgement('{"clue_overlap": 7, "label_overlap": 10}') == {"clue_overlap": 0.7, "label_overlap": 1.0}
    assert parse_judgement("clue_overlap: 3\nlabel_overlap = 5") == {"clue_overlap": 0.3, "label_overlap": 0.5}
    assert parse_judgement("no scores here") is None

    def behaviour(messages):
        prompt = messages[-1]["content"]
        if "Candidate emotion: anger" in prompt:
            return "ok", "I cannot judge this."
        same = "Candidate emotion: happiness" in prompt and "Reference emotion: happiness" in prompt
        return "ok", json.dumps({"clue_overlap": 8 if same else 2, "label_overlap": 10 if same else 0})

    with StubServer(behaviour) as server:
        result = judge_overlap({"base_url": server.base_url}, ["cheeks rise", "brows down", "lips press"],
                               ["happiness", "sadness", "anger"], ["cheeks and lip corners rise"] * 3,
                               ["happiness", "happiness", "happiness"])
    assert result["judged"] == 2 and result["judge_failures"] == 1
    assert result["clue_overlap"] == pytest.approx(0.5) and result["label_overlap"] == pytest.approx(0.5)


def test_endpoint_backend_sizes_frames_like_the_local_backend(tiny_model_dirs, tmp_path):
    """Evaluating a served model sends the frames local evaluation of the same model directory uses: the vision
    factor (32 for Qwen3-VL, not the default 28), the processor's pixel bounds and the policy saved at training,
    read from the weights path the server reports. Otherwise the inlined frames are resized again by the
    server's processor, to another grid than the local model's."""
    import shutil

    from emoreason.evaluation.backends import LocalBackend
    from emoreason.models import save_frame_policy
    from emoreason.video import FramePolicy

    model = shutil.copytree(tiny_model_dirs["qwen3_vl"], tmp_path / "model")
    save_frame_policy(model, FramePolicy(fps=4.0, max_frames=6, min_pixels=4096, max_pixels=16384))
    frames = {"fps": 3.0}  # the benchmark's own frames override both alike
    local = LocalBackend(str(model), frames, None, "tags")
    with StubServer(lambda messages: ("ok", "x"), root=str(model)) as server:
        endpoint = EndpointBackend({"base_url": server.base_url}, frames, None, "tags")
        assert endpoint.policy == local.policy and endpoint.policy.factor == 32
        assert endpoint.frame_policy["fps"] == 3.0


def test_emotion_task_asks_the_short_answer_question_and_keys_the_cache(synth_test, tiny_model_dirs, tmp_path):
    """A curriculum's short-answer model is scored on its own question (`task=emotion`): recognition only, the
    prompt hash and protocol say so, and a cache written under the reasoning prompt is refused, not reused."""
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.identity import prompt_hash
    from emoreason.evaluation.runner import prompt_labels
    from emoreason.reasoning import build_messages

    cot, short = load_benchmark("synthfacs", ["split=null"]), load_benchmark("synthfacs", ["split=null", "task=emotion"])
    assert short.metrics == ["recognition"] and "rationale" in cot.metrics
    assert short.protocol()["task"] == "emotion" and "task" not in cot.protocol()
    with pytest.raises(ValueError, match="task"):
        load_benchmark("synthfacs", ["task=au_perception"])
    labels = prompt_labels(short)
    asked = build_messages(None, "video", labels, "tags", task="emotion")[-1]["content"][-1]["text"]
    assert asked.endswith("Reply as <answer>emotion</answer>.") and "<think>" not in asked
    model = str(tiny_model_dirs["qwen2_5_vl"])
    out = tmp_path / "run"
    metrics = evaluate(short, LocalBackend(model, short.frames, labels, "tags", 2, 8, task="emotion"), out,
                       root=str(synth_test), limit=3, progress=False)
    sent = metrics["protocol"]["prompt_hash"]
    assert sent == prompt_hash(labels, "tags", None, "emotion") != prompt_hash(labels, "tags")
    assert metrics["recognition"]["n"] == 3 and metrics.get("rationale") is None
    with pytest.raises(Exception, match="prompt"):  # same OUT, the reasoning prompt: a mismatch, not a reuse
        evaluate(cot, LocalBackend(model, cot.frames, labels, "tags", 2, 8), out, root=str(synth_test), limit=3,
                 progress=False)


def test_predict_endpoint_with_audio_keeps_concurrency_requests_in_flight(tiny_omni_dir, tmp_path, capsys):
    """`predict --endpoint` for a model that hears sends each clip's audio and keeps `--concurrency` requests in
    flight, as it does for video alone (it used to send one input at a time, then chunks that each waited for their
    slowest request); rows keep the input order and each its own request's latency. The stub stands in for a slow server (a latency a real one gives only by chance)."""
    import threading

    from emoreason.cli import main
    from emoreason.synth import ClipSpec, Identity, generate_av_clip
    from emoreason.video import write_video

    frames, voice, _ = generate_av_clip(ClipSpec(0, "av", "happiness", Identity.sample(0, np.random.default_rng(0)),
                                                 "test", seed=1, frames=16, size=112, difficulty="easy", audio=True))
    clips = [str(write_video(frames, tmp_path / f"clip{i}.mp4", fps=8, audio=voice)) for i in range(5)]
    lock, load = threading.Lock(), {"now": 0, "most": 0, "started": 0, "started_before_slow_ended": 0}

    def slow(messages):
        with lock:
            load["now"] += 1
            load["most"] = max(load["most"], load["now"])
            load["started"] += 1
            first = load["started"] == 1
        time.sleep(3.0 if first else 0.5)  # the first request is slow: it must not hold back the fifth
        with lock:
            load["now"] -= 1
            if first:
                load["started_before_slow_ended"] = load["started"]
        return "ok", "<answer>happiness</answer>"

    with StubServer(slow, root=str(tiny_omni_dir)) as server:  # the weights path /v1/models reports: an Omni model
        code = main(["predict", *clips, "--endpoint", server.base_url, "--concurrency", "4", "--max-tokens", "4"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [r["source"] for r in rows] == clips and all(r["emotion"] == "happiness" for r in rows)
    assert all(any(p.get("type") == "audio_url" for m in body["messages"] if isinstance(m["content"], list)
                   for p in m["content"]) for body in server.bodies)  # each clip heard
    assert load["most"] == 4  # four at once, then the fifth
    assert load["started_before_slow_ended"] == 5  # a pool, not chunks that each wait for their slowest request
    assert all(0.4 < r["latency_s"] < 5 for r in rows)
