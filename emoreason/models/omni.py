"""Qwen2.5-Omni checkpoints: the released (composite) layout that vLLM serves, and the thinker-only layout that
transformers' thinker class saves.

Facts this module is built on (transformers 5.24, vLLM 0.32):

- The release (``Qwen/Qwen2.5-Omni-7B``) ships a *composite* ``config.json``: ``model_type: qwen2_5_omni``,
  ``architectures: ["Qwen2_5OmniModel"]`` (or ``Qwen2_5OmniForConditionalGeneration``), the thinker's config under
  ``thinker_config``, and weights prefixed ``thinker.`` (plus ``talker.`` / ``token2wav.`` for speech output).
- vLLM registers only those two composite architecture names, both mapped to its ``qwen2_5_omni_thinker``
  implementation, and reads ``hf_config.thinker_config``; its weight mapper turns ``thinker.model.*`` into the
  language model and ``thinker.visual.*`` / ``thinker.audio_tower.*`` into the encoders, and drops
  ``talker.*`` / ``token2wav.*``. A thinker-only checkpoint (``model_type: qwen2_5_omni_thinker``,
  ``architectures: ["Qwen2_5OmniThinkerForConditionalGeneration"]``) is *not* servable by vLLM as is.
- transformers' ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained`` loads either layout (it takes
  ``thinker_config`` and strips the ``thinker.`` prefix), but ``save_pretrained`` writes a thinker-only
  ``config.json`` — with bare weight names for a model built from config, and ``thinker.``-prefixed ones for a
  model loaded from the composite layout (it reverses the renaming it loaded with). ``AutoModelForImageTextToText``
  maps only ``qwen2_5_omni_thinker``, not the composite ``qwen2_5_omni``.

So emoreason keeps Omni checkpoints in the released composite layout (text output only:
``enable_audio_output: false``, no talker weights) and converts what the thinker class saves with
:func:`to_composite`.
"""

from __future__ import annotations

import json
from pathlib import Path

COMPOSITE_ARCHITECTURE = "Qwen2_5OmniForConditionalGeneration"
THINKER_MODEL_TYPE = "qwen2_5_omni_thinker"
COMPOSITE_MODEL_TYPE = "qwen2_5_omni"
WEIGHT_PREFIX = "thinker."


def is_omni(path_or_config) -> bool:
    """True for a Qwen2.5-Omni checkpoint directory or config, in either layout."""
    if isinstance(path_or_config, str | Path):
        config_file = Path(path_or_config) / "config.json"
        if not config_file.is_file():
            return False
        model_type = json.loads(config_file.read_text()).get("model_type", "")
    else:
        model_type = getattr(path_or_config, "model_type", "")
    return model_type in (THINKER_MODEL_TYPE, COMPOSITE_MODEL_TYPE)


def composite_config(thinker_config):
    """The released composite config around ``thinker_config``, with speech output disabled.

    The talker / token2wav sub-configs are placeholders (no such weights ship): small sizes and the thinker's own
    token ids, so transformers' token-id validation has nothing to warn about.
    """
    from transformers import Qwen2_5OmniConfig

    thinker = thinker_config.to_dict() if hasattr(thinker_config, "to_dict") else dict(thinker_config)
    text = thinker["text_config"]
    pad = text.get("pad_token_id") or 0
    ids = {k: thinker[k] for k in ("audio_token_index", "image_token_index", "video_token_index",
                                   "audio_start_token_id", "audio_end_token_id")}
    talker = dict(ids, vision_start_token_id=thinker.get("vision_start_token_id"),
                  vision_end_token_id=thinker.get("vision_end_token_id"), vocab_size=text["vocab_size"],
                  embedding_size=text["hidden_size"], hidden_size=text["hidden_size"],
                  intermediate_size=text["intermediate_size"], num_hidden_layers=1,
                  num_attention_heads=text["num_attention_heads"], num_key_value_heads=text["num_key_value_heads"],
                  head_dim=text.get("head_dim", 64), tts_text_start_token_id=pad, tts_text_end_token_id=pad,
                  tts_text_pad_token_id=pad, tts_codec_start_token_id=0, tts_codec_end_token_id=1,
                  tts_codec_pad_token_id=2, tts_codec_mask_token_id=3)
    config = Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, enable_audio_output=False)
    config.architectures = [COMPOSITE_ARCHITECTURE]
    return config


def to_composite(directory: str | Path) -> Path:
    """Rewrite a thinker-only checkpoint directory (what the thinker class saves) into the released composite
    layout, in place: ``config.json`` wrapped as ``thinker_config``, weights renamed ``thinker.*``. Idempotent.

    Deterministic: the same weights give byte-identical files.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import Qwen2_5OmniThinkerConfig

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") == COMPOSITE_MODEL_TYPE:
        return directory
    if config.get("model_type") != THINKER_MODEL_TYPE:
        raise ValueError(f"{directory}: not a Qwen2.5-Omni thinker checkpoint (model_type "
                         f"{config.get('model_type')!r})")
    shards = sorted(directory.glob("model*.safetensors"))
    if not shards:
        raise ValueError(f"{directory}: no safetensors weights to convert")
    index_file = directory / "model.safetensors.index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else None
    for shard in shards:
        with safe_open(str(shard), framework="pt") as handle:
            tensors = {composite_name(key): handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        save_file(dict(sorted(tensors.items())), str(shard), metadata={"format": "pt"})
    if index is not None:
        index["weight_map"] = {composite_name(k): v for k, v in sorted(index["weight_map"].items())}
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    thinker = Qwen2_5OmniThinkerConfig.from_pretrained(directory)
    composite_config(thinker).save_pretrained(directory)
    return directory


def composite_name(key: str) -> str:
    """A thinker weight's name in the composite layout (``thinker.`` prefixed, once)."""
    # a thinker loaded from the composite layout saves its weights already prefixed (transformers reverses the
    # renaming it loaded with) under a thinker-only config.json; one loaded from the thinker layout saves them bare
    return key if key.startswith(WEIGHT_PREFIX) else WEIGHT_PREFIX + key
