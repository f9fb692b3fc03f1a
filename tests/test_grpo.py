"""Video GRPO: the TRL hooks it overrides, video tensors through rollouts and the loss, results equal to TRL's own
GRPOTrainer (advantages, multi-objective aggregation, when old log-probs are needed, loss, logging), and a
2-process step."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from recipe_support import ROOT, recipe_yaml, tiny_recipe

from emoreason.grpo.train import build_trainer


def test_trl_hooks_we_override_are_unchanged():
    """Pinned to trl 1.16: if these move, VideoGRPOTrainer must be revisited (fail loudly, not subtly)."""
    import trl
    from trl import GRPOTrainer

    assert trl.__version__.startswith("1.16."), trl.__version__

    def params(fn):
        return list(inspect.signature(fn).parameters)

    assert params(GRPOTrainer._get_per_token_logps_and_entropies)[:8] == [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss"]
    assert "mm_token_type_ids" in params(GRPOTrainer._get_per_token_logps_and_entropies)
    assert params(GRPOTrainer._tokenize_prompts) == ["self", "prompts"]
    assert params(GRPOTrainer._generate_single_turn) == ["self", "prompt_ids", "images", "multimodal_fields",
                                                         "num_generations", "has_tool_images"]
    assert params(GRPOTrainer.compute_loss) == ["self", "model", "inputs", "return_outputs", "num_items_in_batch"]
    assert params(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    # where TRL calls them: prompts are tokenized and generated inside _generate; the loss and old/ref log-probs
    # go through _get_per_token_logps_and_entropies
    generate = inspect.getsource(GRPOTrainer._generate)
    assert "self._tokenize_prompts(prompts)" in generate and "self._generate_single_turn(" in generate
    for fn in (GRPOTrainer._generate_and_score_completions, GRPOTrainer._compute_loss):
        assert "self._get_per_token_logps_and_entropies(" in inspect.getsource(fn)


def _recipe(tmp_path, model_dir, data, **kw):
    fields = {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 16, "max_steps": 1,
              "learning_rate": 1e-4, **kw}
    return tiny_recipe("grpo", model_dir, data, tmp_path / "g", **fields)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_rollouts_and_loss_use_real_video_tensors(family, tmp_path, tiny_model_dirs, grpo_data):
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs[family], grpo_data))
    batch = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]  # two prompts, G = 2 copies each
    torch.manual_seed(0)
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    assert inputs["completion_ids"].shape[0] == 4 and inputs["advantages"].shape == (4,)
    mode = "train" if trainer.model.training else "eval"
    assert trainer._metrics[mode]["rewards/au_f1_reward/errors"] == [0.0]  # each reward's failures, per step
    media = inputs["media"]
    assert all("pixel_values_videos" in m and m["video_grid_thw"].shape == (1, 3) for m in media)
    if family == "qwen2_5_vl":
        assert all("second_per_grid_ts" in m for m in media)
    assert torch.equal(media[0]["pixel_values_videos"], media[1]["pixel_values_videos"])  # same clip per group
    video_pad = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    for row, m in enumerate(media):  # the prompt holds exactly the clip's vision tokens
        assert int((inputs["prompt_ids"][row] == video_pad).sum()) == int(m["video_grid_thw"].prod()) // 4
    vision = set(trainer._vision_token_ids())
    assert not vision & set(inputs["completion_ids"][inputs["completion_mask"].bool()].tolist())
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() in a real run
    assert torch.isfinite(trainer.compute_loss(trainer.model, inputs))

    def completion_logps(rows):
        trainer._media_rows = rows
        try:
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            with torch.no_grad():
                return trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, mask, inputs["completion_ids"].size(1))[0]
        finally:
            trainer._media_rows = None

    changed = [{**m, "pixel_values_videos": -m["pixel_values_videos"]} for m in media]
    assert not torch.allclose(completion_logps(media), completion_logps(changed))  # the policy sees the video


def test_missing_video_names_the_sample(tmp_path, tiny_model_dirs, grpo_data):
    from emoreason.training import SampleMediaError

    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data))
    row = dict(trainer.train_dataset[0], media_path="/nonexistent/clip.mp4")
    with pytest.raises(SampleMediaError, match=row["id"]):
        trainer._generate_and_score_completions([row, row])


# --- the same results as TRL's own GRPOTrainer -----------------------------------------------------------------
# Rewards fixed by position in the batch (with None where a reward does not apply), so both trainers score the
# same numbers whatever they sample.
FIXED = {"a": [1.0, 0.2, None, 0.7, 0.3, 0.3, 0.9, 0.0], "b": [0.5, None, 1.0, 0.0, 0.25, 0.75, None, 1.0]}


def _fixed(name):
    def reward(completions, **_):
        return FIXED[name][:len(completions)]

    reward.__name__ = f"fixed_{name}"
    return reward


def _text_rows(n_prompts, g):
    rows = []
    for i in range(n_prompts):
        prompt = [{"role": "user", "content": [{"type": "text", "text": f"Which emotion is prompt {i} about?"}]}]
        rows += [{"id": f"text-{i}", "prompt": prompt, "media_type": None, "media_path": None}] * g
    return rows


def _pair(tmp_path, model_dir, data, **config):
    """Our trainer (from a recipe) and TRL's GRPOTrainer with the same model weights, rewards and config."""
    import copy

    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOTrainer

    from emoreason.grpo.train import grpo_dataset
    from emoreason.grpo.trainer import VideoGRPOTrainer
    from emoreason.training import frame_policy

    recipe = _recipe(tmp_path, model_dir, data, reward_funcs=["format", "length"], **config)
    processor = AutoProcessor.from_pretrained(model_dir)
    vision = [processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>",
                                                                      "<|vision_start|>", "<|vision_end|>")]
    args = recipe.training
    args.generation_kwargs = {"suppress_tokens": vision}  # TRL's trainer suppresses the same tokens then
    funcs = [_fixed("a"), _fixed("b")]
    ours = VideoGRPOTrainer(model=AutoModelForImageTextToText.from_pretrained(model_dir), reward_funcs=funcs,
                            args=args, processing_class=processor,
                            frame_policy=frame_policy(recipe.script, processor),
                            train_dataset=grpo_dataset(str(data), "train"))
    trl_args = copy.deepcopy(args)
    trl_args.output_dir = str(tmp_path / "trl")
    theirs = GRPOTrainer(model=AutoModelForImageTextToText.from_pretrained(model_dir), reward_funcs=funcs,
                         args=trl_args, processing_class=AutoProcessor.from_pretrained(model_dir),
                         train_dataset=ours.train_dataset)
    for trainer in (ours, theirs):
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
    return ours, theirs


def _run(trainer, rows):
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions([dict(r) for r in rows])
    return out, trainer.compute_loss(trainer.model, out)


@pytest.mark.parametrize(("aggregation", "scale"), [("sum_then_normalize", "group"),
                                                     ("normalize_then_sum", "batch")])
def test_text_rows_give_exactly_trls_results(aggregation, scale, tmp_path, tiny_model_dirs, grpo_data):
    """On rows without media the trainer is TRL's GRPOTrainer: same completions, advantages, old log-probs (needed
    here: steps_per_generation=2 > gradient_accumulation_steps=1) and loss."""
    ours, theirs = _pair(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, multi_objective_aggregation=aggregation,
                         scale_rewards=scale, steps_per_generation=2)
    rows = _text_rows(4, 2)
    (mine, my_loss), (trl_out, trl_loss) = _run(ours, rows), _run(theirs, rows)
    for key in ("prompt_ids", "completion_ids", "completion_mask", "advantages", "num_items_in_batch"):
        assert torch.equal(mine[key], trl_out[key]), key
    assert "old_per_token_logps" in mine and "old_per_token_logps" in trl_out
    torch.testing.assert_close(mine["old_per_token_logps"], trl_out["old_per_token_logps"])
    torch.testing.assert_close(my_loss, trl_loss)
    assert ours._metrics["train"]["num_tokens"] == theirs._metrics["train"]["num_tokens"]
    assert ours._metrics["train"]["reward"] == theirs._metrics["train"]["reward"]


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_video_advantages_are_trls_for_the_same_rewards(aggregation, tmp_path, tiny_model_dirs, grpo_data):
    ours, theirs = _pair(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, multi_objective_aggregation=aggregation,
                         steps_per_generation=2)
    video_rows = [dict(ours.train_dataset[i]) for i in (0, 0, 1, 1, 2, 2, 3, 3)]
    (mine, _), (trl_out, _) = _run(ours, video_rows), _run(theirs, _text_rows(4, 2))
    assert all("pixel_values_videos" in m for m in mine["media"])
    torch.testing.assert_close(mine["advantages"], trl_out["advantages"], rtol=0, atol=0)
    assert not torch.equal(mine["advantages"], torch.zeros_like(mine["advantages"]))


@pytest.mark.parametrize(("accumulation", "steps_per_generation", "iterations", "needed"),
                         [(3, 2, 1, True), (2, 2, 1, False), (1, 1, 2, True), (4, 2, 1, False)])
def test_old_log_probs_follow_trls_rule(accumulation, steps_per_generation, iterations, needed, tmp_path,
                                        tiny_model_dirs, grpo_data):
    """Old log-probs exist exactly when generation and optimizer steps are misaligned (TRL:
    gradient_accumulation_steps % (steps_per_generation * num_iterations) != 0)."""
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data,
                                       per_device_train_batch_size=2, gradient_accumulation_steps=accumulation,
                                       steps_per_generation=steps_per_generation, num_iterations=iterations))
    assert (accumulation % (steps_per_generation * iterations) != 0) == needed
    trainer.model.train()
    rows = [dict(trainer.train_dataset[i]) for i in range(steps_per_generation) for _ in range(2)]
    out = trainer._generate_and_score_completions(rows)
    assert ("old_per_token_logps" in out) == needed


def test_training_logs_completions_and_tokens(tmp_path, tiny_model_dirs, grpo_data):
    import pandas as pd

    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, log_completions=True,
                                       num_completions_to_print=0))
    trainer.train()
    table = pd.read_parquet(tmp_path / "g" / "completions" / "completions_00001.parquet")
    assert len(table) == 4 and {"prompt", "completion", "advantage", "format_reward"} <= set(table.columns)
    assert all(isinstance(c, str) and c for c in table["completion"].map(lambda m: m[0]["content"]))
    logged = next(h for h in trainer.state.log_history if "reward" in h)
    assert logged["num_tokens"] > 0 and trainer.state.num_input_tokens_seen == logged["num_tokens"]
    assert "completions/mean_length" in logged and "completions/clipped_ratio" in logged


@pytest.mark.slow  # two processes: about 1.5 min on 2 cores; CI runs it in `make test-slow`
def test_two_process_grpo_step(tmp_path, tiny_model_dirs, grpo_data):
    recipe = recipe_yaml(tmp_path / "g.yaml", {
        "model_name_or_path": str(tiny_model_dirs["qwen2_5_vl"]), "dataset_name": str(grpo_data),
        "output_dir": str(tmp_path / "out"), "num_generations": 2, "per_device_train_batch_size": 2,
        "max_completion_length": 12, "max_steps": 1, "learning_rate": 0.001,
        # a length budget the untrained model's 12-token samples straddle (the penalty is graded between max_chars
        # and twice it) gives them different rewards, so the group advantages (and the update) are non-zero
        "reward_options": {"length": {"max_chars": 40}}})
    # this checkout's code first (a worktree beside an editable install of another one must test itself)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests/helpers"), str(ROOT)]))
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / "recipes/accelerate_configs/cpu2.yaml"), str(ROOT / "tests/helpers/ddp_grpo_check.py"),
                    str(recipe), str(tmp_path / "ranks")], check=True, env=env, timeout=600, capture_output=True)
    ranks = [json.loads((tmp_path / "ranks" / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["world"] == 2 and r["steps"] == 1 for r in ranks)
    logged = ranks[0]["logged"][0]
    # equal rewards in every group mean no update to check (re-tune max_chars if the tiny model's samples change)
    assert logged["frac_reward_zero_std"] < 1, {k: v for k, v in logged.items() if k.startswith("rewards/length")}
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]
    for name in ("format", "emotion", "au_f1", "au_consistency", "length"):
        assert f"rewards/{name}_reward/mean" in logged and f"rewards/{name}_reward/std" in logged
        assert logged[f"rewards/{name}_reward/errors"] == 0.0  # counted on both ranks, logged every step


def test_vllm_weights_use_checkpoint_names_with_lora_merged_out_of_place(tiny_model_dirs):
    """The weights sent to vLLM are the base checkpoint's names with the adapter merged, and making them leaves
    the model bit-for-bit as it was (an in-place merge/unmerge in bf16 does not: ranks would drift apart)."""
    import copy

    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from transformers import AutoModelForImageTextToText

    from emoreason.grpo.rollouts import merged_weights, served_weights

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"], dtype=torch.bfloat16)
    with safe_open(str(next(tiny_model_dirs["qwen2_5_vl"].glob("*.safetensors"))), "pt") as handle:
        on_disk = set(handle.keys())
    plain = served_weights(base, {k: v.clone() for k, v in base.state_dict().items()})
    with merged_weights(base) as weights:
        assert set(weights) == set(plain) == on_disk | {"lm_head.weight"}  # tied embeddings/LM head: both names
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference = served_weights(base, copy.deepcopy(model).merge_and_unload().state_dict())  # peft's own merge
    with merged_weights(model) as weights:
        assert set(weights) == set(plain)
        q = next(k for k in weights if k.endswith("layers.0.self_attn.q_proj.weight"))
        k = next(k for k in weights if k.endswith("layers.0.self_attn.k_proj.weight"))
        assert not torch.equal(weights[q], plain[q]) and torch.equal(weights[k], plain[k])
        for name in weights:
            torch.testing.assert_close(weights[name], reference[name], atol=1e-2, rtol=1e-2)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # nothing moved, in bf16


def test_omni_weights_go_to_vllm_under_the_served_composite_names(tiny_omni_dir):
    """vLLM serves Qwen2.5-Omni only in the released composite layout and maps ``thinker.model.*`` /
    ``thinker.visual.*`` / ``thinker.audio_tower.*`` onto its modules; the training model's own names
    (``model.language_model.*``, ``model.audio_tower.*``) would miss them. Whichever layout the policy was loaded
    from, the sync sends the composite checkpoint's names, LoRA merged in."""
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open

    from emoreason.grpo.rollouts import merged_weights
    from emoreason.models import load_model_and_processor

    with safe_open(str(next(tiny_omni_dir.glob("*.safetensors"))), "pt") as handle:
        on_disk = set(handle.keys())
    assert on_disk and all(k.startswith("thinker.") for k in on_disk)
    served = on_disk | {"thinker.lm_head.weight"}  # tied to the embeddings: vLLM sets it separately
    model, _ = load_model_and_processor(tiny_omni_dir, device="cpu")
    with merged_weights(model) as weights:
        assert set(weights) == served
        assert torch.equal(weights["thinker.model.embed_tokens.weight"],
                           model.state_dict()["model.language_model.embed_tokens.weight"])
    fresh = type(model)._from_config(model.config)  # built from config: no loading renames to reverse
    lora = get_peft_model(fresh, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with merged_weights(lora) as weights:
        assert set(weights) == served


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen2_5_omni"])
def test_weight_sync_names_are_checked_against_the_served_checkpoint(family, tiny_model_dirs, tiny_omni_dir,
                                                                     tmp_path):
    """vLLM's in-place reload only logs the weights it did not load; the first sync compares the names it sends
    with the served checkpoint's and refuses a mismatch, naming the names (stale weights = off-policy rollouts)."""
    from emoreason.grpo.rollouts import (
        RolloutError,
        VLLMServerRollouts,
        check_served_names,
        checkpoint_weight_names,
        merged_weights,
    )
    from emoreason.models import load_model_and_processor

    checkpoint = tiny_omni_dir if family == "qwen2_5_omni" else tiny_model_dirs[family]
    expected = checkpoint_weight_names(checkpoint)
    model, _ = load_model_and_processor(checkpoint, device="cpu")
    with merged_weights(model) as weights:
        check_served_names(weights, expected, checkpoint)  # right names (tied LM head under both): no error
        if family == "qwen2_5_omni":  # the released checkpoint's speech parts, which vLLM does not serve
            check_served_names(weights, expected | {"talker.model.norm.weight", "token2wav.code2wav_dit_model.x"},
                               checkpoint)
        if family == "qwen3_vl":
            assert any("deepstack" in name for name in weights)
        wrong = {name.replace("model.", "model.language_model.", 1) if "layers.0." in name else name: tensor
                 for name, tensor in weights.items()}  # a wrong renaming of the first decoder layer
        renamed = sorted(set(wrong) - set(weights))
        assert renamed
        rollouts = VLLMServerRollouts("http://127.0.0.1:9", tmp_path / "sync", served_checkpoint=checkpoint)
        with pytest.raises(RolloutError, match="not sent") as error:
            rollouts.load_weights(wrong)  # refused before anything is written or posted
        assert renamed[0] in str(error.value) and "not in the checkpoint" in str(error.value)
        assert not (tmp_path / "sync" / "model.safetensors").exists()
    index = tmp_path / "sharded"  # a sharded checkpoint's names come from its index
    index.mkdir()
    (index / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: "a" for n in expected}}))
    assert checkpoint_weight_names(index) == expected
    assert checkpoint_weight_names(tmp_path / "nowhere") is None


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
    with pytest.raises(ValueError, match="QLoRA with vLLM rollouts is not supported"):  # checked before the server
        build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, use_vllm=True, vllm_mode="server",
                              use_peft=True, load_in_4bit=True))
    # TRL's own rule, which its __init__ checks only when it builds its vLLM backend (ours runs with it off)
    with pytest.raises(ValueError, match="VESPO loss requires `vllm_importance_sampling_mode`"):
        build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, use_vllm=True, vllm_mode="server",
                              loss_type="vespo", vllm_importance_sampling_mode="sequence_mask"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RolloutError, match="emoreason serve"):
        build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, use_vllm=True, vllm_mode="server",
                              vllm_server_base_url=f"http://127.0.0.1:{port}"))


def test_trls_chat_template_options_shape_the_video_prompt(tmp_path, tiny_model_dirs, grpo_data):
    """chat_template_kwargs render the prompt as TRL renders it (they used to be ignored for video rows); tools,
    which the video prompts do not render, are refused."""
    from trl import GRPOTrainer

    from emoreason.grpo.trainer import VideoGRPOTrainer

    trainer, processor = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data,
                                               chat_template_kwargs={"add_vision_id": True}))
    row = dict(trainer.train_dataset[0])
    trainer._rows = [row]
    try:
        prompt_ids, _, _ = trainer._tokenize_prompts([row["prompt"]])
    finally:
        trainer._rows = trainer._media_rows = trainer._rollout_inputs = None
    assert "Video 1: <|vision_start|>" in processor.tokenizer.decode(prompt_ids[0])

    def emotion_tool(name: str) -> str:
        """Look an emotion up.

        Args:
            name: the emotion.
        """
        return name

    assert "tools" in inspect.signature(GRPOTrainer.__init__).parameters
    with pytest.raises(ValueError, match="tools"):
        VideoGRPOTrainer(model=trainer.model, reward_funcs=trainer.reward_funcs, args=trainer.args,
                         processing_class=processor, train_dataset=trainer.train_dataset, tools=[emotion_tool])


def test_evaluation_generates_scores_and_logs_under_eval(tmp_path, tiny_model_dirs, grpo_data):
    """trainer.evaluate() runs TRL's eval path (no buffering; num_generations_eval) with the clips' media."""
    import datasets

    splits = datasets.load_from_disk(str(grpo_data))
    test_split = "test" if "test" in splits else next(s for s in splits if s != "train")
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, eval_strategy="steps",
                                       eval_steps=1, dataset_test_split=test_split, per_device_eval_batch_size=4,
                                       num_generations_eval=2))
    trainer.eval_dataset = trainer.eval_dataset.select(range(min(4, len(trainer.eval_dataset))))
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"]) and "eval_reward" in metrics
    assert metrics["eval_rewards/format_reward/mean"] is not None
    assert not trainer._metrics["eval"]  # flushed into the logged metrics


def test_media_travel_with_their_rows_through_trls_shuffle_and_split(tmp_path, tiny_model_dirs, grpo_data):
    """With steps_per_generation=2, TRL shuffles the generated batch and splits it into two buffered steps: each
    row's clip tensors (a list the trainer adds) must move with its completion and advantage."""
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data,
                                       per_device_train_batch_size=2, steps_per_generation=2,
                                       gradient_accumulation_steps=2))
    generated = {}
    generate = trainer._generate_and_score_completions

    def keep(rows):  # the batch as generated, before TRL shuffles it
        generated.update(generate(rows))
        return generated

    trainer._generate_and_score_completions = keep
    trainer.model.train()
    trainer._step, trainer._buffered_inputs = 0, None
    torch.manual_seed(3)
    trainer._prepare_inputs([dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)])
    clips = generated["media"]
    assert not torch.equal(clips[0]["pixel_values_videos"], clips[2]["pixel_values_videos"])

    def completion(out, i):
        return tuple(out["completion_ids"][i][out["completion_mask"][i].bool()].tolist())

    origin = {completion(generated, i): i for i in range(4)}
    assert len(origin) == 4  # distinct samples identify the rows
    placed = []
    for batch in trainer._buffered_inputs:
        for j in range(2):
            i = origin[completion(batch, j)]
            placed.append(i)
            assert torch.equal(batch["media"][j]["pixel_values_videos"], clips[i]["pixel_values_videos"])
            assert torch.equal(batch["advantages"][j], generated["advantages"][i])
    assert sorted(placed) == [0, 1, 2, 3] and placed != [0, 1, 2, 3]  # every row once, shuffled


@pytest.mark.slow  # two GRPO runs (about a minute); the SFT resume test covers the checkpoint choice fast
def test_killed_run_resumes_from_its_last_complete_checkpoint(tmp_path, tiny_model_dirs, grpo_data):
    """A GRPO run killed while saving step 2 resumes at step 2 from checkpoint-1: no step trains twice."""
    from transformers import TrainerCallback

    from emoreason.grpo.train import run_grpo

    first = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, max_steps=2, save_steps=1)
    run_grpo(first)
    out = tmp_path / "g"
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # the kill: Trainer writes it last
    resumed = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], grpo_data, max_steps=2, save_steps=1)
    assert resumed.resume_from() == str(out / "checkpoint-1")
    trainer, _ = build_trainer(resumed)
    steps_run: list[int] = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    trainer.add_callback(Record())
    trainer.train(resume_from_checkpoint=resumed.resume_from())
    assert steps_run == [2] and trainer.state.global_step == 2
    assert [h["step"] for h in trainer.state.log_history if "reward" in h] == [1, 2]  # step 1's log, restored
