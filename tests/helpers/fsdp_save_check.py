"""Run under `accelerate launch` with an FSDP2 config on CPU (see cpu_fsdp.py): train the tiny model a step in
full and in LoRA mode, save `final/` with emoreason's save path, and write what the test compares: the weights
gathered from the shards (rank 0) and each rank's view of its shards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cpu_fsdp

cpu_fsdp.enable()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from emoreason.sft.train import build_trainer  # noqa: E402
from emoreason.training import load_recipe, save_final  # noqa: E402


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    for mode, extra in (("full", []), ("lora", ["use_peft=true", "lora_r=4", "lora_alpha=8", "lora_dropout=0"])):
        recipe = load_recipe("sft", config, [f"output_dir={out / mode}", "use_cpu=false", *extra])
        trainer, processor = build_trainer(recipe)
        trainer.train()
        accelerator = trainer.accelerator
        model = accelerator.unwrap_model(trainer.model)
        sharded = [n for n, p in model.named_parameters() if isinstance(p, DTensor) and p.to_local().numel() < p.numel()]
        gathered = accelerator.get_state_dict(trainer.model)  # a collective: every rank takes part
        save_final(trainer, recipe, processor, trainer.data_collator.policy, {})
        if accelerator.is_main_process:
            save_file({k: v.contiguous() for k, v in gathered.items()}, str(out / mode / "gathered.safetensors"))
        (out / mode / f"rank{accelerator.process_index}.json").write_text(json.dumps({
            "fsdp_version": accelerator.state.fsdp_plugin.fsdp_version if trainer.is_fsdp_enabled else None,
            "world": accelerator.num_processes, "step": trainer.state.global_step,
            "params": sum(1 for _ in model.named_parameters()), "sharded": len(sharded), "gathered": len(gathered)}))
        accelerator.wait_for_everyone()
        del trainer, model, gathered
        torch.distributed.barrier()


if __name__ == "__main__":
    main()
