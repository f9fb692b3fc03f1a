"""``emoreason grpo``: GRPO with emotion and AU rewards on a video-LLM, from a recipe (YAML + key=value).

Recipes are TRL's own configs — ``GRPOConfig`` + ``ModelConfig`` + emoreason's ``GRPOScriptArguments`` (see
``emoreason.training.recipe``). Rewards are named in ``reward_funcs`` and weighted by TRL's ``reward_weights``
(``reward_funcs: [format, emotion, au_f1]``, ``reward_weights: [0.5, 1.0, 1.0]``), with options per reward
(``reward_options: {au_f1: {intensity_aware: true}}``); see ``emoreason.rewards``. Rollouts run with HF generate
(default, works on CPU), or ``use_vllm: true`` with a vLLM server that gets the same frames and the policy's
weights every step (``emoreason serve --model M --media-dir D --weight-sync``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from functools import partial
from pathlib import Path

from emoreason.audio import audio_window_s
from emoreason.audio.modalities import model_modalities
from emoreason.inference import encode_batch
from emoreason.training import (
    Recipe,
    check_rows,
    frame_policy,
    load_dataset_split,
    load_for_training,
    save_final,
)
from emoreason.training.data import (
    RowLength,
    audio_notes,
    load_row_heard,
    load_row_media,
    row_media,
    with_media,
)
from emoreason.video import FramePolicy

log = logging.getLogger(__name__)


def grpo_dataset(path: str, split: str, limit: int | None = None, config: str | None = None):
    """CoT rows → GRPO rows: the prompt, one media path and type, and the ground-truth columns. Only ``cot``
    rows (the rewards score the reasoning format); prototype rows stay (their AU rewards are None)."""
    from emoreason.cot.rows import select_rows

    data = select_rows(load_dataset_split(path, split, limit, config), ["cot"], prototype_rows=True, what="GRPO")

    def to_row(row: dict) -> dict:
        kind, media = row_media(row)
        return {"media_type": kind, "media_path": media}

    data = data.map(to_row)
    drop = [c for c in ("completion", "video", "image", "provenance") if c in data.column_names]
    return data.remove_columns(drop)


def prompt_length(processor, policy: FramePolicy, row: dict, modalities: str | None = None) -> RowLength:
    """Tokens of a GRPO row's prompt with its frames, with what the row check counts about its audio
    (``audio_notes``), under the recipe's ``modalities`` (``emoreason.audio.modalities``); raises
    SampleMediaError when its media does not load (or, for ``audio``, has no track)."""
    kind, path = row_media(row)
    conversation = with_media(row["prompt"], kind, path)
    frames = load_row_media(row, policy)
    hears = model_modalities(processor, modalities) != "video"
    frames, audio = load_row_heard(row, frames, audio_window_s(processor), modalities or "audio+video") if hears \
        else (frames, None)
    length = int(encode_batch(processor, [conversation], [frames], audio=[audio] if hears else None)
                 ["attention_mask"].sum())
    return RowLength(length, audio_notes(frames, audio) if hears else ())


def _checked(recipe: Recipe, processor, policy: FramePolicy, split: str, limit: int | None, what: str):
    script, args = recipe.script, recipe.training
    data = grpo_dataset(script.dataset_name, split, limit, script.dataset_config)
    key = json.dumps([asdict(policy), recipe.model.model_name_or_path, "grpo", script.modalities], sort_keys=True,
                     default=str)
    check = check_rows(data, partial(prompt_length, processor, policy, modalities=script.modalities), None,
                       workers=args.dataloader_num_workers, cache_dir=args.output_dir, cache_key=key, what=what)
    if not check.kept:
        raise ValueError(f"no {what} rows left after the check of {script.dataset_name}: "
                         f"{json.dumps(check.summary()['dropped'])}")
    return data.select(check.kept), check


def build_trainer(recipe: Recipe):
    """VideoGRPOTrainer with the recipe's model, rewards and checked rows; ``trainer.row_checks`` holds what the
    check removed (rows whose media does not load)."""
    from emoreason.grpo.trainer import VideoGRPOTrainer
    from emoreason.rewards import get_reward

    script, args = recipe.script, recipe.training
    model, processor, peft_config = load_for_training(recipe)
    funcs = [get_reward(name, **script.reward_options.get(name, {})) for name in script.reward_funcs]
    policy = frame_policy(script, processor)
    train, train_check = _checked(recipe, processor, policy, script.dataset_train_split, script.max_train_samples,
                                  "train")
    checks, evaluation = {"train": train_check}, None
    if args.eval_strategy != "no":
        evaluation, checks["eval"] = _checked(recipe, processor, policy, script.dataset_test_split, None, "eval")
    trainer = VideoGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train,
                               eval_dataset=evaluation, processing_class=processor, peft_config=peft_config,
                               frame_policy=policy, vllm_sync_dir=script.vllm_sync_dir,
                               modalities=script.modalities)
    trainer.module_learning_rates = script.module_learning_rates()
    trainer.row_checks = checks
    return trainer, processor


def run_grpo(recipe: Recipe) -> Path:
    """Train (resuming from the last checkpoint in output_dir), then save the final model and the run summary."""
    trainer, processor = build_trainer(recipe)
    trainer.train(resume_from_checkpoint=recipe.resume_from())
    history = [h for h in trainer.state.log_history if "reward" in h]
    return save_final(trainer, recipe, processor, trainer.frame_policy, {
        "reward_history": history, "data": {name: check.summary() for name, check in trainer.row_checks.items()}})
