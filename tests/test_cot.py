"""AU-grounded CoT synthesis: grounded, verified, varied, resumable, and robust to a failing teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from emoreason.config import load_config
from emoreason.cot.compose import compose_rationale
from emoreason.cot.evidence import evidence_for
from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.cot.temporal import analyse
from emoreason.cot.verify import verify_rationale
from emoreason.datasets import load_records
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
        assert json.loads(row["provenance"])["evidence"] == "dataset_frames"
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
    return analyse(evidence_for(record))


def test_variety_at_least_50_surface_forms_per_part():
    analysis = _analysis({6: 3.0, 12: 4.0, 25: 2.0})
    parts = {"observations": set(), "interpretation": set(), "conclusion": set()}
    for seed in range(600):
        parsed = parse_response(compose_rationale(analysis, "happiness", seed).text)
        for name in parts:
            parts[name].add(getattr(parsed, name))
    assert {k: len(v) >= 50 for k, v in parts.items()} == dict.fromkeys(parts, True), {k: len(v) for k, v in
                                                                                       parts.items()}


def test_interpretation_follows_facs_knowledge():
    duchenne = compose_rationale(_analysis({6: 3.0, 12: 4.0}), "happiness", 3).content.interpretation
    social = compose_rationale(_analysis({12: 4.0}), "happiness", 3).content.interpretation
    assert "AU6" in duchenne and ("Duchenne" in duchenne or "genuine" in duchenne or "felt" in duchenne
                                  or "spontaneous" in duchenne or "eyes" in duchenne)
    parsed = parse_response(f"<think>{social}</think><answer>happy</answer>")
    assert 6 in parsed.negated_aus and 12 in parsed.aus


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


def test_prototype_rationale_is_marked_not_observed(tmp_path):
    record = SampleRecord(id="lab", dataset="rafdb", media={"type": "image", "path": "a.jpg"}, emotion="sadness")
    evidence = evidence_for(record)
    assert evidence.source == "prototype" and not evidence.observed
    text = compose_rationale(analyse(evidence), "sadness", 1, observed=False).text
    assert "prototype" in text and verify_rationale(text, "sadness", {1, 4, 15}, {1, 4, 15}).ok


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
