"""Learning on SynthFACS (slow): SFT lowers the loss and makes the tiny model answer in the response format."""

from __future__ import annotations

import pytest
from bench_support import load_bench

from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.evaluation.backends import LocalBackend
from emoreason.evaluation.benchmarks import load_benchmark
from emoreason.evaluation.runner import evaluate, prompt_labels
from emoreason.sft.train import run_sft
from emoreason.synth import SynthConfig, build_dataset
from emoreason.training import load_recipe

pytestmark = pytest.mark.slow


def test_sft_learns_the_format(tmp_path, tiny_model_dirs):
    build_dataset(SynthConfig(out=str(tmp_path / "s"), clips=320, seed=0, difficulty="easy"), progress=False)
    cot = CoTPipeline(CoTConfig(dataset_root=str(tmp_path / "s"), output_dir=str(tmp_path / "c")),
                      progress=False).run()
    recipe = load_recipe("sft", None, None, model_name_or_path=str(tiny_model_dirs["qwen2_5_vl"]),
                         dataset_name=str(cot / "hf"), output_dir=str(tmp_path / "sft"), freeze_vision=False, fps=4.0,
                         max_frames=8, min_pixels=3136, max_pixels=12544, max_length=1024, learning_rate=2e-3,
                         num_train_epochs=8, per_device_train_batch_size=4, logging_steps=10, save_steps=100000,
                         seed=0, bf16=False, gradient_checkpointing=False, report_to="none")
    final = run_sft(recipe)
    import json

    history = json.loads((tmp_path / "sft" / "train_summary.json").read_text())["loss_history"]
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]
    spec = load_benchmark("synthfacs", ["split=test"])
    results = {}
    for name, model in (("untrained", tiny_model_dirs["qwen2_5_vl"]), ("sft", final)):
        backend = LocalBackend(str(model), spec.frames, prompt_labels(spec), spec.style, 8, spec.max_new_tokens)
        results[name] = evaluate(spec, backend, tmp_path / "eval" / name, root=str(tmp_path / "s"), progress=False)
    untrained, sft = (results[k]["rationale"]["format_valid"] for k in ("untrained", "sft"))
    assert sft > untrained and sft >= 0.8, (untrained, sft)


def test_video_path_carries_a_visible_label_and_the_shuffled_control_stays_at_chance(tmp_path):
    """The end-to-end check of information flow that issue 18 asks for, at a size CI can afford: bench/learning.py's
    positive control (every clip's frames a flat colour that encodes its label, train and test) goes through the
    user's commands (tiny-model → synth → synth-cot → sft → eval) and must be read off the video on held-out
    identities; the shuffled-video control (SynthFACS faces, each training clip's video swapped) must not beat
    chance. If frames were misaligned with rows, dropped by the collator or the video tokens never reached the
    language model, the first assertion fails; if labels leaked into the text, the second does."""
    learning = load_bench("learning")
    stage = {"name": "sft", "recipe": learning.LEARNING_RECIPE,
             "overrides": [*learning.MODULE_RATES, "num_train_epochs=6", "save_steps=100000", "logging_steps=5"]}
    plan = learning.Plan(clips=240, frames=8, **learning.TWO_FRAMES, cot_tasks={"emotion": 1.0}, eval_task="emotion",
                         sft_stages=[stage], train_sft=False, control=True, label_coded=True, grpo=False,
                         curve_limit=0, probe_train_clips=0)
    metrics = learning.run(plan, tmp_path / "learn")
    coded, control = metrics["results"]["label_coded"], metrics["results"]["control"]
    assert coded["n"] >= 30 and control["n"] == coded["n"]
    assert coded["war"] >= 0.8 and coded["war_ci95"][0] > coded["chance_bar"], coded
    # the control answers (it learnt the format and the label prior) but not from the video: at chance
    assert sum(control["predicted"].values()) >= 0.8 * control["n"], control
    assert control["war_ci95"][0] <= control["chance_bar"], control
    assert metrics["targets"]["positive_control_ci_excludes_chance"]
    assert (tmp_path / "learn" / "learning_curves.png").is_file()


@pytest.mark.timeout(2700)  # ~10 min quiet; a loaded CI machine may take twice that
def test_faces_are_learnt_through_the_warm_up_path_and_the_deranged_control_stays_at_chance(tmp_path):
    """Issue 18's slow check on faces, not on a label-coded colour: bench/learning.py's warm-up preset (posed
    SynthFACS at 56 px, one video token, ``emoreason vision-warmup`` then SFT on short answers, the user's commands
    end to end) at 1,600 clips, both arms side by side (~10 min on 2 cores). SFT must be above chance on held-out
    identities by its Wilson interval: measured 51.0 % (44.9–57.1) at seed 0 and 41.9 % (35.6–48.4) at seed 1 against
    a bar of ~16 %, while 800 clips gave 28.1 % (21.2–36.3), too close to its 17.8 % bar to assert on
    (docs/benchmarks.md). The same stages with every training clip's video deranged (warm-up and SFT) must not be."""
    from dataclasses import replace

    learning = load_bench("learning")
    plan = replace(learning.preset("warmup"), clips=1600, curve_limit=0)  # no held-out curve: the final eval only
    metrics = learning.run(plan, tmp_path / "learn")
    sft, control = metrics["results"]["sft"], metrics["results"]["control"]
    assert sft["n"] >= 200 and control["n"] == sft["n"], (sft, control)  # ~15 % of the clips are test clips
    assert sft["war_ci95"][0] > sft["chance_bar"], sft
    # at chance: not above it by its CI, and not more than the 5 points above it (below chance is no leak,
    # unlike the bench's two-sided target; measured controls at 1,600 clips: 11.4, 11.9, 14.5 %)
    assert control["war_ci95"][0] <= control["chance_bar"], control
    assert control["war"] <= learning.CHANCE + learning.TARGETS["control_margin"], control
    assert sft["war_ci95"][0] > control["war_ci95"][1], (sft, control)  # the gain is the faces'
    assert sum(control["predicted"].values()) >= 0.8 * control["n"], control  # it answers, just not from the faces
    assert metrics["targets"]["sft_ci_excludes_chance"]
    # each arm's warm-up and SFT ran as the user's commands
    assert {"sft_vision_warmup", "control_vision_warmup", "sft_sft", "control_sft"} <= set(metrics["stage_seconds"])
