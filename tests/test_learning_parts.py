"""The pieces of the learning run (fast): size options of the embedded model, per-module learning rates, the
shuffled-video control data, and the statistics that say "above chance" and "GRPO helped"."""

from __future__ import annotations

import json
import os
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_support import load_bench
from recipe_support import tiny_recipe

from emoreason.config import ConfigError
from emoreason.evaluation.significance import accuracy, cited_au_f1, paired_bootstrap, wilson_interval
from emoreason.models.tiny import TinySpec, build_tiny_model, spec_from_overrides
from emoreason.training.optim import module_of, split_param_groups


def _bench():
    return load_bench("learning")


def test_size_options_build_a_model_whose_processor_matches_its_patch(tmp_path, demo_clip):
    from emoreason.inference import encode_batch
    from emoreason.models import frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import load_frames

    spec = spec_from_overrides(["vision_patch=7", "vision_hidden=64", "vision_depth=3", "text_layers=1"])
    model_dir = build_tiny_model("qwen2_5_vl", tmp_path / "m", spec=spec)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["vision_config"]["patch_size"] == 7 and config["vision_config"]["depth"] == 3
    assert config["vision_config"]["fullatt_block_indexes"] == [1]
    assert config["text_config"]["num_hidden_layers"] == 1
    model, processor = load_model_and_processor(model_dir, device="cpu")
    policy = frame_policy_for(processor)
    assert policy.factor == 14  # patch 7 x merge 2: frames are sized for the new patch
    frames = load_frames(demo_clip, policy)
    inputs = encode_batch(processor, [build_messages(str(demo_clip), "video")], [frames])
    t, h, w = inputs["video_grid_thw"][0].tolist()
    assert (h, w) == (frames.frames.shape[1] // 7, frames.frames.shape[2] // 7)
    with torch.no_grad():
        model(**inputs)  # the vision tower accepts the processor's patches


def test_bad_size_options_are_named():
    with pytest.raises(ConfigError, match="vision_pach"):
        spec_from_overrides(["vision_pach=7"])
    with pytest.raises(ValueError, match="vision_hidden / vision_heads"):
        TinySpec(vision_hidden=100, vision_heads=3).validate("qwen2_5_vl")
    assert TinySpec().init_std("text") == 0.02  # the released configs' std by default
    assert spec_from_overrides(["width_scaled_init=true"]).init_std("vision") == pytest.approx(128 ** -0.5, abs=1e-4)
    assert spec_from_overrides(["text_init_std=0.05"]).init_std("text") == 0.05
    with pytest.raises(ValueError, match="text_init_std"):
        spec_from_overrides(["text_init_std=0"]).init_std("text")


def test_module_of_names_the_three_parts():
    assert module_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert module_of("model.visual.patch_embed.proj.weight") == "vision"
    assert module_of("base_model.model.model.visual.merger.mlp.0.weight") == "projector"
    assert module_of("model.language_model.layers.0.mlp.up_proj.weight") == "language"
    assert module_of("lm_head.weight") == "language"
    # Qwen3-VL's deepstack mergers project intermediate vision features into the LM, as the merger does
    assert module_of("model.visual.deepstack_merger_list.0.linear_fc1.weight") == "projector"
    assert module_of("base_model.model.model.visual.deepstack_merger_list.1.norm.weight") == "projector"
    # Qwen2.5-Omni's audio encoder (its output projection included) is its own module, not the language model
    assert module_of("model.audio_tower.layers.0.self_attn.q_proj.weight") == "audio"
    assert module_of("base_model.model.model.audio_tower.proj.weight") == "audio"


@pytest.mark.parametrize("flags, trainable", [
    ({"freeze_vision": True, "freeze_projector": False}, {"projector", "language"}),
    ({"freeze_vision": False, "freeze_projector": True}, {"vision", "language"}),
    ({"freeze_vision": False, "freeze_language": True}, {"vision", "projector"}),
])
def test_freezing_follows_the_module_classifier_on_qwen3_vl(tiny_model_dirs, flags, trainable):
    """Qwen3-VL's deepstack mergers are projector weights: freeze_vision used to freeze them (and
    freeze_projector leave them trainable), unlike the merger the same options and projector_learning_rate treat
    as the projector."""
    from transformers import AutoModelForImageTextToText

    from emoreason.training import freeze
    from emoreason.training.recipe import EmoreasonArguments

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen3_vl"])
    deepstack = [p for n, p in model.named_parameters() if ".deepstack_merger_list." in n]
    assert deepstack
    freeze(model, EmoreasonArguments(**flags))
    assert all(p.requires_grad == ("projector" in trainable) for p in deepstack)
    for name, param in model.named_parameters():
        assert param.requires_grad == (module_of(name) in trainable), name


def test_per_module_learning_rates_reach_the_optimizer_and_the_scheduler(tiny_model_dirs):
    from transformers import AutoModelForImageTextToText
    from transformers.optimization import get_cosine_schedule_with_warmup

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"])
    decay = [p for n, p in model.named_parameters() if "norm" not in n]
    other = [p for n, p in model.named_parameters() if "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                  lr=1e-4)
    counts = split_param_groups(optimizer, model, {"vision": 1e-2, "projector": 3e-3})
    assert counts["vision"] and counts["projector"] and counts["language"]
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        assert rate[id(param)] == {"vision": 1e-2, "projector": 3e-3, "language": 1e-4}[module_of(name)], name
        assert decay_of[id(param)] == (0.0 if "norm" in name else 0.1), name  # the decay split survives
    scheduler = get_cosine_schedule_with_warmup(optimizer, 0, 10)
    optimizer.step()
    scheduler.step()
    lrs = {g["module"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["vision"] / lrs["language"] == pytest.approx(100) and lrs["vision"] < 1e-2  # each decays from its own


def test_sft_trainer_uses_the_recipes_module_rates(tmp_path, tiny_model_dirs, grpo_data):
    from emoreason.sft.train import build_trainer

    recipe = tiny_recipe("sft", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "out", freeze_vision=False,
                         learning_rate=1e-4, vision_learning_rate=5e-3, max_steps=1, per_device_train_batch_size=2)
    trainer, _ = build_trainer(recipe)
    trainer.create_optimizer()
    rates = {g["module"]: g["lr"] for g in trainer.optimizer.param_groups if g["params"]}
    assert rates == {"vision": 5e-3, "projector": 1e-4, "language": 1e-4}
    with pytest.raises(ValueError, match="unknown modules"):
        split_param_groups(trainer.optimizer, trainer.model, {"eyes": 1.0})


def test_logs_name_the_rate_each_module_trained_at(tmp_path, tiny_model_dirs, grpo_data):
    """With per-module rates, `learning_rate` in the logs used to be param group 0's rate, which is the vision
    tower's (its parameters come first): the logs now say the language model's rate as `learning_rate` and each
    other module's as `<module>_learning_rate`, the rates the scheduler applied at that step."""
    from emoreason.sft.train import build_trainer

    recipe = tiny_recipe("sft", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "out", freeze_vision=False,
                         learning_rate=1e-4, vision_learning_rate=5e-3, projector_learning_rate=2e-3, max_steps=2,
                         per_device_train_batch_size=2, max_train_samples=4, lr_scheduler_type="linear")
    trainer, _ = build_trainer(recipe)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["learning_rate"] for entry in logged] == pytest.approx([1e-4, 5e-5])  # linear decay over 2 steps
    assert [entry["vision_learning_rate"] for entry in logged] == pytest.approx([5e-3, 2.5e-3])
    assert [entry["projector_learning_rate"] for entry in logged] == pytest.approx([2e-3, 1e-3])


def test_freeze_language_trains_the_vision_path_alone(tmp_path, tiny_model_dirs, grpo_data):
    from emoreason.sft.train import build_trainer

    recipe = tiny_recipe("sft", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "out", freeze_vision=False,
                         freeze_language=True, max_steps=1, per_device_train_batch_size=2, max_train_samples=2,
                         vision_learning_rate=5e-3, projector_learning_rate=2e-3, learning_rate=1e-4)
    trainer, _ = build_trainer(recipe)
    trained = {module_of(n) for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained == {"vision", "projector"}
    trainer.train()
    (logged,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    # no language group: learning_rate (the language model's rate) is not logged as the vision tower's
    assert "learning_rate" not in logged, logged
    assert logged["vision_learning_rate"] > 0 and logged["projector_learning_rate"] > 0
    with pytest.raises(ConfigError, match="use_peft: false"):
        tiny_recipe("sft", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "o2", freeze_language=True,
                    use_peft=True)
    with pytest.raises(ConfigError, match="nothing to train"):
        tiny_recipe("sft", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "o3", freeze_language=True,
                    freeze_vision=True, freeze_projector=True)


def test_control_data_swaps_every_training_clip_and_keeps_labels(tmp_path, grpo_data):
    import datasets

    bench = _bench()
    counts = bench.shuffled_copy(Path(grpo_data), tmp_path / "shuffled", seed=3)
    before, after = datasets.load_from_disk(str(grpo_data)), datasets.load_from_disk(str(tmp_path / "shuffled"))
    assert counts["kept_own_video"] == 0 and counts["clips"] == len(set(before["train"]["video"]))
    assert sorted(after["train"]["video"]) == sorted(before["train"]["video"])  # same frames, other owners
    for a, b in zip(before["train"], after["train"], strict=True):
        assert a["video"] != b["video"] and a["emotion"] == b["emotion"] and a["completion"] == b["completion"]
    for split in before:
        if split != "train":
            assert before[split]["video"] == after[split]["video"]  # held-out clips untouched


def test_control_data_swaps_a_rows_audio_path_with_its_video(tmp_path, grpo_data):
    """Rows that hear their track from another file (``audio_path``, a face-crop clip's original video) get the
    other clip's track with its frames: the control never hears a clip's own voice. A track with no video to move
    with is refused, naming the row."""
    import datasets

    bench = _bench()
    data = datasets.load_from_disk(str(grpo_data))
    train = data["train"].map(lambda row: {"audio_path": row["video"] + ".original.mp4"})
    datasets.DatasetDict({**data, "train": train}).save_to_disk(str(tmp_path / "with_audio"))
    bench.shuffled_copy(tmp_path / "with_audio", tmp_path / "shuffled", seed=3)
    after = datasets.load_from_disk(str(tmp_path / "shuffled"))["train"]
    for a, b in zip(train, after, strict=True):
        assert b["video"] != a["video"] and b["audio_path"] == b["video"] + ".original.mp4"

    orphan = train.map(lambda row, i: {"video": "" if i == 0 else row["video"]}, with_indices=True)
    datasets.DatasetDict({**data, "train": orphan}).save_to_disk(str(tmp_path / "orphan"))
    with pytest.raises(ValueError, match=f"row {orphan[0]['id']}: audio_path .* no video"):
        bench.shuffled_copy(tmp_path / "orphan", tmp_path / "shuffled2", seed=3)


def test_wilson_interval_matches_published_values():
    # Brown, Cai & DasGupta (2001) / Newcombe (1998) example: 81 of 263 → 0.2553–0.3662
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4) and high == pytest.approx(0.3662, abs=5e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_chance_table_states_chance_and_the_ci_verdict(tmp_path):
    from emoreason.evaluation.significance import chance_table, versus_chance

    balanced = {f"class{i}": 20 for i in range(8)}

    def run(name: str, correct: int, n: int, support: dict = balanced) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"recognition": {
            "n": n, "war": correct / n, "uar": correct / n, "support": support}}))
        return tmp_path / name

    above, level = run("above", 40, 160), run("level", 22, 160)
    assert versus_chance(above, 8)["verdict"] == "above chance"  # 25 %, CI 18.9–32.2 %
    assert versus_chance(level, 8)["verdict"] == "at chance"  # 13.8 %, CI contains 12.5 %
    assert versus_chance(run("below", 2, 160), 8)["verdict"] == "below chance"
    # an unbalanced test split: answering its most frequent class (30 %) beats 1/8, so 25 % (CI 18.9–32.2) is not above chance
    skewed = run("skewed", 40, 160, {"anger": 48, **{f"class{i}": 16 for i in range(7)}})
    assert versus_chance(skewed, 8)["verdict"] == "at chance" and versus_chance(skewed, 8)["bar"] == 0.3
    table = chance_table({"sft": above, "control": level}, 8)
    assert "chance: 12.5 %" in table and "| sft | 160 | 25.0 % (18.9–32.2) | 25.0 % | 12.5 % | above chance |" in table
    with pytest.raises(ValueError, match="2 classes"):
        versus_chance(above, 1)


def test_linear_probe_separates_informative_features_and_not_noise():
    from emoreason.evaluation.probe import linear_probe

    rng = np.random.default_rng(0)
    labels = [c for c in ("anger", "fear", "joy", "neutral") for _ in range(60)]
    centres = {c: rng.normal(0, 1, 16) for c in set(labels)}
    x = np.stack([centres[c] + rng.normal(0, 0.8, 16) for c in labels])
    order = rng.permutation(len(labels))
    train, test = order[:160], order[160:]
    pick = lambda idx: [labels[i] for i in idx]  # noqa: E731
    signal = linear_probe(x[train], pick(train), x[test], pick(test))
    noise = linear_probe(rng.normal(0, 1, x.shape)[train], pick(train), rng.normal(0, 1, x.shape)[test], pick(test))
    assert signal["chance"] == 0.25 and signal["test_ci95"][0] > 0.5
    assert noise["test_accuracy"] < 0.4  # 80 test clips of pure noise: chance, 25 %


def test_vision_features_are_the_models_video_tokens(tiny_model_dirs, demo_clip):
    from dataclasses import replace

    from transformers import AutoProcessor

    from emoreason.evaluation.probe import vision_features
    from emoreason.models import frame_policy_for

    model_dir = tiny_model_dirs["qwen2_5_vl"]
    policy = replace(frame_policy_for(AutoProcessor.from_pretrained(str(model_dir))), fps=4.0, max_frames=2,
                     min_pixels=3136, max_pixels=12544)
    mean = vision_features(model_dir, [demo_clip, demo_clip], policy)
    flat = vision_features(model_dir, [demo_clip], policy, pool="flat")
    assert mean.shape == (2, 128) and np.allclose(mean[0], mean[1], atol=1e-5)  # deterministic, text width
    assert flat.shape[1] % 128 == 0 and flat.shape[1] > 128
    assert np.allclose(flat[0].reshape(-1, 128).mean(0), mean[0], atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        vision_features(model_dir, [demo_clip], policy, pool="max")


def test_probe_cache_is_keyed_on_what_the_probe_depends_on(tmp_path, tiny_model_dirs, grpo_data, monkeypatch):
    """The learning bench's vision probe was cached by model directory alone: another dataset, test subset or
    frame policy read the first run's result back. Each of them (and new weights in the same directory) is now
    a new probe; the same inputs read the cache."""
    import shutil
    from dataclasses import replace

    import emoreason.evaluation.probe as probe_module

    bench = _bench()
    model_dir = Path(shutil.copytree(tiny_model_dirs["qwen2_5_vl"], tmp_path / "arm" / "model"))
    synth = Path(grpo_data).parents[1] / "synth"
    plan = bench.Plan(frame_policy={"fps": 4.0, "max_frames": 2}, probe_train_clips=6, eval_limit=1)
    first = bench.probe(model_dir, synth, plan)
    assert first["test_n"] == 1
    assert bench.probe(model_dir, synth, replace(plan, eval_limit=None))["test_n"] == 2  # another test subset
    assert first["frame_policy"]["max_frames"] == 2  # the result says what it was computed on
    other = tmp_path / "other"  # another dataset: the same clips, another test split (the 5 validation clips)
    shutil.copytree(synth, other, ignore=shutil.ignore_patterns("clips"))
    (other / "clips").symlink_to(synth / "clips")
    shutil.copyfile(synth / "val.jsonl", other / "test.jsonl")
    assert bench.probe(model_dir, other, replace(plan, eval_limit=None))["test_n"] == 5
    other_frames = bench.probe(model_dir, synth, replace(plan, frame_policy={"fps": 4.0, "max_frames": 4}))
    assert other_frames["frame_policy"]["max_frames"] == 4

    def no_features(*args, **kwargs):
        raise AssertionError("the cached probe was computed again")

    monkeypatch.setattr(probe_module, "vision_features", no_features)
    assert bench.probe(model_dir, synth, plan) == first  # the same inputs: the cache
    weights = next(model_dir.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # retrained in place
    with pytest.raises(AssertionError, match="computed again"):
        bench.probe(model_dir, synth, plan)
    # the probe's optimiser steps and the probe code's version are part of the key too
    from transformers import AutoProcessor

    from emoreason.models import frame_policy_for

    policy = frame_policy_for(AutoProcessor.from_pretrained(str(model_dir)))
    key = probe_module.probe_key(model_dir, [], [], policy, "flat", 1e-2)
    assert key != probe_module.probe_key(model_dir, [], [], policy, "flat", 1e-2, steps=50)
    monkeypatch.setattr(probe_module, "PROBE_VERSION", probe_module.PROBE_VERSION + 1)
    assert key != probe_module.probe_key(model_dir, [], [], policy, "flat", 1e-2)


def test_paired_bootstrap_sees_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    a = [{"correct": bool(x)} for x in rng.uniform(size=400) < 0.5]
    better = [{"correct": x["correct"] or bool(rng.uniform() < 0.3)} for x in a]
    gain = paired_bootstrap(a, better, accuracy, resamples=2000)
    assert gain["excludes_zero"] and gain["ci_low"] > 0
    same = paired_bootstrap(a, [dict(x) for x in a], accuracy, resamples=500)
    assert same["delta"] == 0 and not same["excludes_zero"]
    items = [{"au_tp": 2, "au_claimed": 4, "au_true": 2}, {"au_tp": 0, "au_claimed": 0, "au_true": 2}]
    assert cited_au_f1(items) == pytest.approx(2 * 0.5 * 0.5 / 1.0)


def test_onset_apex_profile_holds_the_expression_to_the_last_frame():
    from emoreason.synth import ClipSpec, Identity, SynthConfig, generate_clip

    identity = Identity.sample(0, np.random.default_rng(0))
    ends = {}
    for profile in ("apex_offset", "onset_apex"):
        last, peak = [], []
        for seed in range(6):
            spec = ClipSpec(0, "c", "surprise", identity, "train", seed=seed, frames=16, size=64, difficulty="easy",
                            profile=profile)
            _, truth = generate_clip(spec)
            for au in truth["expression_aus"]:
                values = truth["au_frames"][str(au)]
                last.append(values[-1])
                peak.append(max(values))
                assert values[0] < 0.5 * max(values)  # both start (nearly) neutral
        ends[profile] = float(np.mean(last) / np.mean(peak))
    assert ends["onset_apex"] > 0.95 and ends["apex_offset"] < 0.6, ends
    with pytest.raises(ValueError, match="profile"):
        SynthConfig(out="x", profile="zigzag").validate()
    assert "profile" not in SynthConfig(out="x").settings()  # datasets built before the option still resume


def test_a_stage_run_with_a_thread_share_sees_it_and_a_failure_names_its_log(tmp_path, monkeypatch):
    """Arms trained side by side (``arm_jobs``) each get an equal share of the threads: the share must reach the
    stage's process (torch reads OMP_NUM_THREADS at start), and a stage without one inherits the caller's."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    runner = _bench().Runner(tmp_path)
    show = "import os, sys; print('threads', os.environ['OMP_NUM_THREADS']); sys.exit(int(sys.argv[1]))"
    runner.command("shared", [sys.executable, "-c", show, "0"], "shared", threads=1)
    runner.command("inherited", [sys.executable, "-c", show, "0"], "inherited")
    assert "threads 1" in (tmp_path / "logs" / "shared.log").read_text()
    assert "threads 7" in (tmp_path / "logs" / "inherited.log").read_text()
    with pytest.raises(RuntimeError, match=r"stage broken failed \(exit 3\); log .*broken\.log"):
        runner.command("broken", [sys.executable, "-c", show, "3"], "broken", threads=1)


def test_thread_share_splits_the_usable_cpus(monkeypatch):
    bench = _bench()
    assert bench.thread_share(1, cpus=2) is None  # one arm at a time inherits the caller's threads
    assert bench.thread_share(2, cpus=2) == 1
    assert bench.thread_share(2, cpus=16) == 8
    assert bench.thread_share(3, cpus=2) == 1  # never zero
    assert 1 <= bench.usable_cpus() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):  # a container's CPU limit, not the host's count
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
        monkeypatch.setattr(os, "cpu_count", lambda: 64)
        assert bench.usable_cpus() == 2 and bench.thread_share(2) == 1


def test_one_failed_arm_stops_the_others_running_stage_and_both_are_named(tmp_path):
    """Arms side by side: when one fails, the other's training process is terminated at once (not left to train
    for minutes) and the error names each arm's fate."""
    import time

    bench = _bench()
    runner = bench.Runner(tmp_path)
    slow = [sys.executable, "-c", "import time; time.sleep(120)"]
    fail = [sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(5)"]
    jobs = {"sft": lambda: runner.command("sft_sft", slow, "slow") or tmp_path,
            "control": lambda: runner.command("control_sft", fail, "fail") or tmp_path}
    start = time.time()
    with pytest.raises(RuntimeError) as raised:
        bench.side_by_side(runner, jobs, workers=2)
    assert time.time() - start < 60, "the other arm's stage was left running"
    message = str(raised.value)
    # the cause first, then the arm stopped because of it; the traceback chains to the cause
    assert message.startswith("control: RuntimeError: stage control_sft failed (exit 5)"), message
    assert "; sft: RuntimeError: stage sft_sft stopped" in message
    assert "stage control_sft failed" in str(raised.value.__cause__)
    with pytest.raises(RuntimeError, match="not started: the run is stopping"):
        runner.command("later", [sys.executable, "-c", "pass"], "later")


def test_side_by_side_returns_each_arms_result(tmp_path):
    bench = _bench()
    runner = bench.Runner(tmp_path)
    ok = [sys.executable, "-c", "pass"]
    both = threading.Barrier(2, timeout=30)  # broken (an error) unless the two arms run at the same time

    def arm_job(arm: str) -> Path:
        runner.command(f"{arm}_sft", ok, arm)
        both.wait()
        return tmp_path / arm

    jobs = {arm: partial(arm_job, arm) for arm in ("sft", "control")}
    assert bench.side_by_side(runner, jobs, workers=2) == {"sft": tmp_path / "sft", "control": tmp_path / "control"}


def test_every_target_is_reported_and_the_exit_code_tells_missed_from_not_measured():
    bench = _bench()
    sft = {"war": 0.66, "war_ci95": [0.61, 0.70], "chance_bar": 0.16, "au_f1": None, "hallucination_rate": None}
    control = {"war": 0.10, "war_ci95": [0.08, 0.13], "chance_bar": 0.16}
    targets = bench.check_targets({"sft": sft, "control": control})
    assert set(targets) == {"sft_war>=0.60", "sft_cited_au_f1>=0.60", "sft_hallucination<=0.20",
                            "sft_ci_excludes_chance", "control_within_5_points_of_chance", "grpo_gain_ci_excludes_0"}
    assert targets["sft_war>=0.60"] and targets["control_within_5_points_of_chance"]
    assert targets["grpo_gain_ci_excludes_0"] is None and targets["sft_cited_au_f1>=0.60"] is None
    assert bench.exit_code(targets) == 4  # nothing missed, something not measured
    leaky = bench.check_targets({"sft": sft, "control": {**control, "war": 0.19}})
    assert leaky["control_within_5_points_of_chance"] is False and bench.exit_code(leaky) == 3
    assert all(v is None for v in bench.check_targets({}).values()) and bench.exit_code(bench.check_targets({})) == 4
    gain = {"war": {"delta": 0.04, "ci_low": 0.01}, "au_f1": {"delta": -0.1, "ci_low": -0.14}}
    full = {"sft": {**sft, "au_f1": 0.7, "hallucination_rate": 0.1}, "control": control, "grpo_vs_sft": gain}
    assert bench.exit_code(bench.check_targets(full)) == 0
    worse = {"war": {"delta": -0.04, "ci_low": -0.08}, "au_f1": {"delta": 0.01, "ci_low": -0.02}}
    assert bench.check_targets({**full, "grpo_vs_sft": worse})["grpo_gain_ci_excludes_0"] is False


def test_compare_pairs_two_evals_clip_by_clip(tmp_path, capsys):
    """`bench/learning.py --compare BASE OTHER --synth DIR` (how docs/benchmarks.md's GRPO-after-SFT CIs are made):
    pairs the two eval folders' predictions by clip id on DIR's test split; a clip missing from one counts as wrong."""
    from emoreason.synth import SynthConfig, build_dataset

    bench = _bench()
    synth = build_dataset(SynthConfig(out=str(tmp_path / "s"), clips=48, size=56, seed=0), progress=False).parent
    records = bench.test_records(synth, None)
    assert len(records) >= 4
    runs = {"base": [], "other": []}
    for i, record in enumerate(records):
        aus = "+".join(str(a) for a in record.aus) or "0"
        right = f"<think>AU{aus} are active.</think><answer>{record.emotion}</answer>"
        runs["other"].append({"id": record.id, "text": right})
        if i:  # the base run misses its first clip: scored as wrong, citing nothing
            runs["base"].append({"id": record.id, "text": "<think>nothing</think><answer>not an emotion</answer>"})
    for name, rows in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bench.main(["--compare", str(tmp_path / "base"), str(tmp_path / "other"), "--synth", str(synth)]) == 0
    gain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert gain["war"]["delta"] == pytest.approx(1.0) and gain["war"]["ci_low"] == pytest.approx(1.0)
    assert gain["war"]["n"] == len(records)
    assert gain["au_f1"]["delta"] > 0.5 and gain["au_f1"]["excludes_zero"]
    with pytest.raises(SystemExit):
        bench.main(["--compare", str(tmp_path / "base"), str(tmp_path / "other")])  # no --synth: a usage error
