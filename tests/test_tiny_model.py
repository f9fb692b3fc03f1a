"""The embedded tiny models: real classes, real processors, deterministic, loadable offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch

from emoreason.inference import generate
from emoreason.models import ModelDirectoryError, build_tiny_model, check_model_dir, load_model_and_processor
from emoreason.models.loading import frame_policy_for
from emoreason.reasoning import build_messages
from emoreason.video import load_frames

FAMILY_CLASSES = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
}


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_round_trip_generates_from_video_and_image(family, tiny_model_dirs, demo_clip, demo_image):
    model, processor = load_model_and_processor(tiny_model_dirs[family], device="cpu")
    assert type(model).__name__ == FAMILY_CLASSES[family][0]
    assert type(processor).__name__ == FAMILY_CLASSES[family][1]
    policy = frame_policy_for(processor)
    video = load_frames(demo_clip, policy)
    image = load_frames(demo_image, policy)
    conversations = [build_messages(str(demo_clip), "video"), build_messages(str(demo_image), "image")]
    texts = generate(model, processor, conversations, [video, image], max_new_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)

    # the video really reaches the vision tower: real video tensors, and a different clip changes the logits
    from emoreason.inference import encode_batch

    inputs = encode_batch(processor, conversations[:1], [video])
    assert "pixel_values_videos" in inputs and inputs["video_grid_thw"][0, 0] == len(video.frames) // 2
    with torch.no_grad():
        a = model(**inputs).logits[0, -1]
        video.frames = 255 - video.frames
        b = model(**encode_batch(processor, conversations[:1], [video])).logits[0, -1]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_family_faithfulness(family, tiny_model_dirs):
    from transformers import AutoConfig, AutoProcessor

    directory = tiny_model_dirs[family]
    config = AutoConfig.from_pretrained(directory)
    processor = AutoProcessor.from_pretrained(directory)
    tok = processor.tokenizer
    assert config.model_type == family
    for attr, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        assert getattr(config, attr) == tok.convert_tokens_to_ids(token)
    assert config.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert config.text_config.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert config.text_config.vocab_size >= len(tok)
    assert config.text_config.head_dim == 64  # vLLM's CPU attention rejects 16
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|video_pad|>"):
        ids = tok.encode(special, add_special_tokens=False)
        assert len(ids) == 1, special
    messages = build_messages("clip.mp4", "video")
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|video_pad|><|vision_end|>" in rendered
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")
    text = "AU6 (cheek raiser, C) and AU12 rise; <answer>happiness</answer>"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    if family == "qwen3_vl":
        assert len(tok.encode("<think>", add_special_tokens=False)) == 1


def test_same_seed_identical_files_and_new_seed_differs(tmp_path):
    a = build_tiny_model("qwen2_5_vl", tmp_path / "a", seed=3)
    b = build_tiny_model("qwen2_5_vl", tmp_path / "b", seed=3)
    c = build_tiny_model("qwen2_5_vl", tmp_path / "c", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    assert _digest(a)["tokenizer.json"] == _digest(c)["tokenizer.json"]


def test_loads_with_plain_transformers_in_a_new_process(tiny_model_dirs):
    code = (
        "import sys, json\n"
        "from transformers import AutoProcessor, AutoModelForImageTextToText\n"
        "d = sys.argv[1]\n"
        "p = AutoProcessor.from_pretrained(d); m = AutoModelForImageTextToText.from_pretrained(d)\n"
        "print(json.dumps([type(m).__name__, type(p).__name__]))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model_dirs["qwen3_vl"])], capture_output=True,
                         text=True, env=env, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == list(FAMILY_CLASSES["qwen3_vl"])


def test_missing_directory_and_missing_files_are_named(tmp_path, tiny_model_dirs):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        check_model_dir(tmp_path / "nope")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_model_dirs["qwen2_5_vl"] / "config.json").read_text())
    with pytest.raises(ModelDirectoryError) as err:
        load_model_and_processor(partial)
    message = str(err.value)
    assert "weights" in message and "tokenizer" in message and "processor config" in message
    assert not message.split("missing:")[1].strip().startswith("config.json")


def test_cli_lists_commands_and_reports_missing_model(tmp_path):
    exe = [sys.executable, "-m", "emoreason"]
    out = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True)
    for command in ("tiny-model", "generate", "parse", "demo"):
        assert command in out.stdout
    bad = subprocess.run([*exe, "generate", "--model", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
