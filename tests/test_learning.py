"""Learning on SynthFACS (slow): SFT lowers the loss and makes the tiny model answer in the response format."""

from __future__ import annotations

import pytest

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
