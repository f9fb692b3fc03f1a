"""Evaluation protocols as published and metrics that never lie: one model per fold, frame-level AU benchmarks
on the published folds, null for what is not measured (one AU inclusion rule), a prediction cache keyed by
what made it, endpoint frames sent losslessly, reports that open with the protocol, compare that refuses
runs scored under different protocols."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from emoreason.datasets import load_records
from emoreason.evaluation.backends import EndpointBackend
from emoreason.evaluation.benchmarks import load_benchmark
from emoreason.evaluation.report import ProtocolMismatchError, compare, write_report
from emoreason.evaluation.runner import FoldProtocolError, benchmark_records, evaluate, fold_models, score
from emoreason.records import SampleRecord
from emoreason.video import FramePolicy, load_media

from dataset_fixtures import BP4D_FIRST_FRAME, FIXTURES, dfew_variant
from openai_stub import StubServer

EVAL = [sys.executable, "-m", "emoreason", "eval"]


def _eval(*args, check=False) -> subprocess.CompletedProcess:
    result = subprocess.run([*EVAL, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode:
        raise AssertionError(result.stderr[-3000:])
    return result


# --- fold protocol --------------------------------------------------------------------------------------------

def test_one_model_across_folds_is_refused(tmp_path, tiny_model_dirs):
    FIXTURES["dfew"](tmp_path / "dfew")
    result = _eval("--benchmark", "dfew", "--model", tiny_model_dirs["qwen2_5_vl"], "--root", tmp_path / "dfew",
                   "--out", tmp_path / "out", "max_new_tokens=4")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cross-validation" in result.stderr and "{fold}" in result.stderr and "--zero-shot" in result.stderr
    assert not (tmp_path / "out" / "fold1" / "predictions.jsonl").exists()  # refused before any generation


def test_fold_models_template_mapping_single_fold_and_zero_shot(tmp_path):
    spec = load_benchmark("dfew")
    assert fold_models(spec, "runs/sft/dfew_fold{fold}") == {k: f"runs/sft/dfew_fold{k}" for k in range(1, 6)}
    assert fold_models(spec, "runs/m", fold=3) == {3: "runs/m"}
    assert fold_models(spec, "runs/m", zero_shot=True) == dict.fromkeys(range(1, 6), "runs/m")
    mapping = tmp_path / "folds.yaml"
    mapping.write_text("folds:\n" + "".join(f"  {k}: runs/a{k}\n" for k in range(1, 6)))
    assert fold_models(spec, str(mapping))[4] == "runs/a4"
    (tmp_path / "short.json").write_text(json.dumps({"1": "a", "2": "b"}))
    with pytest.raises(FoldProtocolError, match=r"no model for fold\(s\) \[3, 4, 5\]"):
        fold_models(spec, str(tmp_path / "short.json"))
    with pytest.raises(FoldProtocolError, match="fold 7 is not one of them"):
        fold_models(spec, "runs/m", fold=7)
    assert fold_models(load_benchmark("ferv39k"), "runs/m") == {None: "runs/m"}  # one official split


def test_per_fold_loop_reports_each_fold_then_mean_and_std(tmp_path, tiny_model_dirs):
    from emoreason.models import build_tiny_model

    FIXTURES["dfew"](tmp_path / "dfew")
    # one "trained" model per fold: different weights (the same weights on two folds is refused, see below)
    shutil.copytree(tiny_model_dirs["qwen2_5_vl"], tmp_path / "sft" / "dfew_fold1")
    build_tiny_model("qwen2_5_vl", tmp_path / "sft" / "dfew_fold2", seed=1)
    common = ["--benchmark", "dfew", "--root", tmp_path / "dfew", "--out", tmp_path / "eval", "folds=[1,2]",
              "max_new_tokens=4", "--batch-size", "2"]
    _eval(*common, "--model", tmp_path / "sft" / "dfew_fold1", "--fold", "1", check=True)
    partial = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert partial["folds_present"] == [1] and not partial["complete"] and partial["mean_std"] is None
    assert "Partial" in (tmp_path / "eval" / "summary.md").read_text()
    _eval(*common, "--model", str(tmp_path / "sft" / "dfew_fold{fold}"), check=True)  # fold 1 resumes from cache
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert summary["complete"] and summary["folds_present"] == [1, 2]
    folds = [json.loads((tmp_path / "eval" / f"fold{k}" / "metrics.json").read_text()) for k in (1, 2)]
    wars = [f["recognition"]["war"] for f in folds]
    assert summary["per_fold"]["1"]["WAR"] == wars[0] and summary["per_fold"]["2"]["WAR"] == wars[1]
    assert summary["mean_std"]["WAR"]["mean"] == pytest.approx(np.mean(wars))
    assert summary["mean_std"]["WAR"]["std"] == pytest.approx(np.std(wars))
    assert folds[0]["protocol"]["model"]["path"].endswith("dfew_fold1")
    assert folds[1]["protocol"]["model"]["path"].endswith("dfew_fold2")
    text = (tmp_path / "eval" / "summary.md").read_text()
    first = text.splitlines()[2]
    for part in ("benchmark `dfew`", "2 of 2 folds scored (1, 2; one model per fold)", "split test", "7 classes (",
                 "frame policy fps=", "prompt "):
        assert part in first, (part, first)
    assert "## Mean ± std over folds" in text and "## Per fold" in text and "## Per-class recall" in text
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    fold_text = (tmp_path / "eval" / "fold2" / "summary.md").read_text().splitlines()[2]
    assert "fold 2 of 2" in fold_text and "model local:" in fold_text and "dfew_fold2" in fold_text


def _fold_run(out: Path, fold: int, model: dict | None = None, **protocol) -> None:
    """A fold's metrics.json as `emoreason eval` writes it (DFEW's protocol, fold ``fold``)."""
    spec = load_benchmark("dfew", ["folds=[1,2]"])
    model = model or {"kind": "local", "path": f"runs/fold{fold}", "weights": f"w{fold}"}
    metrics = {"benchmark": "dfew", "n": 10, "generation_errors": 0, "fold": fold,
               "recognition": {"war": 0.5 + fold / 10, "uar": 0.5, "macro_f1": 0.5, "weighted_f1": 0.5,
                               "labels": ["anger"], "per_class_recall": {"anger": 0.5},
                               "confusion_matrix": [[1]]},
               "protocol": {**spec.protocol(), "protocol_hash": spec.protocol_hash(), "fold": fold,
                            "zero_shot": False, "frame_policy": {"fps": 2.0}, "prompt_hash": "p", "limit": None,
                            "model": model, "model_description": str(model), **protocol}}
    (out / f"fold{fold}").mkdir(parents=True, exist_ok=True)
    (out / f"fold{fold}" / "metrics.json").write_text(json.dumps(metrics))


def test_one_model_scored_fold_by_fold_is_refused_too(tmp_path, tiny_model_dirs):
    """The fold leak through the per-fold loop: --fold 1 then --fold 2 with the same weights (or a mapping file
    that names one model for every fold) must not end in a "complete" mean ± std."""
    from emoreason.evaluation.report import write_fold_summary

    spec = load_benchmark("dfew", ["folds=[1,2]"])
    same = {"kind": "local", "path": "runs/a", "weights": "same"}
    _fold_run(tmp_path / "a", 1, same)
    _fold_run(tmp_path / "a", 2, {**same, "path": "runs/copy-of-a"})  # a copy: the same weights
    with pytest.raises(FoldProtocolError, match=r"folds 1, 2 .*same model"):
        write_fold_summary(spec, tmp_path / "a")
    _fold_run(tmp_path / "z", 1, same, zero_shot=True)
    _fold_run(tmp_path / "z", 2, same, zero_shot=True)
    assert write_fold_summary(spec, tmp_path / "z")["complete"]  # declared zero-shot on every fold: allowed
    mapping = tmp_path / "folds.yaml"
    mapping.write_text("1: runs/a\n2: runs/a\n")
    with pytest.raises(FoldProtocolError, match="same model"):
        fold_models(spec, str(mapping))
    # end to end: the second fold is refused before any generation, naming the fold already scored
    FIXTURES["dfew"](tmp_path / "dfew")
    common = ["--benchmark", "dfew", "--root", tmp_path / "dfew", "--out", tmp_path / "eval", "folds=[1,2]",
              "max_new_tokens=4", "--batch-size", "2", "--model", tiny_model_dirs["qwen2_5_vl"]]
    _eval(*common, "--fold", "1", check=True)
    refused = _eval(*common, "--fold", "2")
    assert refused.returncode == 2 and "folds 1, 2" in refused.stderr and "--zero-shot" in refused.stderr, \
        refused.stderr[-2000:]
    assert not (tmp_path / "eval" / "fold2" / "predictions.jsonl").exists()


@pytest.mark.parametrize(("field", "other"), [("limit", 5), ("frame_policy", {"fps": 4.0}), ("zero_shot", True)])
def test_fold_summary_refuses_folds_scored_differently(tmp_path, field, other):
    from emoreason.evaluation.report import write_fold_summary

    spec = load_benchmark("dfew", ["folds=[1,2]"])
    _fold_run(tmp_path, 1)
    _fold_run(tmp_path, 2, **{field: other})
    with pytest.raises(ProtocolMismatchError, match=field):
        write_fold_summary(spec, tmp_path)


# --- frame-level AU benchmarks --------------------------------------------------------------------------------

def test_bp4d_is_frame_level_on_the_published_folds(tmp_path):
    FIXTURES["bp4d"](tmp_path)
    windows = {"stride": 5, "frames": 16, "step": 2}
    records = load_records("bp4d", tmp_path, split="test", fold=1, windows=windows)
    # F001 and F002 are both in JAA-Net's partition 1 (a round-robin deal would split them)
    assert {r.subject for r in records} == {"F001", "F002"} and {r.fold for r in records} == {1}
    f001 = {r.meta["centre_frame"]: r for r in records if r.subject == "F001"}
    assert sorted(f001) == [BP4D_FIRST_FRAME + i for i in (0, 5, 10, 15)]
    assert f001[2440].aus == [] and len(f001[2440].meta["au_known"]) == 12  # all-negative, coded
    assert f001[2445].aus == [6, 12]  # the AUs at the centre frame, not "anywhere in the video"
    assert f001[2450].aus == [6, 12] and 1 not in f001[2450].meta["au_known"]  # AU1 coded 9 = unknown there
    window = f001[2445].media["frame_indices"]
    assert len(window) == 16 and window[8] == 5 and window[7] == 3 and window[0] == 0  # clamped at the start
    loaded = load_media(f001[2445].media, resize=False)
    centre = np.asarray(Image.open(tmp_path / "Sequences" / "F001" / "T1" / "2445.jpg").convert("RGB"))
    assert np.array_equal(loaded.frames[8], centre) and loaded.source_fps == 25.0
    assert {r.subject for r in load_records("bp4d", tmp_path, split="test", fold=2, windows=windows)} == {"F003"}
    assert {r.subject for r in load_records("bp4d", tmp_path, split="train", fold=3, windows=windows)} == \
        {"F001", "F002", "F003"}


def test_disfa_and_affwild2_windows(tmp_path):
    FIXTURES["disfa"](tmp_path / "disfa")
    records = load_records("disfa", tmp_path / "disfa", split="test", fold=2, windows={"stride": 1, "frames": 4,
                                                                                       "step": 1})
    assert {r.subject for r in records} == {"SN013"} and len(records) == 12  # JAA-Net partition 2
    by_frame = {r.meta["centre_frame"]: r for r in records}
    assert by_frame[3].aus == [] and by_frame[4].aus == [6, 12] and by_frame[6].aus == [6, 12]  # intensity ≥ 2
    assert by_frame[5].media["type"] == "video" and by_frame[5].media["frame_indices"] == [2, 3, 4, 5]
    assert {r.subject for r in load_records("disfa", tmp_path / "disfa", split="test", fold=3)} == {"SN003"}
    FIXTURES["affwild2"](tmp_path / "aw")
    spec = load_benchmark("affwild2_au", ["windows.stride=1"])
    aw = {r.meta["centre_frame"]: r for r in benchmark_records(spec, str(tmp_path / "aw"))}
    assert sorted(aw) == [1, 2, 4]  # frame 3 is unlabelled (−1) everywhere
    assert aw[1].aus == [1, 4, 15] and aw[4].aus == [] and aw[1].split == "val"


def test_a_bad_au_cell_is_a_problem_naming_its_line_not_a_crash(tmp_path):
    FIXTURES["affwild2"](tmp_path)
    table = tmp_path / "Annotations" / "AU_Detection_Challenge" / "Validation_Set" / "video2.txt"
    lines = table.read_text().splitlines()
    lines[2] = lines[2].replace("1,0,1", "1,x,1", 1)  # frame 2
    table.write_text("\n".join(lines) + "\n")
    spec = load_benchmark("affwild2_au")
    records = benchmark_records(spec, str(tmp_path))
    assert sorted(r.meta["centre_frame"] for r in records) == [1, 4]  # frame 2 dropped, the others kept
    (problem,) = [p for p in records.problems if p.kind == "malformed_row"]
    assert f"{table}:3" in str(problem) and "'x'" in str(problem)


def test_frame_level_au_f1_equals_sklearn_over_windows(tmp_path):
    FIXTURES["bp4d"](tmp_path)
    spec = load_benchmark("bp4d", ["windows.stride=1"])
    records = list(benchmark_records(spec, str(tmp_path), fold=1))
    claim = "<think>Observations: AU6 and AU12 rise; AU1 too.</think><answer>happiness</answer>"
    predictions = {r.id: {"id": r.id, "text": claim if i % 3 else "<think>nothing</think><answer>x</answer>"}
                   for i, r in enumerate(records)}
    metrics = score(spec, records, predictions)
    said = [i % 3 != 0 for i in range(len(records))]
    for au in (6, 12):
        expected = skm.f1_score([au in r.aus for r in records], said)
        assert metrics["au"]["per_au_f1"][au] == pytest.approx(expected)
    scored = [(1 in r.aus, s) for r, s in zip(records, said, strict=True) if 1 in r.meta["au_known"]]
    assert metrics["au"]["per_au_f1"][1] == 0.0 and len(scored) < len(records)  # unknown frames left out
    assert metrics["au"]["per_au_f1"][4] is None  # never present, never claimed: not measured


# --- null = not measured; one AU inclusion rule ---------------------------------------------------------------

def _record(i: int, **fields) -> SampleRecord:
    return SampleRecord(id=f"s{i}", dataset="x", media={"type": "video", "path": "x.mp4"}, **fields)


def test_metrics_without_ground_truth_are_null_not_zero(tmp_path):
    spec = load_benchmark("dfew")
    records = [_record(0, emotion="happiness"), _record(1, emotion="anger")]
    text = "<think>AU4 and AU9 rise.</think><answer>happiness</answer>"
    metrics = score(spec, records, {r.id: {"id": r.id, "text": text} for r in records})
    rationale = metrics["rationale"]
    for key in ("au_precision", "au_recall", "au_f1", "hallucination_rate", "responses_with_hallucination"):
        assert rationale[key] is None, key
    assert rationale["au_grounded_samples"] == 0 and rationale["format_valid"] == 1.0
    metrics.update(fold=1, backend="test", load_problems=[], protocol=None)
    write_report(metrics, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["rationale"]["hallucination_rate"] is None
    assert "| hallucination_rate | – |" in (tmp_path / "summary.md").read_text()
    va = score(load_benchmark("affwild2_va"), records, {})  # no VA ground truth at all
    assert va["va"] is None


def test_samples_left_out_of_recognition_are_counted_in_the_report(tmp_path):
    spec = load_benchmark("affwild2_expr")
    records = [_record(0, emotion="happiness"), _record(1)]  # a video with no labelled frame: no emotion
    text = "<think>AU6.</think><answer>happiness</answer>"
    metrics = score(spec, records, {r.id: {"id": r.id, "text": text} for r in records})
    metrics.update(fold=None, backend="test", load_problems=[], protocol=None)
    write_report(metrics, tmp_path)
    assert metrics["recognition"]["n"] == 1 and metrics["recognition"]["unlabelled"] == 1
    assert "scored on 1 of 2 samples (1 without an emotion label)" in (tmp_path / "summary.md").read_text()


def test_one_au_inclusion_rule_for_detection_and_rationale():
    spec = load_benchmark("synthfacs")
    claim = "<think>AU6 and AU12 rise.</think><answer>happiness</answer>"
    records = [_record(0, aus=[6, 12], au_frames={"6": [1.0], "12": [2.0]}),
               _record(1, aus=[], au_frames={}),  # coded, nothing active: an all-negative sample
               _record(2)]  # no AU annotation at all: not scored
    metrics = score(spec, records, {r.id: {"id": r.id, "text": claim} for r in records})
    assert metrics["au"]["n"] == metrics["rationale"]["au_grounded_samples"] == 2
    assert metrics["au"]["per_au_f1"][6] == pytest.approx(2 / 3)  # the all-negative sample's claim is a false alarm
    assert metrics["rationale"]["hallucination_rate"] == pytest.approx(2 / 4)
    assert metrics["rationale"]["responses_with_hallucination"] == pytest.approx(1 / 2)


# --- a cache that cannot lie ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_small(tmp_path_factory):
    from emoreason.synth import SynthConfig, build_dataset

    root = tmp_path_factory.mktemp("synth-small")
    build_dataset(SynthConfig(out=str(root), clips=6, frames=4, size=64, identities=3, seed=5), workers=1,
                  progress=False)
    return root


def test_cache_refuses_another_model_or_prompt_and_restart_starts_over(tmp_path, tiny_model_dirs, synth_small):
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.runner import CacheMismatchError

    spec = load_benchmark("synthfacs", ["split=null", "max_new_tokens=4"])

    def run(family, style="tags", **kw):
        backend = LocalBackend(str(tiny_model_dirs[family]), spec.frames, None, style, 2, 4)
        return evaluate(spec, backend, tmp_path / "run", root=str(synth_small), limit=2, progress=False, **kw)

    run("qwen2_5_vl")
    first = (tmp_path / "run" / "predictions.jsonl").read_text()
    with pytest.raises(CacheMismatchError, match="model:") as other:
        run("qwen3_vl")
    assert "--overwrite" in str(other.value)
    with pytest.raises(CacheMismatchError, match="prompt:"):
        run("qwen2_5_vl", style="json")
    assert (tmp_path / "run" / "predictions.jsonl").read_text() == first  # nothing mixed in
    metrics = run("qwen3_vl", on_mismatch="restart")
    assert metrics["protocol"]["model"]["path"] == str(tiny_model_dirs["qwen3_vl"])
    stale = list((tmp_path / "run").glob("stale-*/predictions.jsonl"))
    assert len(stale) == 1 and stale[0].read_text() == first  # moved aside, not lost
    assert run("qwen3_vl")["n"] == 2  # the same setup again resumes from its cache


def test_cache_refuses_predictions_made_on_other_media(tmp_path):
    """The same clip ids read from another media layout (DFEW's 16-frame folders instead of the full mp4s, via
    --media-root or layout=) are other inputs: cached answers for them are not reused."""
    from emoreason.evaluation.runner import CacheMismatchError

    dfew_variant(tmp_path / "dfew", "original")
    dfew_variant(tmp_path / "dfew", "clip_224x224_16f")
    answer = "<think>Observations: AU4.</think><answer>anger</answer>"
    with StubServer(lambda messages: ("ok", answer)) as server:
        def run(*overrides, **kw):
            spec = load_benchmark("dfew", ["frames.min_pixels=784", "frames.max_pixels=3136", *overrides])
            backend = EndpointBackend({"base_url": server.base_url, "retries": 0}, spec.frames, None, "tags")
            return evaluate(spec, backend, tmp_path / "out", root=str(tmp_path / "dfew"), fold=1, progress=False,
                            **kw)

        assert {r.media["layout"] for r in benchmark_records(load_benchmark("dfew"), str(tmp_path / "dfew"), 1)} \
            == {"original"}
        run()
        assert server.requests == 3
        with pytest.raises(CacheMismatchError, match="media") as refused:
            run("dataset_options.layout=clip_224x224_16f")
        assert "dfew-00006" in str(refused.value) and "clip_224x224_16f" in str(refused.value)
        assert server.requests == 3  # nothing generated, nothing mixed
        run()  # the original media again: resumes from the cache
        assert server.requests == 3
        run("dataset_options.layout=clip_224x224_16f", on_mismatch="restart")
        assert server.requests == 6


def test_a_cache_key_cut_by_a_kill_is_a_clear_refusal(tmp_path):
    """cache.json half-written when a run was killed: a refusal naming the file (or --overwrite), not a
    JSONDecodeError traceback."""
    from emoreason.evaluation.runner import CacheMismatchError, open_cache

    (tmp_path / "predictions.jsonl").write_text('{"id": "a", "text": "x", "error": null}\n')
    (tmp_path / "cache.json").write_text('{"model": {"kind": "lo')
    with pytest.raises(CacheMismatchError, match=r"cache\.json.*unreadable"):
        open_cache(tmp_path, {"model": {}})
    open_cache(tmp_path, {"model": {}}, on_mismatch="restart")
    assert json.loads((tmp_path / "cache.json").read_text()) == {"model": {}}
    assert not (tmp_path / "predictions.jsonl").exists() and list(tmp_path.glob("stale-*/predictions.jsonl"))


def test_plots_draw_no_bar_for_what_was_not_measured(tmp_path, monkeypatch):
    import matplotlib.axes

    heights = {}
    original = matplotlib.axes.Axes.bar

    def spy(self, x, height, *args, **kwargs):
        heights.update(zip(list(x), list(height), strict=True))
        return original(self, x, height, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", spy)
    metrics = {"benchmark": "x", "n": 2, "generation_errors": 0, "fold": None, "backend": "t", "load_problems": [],
               "protocol": None, "au": {"per_au_f1": {1: 0.5, 4: None}, "support": {1: 1, 4: 0}, "n": 2,
                                        "mean_f1": 0.5, "aus_measured": 1, "aus": 2}}
    write_report(metrics, tmp_path)
    assert heights["AU1"] == 0.5 and np.isnan(heights["AU4"])  # not a bar at 0: AU4 was not measured


def test_weights_fingerprint_tells_fine_tunes_apart(tmp_path, tiny_model_dirs):
    from emoreason.evaluation.identity import weights_fingerprint
    from emoreason.models import build_tiny_model

    original = tiny_model_dirs["qwen2_5_vl"]
    copy = shutil.copytree(original, tmp_path / "copy")
    retrained = build_tiny_model("qwen2_5_vl", tmp_path / "seed1", seed=1)  # same architecture and sizes
    assert weights_fingerprint(copy) == weights_fingerprint(original)
    assert weights_fingerprint(retrained) != weights_fingerprint(original)


def test_fingerprint_sees_a_fine_tune_of_one_small_module(tmp_path, monkeypatch):
    """A large shard where only a small tensor changed (a projector-only fine-tune): evenly spaced blocks can
    miss it, so every tensor's own bytes are sampled too. (Scaled down: the whole-file limit is lowered so an
    8 MiB file takes the path a multi-GB shard takes.)"""
    import torch
    from safetensors.torch import save_file

    from emoreason.evaluation import identity

    monkeypatch.setattr(identity, "_WHOLE_FILE_LIMIT", 2**20)
    monkeypatch.setattr(identity, "_BLOCKS", 4)
    generator = torch.Generator().manual_seed(0)
    tensors = {"a_layers": torch.randn(2**20, generator=generator), "b_projector": torch.zeros(2048),
               "c_layers": torch.randn(2**20, generator=generator)}
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    for folder in (base, tuned):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    save_file(tensors, base / "model.safetensors")
    save_file({**tensors, "b_projector": torch.full((2048,), 0.01)}, tuned / "model.safetensors")
    assert (base / "model.safetensors").stat().st_size > identity._WHOLE_FILE_LIMIT
    assert identity.weights_fingerprint(base) != identity.weights_fingerprint(tuned)


def test_endpoint_identity_fingerprints_a_local_weights_path(tmp_path):
    """Retrained into the same directory and served again: the endpoint, served name and weights path are the
    same, the weights are not — a cache keyed on the path alone would answer with the old model."""
    from emoreason.evaluation.identity import endpoint_identity, model_key
    from emoreason.models import build_tiny_model

    weights = build_tiny_model("qwen2_5_vl", tmp_path / "sft" / "final", seed=0)
    with StubServer(lambda messages: ("ok", "x"), root=str(weights)) as server:
        before = endpoint_identity(server.base_url, None)
        build_tiny_model("qwen2_5_vl", weights, seed=1)  # retrained in place
        after = endpoint_identity(server.base_url, None)
    assert before["root"] == after["root"] == str(weights)
    assert model_key(before) != model_key(after)


# --- endpoint parity: frame folders go inline, losslessly -----------------------------------------------------

def _decode_frames(url: str) -> list[np.ndarray]:
    assert url.startswith("data:video/jpeg;base64,"), url[:60]
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(x))).convert("RGB"))
            for x in url.removeprefix("data:video/jpeg;base64,").split(",")]


def test_endpoint_sends_frame_folders_inline_and_lossless(tmp_path):
    FIXTURES["dfew"](tmp_path / "dfew")
    spec = load_benchmark("dfew", ["frames.min_pixels=784", "frames.max_pixels=3136"])
    records = [r for r in benchmark_records(spec, str(tmp_path / "dfew"), fold=2) if r.media["type"] == "frames"]
    answer = "<think>Observations: AU6 and AU12.\nInterpretation: x.\nConclusion: happiness.</think>" \
             "<answer>happiness</answer>"
    with StubServer(lambda messages: ("ok", answer)) as server:
        backend = EndpointBackend({"base_url": server.base_url, "retries": 0}, spec.frames, None, "tags")
        metrics = evaluate(spec, backend, tmp_path / "out", root=str(tmp_path / "dfew"), fold=2, progress=False)
        bodies = server.bodies
    assert metrics["generation_errors"] == 0 and len(bodies) == len(records) == 2
    local = [load_media(r.media, FramePolicy(**spec.frames)).frames for r in records]
    for body in bodies:
        url = next(p["video_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "video_url")
        sent = _decode_frames(url)
        kwargs = body["media_io_kwargs"]["video"]
        assert kwargs["fps"] == 25.0 and kwargs["num_frames"] == -1 and len(kwargs["frames_indices"]) == len(sent)
        assert any(len(f) == len(sent) and all(np.array_equal(a, b) for a, b in zip(f, sent, strict=True))
                   for f in local)  # exactly the frames local evaluation sees
    assert metrics["protocol"]["model"]["served_model"] == "stub-teacher"


# --- compare refuses runs scored under different protocols ----------------------------------------------------

def _run_dir(path: Path, prompt: str, war: float) -> Path:
    path.mkdir(parents=True)
    protocol = {"benchmark": "x", "protocol_hash": "p1", "prompt_hash": prompt, "frame_policy": {"fps": 2.0},
                "fold": None, "limit": None, "split": "test"}
    write_report({"benchmark": "x", "n": 2, "generation_errors": 0, "recognition": None, "protocol": protocol,
                  "fold": None, "backend": "t", "load_problems": []}, path)
    metrics = json.loads((path / "metrics.json").read_text())
    metrics["recognition"] = {"war": war, "uar": war}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_compare_refuses_different_protocols_unless_told(tmp_path):
    a, b = _run_dir(tmp_path / "a", "h1", 0.5), _run_dir(tmp_path / "b", "h1", 0.6)
    c = _run_dir(tmp_path / "c", "h2", 0.7)
    assert "| WAR | 50.0 | 60.0 |" in compare([str(a), str(b)])
    with pytest.raises(ProtocolMismatchError, match="prompt_hash"):
        compare([str(a), str(c)])
    table = compare([str(a), str(c)], allow_protocol_mismatch=True)
    assert "protocols differ" in table and "| WAR | 50.0 | 70.0 |" in table
    refused = _eval("compare", a, c)
    assert refused.returncode == 2 and "--allow-protocol-mismatch" in refused.stderr


def test_protocol_line_prints_the_frame_bounds_the_loader_applies(demo_clip):
    """`frames={..., max_frames: 2}` printed `min_frames=4, max_frames=2` while the loader (qwen-vl-utils'
    rule) takes 2 frames: max_frames caps min_frames, and both are rounded to the temporal patch."""
    from dataclasses import asdict, replace

    from emoreason.evaluation.report import protocol_line
    from emoreason.video import load_frames

    capped = replace(FramePolicy(), fps=8.0, max_frames=2)
    assert len(load_frames(demo_clip, capped).frames) == 2  # the 16-frame clip gives 2, not 4
    line = protocol_line({"benchmark": "synthfacs", "frame_policy": asdict(capped)})
    assert "min_frames=2, max_frames=2" in line and "min_frames=4" not in line
    odd = replace(FramePolicy(), min_frames=3, max_frames=7)  # frame_factor 2: 4 to 6 frames
    assert "min_frames=4, max_frames=6" in protocol_line({"benchmark": "synthfacs", "frame_policy": asdict(odd)})
    assert "min_frames=4, max_frames=768" in protocol_line({"benchmark": "b", "frame_policy": asdict(FramePolicy())})
    fixed = protocol_line({"benchmark": "b", "frame_policy": asdict(replace(FramePolicy(), nframes=6))})
    assert "nframes=6" in fixed and "min_frames" not in fixed  # a fixed count: no bounds applied
    for policy, (fewest, most) in ((capped, (2, 2)), (odd, (4, 6)), (FramePolicy(), (4, 768))):
        assert policy.frame_bounds() == (fewest, most)
        assert policy.num_frames(10_000, 10_000.0) == fewest  # a long clip sampled sparsely: the fewest frames
        assert policy.num_frames(10_000, 1.0) == most  # sampled densely: the most
