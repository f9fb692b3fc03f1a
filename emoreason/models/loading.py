"""Loading a model directory (tiny or released checkpoint) with clear errors for what is missing."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from emoreason.video import FramePolicy

log = logging.getLogger(__name__)


class ModelDirectoryError(FileNotFoundError):
    """A model directory that does not exist or lacks files a model needs."""


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json", "adapter_model.safetensors")
_TOKENIZER = ("tokenizer.json", "vocab.json")
_PROCESSOR = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


def check_model_dir(path: str | Path) -> Path:
    """Raise ModelDirectoryError naming every missing piece; return the directory as a Path."""
    path = Path(path)
    if not path.exists():
        raise ModelDirectoryError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelDirectoryError(f"model path {path} is not a directory")
    missing = []
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        missing.append("config.json")
    for what, names in (("weights", _WEIGHTS), ("tokenizer", _TOKENIZER), ("processor config", _PROCESSOR)):
        if not any((path / n).is_file() for n in names):
            missing.append(f"{what} ({' or '.join(names)})")
    if missing:
        raise ModelDirectoryError(f"model directory {path} is missing: {'; '.join(missing)}")
    return path


def model_family(path_or_config) -> str:
    """'qwen2_5_vl' | 'qwen3_vl' | 'qwen2_5_omni' | the config's model_type for other families."""
    if isinstance(path_or_config, str | Path):
        model_type = json.loads((Path(path_or_config) / "config.json").read_text()).get("model_type", "")
    else:
        model_type = getattr(path_or_config, "model_type", "")
    return {"qwen3_vl_moe": "qwen3_vl", "qwen2_5_omni_thinker": "qwen2_5_omni"}.get(model_type, model_type)


def model_class_for(path: str | Path):
    """The transformers class that loads the checkpoint at ``path``: ``AutoModelForImageTextToText``, except for
    Qwen2.5-Omni, whose released composite config has no Auto text-output mapping (the thinker class loads it)."""
    if model_family(path) == "qwen2_5_omni":
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText


def load_model_and_processor(path: str | Path, dtype=None, device: str | None = None, trust_remote_code: bool = False):
    """Load a video-LLM and its processor from a local directory (no hub access needed)."""
    import torch
    from transformers import AutoProcessor

    path = check_model_dir(path)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = model_class_for(path).from_pretrained(path, dtype=dtype or "auto", trust_remote_code=trust_remote_code)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    return model, processor


def frame_policy_for(processor, base: FramePolicy | None = None) -> FramePolicy:
    """The frame policy matched to a processor: vision factor and the video processor's pixel bounds."""
    base = base or FramePolicy()
    video = getattr(processor, "video_processor", None)
    if video is None:
        return base
    factor = int(getattr(video, "patch_size", 14)) * int(getattr(video, "merge_size", 2))
    size = getattr(video, "size", None)
    lo = getattr(size, "shortest_edge", None) if size is not None else None
    hi = getattr(size, "longest_edge", None) if size is not None else None
    return replace(base, factor=factor, min_pixels=int(lo or base.min_pixels),
                   max_pixels=int(min(hi, base.max_pixels) if hi else base.max_pixels))


FRAME_POLICY_FILE = "emoreason_frames.json"


def save_frame_policy(model_dir: str | Path, policy: FramePolicy) -> None:
    """Record the frame policy a model was trained with, so evaluation, prediction and serving reuse it."""
    keys = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels")
    (Path(model_dir) / FRAME_POLICY_FILE).write_text(
        json.dumps({k: getattr(policy, k) for k in keys}, indent=2, sort_keys=True) + "\n")


def saved_frame_policy(model_dir: str | Path) -> dict:
    """The frame policy saved beside a trained model ({} when there is none)."""
    path = Path(model_dir) / FRAME_POLICY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def model_frame_policy(model_dir: str | Path, overrides: dict | None = None, processor=None) -> FramePolicy:
    """The frame policy a model runs with everywhere (local evaluation and prediction, and vLLM serving): its
    processor's vision factor and pixel bounds, then the policy saved with it at training, then ``overrides``
    (keys that are not FramePolicy fields are ignored)."""
    if processor is None:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(check_model_dir(model_dir))
    frames = {**saved_frame_policy(model_dir), **(overrides or {})}
    return frame_policy_for(processor).updated(frames)
