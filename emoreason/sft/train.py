"""``emoreason sft``: TRL SFTTrainer on a video-LLM with the video collator; full, LoRA or QLoRA.

Recipes (``recipes/<model>/sft/*.yaml``) hold every field of ``SFTRecipe``; CLI ``key=value`` overrides win.
Launch on many GPUs with ``accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m emoreason sft
--config …``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Linear layers of the language model (Qwen2/Qwen3 decoder blocks); the vision tower stays as configured.
LM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class PolicyRecipe:
    """What SFT and GRPO recipes share: the model, the data, the training mode, frames and trainer basics."""

    model_name_or_path: str = ""
    dataset_path: str = ""  # HF save_to_disk directory or a JSONL file from `emoreason synth-cot`
    output_dir: str = ""
    tiny_model_family: str | None = None  # build the embedded tiny model at model_name_or_path if missing
    train_split: str = "train"
    max_train_samples: int | None = None
    # training mode
    mode: str = "lora"  # full | lora | qlora
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = LM_LORA_TARGETS
    freeze_vision: bool = True
    freeze_projector: bool = False
    # train the vision path alone (LLaVA's stage-1 alignment, with the vision tower trainable too): a warm-up
    # stage for a randomly initialised model, whose language model otherwise learns to ignore the video
    freeze_language: bool = False
    # auto: one varlen attention call for all vision windows on CUDA (launch-bound there), the model's own
    # per-window attention on CPU (where a dense block mask costs more than the loop) | varlen | default
    vision_attention: str = "auto"
    # frames (qwen-vl-utils policy; the processor's patch and merge size set the resize factor)
    fps: float = 2.0
    max_frames: int = 16
    min_pixels: int | None = None
    max_pixels: int | None = None
    # trainer
    learning_rate: float = 1e-4  # the language model's (and every module's without its own rate below)
    vision_learning_rate: float | None = None  # vision tower (patch embedding + blocks); None: learning_rate
    projector_learning_rate: float | None = None  # the merger that maps vision features to text width
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    gradient_checkpointing: bool = False
    bf16: bool = False
    seed: int = 42
    report_to: str | list[str] = "none"  # tensorboard | wandb | none
    resume_from_checkpoint: str | bool | None = None
    extra_args: dict = field(default_factory=dict)  # any other TRL config / TrainingArguments field

    def __post_init__(self) -> None:
        missing = [k for k in ("model_name_or_path", "dataset_path", "output_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"{type(self).__name__}: set {', '.join(missing)}")


@dataclass
class SFTRecipe(PolicyRecipe):
    eval_split: str | None = None
    total_pixels: int | None = None
    max_length: int | None = 4096
    overlong: str = "drop"  # drop | error
    warmup_ratio: float = 0.03  # fraction of total steps (TrainingArguments.warmup_steps < 1)
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    eval_steps: int | None = None
    dataloader_num_workers: int = 0


def load_dataset_split(path: str, split: str, limit: int | None = None):
    import datasets

    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"dataset {source} not found; build it with `emoreason synth-cot`")
    if source.is_dir():
        data = datasets.load_from_disk(str(source))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise KeyError(f"{source} has no split {split!r} (has {', '.join(data)})")
            data = data[split]
    else:
        data = datasets.load_dataset("json", data_files=str(source), split="train")
        if "split" in data.column_names:
            data = data.filter(lambda row: row["split"] == split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    return data


def frame_policy(recipe: PolicyRecipe, processor):
    """The recipe's frame policy on top of the processor's patch/merge factor and pixel bounds."""
    from dataclasses import replace

    from emoreason.models import frame_policy_for

    policy = replace(frame_policy_for(processor), fps=recipe.fps, max_frames=recipe.max_frames,
                     total_pixels=getattr(recipe, "total_pixels", None))
    if recipe.min_pixels:
        policy = replace(policy, min_pixels=recipe.min_pixels)
    if recipe.max_pixels:
        policy = replace(policy, max_pixels=recipe.max_pixels)
    return policy


def _freeze(model, recipe: SFTRecipe) -> None:
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None)
    if recipe.freeze_language:
        if visual is None:
            raise ValueError("freeze_language needs a model with a vision tower to train")
        if recipe.mode != "full":
            raise ValueError("freeze_language trains the vision path's own weights: use mode: full")
        for name, param in model.named_parameters():
            if ".visual." not in f".{name}":
                param.requires_grad_(False)
    if visual is None:
        return
    merger = getattr(visual, "merger", None)
    if recipe.freeze_vision:
        for name, param in visual.named_parameters():
            if merger is None or not name.startswith("merger"):
                param.requires_grad_(False)
    if recipe.freeze_projector and merger is not None:
        for param in merger.parameters():
            param.requires_grad_(False)


def load_for_training(recipe):
    """Model, processor and peft config for a recipe with the fields SFT and GRPO share (model_name_or_path,
    tiny_model_family, mode, lora_*, freeze_*, bf16, vision_attention, gradient_checkpointing)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from emoreason.models import build_tiny_model, check_model_dir

    if recipe.mode not in ("full", "lora", "qlora"):
        raise ValueError(f"mode must be full, lora or qlora, got {recipe.mode!r}")
    if recipe.tiny_model_family and not Path(recipe.model_name_or_path).exists():
        build_tiny_model(recipe.tiny_model_family, recipe.model_name_or_path)
    path = str(check_model_dir(recipe.model_name_or_path))
    processor = AutoProcessor.from_pretrained(path)
    load_kwargs: dict = {"dtype": torch.bfloat16 if recipe.bf16 else torch.float32}
    if recipe.mode == "qlora":
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=load_kwargs["dtype"])
    model = AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
    if recipe.vision_attention == "varlen" or (recipe.vision_attention == "auto" and torch.cuda.is_available()):
        from emoreason.kernels import enable_varlen_vision_attention

        enable_varlen_vision_attention(model)
    _freeze(model, recipe)
    peft_config = None
    if recipe.mode in ("lora", "qlora"):
        from peft import LoraConfig

        peft_config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                                 target_modules=recipe.lora_target_modules, task_type="CAUSAL_LM")
        if recipe.mode == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    return model, processor, peft_config


def module_learning_rates(recipe: PolicyRecipe) -> dict[str, float | None]:
    return {"vision": recipe.vision_learning_rate, "projector": recipe.projector_learning_rate}


def build_trainer(recipe: SFTRecipe):
    import torch
    from trl import SFTConfig, SFTTrainer

    from emoreason.sft.collator import VideoSFTCollator
    from emoreason.sft.optim import ModuleLearningRates

    class VideoSFTTrainer(ModuleLearningRates, SFTTrainer):
        module_learning_rates = module_learning_rates(recipe)

    if recipe.mode not in ("full", "lora", "qlora"):
        raise ValueError(f"mode must be full, lora or qlora, got {recipe.mode!r}")
    model, processor, peft_config = load_for_training(recipe)
    train = load_dataset_split(recipe.dataset_path, recipe.train_split, recipe.max_train_samples)
    evaluation = load_dataset_split(recipe.dataset_path, recipe.eval_split) if recipe.eval_split else None
    args = SFTConfig(
        output_dir=recipe.output_dir, learning_rate=recipe.learning_rate, num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps, per_device_train_batch_size=recipe.per_device_train_batch_size,
        per_device_eval_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, warmup_steps=recipe.warmup_ratio,
        lr_scheduler_type=recipe.lr_scheduler_type, weight_decay=recipe.weight_decay,
        logging_steps=recipe.logging_steps, save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        eval_strategy="steps" if evaluation is not None and recipe.eval_steps else "no",
        eval_steps=recipe.eval_steps, gradient_checkpointing=recipe.gradient_checkpointing, bf16=recipe.bf16,
        seed=recipe.seed, report_to=recipe.report_to, dataloader_num_workers=recipe.dataloader_num_workers,
        remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, max_length=None,
        **{"use_cpu": not torch.cuda.is_available(), **recipe.extra_args})  # CPU runs still use gloo DDP
    collator = VideoSFTCollator(processor, frame_policy(recipe, processor), recipe.max_length, recipe.overlong)
    trainer = VideoSFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                              processing_class=processor, data_collator=collator, peft_config=peft_config)
    return trainer, processor


def run_sft(recipe: SFTRecipe) -> Path:
    """Train, save the final model (merged for LoRA, so it loads like any checkpoint) and the processor."""
    trainer, processor = build_trainer(recipe)
    result = trainer.train(resume_from_checkpoint=recipe.resume_from_checkpoint or None)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return save_final(trainer, recipe, processor, trainer.data_collator.policy, {
        "train_loss": result.training_loss, "loss_history": history,
        "dropped_overlong": trainer.data_collator.dropped})


def save_final(trainer, recipe: PolicyRecipe, processor, policy, summary: dict) -> Path:
    """Save ``output_dir/final`` (LoRA merged so it loads like any checkpoint; QLoRA as an adapter on its 4-bit
    base), the processor, the frame policy, and ``train_summary.json``; every rank waits for it."""
    from emoreason.models import save_frame_policy

    out = Path(recipe.output_dir)
    final = out / "final"
    model = trainer.model
    if recipe.mode == "lora" and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if trainer.accelerator.is_main_process:
        if recipe.mode == "qlora":
            trainer.save_model(str(final))
        else:
            model.save_pretrained(str(final))
        processor.save_pretrained(str(final))
        save_frame_policy(final, policy)
        (out / "train_summary.json").write_text(json.dumps({
            "recipe": asdict(recipe), "global_step": trainer.state.global_step, **summary},
            indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    return final
