"""The policy model for SFT and GRPO: loaded as TRL's ``ModelConfig`` says, frozen as the recipe says, and the
frame policy that feeds it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from emoreason.training.recipe import LM_LORA_TARGETS, EmoreasonArguments, Recipe
from emoreason.video import FramePolicy

log = logging.getLogger(__name__)


class FrameSettings(Protocol):
    """The frame-policy keys of a recipe (``EmoreasonArguments``) or the vision warm-up's config."""

    fps: float
    max_frames: int
    min_pixels: int | None
    max_pixels: int | None
    total_pixels: int | None


def frame_policy(script: FrameSettings, processor) -> FramePolicy:
    """The recipe's frame policy on top of the processor's patch/merge factor and pixel bounds (the one place SFT,
    GRPO and the vision warm-up turn their frame keys into a policy)."""
    from emoreason.models import frame_policy_for

    policy = replace(frame_policy_for(processor), fps=script.fps, max_frames=script.max_frames,
                     total_pixels=script.total_pixels)
    if script.min_pixels:
        policy = replace(policy, min_pixels=script.min_pixels)
    if script.max_pixels:
        policy = replace(policy, max_pixels=script.max_pixels)
    return policy


def freeze(model, script: EmoreasonArguments) -> None:
    """Freeze the vision tower, the projector (merger, and Qwen3-VL's deepstack mergers), an Omni model's audio
    encoder and/or the language model, as ``emoreason.training.optim.module_of`` classifies each parameter and the
    recipe says."""
    from emoreason.training.optim import module_of

    inner = getattr(model, "model", model)
    if script.freeze_language and getattr(inner, "visual", None) is None and getattr(inner, "audio_tower", None) is None:
        raise ValueError("freeze_language needs a model with a vision or audio encoder to train")
    frozen = {module for module, flag in (("vision", script.freeze_vision), ("projector", script.freeze_projector),
                                          ("audio", script.freeze_audio), ("language", script.freeze_language))
              if flag}
    for name, param in model.named_parameters():
        if module_of(name) in frozen:
            param.requires_grad_(False)


def peft_config_for(recipe: Recipe):
    """TRL's LoRA config from ``ModelConfig``; without ``lora_target_modules``, the language model's linear
    layers (peft's per-model default would also adapt the vision tower)."""
    from trl import get_peft_config

    config = get_peft_config(recipe.model)
    if config is not None and recipe.model.lora_target_modules is None:
        config.target_modules = LM_LORA_TARGETS
    return config


def load_for_training(recipe: Recipe):
    """Model, processor and peft config for a recipe, loaded as TRL's example scripts load them (ModelConfig's
    ``dtype``, ``attn_implementation``, ``model_revision``, bitsandbytes quantization; the trainer config's
    ``trust_remote_code`` and ``model_init_kwargs``), then frozen and prepared for k-bit training where the base is
    quantized."""
    import torch
    from accelerate import PartialState
    from transformers import AutoProcessor
    from trl import get_quantization_config

    from emoreason.models import build_tiny_model, check_model_dir
    from emoreason.models.loading import model_class_for

    script, model_args, args = recipe.script, recipe.model, recipe.training
    if script.tiny_model_family and not Path(model_args.model_name_or_path).exists():
        build_tiny_model(script.tiny_model_family, model_args.model_name_or_path)
    path = str(check_model_dir(model_args.model_name_or_path))
    processor = AutoProcessor.from_pretrained(path, revision=model_args.model_revision,
                                              trust_remote_code=args.trust_remote_code)
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    quantization = get_quantization_config(model_args)
    # a quantized base is quantized where it lands: this process's GPU (each rank holds its own copy)
    device_map = {"": PartialState().local_process_index} if quantization is not None and \
        torch.cuda.is_available() else None
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": args.trust_remote_code,
              "attn_implementation": model_args.attn_implementation, "dtype": dtype, "device_map": device_map,
              "quantization_config": quantization, **(args.model_init_kwargs or {})}
    model = model_class_for(path).from_pretrained(path, **kwargs)
    # auto stays on the model's own attention: the varlen kernel becomes the CUDA default once its correctness test
    # against the reference attention (tests/test_kernels.py, CUDA-only) has run on a GPU
    if script.vision_attention == "varlen":
        from emoreason.kernels import enable_varlen_vision_attention

        enable_varlen_vision_attention(model)
    freeze(model, script)
    if script.ignore_bias_buffers:  # TRL's DDP workaround for boolean buffers (transformers#22482)
        model._ddp_params_and_buffers_to_ignore = [n for n, b in model.named_buffers() if b.dtype == torch.bool]
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    return model, processor, peft_config_for(recipe)
