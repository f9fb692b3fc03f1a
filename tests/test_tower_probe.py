"""bench/tower_probe.py: the vision tower trained alone on pooled video tokens (the learning check's diagnostic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bench_support import load_bench


@pytest.mark.slow
def test_tower_probe_learns_a_visible_label_through_the_models_own_tower(tmp_path, tiny_model_dirs):
    """bench/tower_probe.py trains the tower + merger on pooled video tokens: on clips whose colour is the label
    (a positive control), held-out accuracy must reach near 100 % — it fails if clips, labels and pooled tokens
    are misaligned, or if the tower's gradient does not flow."""
    from emoreason.synth import SynthConfig, build_dataset
    from emoreason.video import write_video

    synth = tmp_path / "synth"
    build_dataset(SynthConfig(out=str(synth), clips=64, frames=4, size=56, difficulty="easy", identities=16),
                  workers=1, progress=False)
    records = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    labels = sorted({r["emotion"] for r in records})
    rng = np.random.default_rng(0)
    for record in records:  # every clip becomes a flat colour that encodes its label, plus noise
        hue = labels.index(record["emotion"]) / len(labels)
        colour = np.array([255 * hue, 255 * (1 - hue), 128 + 100 * np.sin(6.28 * hue)], dtype=np.float32)
        frames = colour + rng.normal(0, 6, (4, 56, 56, 3))
        write_video(np.clip(frames, 0, 255).astype(np.uint8), synth / record["media"]["path"], fps=8)
    out = tmp_path / "history.json"
    assert load_bench("tower_probe").main(["--model", str(tiny_model_dirs["qwen2_5_vl"]), "--synth", str(synth),
                                           "--frames", "{max_frames: 4, min_pixels: 3136, max_pixels: 3136}",
                                           "--epochs", "8", "--lr", "3e-3", "--batch-size", "8",
                                           "--au-weight", "1", "--out", str(out),
                                           "--save", str(tmp_path / "warm")]) == 0
    result = json.loads(out.read_text())
    history = result["history"]
    assert all("val_accuracy" in h and "test_accuracy" in h for h in history) and result["selected_epoch"] >= 1
    test_n = len((synth / "test.jsonl").read_text().splitlines())
    assert test_n >= 6 and history[-1]["test_accuracy"] >= 0.8, history[-1]
    assert history[0]["loss"] > history[-1]["loss"]
    # the saved warm-up checkpoint carries the trained tower and loads as a model SFT can start from
    from emoreason.models import load_model_and_processor

    warm, _ = load_model_and_processor(tmp_path / "warm", device="cpu")
    untrained, _ = load_model_and_processor(tiny_model_dirs["qwen2_5_vl"], device="cpu")
    before = dict(untrained.named_parameters())
    changed = {n for n, p in warm.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".visual." in n for n in changed), sorted(changed)[:5]  # the tower, nothing else


def test_the_warmup_preset_warms_each_arm_up_before_its_sft_and_the_control_on_deranged_clips(tmp_path, capsys):
    """Each arm's warm-up is the user's `emoreason vision-warmup` on that arm's CoT dataset (the control's: its
    deranged clips, bench.shuffled_copy), under the run's frame policy and seed, and its SFT starts from it."""
    bench = load_bench("learning")
    run = tmp_path / "run"
    assert bench.main(["--scale", "warmup", "--out", str(run), "--dry-run"]) == 0
    commands = [line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    order = [c.split()[1] for c in commands]
    assert order == ["tiny-model", "synth", "synth-cot", "vision-warmup", "sft", "vision-warmup", "sft", "eval",
                     "eval"], order
    sft_warm, control_warm = [c for c in commands if c.startswith("emoreason vision-warmup")]
    assert "--config recipes/tiny/warmup/synthfacs.yaml " in sft_warm
    assert f"dataset_name={run / 'cot' / 'hf'} " in sft_warm and f"model_name_or_path={run / 'model'} " in sft_warm
    assert f"dataset_name={run / 'cot_shuffled'} " in control_warm
    assert f"output_dir={run / 'control' / 'vision_warmup'} " in control_warm
    assert all(f" {key}" in sft_warm for key in ("fps=4.0", "max_frames=2", "min_pixels=3136", "max_pixels=3136",
                                                  "seed=0"))
    sfts = [c for c in commands if c.startswith("emoreason sft")]
    assert f"model_name_or_path={run / 'sft' / 'vision_warmup' / 'final'}" in sfts[0]
    assert f"model_name_or_path={run / 'control' / 'vision_warmup' / 'final'}" in sfts[1]
    assert "vision_patch=28" in commands[0]
    # the AU-perception rows carry the observed AUs the warm-up's AU head reads; SFT trains on the short answers
    assert "tasks={emotion: 1.0, au_perception: 1.0}" in commands[2]
    assert all("tasks=[emotion]" in c for c in sfts)


def test_a_finished_warmup_is_reused_and_one_done_with_other_options_is_refused(tmp_path, capsys):
    from dataclasses import asdict

    from emoreason.config import ConfigError, load_config
    from emoreason.training.vision_warmup import CONFIG_FILE, SUMMARY_FILE, VisionWarmupConfig, inputs_key

    bench = load_bench("learning")
    plan = bench.preset("warmup")
    out = tmp_path / "run"
    runner = bench.Runner(out, dry=True)
    warm = out / "sft" / "vision_warmup"
    (warm / "final").mkdir(parents=True)
    (warm / "final" / "config.json").write_text("{}")
    cfg = load_config(VisionWarmupConfig, bench.ROOT / plan.vision_warmup_recipe, [
        f"model_name_or_path={out / 'model'}", f"dataset_name={out / 'cot' / 'hf'}", f"output_dir={warm}",
        f"seed={plan.seed}", *[f"{k}={v}" for k, v in plan.frame_policy.items()]])
    (warm / CONFIG_FILE).write_text(json.dumps(asdict(cfg)))
    (warm / SUMMARY_FILE).write_text(json.dumps({"completed": True, "config": asdict(cfg), "inputs": inputs_key(cfg)}))
    assert bench.warm_up(runner, plan, out / "model", out, "sft", out / "cot" / "hf") == warm / "final"
    assert "vision-warmup" not in capsys.readouterr().out  # reused: the stage is not run again
    plan.vision_warmup_overrides = ["num_train_epochs=5"]
    with pytest.raises(ConfigError, match="different config"):
        bench.warm_up(runner, plan, out / "model", out, "sft", out / "cot" / "hf")
    plan.vision_warmup_overrides = ["epochs=5"]  # a key the stage does not have: an error before anything runs
    with pytest.raises(ConfigError, match="unknown config keys.*epochs"):
        bench.warm_up(runner, plan, out / "model", out, "sft", out / "cot" / "hf")


def test_targets_a_run_does_not_measure_are_reported_as_not_measured_never_met():
    """Short-answer rows cite no AUs: the cited-AU F1 and hallucination targets are 'not measured' (they used to
    read as 0.0 and MISSED, as if the model had cited wrong AUs), and the run still does not pass its targets."""
    bench = load_bench("learning")
    sft = {"n": 255, "war": 0.51, "uar": 0.508, "war_ci95": [0.449, 0.571], "chance_bar": 0.145, "au_f1": None,
           "hallucination_rate": None, "format_valid": None}
    results = {"sft": sft, "control": {**sft, "war": 0.114, "war_ci95": [0.08, 0.159]}}
    targets = bench.check_targets(results)
    assert targets["sft_cited_au_f1>=0.60"] is None and targets["sft_hallucination<=0.20"] is None
    assert targets["sft_ci_excludes_chance"] and targets["control_within_5_points_of_chance"]
    assert not all(targets.values())
    text = bench.report({"results": results, "targets": targets, "chance": 0.125, "wall_seconds": 60,
                         "stage_seconds": {}})
    assert "| sft | 255 | 51.0 (44.9–57.1) | 50.8 | — | — | — |" in text
    assert "sft_cited_au_f1>=0.60 not measured" in text and "sft_war>=0.60 MISSED" in text
    measured = bench.check_targets({"sft": {**sft, "au_f1": 0.7, "hallucination_rate": 0.1}})
    assert measured["sft_cited_au_f1>=0.60"] is True and measured["sft_hallucination<=0.20"] is True


def test_the_synth_level_control_is_a_derangement_that_keeps_every_label(tmp_path):
    """bench.shuffled_synth_copy (the audio warm-up's deranged-track control): every training clip gets another's
    media, labels and AUs stay, val/test untouched, the clips linked."""
    bench = load_bench("learning")
    synth = tmp_path / "synth"
    (synth / "clips").mkdir(parents=True)
    records = [{"id": f"c{i}", "emotion": ["happiness", "anger"][i % 2], "aus": [12] if i % 2 == 0 else [4],
                "media": {"path": f"clips/c{i}.mp4", "type": "video"}} for i in range(7)]
    (synth / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (synth / "test.jsonl").write_text(json.dumps(records[0]) + "\n")
    counts = bench.shuffled_synth_copy(synth, tmp_path / "shuffled", seed=1)
    after = [json.loads(line) for line in (tmp_path / "shuffled" / "train.jsonl").read_text().splitlines()]
    assert counts == {"clips": 7, "kept_own_video": 0}
    assert [r["id"] for r in after] == [r["id"] for r in records]
    assert [(r["emotion"], r["aus"]) for r in after] == [(r["emotion"], r["aus"]) for r in records]
    assert all(a["media"]["path"] != b["media"]["path"] for a, b in zip(after, records, strict=True))
    assert sorted(r["media"]["path"] for r in after) == sorted(r["media"]["path"] for r in records)
    assert (tmp_path / "shuffled" / "test.jsonl").read_text() == (synth / "test.jsonl").read_text()
    assert (tmp_path / "shuffled" / "clips").resolve() == (synth / "clips").resolve()


def test_the_cot_preset_runs_the_documented_curriculum(tmp_path, capsys):
    """`--scale cot`: the warm-up preset's stages, then SFT on CoT + short-answer rows from the short-answer model,
    GRPO from that at a low rollout temperature, the CoT question scored before and after GRPO (docs/benchmarks.md's
    3,200-clip CoT and GRPO figures as one run)."""
    bench = load_bench("learning")
    run = tmp_path / "run"
    assert bench.main(["--scale", "cot", "--out", str(run), "--dry-run"]) == 0
    commands = [line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    order = [c.split()[1] for c in commands]
    assert order == ["tiny-model", "synth", "synth-cot", "vision-warmup", "sft", "sft", "eval", "grpo", "eval"], order
    assert "--clips 3200" in commands[1] and "tasks={cot: 1.0, emotion: 1.0}" in commands[2]
    short, cot = [c for c in commands if c.startswith("emoreason sft")]
    assert "tasks=[emotion]" in short and "tasks=" not in cot
    assert f"model_name_or_path={run / 'sft' / 'sft' / 'final'}" in cot and "learning_rate=2e-3" in cot
    grpo = next(c for c in commands if c.startswith("emoreason grpo"))
    assert f"model_name_or_path={run / 'sft' / 'sft_cot' / 'final'}" in grpo
    assert all(k in grpo for k in ("temperature=0.3", "max_steps=100", "max_frames=2", "reward_options={}"))
    evals = [c for c in commands if c.startswith("emoreason eval")]
    assert all("task=" not in c for c in evals)  # the benchmark's CoT question
