"""Saving the trained policy under any launch (single process, DDP, ZeRO-2/3, FSDP2), and the policy's weights
for a vLLM server.

Under ZeRO-3 and FSDP the parameters are partitioned over the ranks, so every rank takes part in gathering them
(``accelerator.get_state_dict`` / ``trainer.save_model``) and the main process writes. A LoRA adapter is merged
into the *gathered* weights, out of place: the live model is never modified, so no rank's frozen base drifts
(an in-place merge/unmerge is not exact in bf16) and training can go on after a save or a vLLM weight sync.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_WRAPPERS = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod.")


def _clean(name: str) -> str:
    for wrapper in _WRAPPERS:
        name = name.replace(wrapper, "")
    return name


def checkpoint_name(name: str) -> str | None:
    """A PEFT-wrapped parameter's name as it is in the base checkpoint; None for adapter-only weights."""
    if ".lora_" in name or ".original_module." in name:
        return None
    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
    return re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)


def lora_layers(model):
    """(module name, module, adapter) of every active LoRA layer; refuses variants merged differently."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import Linear

    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            if not isinstance(module, Linear) or adapter in getattr(module, "lora_variant", {}) or \
                    module.use_dora.get(adapter, False):
                raise NotImplementedError(
                    f"{name}: merging {type(module).__name__} adapters (DoRA and other LoRA variants, embedding or "
                    "conv LoRA) into gathered weights is not supported; use plain LoRA on linear layers")
            yield _clean(name), module, adapter


def checkpoint_weights(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` (gathered, of ``model``) under the base checkpoint's names, each LoRA adapter merged in out
    of place (W + scaling·B·A, computed in float32, cast to W's dtype). A full model's state dict passes through."""
    state_dict = {_clean(k): v for k, v in state_dict.items()}
    if not (hasattr(model, "peft_config") and hasattr(model, "get_base_model")):
        return state_dict
    merged: dict[str, torch.Tensor] = {}
    for name, module, adapter in lora_layers(model):
        weight = state_dict[f"{name}.base_layer.weight"]
        a = state_dict[f"{name}.lora_A.{adapter}.weight"].float()
        b = state_dict[f"{name}.lora_B.{adapter}.weight"].float()
        delta = (b @ a) * module.scaling[adapter]
        if module.fan_in_fan_out:
            delta = delta.T
        merged[f"{name}.base_layer.weight"] = (weight.float() + delta.to(weight.device)).to(weight.dtype)
        if module.lora_bias.get(adapter, False):
            bias_key = f"{name}.base_layer.bias"
            bias = state_dict[bias_key]
            merged[bias_key] = (bias.float() + state_dict[f"{name}.lora_B.{adapter}.bias"].float()).to(bias.dtype)
    out = {}
    for key, tensor in state_dict.items():
        target = checkpoint_name(key)
        if target is not None:
            out[target] = merged.get(key, tensor)
    return out


def policy_weights(trainer) -> dict[str, torch.Tensor] | None:
    """The policy's full weights under checkpoint names (LoRA merged out of place) on the main process, None on
    the others. Every rank must call it: under ZeRO-3 / FSDP the gather is a collective; otherwise every rank
    already holds the full weights and the main process reads its own (no copy)."""
    from trl.distributed import DistributedBackend

    accelerator = trainer.accelerator
    backend = DistributedBackend(accelerator)
    if backend.is_zero3 or backend.is_fsdp:
        state_dict = accelerator.get_state_dict(trainer.model_wrapped if backend.is_zero3 else trainer.model)
    else:
        state_dict = accelerator.unwrap_model(trainer.model).state_dict() if accelerator.is_main_process else None
    if not accelerator.is_main_process:
        return None
    return checkpoint_weights(accelerator.unwrap_model(trainer.model), state_dict)


def save_final(trainer, recipe, processor, policy, summary: dict) -> Path:
    """Save ``output_dir/final`` — full and LoRA as a plain checkpoint (LoRA merged into the gathered weights),
    QLoRA as its adapter (``trainer.save_model``, which gathers it) — with the processor, the frame policy, and
    ``train_summary.json``. Every rank must call it."""
    from emoreason.models import save_frame_policy

    out = Path(recipe.training.output_dir)
    final = out / "final"
    accelerator = trainer.accelerator
    if recipe.mode == "qlora":  # merging would de- and re-quantize the 4-bit base: keep the adapter
        trainer.save_model(str(final))
    else:
        weights = policy_weights(trainer)
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(trainer.model)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.save_pretrained(str(final), state_dict=weights)
    if accelerator.is_main_process:
        processor.save_pretrained(str(final))
        save_frame_policy(final, policy)
        (out / "train_summary.json").write_text(json.dumps({
            "recipe": recipe.to_dict(), "global_step": trainer.state.global_step,
            "world_size": accelerator.num_processes, **summary}, indent=2, default=str) + "\n")
    accelerator.wait_for_everyone()
    return final
