"""Run under `accelerate launch --num_processes 2`: train the tiny model a few SFT steps, then write each rank's
parameter checksum so the test can check that ranks agree and weights moved."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from emoreason.sft.train import build_trainer
from emoreason.training import load_recipe


def digest(model) -> str:
    h = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(param.detach().to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    recipe = load_recipe("sft", config, sys.argv[3:])
    trainer, _ = build_trainer(recipe)
    before = digest(trainer.model)
    trainer.train()
    rank = trainer.accelerator.process_index
    out.mkdir(parents=True, exist_ok=True)
    check = trainer.row_checks["train"]
    (out / f"rank{rank}.json").write_text(json.dumps({
        "before": before, "after": digest(trainer.accelerator.unwrap_model(trainer.model)),
        "world": trainer.accelerator.num_processes, "steps": trainer.state.global_step,
        "data": check.summary(), "measured_here": check.measured_here, "workers_here": check.workers_here}))


if __name__ == "__main__":
    main()
