"""Run under `accelerate launch` with an FSDP2 or DeepSpeed ZeRO-3 config on CPU (see cpu_sharding.py): train the
tiny model a step in full and in LoRA mode, save `final/` with emoreason's save path, and write what the test
compares: the weights gathered from the shards (rank 0) and each rank's view of its shards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cpu_sharding

cpu_sharding.enable()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from emoreason.sft.train import build_trainer  # noqa: E402
from emoreason.training import load_recipe, save_final  # noqa: E402


def _is_shard(param) -> bool:
    from torch.distributed.tensor import DTensor

    if isinstance(param, DTensor):  # FSDP2
        return param.to_local().numel() < param.numel()
    return hasattr(param, "ds_numel") and param.numel() < param.ds_numel  # ZeRO-3 keeps a partition


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    for mode, extra in (("full", []), ("lora", ["use_peft=true", "lora_r=4", "lora_alpha=8", "lora_dropout=0"])):
        recipe = load_recipe("sft", config, [f"output_dir={out / mode}", "use_cpu=false", *extra])
        trainer, processor = build_trainer(recipe)
        trainer.train()
        accelerator = trainer.accelerator
        model = accelerator.unwrap_model(trainer.model)
        sharded = [n for n, p in model.named_parameters() if _is_shard(p)]
        # a collective: every rank takes part (DeepSpeed gathers from its engine)
        gathered = accelerator.get_state_dict(trainer.model_wrapped if trainer.is_deepspeed_enabled else trainer.model)
        save_final(trainer, recipe, processor, trainer.data_collator.policy, {})
        if accelerator.is_main_process:
            save_file({k: v.clone().contiguous() for k, v in gathered.items()},  # tied weights share memory
                      str(out / mode / "gathered.safetensors"))
        state = accelerator.state
        (out / mode / f"rank{accelerator.process_index}.json").write_text(json.dumps({
            "fsdp_version": state.fsdp_plugin.fsdp_version if trainer.is_fsdp_enabled else None,
            "zero_stage": state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None,
            "world": accelerator.num_processes, "step": trainer.state.global_step,
            "params": sum(1 for _ in model.named_parameters()), "sharded": len(sharded),
            "gathered": len(gathered or {})}))
        accelerator.wait_for_everyone()
        del trainer, model, gathered
        torch.distributed.barrier()


if __name__ == "__main__":
    main()
