"""Video GRPO: the TRL internals it relies on, video tensors through rollouts and the loss, and a 2-process step."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.grpo.train import GRPORecipe, build_trainer
from emoreason.synth import SynthConfig, build_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_trl_internals_we_couple_to_are_unchanged():
    """Pinned to trl 1.16: if these move, VideoGRPOTrainer must be revisited (fail loudly, not subtly)."""
    import trl
    from trl import GRPOTrainer

    assert trl.__version__.startswith("1.16."), trl.__version__
    params = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters
    assert list(params)[:8] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size",
                                "compute_entropy", "compute_aux_loss"]
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert list(inspect.signature(GRPOTrainer._compute_loss).parameters) == ["self", "model", "inputs"]
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters)[:2] == ["self", "inputs"]
    source = inspect.getsource(GRPOTrainer._compute_loss)
    for key in ('inputs["prompt_ids"]', 'inputs["completion_ids"]', 'inputs["completion_mask"]',
                'inputs["advantages"]', 'inputs.get("old_per_token_logps")', "_get_per_token_logps_and_entropies"):
        assert key in source, key


@pytest.fixture(scope="module")
def grpo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpodata")
    build_dataset(SynthConfig(out=str(root / "synth"), clips=16, frames=8, size=112, difficulty="easy",
                              identities=4), workers=1, progress=False)
    return CoTPipeline(CoTConfig(dataset_root=str(root / "synth"), output_dir=str(root / "cot")),
                       progress=False).run() / "hf"


def _recipe(tmp_path, model_dir, data, **kw) -> GRPORecipe:
    fields = {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 16, "max_steps": 1,
              "fps": 4.0, "max_frames": 4, "min_pixels": 3136, "max_pixels": 12544, "learning_rate": 1e-4,
              "logging_steps": 1, "save_steps": 1000, **kw}
    return GRPORecipe(model_name_or_path=str(model_dir), dataset_path=str(data), output_dir=str(tmp_path / "g"),
                      **fields)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_rollouts_and_loss_use_real_video_tensors(family, tmp_path, tiny_model_dirs, grpo_data):
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs[family], grpo_data))
    batch = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]  # two prompts, G = 2 copies each
    torch.manual_seed(0)
    inputs = trainer._generate_and_score_completions(batch)
    assert inputs["completion_ids"].shape[0] == 4 and inputs["advantages"].shape == (4,)
    media = inputs["media"]
    assert all("pixel_values_videos" in m and m["video_grid_thw"].shape == (1, 3) for m in media)
    if family == "qwen2_5_vl":
        assert all("second_per_grid_ts" in m for m in media)
    assert torch.equal(media[0]["pixel_values_videos"], media[1]["pixel_values_videos"])  # same clip per group
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() in a real run
    assert torch.isfinite(trainer._compute_loss(trainer.model, inputs))

    def completion_logps(rows):
        trainer._media_rows = rows
        try:
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            with torch.no_grad():
                return trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, mask, inputs["completion_ids"].size(1),
                    mm_token_type_ids=inputs.get("mm_token_type_ids"))[0]
        finally:
            trainer._media_rows = None

    changed = [{**m, "pixel_values_videos": -m["pixel_values_videos"]} for m in media]
    assert not torch.allclose(completion_logps(media), completion_logps(changed))  # the policy sees the video


def test_missing_video_names_the_sample(tmp_path, tiny_model_dirs, grpo_data):
    from emoreason.video import MediaError

    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data))
    row = dict(trainer.train_dataset[0], media_path="/nonexistent/clip.mp4")
    with pytest.raises(MediaError, match=row["id"]):
        trainer._generate_and_score_completions([row, row])


def test_two_process_grpo_step(tmp_path, tiny_model_dirs, grpo_data):
    recipe = tmp_path / "g.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dirs['qwen2_5_vl']}\ndataset_path: {grpo_data}\n"
                      f"output_dir: {tmp_path / 'out'}\nnum_generations: 2\nper_device_train_batch_size: 2\n"
                      "max_completion_length: 12\nmax_steps: 1\nlearning_rate: 0.001\nfps: 4.0\nmax_frames: 4\n"
                      "min_pixels: 3136\nmax_pixels: 12544\nlogging_steps: 1\nsave_steps: 1000\n"
                      # a short length budget gives the untrained model's samples different rewards, so the
                      # group advantages (and the update) are non-zero
                      "reward_options:\n  length: {max_chars: 15}\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "tests/helpers"))
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / "recipes/accelerate_configs/cpu2.yaml"), str(ROOT / "tests/helpers/ddp_grpo_check.py"),
                    str(recipe), str(tmp_path / "ranks")], check=True, env=env, timeout=600, capture_output=True)
    ranks = [json.loads((tmp_path / "ranks" / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["world"] == 2 and r["steps"] == 1 for r in ranks)
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]
    logged = ranks[0]["logged"][0]
    for name in ("format", "emotion", "au_f1", "au_consistency", "length"):
        assert f"rewards/{name}_reward/mean" in logged and f"rewards/{name}_reward/std" in logged
