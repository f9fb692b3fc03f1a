"""TRL's SFTTrainer with per-module learning rates (``emoreason.training.optim``); everything else is TRL's."""

from trl import SFTTrainer

from emoreason.training.optim import ModuleLearningRates


class VideoSFTTrainer(ModuleLearningRates, SFTTrainer):
    """Set ``module_learning_rates`` ({"vision": …, "projector": …}) before ``train()``."""
