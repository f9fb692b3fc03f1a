"""``emoreason sft``: TRL's SFTTrainer on a video-LLM with the video collator; full, LoRA or QLoRA.

Recipes (``recipes/<model>/sft/*.yaml``) are TRL's own configs — ``SFTConfig`` + ``ModelConfig`` + emoreason's
``SFTScriptArguments`` (see ``emoreason.training.recipe``); CLI ``key=value`` overrides win. Launch on many GPUs
with ``accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m emoreason sft --config …``.
``max_length`` is TRL's: rows longer than it (vision tokens included) are removed before training and counted in
``train_summary.json``, never truncated.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from emoreason.sft.collator import OverlongSampleError, VideoSFTCollator
from emoreason.training import (
    Recipe,
    check_rows,
    frame_policy,
    load_dataset_split,
    load_for_training,
    save_final,
)
from emoreason.training.data import OVERLONG

log = logging.getLogger(__name__)


def _checked(recipe: Recipe, collator: VideoSFTCollator, split: str, limit: int | None, what: str):
    from emoreason.cot.rows import select_rows

    script, args = recipe.script, recipe.training
    data = select_rows(load_dataset_split(script.dataset_name, split, limit, script.dataset_config), script.tasks,
                       script.prototype_rows, f"SFT {what}")
    key = json.dumps([asdict(collator.policy), recipe.model.model_name_or_path, collator.modalities], sort_keys=True,
                     default=str)
    check = check_rows(data, collator.row_length, args.max_length, workers=args.dataloader_num_workers,
                       cache_dir=args.output_dir, cache_key=key, what=what)
    overlong = check.dropped.get(OVERLONG, [])
    if overlong and script.overlong == "error":
        raise OverlongSampleError(f"{len(overlong)} {what} rows are longer than max_length={args.max_length}: "
                                  f"{', '.join(overlong[:20])}; raise max_length or lower the frame budget")
    if not check.kept:
        raise ValueError(f"no {what} rows left after the check of {script.dataset_name}: "
                         f"{json.dumps(check.summary()['dropped'])}")
    return data.select(check.kept), check


def build_trainer(recipe: Recipe):
    """TRL's SFTTrainer with the recipe's model, checked rows and the video collator; ``trainer.row_checks``
    holds what the check removed per split."""
    from emoreason.sft.trainer import VideoSFTTrainer

    script, args = recipe.script, recipe.training
    model, processor, peft_config = load_for_training(recipe)
    collator = VideoSFTCollator(processor, frame_policy(script, processor), args.max_length, script.modalities)
    train, train_check = _checked(recipe, collator, script.dataset_train_split, script.max_train_samples, "train")
    checks, evaluation = {"train": train_check}, None
    if args.eval_strategy != "no":
        evaluation, checks["eval"] = _checked(recipe, collator, script.dataset_test_split, None, "eval")
    trainer = VideoSFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                              processing_class=processor, data_collator=collator, peft_config=peft_config)
    trainer.module_learning_rates = script.module_learning_rates()
    trainer.row_checks = checks
    return trainer, processor


def run_sft(recipe: Recipe) -> Path:
    """Train (resuming from the last checkpoint in output_dir, as open-r1 does), then save the final model
    (LoRA merged, so it loads like any checkpoint), the processor, the frame policy and the run summary."""
    trainer, processor = build_trainer(recipe)
    result = trainer.train(resume_from_checkpoint=recipe.resume_from())
    history = [h for h in trainer.state.log_history if "loss" in h]
    return save_final(trainer, recipe, processor, trainer.data_collator.policy, {
        "train_loss": result.training_loss, "loss_history": history, "modalities": trainer.data_collator.modalities,
        "data": {name: check.summary() for name, check in trainer.row_checks.items()}})
