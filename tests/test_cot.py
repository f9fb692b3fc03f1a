"""AU-grounded CoT synthesis: grounded, verified, varied, resumable, and robust to a failing teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from emoreason.config import load_config
from emoreason.cot.compose import compose_rationale
from emoreason.cot.evidence import evidence_for
from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.cot.temporal import Timeline, analyse
from emoreason.cot.verify import Grounding, verify_rationale
from emoreason.datasets import load_records
from emoreason.knowledge import find_emotions
from emoreason.reasoning import parse_response
from emoreason.records import SampleRecord
from emoreason.synth import SynthConfig, build_dataset

from openai_stub import StubServer, echo_draft, user_text


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    build_dataset(SynthConfig(out=str(root), clips=40, frames=8, size=64, difficulty="hard", emotions="all",
                              seed=4), workers=1, progress=False)
    return root


def _rows(out):
    return [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]


def test_end_to_end_rationales_are_grounded(synth_root, tmp_path):
    out = CoTPipeline(CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "cot")),
                      progress=False).run()
    rows = _rows(out)
    records = {r.id: r for r in load_records("synthfacs", synth_root)}
    assert len(rows) == 40, json.loads((out / "summary.json").read_text())
    for row in rows:
        text = row["completion"][0]["content"][0]["text"]
        parsed = parse_response(text)
        record = records[row["id"]]
        assert parsed.format_ok and parsed.sections_ok
        assert parsed.emotion == record.emotion == row["emotion"]
        assert set(parsed.aus) <= set(record.aus), (text, record.aus)
        assert not set(parsed.negated_aus) & set(record.aus)
        key = {int(a) for a, v in record.au_intensity.items() if v >= 1.5}
        assert key <= set(parsed.aus)
        assert row["video"] == record.media["path"] and row["prompt"][-1]["content"][0] == {"type": "video"}
        assert json.loads(row["provenance"])["evidence"] == row["au_source"] == "synthetic" and row["au_observed"]
    import datasets

    loaded = datasets.load_from_disk(str(out / "hf"))
    assert sum(len(split) for split in loaded.values()) == 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] == 40 and summary["labels"] and summary["aus"]


def test_json_style_answers_carry_the_evidence_aus(synth_root, tmp_path):
    out = CoTPipeline(CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "j"), style="json",
                                max_records=8), progress=False).run()
    for row in _rows(out):
        answer = row["completion"][0]["content"][0]["text"].split("<answer>")[1].split("</answer>")[0]
        payload = json.loads(answer)
        assert set(payload["aus"]) <= set(row["aus"]) and "valence" in payload


def _analysis(aus_peaks: dict[int, float], frames: int = 12):
    au_frames = {str(a): [0.0] * 3 + [p] * (frames - 6) + [0.0] * 3 for a, p in aus_peaks.items()}
    record = SampleRecord(id="x", dataset="synthfacs", media={"type": "video", "path": "x.mp4", "fps": 8.0},
                          emotion="happiness", au_frames=au_frames)
    evidence = evidence_for(record)
    return analyse(evidence), evidence, Timeline.build("seconds", 8.0, frames)


def test_variety_at_least_50_surface_forms_per_part():
    analysis, evidence, timeline = _analysis({6: 3.0, 12: 4.0, 25: 2.0})
    parts = {"observations": set(), "interpretation": set(), "conclusion": set()}
    for seed in range(600):
        parsed = parse_response(compose_rationale(analysis, "happiness", seed, timeline=timeline,
                                                  coded=evidence.coded).text)
        for name in parts:
            parts[name].add(getattr(parsed, name))
    assert {k: len(v) >= 50 for k, v in parts.items()} == dict.fromkeys(parts, True), {k: len(v) for k, v in
                                                                                       parts.items()}


def test_interpretation_follows_facs_knowledge():
    duchenne_analysis, evidence, _ = _analysis({6: 3.0, 12: 4.0})
    duchenne = compose_rationale(duchenne_analysis, "happiness", 3, coded=evidence.coded).content.interpretation
    social = compose_rationale(_analysis({12: 4.0})[0], "happiness", 3, coded=evidence.coded).content.interpretation
    assert "AU6" in duchenne and ("Duchenne" in duchenne or "genuine" in duchenne or "felt" in duchenne
                                  or "spontaneous" in duchenne or "eyes" in duchenne)
    parsed = parse_response(f"<think>{social}</think><answer>happy</answer>")
    assert 6 in parsed.negated_aus and 12 in parsed.aus
    # a source that does not code AU6 may not have it called absent
    uncoded = compose_rationale(_analysis({12: 4.0})[0], "happiness", 3, coded=frozenset({12})).content
    assert 6 not in parse_response(f"<think>{uncoded.interpretation}</think><answer>x</answer>").negated_aus


@pytest.mark.parametrize(("text", "reason"), [
    ("<think>Observations: AU6 and AU12 and AU4 rise.\nInterpretation: x.\nConclusion: happy.</think>"
     "<answer>happiness</answer>", "hallucinated_au"),
    ("<think>Observations: AU12 rises; there is no AU6.\nInterpretation: x.\nConclusion: happy.</think>"
     "<answer>happiness</answer>", "negated_present_au"),
    ("<think>Observations: AU6 and AU12 rise.\nInterpretation: x.\nConclusion: sad.</think>"
     "<answer>sadness</answer>", "wrong_answer"),
    ("<think>Observations: AU12 rises.\nInterpretation: x.\nConclusion: happy.</think><answer>happiness</answer>",
     "missing_key_au"),
    ("<think>AU6 and AU12 rise.</think><answer>happiness</answer>", "format"),
    ("<think>Observations: AU6, AU12 and AU99 rise.\nInterpretation: x.\nConclusion: happy.</think>"
     "<answer>happiness</answer>", "invalid_au"),
])
def test_verifier_rejects_planted_faults(text, reason):
    verdict = verify_rationale(text, "happiness", evidence_aus={6, 12}, key_aus={6, 12})
    assert not verdict.ok and reason in verdict.reasons


def test_prototype_rationale_reasons_from_expected_cues_not_from_the_label(tmp_path):
    record = SampleRecord(id="lab", dataset="rafdb", media={"type": "image", "path": "a.jpg"}, emotion="sadness")
    evidence = evidence_for(record)
    assert evidence.source == "prototype" and not evidence.observed and evidence.coded == frozenset()
    analysis = analyse(evidence)
    grounding = Grounding.build(analysis, evidence, 1.5)
    for seed in range(100):
        text = compose_rationale(analysis, "sadness", seed, observed=False, noun="image").text
        parsed = parse_response(text)
        assert not find_emotions(parsed.observations), text  # used to open with "the prototype of sadness"
        assert "observ" in parsed.observations or "measure" in parsed.observations
        assert verify_rationale(text, "sadness", grounding.present, grounding.key, grounding=grounding).ok, text


def test_teacher_rewrites_and_failures_are_recorded(synth_root, tmp_path):
    def behaviour(messages):
        text = user_text(messages)
        if "\nLabel: anger\n" in text:
            return "error", 500
        if "\nLabel: fear\n" in text:
            return "sleep", 3.0
        return echo_draft(messages)

    with StubServer(behaviour) as server:
        cfg = CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "t"), max_records=24,
                        teacher={"base_url": server.base_url, "concurrency": 4, "timeout_s": 0.5, "retries": 1,
                                 "backoff_s": 0.01})
        out = CoTPipeline(cfg, progress=False).run()
    rows = _rows(out)
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    records = {r.id: r for r in load_records("synthfacs", synth_root)[:24]}
    failing = {i for i, r in records.items() if r.emotion in ("anger", "fear")}
    assert failing and {r["id"] for r in rejected if r["reasons"] == ["teacher_error"]} == failing
    assert {r["id"] for r in rows} == set(records) - failing
    assert all(json.loads(r["provenance"])["composer"] == "teacher" for r in rows)
    assert all("Looking closely" in r["completion"][0]["content"][0]["text"] for r in rows)
    timeouts = [r for r in rejected if r["id"] in failing and "timeout" in r["detail"]["error"]]
    assert timeouts, rejected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_by_reason"]["teacher_error"] == len(failing)


def test_kill_and_rerun_is_complete_and_duplicate_free(synth_root, tmp_path):
    with StubServer(echo_draft, delay_s=0.05) as server:
        config = tmp_path / "cfg.yaml"
        config.write_text(f"dataset_root: {synth_root}\noutput_dir: {tmp_path / 'k'}\nshard_size: 2\n"
                          f"teacher:\n  base_url: {server.base_url}\n  concurrency: 1\n")
        args = [sys.executable, "-m", "emoreason", "synth-cot", "--config", str(config)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        shards = tmp_path / "k" / "shards"
        deadline = time.time() + 120
        while time.time() < deadline and len(list(shards.glob("shard-*[0-9].jsonl"))) < 3:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = len(list(shards.glob("shard-*[0-9].jsonl")))
        assert 0 < done < 20 and not (tmp_path / "k" / "data.jsonl").exists()
        subprocess.run(args, check=True, capture_output=True, timeout=300)
        subprocess.run(args, check=True, capture_output=True, timeout=300)  # idempotent re-run
    rows = _rows(tmp_path / "k")
    ids = [r["id"] for r in rows]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset_root: a\nkey_au_threshold: 2\nteacher:\n  base_url: http://x/v1\n")
    cfg = load_config(CoTConfig, path, ["max_records=5", "teacher.concurrency=3", "style=json"])
    assert (cfg.dataset_root, cfg.key_au_threshold, cfg.max_records, cfg.style) == ("a", 2.0, 5, "json")
    assert cfg.teacher == {"base_url": "http://x/v1", "concurrency": 3}
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(CoTConfig, path, ["bogus=1"])


def test_config_numbers_written_as_yaml_strings_are_coerced(tmp_path):
    from emoreason.config import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("dataset_root: a\nkey_au_threshold: '2.5'\n")
    assert load_config(CoTConfig, path).key_au_threshold == 2.5
    with pytest.raises(ConfigError, match="key_au_threshold"):
        load_config(CoTConfig, path, ["key_au_threshold=high"])


def _copy_manifest(synth_root, target, keep=lambda i, line: True):
    target.mkdir()
    (target / "clips").symlink_to(synth_root / "clips")
    lines = (synth_root / "manifest.jsonl").read_text().splitlines()
    (target / "manifest.jsonl").write_text("".join(x + "\n" for i, x in enumerate(lines) if keep(i, x)))
    return target


def _row_keys(out):
    return sorted((r["id"], r["completion"][0]["content"][0]["text"]) for r in _rows(out))


def test_resume_rebuilds_a_shard_whose_records_changed(synth_root, tmp_path):
    """Issue 17: shards carry a fingerprint of their record ids; resume matched shards by index only, so a changed
    record list silently kept rows of dropped records and skipped the records that moved into a finished shard."""
    data = _copy_manifest(synth_root, tmp_path / "data")
    cfg = CoTConfig(dataset_root=str(data), output_dir=str(tmp_path / "out"), shard_size=8)
    CoTPipeline(cfg, progress=False).run()
    assert len(_rows(tmp_path / "out")) == 40
    # the dataset changes under the output dir: three records of the first shard and the last two disappear
    _copy_manifest(synth_root, tmp_path / "data2", keep=lambda i, _: i not in (1, 3, 5, 38, 39))
    (data / "manifest.jsonl").write_text((tmp_path / "data2" / "manifest.jsonl").read_text())
    out = CoTPipeline(cfg, progress=False).run()
    fresh = CoTPipeline(CoTConfig(dataset_root=str(data), output_dir=str(tmp_path / "fresh"), shard_size=8),
                        progress=False).run()
    assert _row_keys(out) == _row_keys(fresh) and len(_rows(out)) == 35
    shards = json.loads((out / "summary.json").read_text())["shards"]
    assert shards == {"total": 5, "reused": 0, "rebuilt": 5, "removed_stale": 0}  # every shard shifted
    # unchanged records: every shard reused, nothing recomputed
    again = json.loads((CoTPipeline(cfg, progress=False).run() / "summary.json").read_text())["shards"]
    assert again == {"total": 5, "reused": 5, "rebuilt": 0, "removed_stale": 0}


def test_multi_task_rows_follow_the_mixing_ratios_deterministically(synth_root, tmp_path):
    tasks = {"cot": 1.0, "au_perception": 0.5, "emotion": 0.25}
    runs = []
    for name in ("a", "b"):
        cfg = CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / name), tasks=tasks)
        runs.append(_rows(CoTPipeline(cfg, progress=False).run()))
    assert [r["id"] for r in runs[0]] == [r["id"] for r in runs[1]]
    counts = Counter(r["task"] for r in runs[0])
    assert counts["cot"] == 40 and 10 <= counts["au_perception"] <= 30 and 2 <= counts["emotion"] <= 18
    for row in runs[0]:
        text = row["prompt"][-1]["content"][-1]["text"]
        if row["task"] == "au_perception":
            assert "Which facial Action Units (AUs) are active, and how strongly" in text
            assert row["completion"][0]["content"][0]["text"].startswith("<answer>AU")
        if row["task"] == "emotion":
            assert row["completion"][0]["content"][0]["text"] == f"<answer>{row['emotion']}</answer>" or \
                parse_response(row["completion"][0]["content"][0]["text"]).emotion == row["emotion"]
    with pytest.raises(ValueError, match="unknown tasks"):
        CoTConfig(tasks={"captions": 1.0})


def test_self_distillation_failures_and_duplicates_are_counted(synth_root, tmp_path):
    """Every candidate is verified; duplicates, records with no output and records with no verified candidate
    are counted in summary.json (they used to vanish)."""
    template = _rows(CoTPipeline(CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "t"),
                                           max_records=12), progress=False).run())
    by_clip = {Path(r["video"]).name: r for r in template}
    emotions = Counter(r["emotion"] for r in template)
    silent, wrong = sorted(emotions)[:2]  # no output for one emotion, unverifiable output for another

    def behaviour(messages):
        url = next(p["video_url"]["url"] for p in messages[-1]["content"] if p.get("type") == "video_url")
        row = by_clip[url.rsplit("/", 1)[1]]
        if row["emotion"] == silent:
            return "error", 500
        if row["emotion"] == wrong:
            return "ok", "<think>Observations: AU99 rises.\nInterpretation: x.\nConclusion: x.</think><answer>x</answer>"
        return "ok", row["completion"][0]["content"][0]["text"]

    with StubServer(behaviour) as server:
        cfg = CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "sd"), max_records=12,
                        self_distill={"endpoint": {"base_url": server.base_url, "retries": 0, "timeout_s": 10},
                                      "k": 3})
        out = CoTPipeline(cfg, progress=False).run()
    summary = json.loads((out / "summary.json").read_text())
    ok = 12 - emotions[silent] - emotions[wrong]
    assert summary["accepted"] == ok
    assert summary["failed_by_reason"] == {"self_distill_no_output": emotions[silent]}
    assert summary["deduplicated"] == {"cot": 2 * ok}  # k = 3 identical samples: one row each
    assert summary["self_distillation"] == {"records": 12, "candidates": 3 * (12 - emotions[silent]),
                                            "none_verified": emotions[wrong]}
    assert summary["rejected_by_reason"]["invalid_au"] == 3 * emotions[wrong]
