"""Video GRPO: the TRL internals it relies on, video tensors through rollouts and the loss, and a 2-process step."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emoreason.grpo.train import GRPORecipe, build_trainer

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
    mode = "train" if trainer.model.training else "eval"
    assert trainer._metrics[mode]["rewards/au_f1_reward/errors"] == [0.0]  # each reward's failures, per step
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
    # this checkout's code first (a worktree beside an editable install of another one must test itself)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests/helpers"), str(ROOT)]))
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / "recipes/accelerate_configs/cpu2.yaml"), str(ROOT / "tests/helpers/ddp_grpo_check.py"),
                    str(recipe), str(tmp_path / "ranks")], check=True, env=env, timeout=600, capture_output=True)
    ranks = [json.loads((tmp_path / "ranks" / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["world"] == 2 and r["steps"] == 1 for r in ranks)
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]
    logged = ranks[0]["logged"][0]
    for name in ("format", "emotion", "au_f1", "au_consistency", "length"):
        assert f"rewards/{name}_reward/mean" in logged and f"rewards/{name}_reward/std" in logged
        assert logged[f"rewards/{name}_reward/errors"] == 0.0  # counted on both ranks, logged every step


def test_trl_loss_applies_our_importance_ratio():
    """vLLM rollouts hand TRL's loss ``importance_sampling_ratio``; it must still read it under ``use_vllm``."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'inputs["importance_sampling_ratio"]' in source
    assert "self.use_vllm and self.vllm_importance_sampling_correction" in source


def test_vllm_weights_use_checkpoint_names_with_lora_merged(tiny_model_dirs):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from emoreason.grpo.rollouts import merged_weights

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"])
    plain = {k: v.clone() for k, v in base.state_dict().items()}
    with merged_weights(base) as weights:
        assert set(weights) == set(plain)  # tied embeddings/LM head under both names
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.1)
    with merged_weights(model) as weights:
        assert set(weights) == set(plain)
        q = next(k for k in weights if k.endswith("layers.0.self_attn.q_proj.weight"))
        k = next(k for k in weights if k.endswith("layers.0.self_attn.k_proj.weight"))
        assert not torch.allclose(weights[q], plain[q]) and torch.equal(weights[k], plain[k])
    after = {n: p for n, p in model.named_parameters() if "base_layer" in n and "q_proj" in n}
    assert after and all(torch.allclose(p, plain[n.removeprefix("base_model.model.").replace(".base_layer", "")],
                                        atol=1e-6) for n, p in after.items())  # unmerged again (float round trip)


def test_vllm_frames_travel_lossless_with_their_timing(demo_clip):
    import base64
    import io

    from PIL import Image

    from emoreason.grpo.rollouts import media_payload
    from emoreason.video import FramePolicy, load_frames

    loaded = load_frames(demo_clip, FramePolicy(fps=4.0, max_frames=4))
    url, kwargs = media_payload(loaded)
    assert url.startswith("data:video/jpeg;base64,")  # vLLM's frame-list format; PIL reads the PNGs in it
    frames = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in url.split(",", 1)[1].split(",")]
    assert np.array_equal(np.stack(frames), loaded.frames)
    assert kwargs["video"]["frames_indices"] == loaded.indices and kwargs["video"]["num_frames"] == -1
    assert kwargs["video"]["fps"] == loaded.source_fps


def test_vllm_rollout_settings_fail_early(tmp_path, tiny_model_dirs, grpo_data):
    from emoreason.grpo.rollouts import RolloutError

    with pytest.raises(ValueError, match="server mode"):
        build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, use_vllm=True,
                              vllm_mode="colocate"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RolloutError, match="emoreason serve"):
        build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, use_vllm=True,
                              vllm_server_base_url=f"http://127.0.0.1:{port}"))
