"""What SFT and GRPO share: recipes as TRL configs, model loading and freezing, the frame policy, the row check
before training, and saving under any launch (DDP, ZeRO-3, FSDP2)."""

from emoreason.training.data import RowCheck, SampleMediaError, check_rows, load_dataset_split
from emoreason.training.loading import frame_policy, freeze, load_for_training
from emoreason.training.recipe import (
    LM_LORA_TARGETS,
    EmoreasonArguments,
    GRPOScriptArguments,
    Recipe,
    SFTScriptArguments,
    load_recipe,
)
from emoreason.training.save import checkpoint_weights, policy_weights, save_final

__all__ = ["LM_LORA_TARGETS", "EmoreasonArguments", "GRPOScriptArguments", "Recipe", "RowCheck", "SFTScriptArguments",
           "SampleMediaError", "check_rows", "checkpoint_weights", "frame_policy", "freeze", "load_dataset_split",
           "load_for_training", "load_recipe", "policy_weights", "save_final"]
