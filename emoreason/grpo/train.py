"""``emoreason grpo``: GRPO with emotion and AU rewards on a video-LLM, from a recipe (YAML + key=value).

Rewards are named in the recipe with weights (``rewards: {format: 1.0, emotion: 1.0, au_f1: 1.0}``) and
options (``reward_options: {emotion: {soft_quadrant: 0.2}}``); see ``emoreason.rewards``. Rollouts run with
HF generate (default, works on CPU), or ``use_vllm: true`` with a vLLM server that gets the same frames and
the policy's weights every step (``emoreason serve --model M --media-dir D --weight-sync``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.sft.train import (
    PolicyRecipe,
    frame_policy,
    load_dataset_split,
    load_for_training,
    module_learning_rates,
    save_final,
)

log = logging.getLogger(__name__)


@dataclass
class GRPORecipe(PolicyRecipe):
    rewards: dict[str, float] = field(default_factory=lambda: {"format": 1.0, "emotion": 1.0, "au_f1": 1.0,
                                                                "au_consistency": 0.5, "length": 0.5})
    reward_options: dict[str, dict] = field(default_factory=dict)
    mode: str = "full"  # full | lora | qlora
    # GRPO / rollouts
    num_generations: int = 8
    max_completion_length: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    # rollouts on a vLLM server started with `emoreason serve --weight-sync` (see emoreason.grpo.rollouts)
    use_vllm: bool = False
    vllm_mode: str = "server"
    vllm_server_base_url: str = "http://127.0.0.1:8000"
    vllm_server_timeout: float = 600.0
    vllm_sync_dir: str | None = None  # where weights are written for the server (default OUTPUT_DIR/vllm-sync)
    vllm_importance_sampling_correction: bool = True
    learning_rate: float = 1e-6
    per_device_train_batch_size: int = 8
    logging_steps: int = 1
    save_steps: int = 200


def grpo_dataset(path: str, split: str, limit: int | None = None):
    """CoT rows → GRPO rows: the prompt, one media path and type, and the ground-truth columns."""
    data = load_dataset_split(path, split, limit)

    def to_row(row: dict) -> dict:
        kind = row.get("media_type")
        return {"media_path": row.get(kind) if kind in ("video", "image") else None}

    data = data.map(to_row)
    drop = [c for c in ("completion", "video", "image", "provenance") if c in data.column_names]
    return data.remove_columns(drop)


def build_trainer(recipe: GRPORecipe):

    import torch
    from trl import GRPOConfig

    from emoreason.grpo.trainer import VideoGRPOTrainer
    from emoreason.rewards import get_reward

    model, processor, peft_config = load_for_training(recipe)
    names = list(recipe.rewards)
    funcs = [get_reward(n, **recipe.reward_options.get(n, {})) for n in names]
    args = GRPOConfig(
        output_dir=recipe.output_dir, learning_rate=recipe.learning_rate, max_steps=recipe.max_steps,
        num_train_epochs=recipe.num_train_epochs, per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, logging_steps=recipe.logging_steps,
        save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        gradient_checkpointing=recipe.gradient_checkpointing, bf16=recipe.bf16, seed=recipe.seed,
        report_to=recipe.report_to, num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length, temperature=recipe.temperature, top_p=recipe.top_p,
        beta=recipe.beta, loss_type=recipe.loss_type, scale_rewards=recipe.scale_rewards,
        num_iterations=recipe.num_iterations, use_vllm=recipe.use_vllm, vllm_mode=recipe.vllm_mode,
        vllm_server_base_url=recipe.vllm_server_base_url, vllm_server_timeout=recipe.vllm_server_timeout,
        vllm_importance_sampling_correction=recipe.vllm_importance_sampling_correction,
        reward_weights=[float(recipe.rewards[n]) for n in names], remove_unused_columns=False,
        **{"use_cpu": not torch.cuda.is_available(), **recipe.extra_args})
    policy = frame_policy(recipe, processor)
    train = grpo_dataset(recipe.dataset_path, recipe.train_split, recipe.max_train_samples)
    trainer = VideoGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train,
                               processing_class=processor, peft_config=peft_config, frame_policy=policy,
                               vllm_sync_dir=recipe.vllm_sync_dir)
    trainer.module_learning_rates = module_learning_rates(recipe)
    return trainer, processor


def run_grpo(recipe: GRPORecipe) -> Path:
    trainer, processor = build_trainer(recipe)
    trainer.train(resume_from_checkpoint=recipe.resume_from_checkpoint or None)
    history = [h for h in trainer.state.log_history if "reward" in h]
    return save_final(trainer, recipe, processor, trainer.frame_policy, {"reward_history": history})
