"""Embedded default model: tiny, randomly initialised, architecturally faithful video-LLMs.

No weights can be downloaded where emoreason is developed and tested, so the default model is *built*: the
real transformers model class and processor of the family, a byte-level BPE tokenizer trained locally on the
project's domain text with the family's special tokens and chat template, and a config scaled down (text
head_dim 64, which vLLM's CPU attention accepts). Same seed → byte-identical files.

Families: ``qwen2_5_vl`` and ``qwen3_vl`` (video-LLMs) and ``qwen2_5_omni`` (the Qwen2.5-Omni *thinker*: a
Whisper-style audio encoder beside the Qwen2.5-VL vision encoder, saved in the release's composite layout).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from emoreason.models.chat_templates import (
    QWEN2_5_OMNI_CHAT_TEMPLATE,
    QWEN2_5_VL_CHAT_TEMPLATE,
    QWEN3_VL_CHAT_TEMPLATE,
)
from emoreason.models.corpus import corpus_lines

log = logging.getLogger(__name__)

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen2_5_omni")

# Qwen2's pre-tokenisation regex (splits letters, single digits, punctuation runs, newlines).
_QWEN_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
# Special tokens in the order the released vocabularies append them after the BPE merges.
_QWEN2_5_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
# Qwen2.5-Omni's vocabulary puts the audio tokens where Qwen2.5-VL has its object/box tokens, so the released
# ids line up with the thinker config's defaults (<|AUDIO|> 151646, <|audio_bos|> 151647, <|vision_bos|> 151652, …).
_QWEN2_5_OMNI_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|BOX_PAD|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>",
)
# the named tokens Qwen2_5OmniProcessor reads from its tokenizer (tokenizer.audio_token, …)
_QWEN2_5_OMNI_NAMED = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}
_QWEN2_5_ADDED = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                  "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
_QWEN3_ADDED = _QWEN2_5_ADDED + ("<tool_response>", "</tool_response>", "<think>", "</think>")


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the embedded model (kept small enough to train on 2 CPU cores by default).

    Every field is a build option (``emoreason tiny-model --out DIR vision_patch=7 vision_hidden=192``): the
    vision patch (pixels per side; the processor's patch size follows it), widths and depths of both towers.
    """

    bpe_vocab: int = 2048
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 2
    text_kv_heads: int = 1
    text_head_dim: int = 64
    text_intermediate: int = 384
    vision_hidden: int = 128
    vision_depth: int = 4
    vision_heads: int = 2
    vision_intermediate: int = 256
    vision_patch: int | None = None  # None: the family's released patch (14 for Qwen2.5-VL, 16 for Qwen3-VL)
    # weight init std (the released configs' 0.02); width_scaled_init: 1/sqrt(hidden) instead, the scale 0.02 has
    # at width ~2.5k — no measurable effect on learning to recognise at the budgets in docs/benchmarks.md
    text_init_std: float = 0.02
    vision_init_std: float = 0.02
    width_scaled_init: bool = False
    audio_hidden: int = 128  # Qwen2.5-Omni's Whisper-style audio encoder
    audio_layers: int = 2
    audio_heads: int = 2
    audio_intermediate: int = 256
    max_position_embeddings: int = 32768

    def validate(self, family: str) -> None:
        if self.text_hidden % self.text_heads or self.text_heads % self.text_kv_heads:
            raise ValueError("text_heads must divide text_hidden and be a multiple of text_kv_heads")
        if self.vision_hidden % self.vision_heads or (self.vision_hidden // self.vision_heads) % 2:
            raise ValueError("vision_hidden / vision_heads must be an even integer (rotary embedding)")
        if self.vision_depth < 1 or self.text_layers < 1:
            raise ValueError("vision_depth and text_layers must be >= 1")
        if self.patch(family) < 2:
            raise ValueError("vision_patch must be >= 2 pixels")

    def patch(self, family: str) -> int:
        return self.vision_patch or (14 if family == "qwen2_5_vl" else 16)

    def init_std(self, tower: str) -> float:
        std, width = (self.text_init_std, self.text_hidden) if tower == "text" else \
            (self.vision_init_std, self.vision_hidden)
        if self.width_scaled_init:
            return round(width ** -0.5, 4)
        if std <= 0:
            raise ValueError(f"{tower}_init_std must be positive, got {std}")
        return float(std)


def spec_from_overrides(overrides: list[str] | None) -> TinySpec:
    """A TinySpec from ``key=value`` items (unknown keys are an error naming them)."""
    from emoreason.config import load_config

    return load_config(TinySpec, None, overrides)


def build_tokenizer(family: str, spec: TinySpec = TinySpec()):
    """Train the byte-level BPE tokenizer and wrap it as the family's tokenizer class."""
    from transformers import Qwen2Tokenizer

    _check_family(family)
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec.bpe_vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(list(corpus_lines()), trainer=trainer)
    special = _QWEN2_5_OMNI_SPECIAL if family == "qwen2_5_omni" else _QWEN2_5_SPECIAL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    added = _QWEN3_ADDED if family == "qwen3_vl" else _QWEN2_5_ADDED
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    named = {"extra_special_tokens": dict(_QWEN2_5_OMNI_NAMED)} if family == "qwen2_5_omni" else {}
    return Qwen2Tokenizer(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", errors="replace", clean_up_tokenization_spaces=False,
                          model_max_length=spec.max_position_embeddings, **named)


def build_processor(family: str, tokenizer, spec: TinySpec = TinySpec()):
    """The family's real processor class, with a frame-size budget suited to the tiny model."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    patch = spec.patch(family)
    if family == "qwen2_5_omni":
        return _build_omni_processor(tokenizer)
    if family == "qwen2_5_vl":
        # released defaults: image 4..16384 patches of 28², video frames ≤ 768 patches of 28²
        image = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 448 * 448},
                                      patch_size=patch, temporal_patch_size=2, merge_size=2)
        video = Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224},
                                      patch_size=patch, temporal_patch_size=2, merge_size=2, do_sample_frames=False,
                                      cap_pixels_per_frame=True)
        return Qwen2_5_VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                   chat_template=QWEN2_5_VL_CHAT_TEMPLATE)
    half = [0.5, 0.5, 0.5]
    image = Qwen2VLImageProcessor(size={"shortest_edge": 64 * 64, "longest_edge": 448 * 448}, patch_size=patch,
                                  temporal_patch_size=2, merge_size=2, image_mean=half, image_std=half)
    video = Qwen3VLVideoProcessor(size={"shortest_edge": 64 * 64, "longest_edge": 224 * 224 * 16},
                                  patch_size=patch, temporal_patch_size=2, merge_size=2, image_mean=half,
                                  image_std=half, fps=2, do_sample_frames=False, cap_pixels_per_frame=True)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=QWEN3_VL_CHAT_TEMPLATE)


def build_config(family: str, tokenizer, spec: TinySpec = TinySpec()):
    """A scaled-down config of the family with token ids taken from ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    vocab = ((len(tokenizer) + 127) // 128) * 128  # padded like the released checkpoints
    text = dict(vocab_size=vocab, hidden_size=spec.text_hidden, intermediate_size=spec.text_intermediate,
                num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
                num_key_value_heads=spec.text_kv_heads, head_dim=spec.text_head_dim,
                max_position_embeddings=spec.max_position_embeddings, bos_token_id=pad, eos_token_id=eos,
                pad_token_id=pad, rms_norm_eps=1e-6, tie_word_embeddings=True,
                initializer_range=spec.init_std("text"))
    if family == "qwen2_5_omni":
        return _build_omni_config(tokenizer, text, spec)
    if family == "qwen2_5_vl":
        # mrope sections (t, h, w) sum to head_dim / 2, in the released 1 : 1.5 : 1.5 proportion
        text.update(rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
                    use_sliding_window=False, max_window_layers=spec.text_layers,
                    layer_types=["full_attention"] * spec.text_layers)
        vision = dict(depth=spec.vision_depth, hidden_size=spec.vision_hidden, num_heads=spec.vision_heads,
                      intermediate_size=spec.vision_intermediate, out_hidden_size=spec.text_hidden,
                      patch_size=spec.patch(family), spatial_merge_size=2, temporal_patch_size=2,
                      tokens_per_second=2, window_size=8 * spec.patch(family),  # released: 112 px = 8 patches
                      fullatt_block_indexes=_full_attention_blocks(spec.vision_depth), hidden_act="silu",
                      initializer_range=spec.init_std("vision"))
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                                **_vision_token_ids(tokenizer))
    text.update(rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [12, 10, 10],
                                 "mrope_interleaved": True}, attention_bias=False)
    vision = dict(depth=spec.vision_depth, hidden_size=spec.vision_hidden, num_heads=spec.vision_heads,
                  intermediate_size=spec.vision_intermediate, out_hidden_size=spec.text_hidden,
                  patch_size=spec.patch(family), spatial_merge_size=2, temporal_patch_size=2,
                  num_position_embeddings=2304, deepstack_visual_indexes=_deepstack_blocks(spec.vision_depth),
                  hidden_act="gelu_pytorch_tanh", initializer_range=spec.init_std("vision"))
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                         **_vision_token_ids(tokenizer))


def _vision_token_ids(tokenizer) -> dict[str, int]:
    return {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}


def _build_omni_processor(tokenizer):
    """Qwen2_5OmniProcessor: Qwen2.5-VL's image/video processors plus the Whisper log-mel feature extractor.

    The released feature extractor (128 mel bins, 16 kHz, 10 ms hop, 25 ms window) is kept; its padding length
    is 30 s here instead of the release's longer window, because the processor always pads to it and the
    embedded clips are seconds long (the audio encoder reads only the unpadded frames either way).
    """
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    image = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 448 * 448},
                                  patch_size=14, temporal_patch_size=2, merge_size=2)
    video = Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224},
                                  patch_size=14, temporal_patch_size=2, merge_size=2, do_sample_frames=False,
                                  cap_pixels_per_frame=True)
    audio = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                    chunk_length=30, padding_value=0.0, return_attention_mask=True)
    return Qwen2_5OmniProcessor(image_processor=image, video_processor=video, feature_extractor=audio,
                                tokenizer=tokenizer, chat_template=QWEN2_5_OMNI_CHAT_TEMPLATE)


def _build_omni_config(tokenizer, text: dict, spec: TinySpec):
    """The Qwen2.5-Omni *thinker* (audio encoder + vision encoder + Qwen2 text model), scaled down.

    Token ids come from the tokenizer; the audio/video interleaving constants keep the release's values
    (25 temporal positions per second — one audio token per 40 ms — and 2 s chunks), so time alignment
    between audio and video tokens is the real model's.
    """
    from transformers import Qwen2_5OmniThinkerConfig

    def token(name: str) -> int:
        return tokenizer.convert_tokens_to_ids(name)

    text.update(rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
                use_sliding_window=False, max_window_layers=spec.text_layers,
                layer_types=["full_attention"] * spec.text_layers)
    vision = dict(depth=spec.vision_depth, hidden_size=spec.vision_hidden, num_heads=spec.vision_heads,
                  intermediate_size=spec.vision_intermediate, out_hidden_size=spec.text_hidden, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1, 3],
                  hidden_act="silu", in_channels=3)
    audio = dict(num_mel_bins=128, encoder_layers=spec.audio_layers, encoder_attention_heads=spec.audio_heads,
                 encoder_ffn_dim=spec.audio_intermediate, d_model=spec.audio_hidden, output_dim=spec.text_hidden,
                 n_window=100, max_source_positions=1500)
    return Qwen2_5OmniThinkerConfig(
        text_config=text, vision_config=vision, audio_config=audio, tie_word_embeddings=True,
        audio_token_index=token("<|AUDIO|>"), image_token_index=token("<|IMAGE|>"),
        video_token_index=token("<|VIDEO|>"), audio_start_token_id=token("<|audio_bos|>"),
        audio_end_token_id=token("<|audio_eos|>"), vision_start_token_id=token("<|vision_bos|>"),
        vision_end_token_id=token("<|vision_eos|>"), user_token_id=tokenizer.encode("user")[0],
        position_id_per_seconds=25, seconds_per_chunk=2)


def _full_attention_blocks(depth: int) -> list[int]:
    """Every second vision block attends over the whole frame, the others within windows (the released 7B has
    full attention in 4 of 32 blocks; at tiny depth every second block keeps the frame-wide view)."""
    return [i for i in range(depth) if i % 2 == 1] or [depth - 1]


def _deepstack_blocks(depth: int) -> list[int]:
    return [i for i in (1, 2) if i < depth] or [0]


def build_tiny_model(family: str, out_dir: str | Path, seed: int = 0, spec: TinySpec = TinySpec()) -> Path:
    """Build, initialise (seeded) and save a tiny model of ``family`` into ``out_dir``; return the path."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    _check_family(family)
    spec.validate(family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("training the %s tokenizer on the embedded corpus", family)
    tokenizer = build_tokenizer(family, spec)
    processor = build_processor(family, tokenizer, spec)
    config = build_config(family, tokenizer, spec)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id, pad_token_id=config.text_config.pad_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.pad_token_id],
        do_sample=False, max_new_tokens=256)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if family == "qwen2_5_omni":  # the released layout, which vLLM serves (see emoreason.models.omni)
        from emoreason.models.omni import to_composite

        to_composite(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "emoreason_model.json").write_text(json.dumps(
        {"family": family, "seed": seed, "parameters": n_params, "spec": spec.__dict__,
         "note": "randomly initialised tiny model built by `emoreason tiny-model`"}, indent=2, sort_keys=True) + "\n")
    log.info("saved %s (%s parameters) to %s", type(model).__name__, f"{n_params:,}", out)
    return out


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
