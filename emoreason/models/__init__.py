"""Model building (embedded tiny models) and loading."""

from emoreason.models.loading import (
    ModelDirectoryError,
    check_model_dir,
    frame_policy_for,
    load_model_and_processor,
    model_family,
    model_frame_policy,
    save_frame_policy,
    saved_frame_policy,
)
from emoreason.models.tiny import FAMILIES, TinySpec, build_tiny_model

__all__ = [
    "FAMILIES",
    "ModelDirectoryError",
    "TinySpec",
    "build_tiny_model",
    "check_model_dir",
    "frame_policy_for",
    "load_model_and_processor",
    "model_family",
    "model_frame_policy",
    "save_frame_policy",
    "saved_frame_policy",
]
