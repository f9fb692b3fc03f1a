"""Run under `accelerate launch --num_processes 2`: one GRPO step with video rollouts on the tiny model; each
rank writes its parameter checksum and step count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ddp_sft_check import digest

from emoreason.grpo.train import build_trainer
from emoreason.training import load_recipe


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    trainer, _ = build_trainer(load_recipe("grpo", config, sys.argv[3:]))
    before = digest(trainer.model)
    trainer.train()
    rank = trainer.accelerator.process_index
    out.mkdir(parents=True, exist_ok=True)
    rewards = [h for h in trainer.state.log_history if "reward" in h]
    (out / f"rank{rank}.json").write_text(json.dumps({
        "before": before, "after": digest(trainer.accelerator.unwrap_model(trainer.model)),
        "world": trainer.accelerator.num_processes, "steps": trainer.state.global_step, "logged": rewards}))


if __name__ == "__main__":
    main()
