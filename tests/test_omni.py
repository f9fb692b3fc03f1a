"""The embedded Qwen2.5-Omni thinker: real classes, the released (vLLM-servable) layout, deterministic, and audio
really entering the model."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from emoreason.audio import audio_for_frames, audio_token_count, omni_processor_kwargs
from emoreason.models import build_tiny_model, load_model_and_processor, model_family
from emoreason.models.loading import frame_policy_for
from emoreason.models.omni import to_composite
from emoreason.reasoning import build_messages
from emoreason.synth import ClipSpec, Identity, generate_av_clip
from emoreason.video import load_frames, write_video


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    return build_tiny_model("qwen2_5_omni", tmp_path_factory.mktemp("omni") / "model", seed=0)


@pytest.fixture(scope="module")
def av_clips(tmp_path_factory):
    """The same face clip with two voices (happiness, sadness), and a different face with the first voice."""
    root = tmp_path_factory.mktemp("avmedia")
    identity = Identity.sample(0, np.random.default_rng(0))
    spec = ClipSpec(0, "av", "happiness", identity, "test", seed=1, frames=16, size=112, difficulty="easy",
                    audio=True)
    frames, voice, _ = generate_av_clip(spec)
    _, other_voice, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "voice_emotion": "sadness",
                                                     "label_rule": "voice"}))
    other_face, _, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "emotion": "anger"}))
    return {"a": write_video(frames, root / "a.mp4", fps=8, audio=voice),
            "b": write_video(frames, root / "b.mp4", fps=8, audio=other_voice),
            "c": write_video(other_face, root / "c.mp4", fps=8, audio=voice)}


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_released_layout_token_ids_and_template(omni_dir):
    from safetensors import safe_open
    from transformers import AutoProcessor, Qwen2_5OmniThinkerConfig

    config = json.loads((omni_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni" and config["enable_audio_output"] is False
    assert config["architectures"] == ["Qwen2_5OmniForConditionalGeneration"]  # what vLLM's registry maps
    assert model_family(omni_dir) == "qwen2_5_omni"
    with safe_open(str(omni_dir / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all(k.startswith("thinker.") for k in keys)
    assert any(k.startswith("thinker.audio_tower.") for k in keys) and any(k.startswith("thinker.visual.")
                                                                          for k in keys)
    thinker = Qwen2_5OmniThinkerConfig.from_pretrained(omni_dir)
    processor = AutoProcessor.from_pretrained(omni_dir)
    tok = processor.tokenizer
    assert type(processor).__name__ == "Qwen2_5OmniProcessor"
    assert type(processor.feature_extractor).__name__ == "WhisperFeatureExtractor"
    assert processor.feature_extractor.sampling_rate == 16000 and processor.feature_extractor.feature_size == 128
    for attr, token in (("audio_token_id", "<|AUDIO|>"), ("image_token_id", "<|IMAGE|>"),
                        ("video_token_id", "<|VIDEO|>"), ("audio_start_token_id", "<|audio_bos|>"),
                        ("audio_end_token_id", "<|audio_eos|>"), ("vision_start_token_id", "<|vision_bos|>"),
                        ("vision_end_token_id", "<|vision_eos|>")):
        assert getattr(thinker, attr) == tok.convert_tokens_to_ids(token), attr
        assert len(tok.encode(token, add_special_tokens=False)) == 1
    assert tok.audio_token == "<|AUDIO|>" and tok.vision_bos_token == "<|vision_bos|>"
    assert thinker.text_config.head_dim == 64  # vLLM's CPU attention rejects 16
    assert thinker.audio_config.output_dim == thinker.text_config.hidden_size
    assert thinker.position_id_per_seconds == 25 and thinker.seconds_per_chunk == 2
    messages = build_messages("clip.mp4", "video")
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_bos|><|VIDEO|><|vision_eos|>" in rendered and rendered.endswith("<|im_start|>assistant\n")
    audio_part = [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}, {"type": "text", "text": "?"}]}]
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>" in processor.apply_chat_template(audio_part, tokenize=False)


def test_same_seed_identical_files_new_seed_differs(tmp_path, omni_dir):
    again = build_tiny_model("qwen2_5_omni", tmp_path / "again", seed=0)
    other = build_tiny_model("qwen2_5_omni", tmp_path / "other", seed=1)
    assert _digest(again) == _digest(omni_dir)
    assert _digest(other)["model.safetensors"] != _digest(omni_dir)["model.safetensors"]


def test_loads_with_plain_transformers_in_a_new_process(omni_dir):
    code = (
        "import sys, json\n"
        "from transformers import AutoProcessor, Qwen2_5OmniThinkerForConditionalGeneration as M\n"
        "d = sys.argv[1]\n"
        "p = AutoProcessor.from_pretrained(d); m = M.from_pretrained(d)\n"
        "print(json.dumps([type(m).__name__, type(p).__name__, m.config.model_type]))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, str(omni_dir)], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        "Qwen2_5OmniThinkerForConditionalGeneration", "Qwen2_5OmniProcessor", "qwen2_5_omni_thinker"]


def _encode(processor, clip, policy):
    frames = load_frames(clip, policy)
    audio = audio_for_frames(clip, frames)
    text = processor.apply_chat_template(build_messages(str(clip), "video"), tokenize=False,
                                         add_generation_prompt=True)
    inputs = processor(text=[text], videos=[np.array(frames.frames)], video_metadata=[frames.video_metadata()],
                       do_sample_frames=False, return_tensors="pt", padding=True,
                       **omni_processor_kwargs([frames], [audio]))
    return inputs, audio


def test_video_and_audio_both_reach_the_logits(omni_dir, av_clips):
    model, processor = load_model_and_processor(omni_dir, device="cpu")
    policy = replace(frame_policy_for(processor), nframes=8)
    inputs, audio = _encode(processor, av_clips["a"], policy)
    assert {"input_features", "feature_attention_mask", "pixel_values_videos", "video_second_per_grid"} <= set(
        inputs)
    assert float(inputs["video_second_per_grid"][0]) == pytest.approx(2 / 4.0)  # 2 frames per patch at 4 fps
    ids = inputs["input_ids"][0].tolist()
    tok = processor.tokenizer
    # the whole track, as vLLM takes it: 2 s of voice + 48 ms of AAC padding = 51 audio tokens (25 per second)
    assert ids.count(tok.audio_token_id) == audio_token_count(len(audio.waveform)) == 51
    start = ids.index(tok.convert_tokens_to_ids("<|vision_bos|>"))
    assert ids[start + 1] == tok.convert_tokens_to_ids("<|audio_bos|>")  # audio interleaved inside the video
    with torch.no_grad():
        base = model(**inputs, use_audio_in_video=True).logits[0, -1]
        same = model(**_encode(processor, av_clips["a"], policy)[0], use_audio_in_video=True).logits[0, -1]
        voice = model(**_encode(processor, av_clips["b"], policy)[0], use_audio_in_video=True).logits[0, -1]
        face = model(**_encode(processor, av_clips["c"], policy)[0], use_audio_in_video=True).logits[0, -1]
    assert torch.equal(base, same)
    assert (base - voice).abs().max() > 1e-3, "only the audio changed, the logits did not"
    assert (base - face).abs().max() > 1e-3, "only the video changed, the logits did not"
    out = model.generate(**inputs, use_audio_in_video=True, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_thinker_save_converts_back_to_the_released_layout(tmp_path, omni_dir):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(omni_dir)
    model.save_pretrained(tmp_path / "saved")  # what a trainer writes: the thinker-only layout
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "qwen2_5_omni_thinker"  # not servable by vLLM as it is
    to_composite(tmp_path / "saved")
    to_composite(tmp_path / "saved")  # idempotent
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "qwen2_5_omni"
    assert (tmp_path / "saved" / "model.safetensors").read_bytes() == (omni_dir / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="not a Qwen2.5-Omni thinker"):
        (tmp_path / "vl").mkdir()
        (tmp_path / "vl" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
        to_composite(tmp_path / "vl")
