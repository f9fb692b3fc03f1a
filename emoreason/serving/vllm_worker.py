"""Imported in vLLM's worker process through ``--worker-extension-cls`` (``emoreason serve`` passes it for an
audio-visual model): vLLM's CPU build spawns its workers, so patches made in the server process
(:mod:`emoreason.serving.vllm_entry`) do not reach the model there.

What it changes: Qwen2.5-Omni's M-RoPE positions come from transformers' own ``get_rope_index`` (what training
and local runs use) instead of vLLM 0.32's port, which places an audio-in-video block one position later (it
gives ``<|audio_bos|>`` its own position after ``<|vision_bos|>``, where transformers gives both the same one,
likewise the two end tokens), so every interleaved token and all text after it sat one position off and the
served model answered otherwise than the local one."""

from __future__ import annotations

EXTENSION = f"{__name__}.EmoreasonWorkerExtension"


class EmoreasonWorkerExtension:
    """Mixed into vLLM's worker class; adds nothing: importing this module is the point."""


def transformers_positions(self, input_tokens: list[int], mm_features: list) -> tuple:
    """M-RoPE positions (3, tokens) and the position delta of a Qwen2.5-Omni prompt, by transformers."""
    import torch
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as hf

    class Rope:
        get_rope_index = hf.Qwen2_5OmniPreTrainedModelForConditionalGeneration.get_rope_index
        get_llm_pos_ids_for_vision = hf.Qwen2_5OmniPreTrainedModelForConditionalGeneration.get_llm_pos_ids_for_vision
        get_chunked_index = hf.Qwen2_5OmniPreTrainedModelForConditionalGeneration.get_chunked_index

        def __init__(self, config):
            self.config, self.spatial_merge_size = config, config.vision_config.spatial_merge_size

    grids: dict[str, list] = {"image": [], "video": [], "seconds": [], "audio": []}
    in_video = False
    for feature in sorted(mm_features, key=lambda f: f.mm_position.offset):
        data = feature.data or {}
        if feature.modality == "image":
            grids["image"].append(data["image_grid_thw"].data.tolist())
        elif feature.modality == "video":
            grids["video"].append(data["video_grid_thw"].data.tolist())
            seconds = data.get("second_per_grid_ts")
            grids["seconds"].append(float(seconds.data) if seconds is not None else 1.0)
            flag = data.get("use_audio_in_video")
            in_video = in_video or bool(flag is not None and flag.data.numel() and flag.data.item())
        elif feature.modality == "audio":
            grids["audio"].append(int(data["audio_feature_lengths"].data))
    ids = torch.tensor([input_tokens])
    positions, delta = Rope(self.config).get_rope_index(
        ids, torch.tensor(grids["image"]) if grids["image"] else None,
        torch.tensor(grids["video"]) if grids["video"] else None, torch.ones_like(ids), in_video,
        torch.tensor(grids["audio"]) if grids["audio"] else None,
        torch.tensor(grids["seconds"]) if grids["seconds"] else None)
    return positions[:, 0], int(delta.flatten()[0])


def _install() -> None:
    """Patch the worker's vLLM; nothing where vLLM is absent (the launcher imports this module for
    :data:`EXTENSION`). A vLLM without the module or method this replaces stops the worker with a message: left
    alone, its own positions would serve the model one position off without a sign."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return
    try:
        from vllm.model_executor.models import qwen2_5_omni_thinker as omni
    except ImportError as exc:
        raise RuntimeError(f"emoreason's Qwen2.5-Omni worker patch needs vllm.model_executor.models."
                           f"qwen2_5_omni_thinker (vLLM 0.32's layout): {exc}") from exc
    model = getattr(omni, "Qwen2_5OmniThinkerForConditionalGeneration", None)
    if not callable(getattr(model, "get_mrope_input_positions", None)):
        raise RuntimeError("emoreason's Qwen2.5-Omni worker patch replaces Qwen2_5OmniThinkerForConditionalGeneration"
                           ".get_mrope_input_positions, which this vLLM does not have: its M-RoPE positions for "
                           "audio-in-video would differ from transformers'; update emoreason.serving.vllm_worker")
    model.get_mrope_input_positions = transformers_positions


_install()
