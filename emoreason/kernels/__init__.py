"""Speed levers for training and rollouts, registered through transformers' attention interface."""

from emoreason.kernels.vision_attention import (
    VISION_ATTENTION,
    enable_varlen_vision_attention,
    varlen_vision_attention,
)

__all__ = ["VISION_ATTENTION", "enable_varlen_vision_attention", "varlen_vision_attention"]
