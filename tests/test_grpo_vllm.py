"""GRPO rollouts on a real vLLM server (CPU build in .venv-vllm): same frames, synced weights, token ids and
sampling log-probs that agree with the policy's own, a training run through it, and its faults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from recipe_support import tiny_recipe
from safetensors.torch import load_file
from vllm_support import FAST_START, VLLM_MARKS, VLLM_PYTHON, free_port, sampling_gap, stale_and_synced_gaps

from emoreason.grpo.rollouts import RolloutError, VLLMServerRollouts, merged_weights
from emoreason.grpo.train import build_trainer
from emoreason.serving.server import ServeConfig, VLLMServer

pytestmark = VLLM_MARKS


@pytest.fixture(scope="module")
def rollout_server(tiny_model_dirs, tmp_path_factory):
    media = tmp_path_factory.mktemp("rollout-media")  # frames travel inline; nothing is read from here
    cfg = ServeConfig(model=str(tiny_model_dirs["qwen2_5_vl"]), media_dir=str(media), port=free_port(),
                      max_model_len=2048, python=str(VLLM_PYTHON), startup_timeout_s=600, weight_sync=True,
                      extra_args=FAST_START)
    with VLLMServer(cfg, log_path=tmp_path_factory.mktemp("logs") / "vllm.log") as server:
        yield server


def _trainer(tmp_path, tiny_model_dirs, grpo_data, server, **kw):
    fields = {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 16, "max_steps": 2,
              "learning_rate": 1e-2, "seed": 0, "use_vllm": True, "vllm_mode": "server",
              "vllm_server_base_url": f"http://127.0.0.1:{server.cfg.port}",
              "reward_options": {"length": {"max_chars": 40}}, **kw}  # varied rewards → an update
    return build_trainer(tiny_recipe("grpo", tiny_model_dirs["qwen2_5_vl"], grpo_data, tmp_path / "g", **fields))[0]


def test_vllm_rollouts_see_the_training_frames_and_weights(tmp_path, tiny_model_dirs, grpo_data, rollout_server):
    trainer = _trainer(tmp_path, tiny_model_dirs, grpo_data, rollout_server)
    batch = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    assert inputs["completion_ids"].shape[0] == 4 and inputs["advantages"].shape == (4,)
    assert all("pixel_values_videos" in m for m in inputs["media"])
    assert "importance_sampling_ratio" in inputs and "old_per_token_logps" in inputs
    # vLLM built the same prompt (video grid, temporal positions) from the inlined frames ...
    assert trainer.vllm_rollouts.prompts_checked == 2 and trainer.vllm_rollouts.prompt_mismatches == 0
    # ... and samples from the policy's distribution: its log-probs of its own tokens match the policy's
    assert sampling_gap(trainer) < 0.05, sampling_gap(trainer)
    vision = set(trainer._vision_token_ids())
    assert not vision & set(inputs["completion_ids"][inputs["completion_mask"].bool()].tolist())

    with merged_weights(trainer.accelerator.unwrap_model(trainer.model)) as weights:
        initial = {name: tensor.clone() for name, tensor in weights.items()}
    trainer.train()  # two steps, each syncing the new weights before its rollouts
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2 and all("rollouts/weight_sync_s" in h and "sampling/importance_sampling_ratio/mean"
                                    in h for h in logged)
    trainer.model.train()
    trainer.vllm_rollouts.load_weights(initial)  # the server back on the untrained weights: off-policy until synced
    stale, synced = stale_and_synced_gaps(trainer, batch)
    assert synced < 0.05 and stale > 3 * synced, (stale, synced)


def test_lora_policy_is_served_merged(tmp_path, tiny_model_dirs, grpo_data, rollout_server):
    trainer = _trainer(tmp_path, tiny_model_dirs, grpo_data, rollout_server, use_peft=True, lora_r=8, lora_alpha=16,
                       lora_dropout=0.0)  # dropout would make the policy's own log-probs noisy
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():  # a non-zero adapter, so the merged weights differ from the base checkpoint
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    batch = [dict(trainer.train_dataset[i]) for i in (2, 2)]
    trainer.model.train()
    trainer._generate_and_score_completions(batch)
    synced = sampling_gap(trainer)
    # control: the server on the base checkpoint (adapter not merged) samples visibly off-policy
    base = load_file(str(next(Path(tiny_model_dirs["qwen2_5_vl"]).glob("*.safetensors"))))
    trainer.vllm_rollouts.load_weights(base)
    trainer._last_synced_step = trainer.state.global_step
    trainer._generate_and_score_completions(batch)
    assert synced < 0.05 and sampling_gap(trainer) > 3 * synced, (sampling_gap(trainer), synced)


def test_prompt_token_mismatch_is_an_error_naming_the_sample(tmp_path, tiny_model_dirs, grpo_data, rollout_server):
    trainer = _trainer(tmp_path, tiny_model_dirs, grpo_data, rollout_server)
    row = dict(trainer.train_dataset[0])
    conversations, media = [], []
    trainer._rows = [row]
    try:  # the trainer's own prompt ids for the row, then one token changed
        prompt_ids, _, _ = trainer._tokenize_prompts([row["prompt"]])
        conversations, media, _ = trainer._rollout_inputs  # no audio for a video-only model
    finally:
        trainer._rows = trainer._media_rows = trainer._rollout_inputs = None
    rollouts = trainer.vllm_rollouts
    ok = rollouts.generate([(conversations[0], media[0], 1)], max_tokens=2, temperature=1.0, top_p=1.0, seed=0,
                           labels=[f"sample {row['id']}"], expected_prompts=prompt_ids)
    assert len(ok[0]) == 1 and rollouts.prompt_mismatches == 0
    wrong = [prompt_ids[0][:5] + [prompt_ids[0][5] + 1] + prompt_ids[0][6:]]
    with pytest.raises(RolloutError, match=f"sample {row['id']}.*first difference at 5"):
        rollouts.generate([(conversations[0], media[0], 1)], max_tokens=2, temperature=1.0, top_p=1.0, seed=0,
                          labels=[f"sample {row['id']}"], expected_prompts=wrong)


def test_rollout_faults_are_named(tmp_path, rollout_server):
    rollouts = VLLMServerRollouts(f"http://127.0.0.1:{free_port()}", tmp_path / "sync", timeout_s=5)
    with pytest.raises(RolloutError, match="no vLLM server"):
        rollouts.check()
    live = VLLMServerRollouts(f"http://127.0.0.1:{rollout_server.cfg.port}", tmp_path / "sync", timeout_s=60)
    with pytest.raises(RolloutError, match="HTTP"):
        live.load_weights({"model.not_a_weight": torch.zeros(2)})


def test_trl_sampling_options_reach_the_vllm_sampler(tmp_path, tiny_model_dirs, grpo_data, rollout_server):
    """top_k / min_p / repetition_penalty / generation_kwargs sample on the server as on TRL's own vLLM path (they
    used to be dropped there while HF rollouts honoured them)."""
    runs = []

    def sample(**kw):
        runs.append(kw)
        trainer = _trainer(tmp_path / f"run{len(runs)}", tiny_model_dirs, grpo_data, rollout_server,
                           num_generations=4, **kw)
        trainer.model.train()
        out = trainer._generate_and_score_completions([dict(trainer.train_dataset[0]) for _ in range(4)])
        mask = out["completion_mask"].bool()
        return ({tuple(ids[m].tolist()) for ids, m in zip(out["completion_ids"], mask, strict=True)},
                out["sampling_per_token_logps"][mask])

    free, _ = sample()
    assert len(free) > 1  # temperature 1 on an untrained model: the 4 samples differ
    for options in ({"top_k": 1}, {"generation_kwargs": {"top_k": 1}}):  # generation_kwargs: vLLM's names
        greedy, logps = sample(**options)
        assert len(greedy) == 1, options  # one candidate per step: every sample is the same
        assert torch.all(logps == 0), options  # the processed log-prob of the only candidate
