"""SFT throughput on a Qwen2.5-VL-3B-shaped model (random weights), 16-frame videos: plain HF beside emoreason.

Both run in the same process on the same model and batches, as ../shared/anchors/hf_baseline.py measures the
peer baseline: processor on the fly, padded batch, gradient checkpointing, AdamW, bf16.

* ``hf``: transformers' SDPA vision attention (one kernel per window: thousands of launches per step).
* ``emoreason``: the same step with the vision tower on one varlen attention call per block
  (``emoreason.kernels.enable_varlen_vision_attention``).

Reports real (non-pad) tokens/s, MFU against the H100's 989 TFLOP/s bf16 dense peak, and peak memory.

    python bench/sft_throughput.py                # on a CUDA machine (the figures go to docs/benchmarks.md)
    python bench/sft_throughput.py --smoke        # tiny shapes on CPU: checks the script end to end
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def build(smoke: bool):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from emoreason.models.tiny import build_processor, build_tokenizer

    tokenizer = build_tokenizer("qwen2_5_vl")
    processor = build_processor("qwen2_5_vl", tokenizer)
    processor.video_processor.size = {"shortest_edge": 64 * 28 * 28, "longest_edge": 128 * 28 * 28}
    ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    if smoke:
        text = dict(vocab_size=len(tokenizer) + 64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=64)
        vision = dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=128,
                      fullatt_block_indexes=[1, 3])
    else:  # Qwen2.5-VL-3B
        text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                    num_attention_heads=16, num_key_value_heads=2)
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31])
    special = {"bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
               "pad_token_id": tokenizer.pad_token_id}
    text.update(max_position_embeddings=32768, tie_word_embeddings=True, **special,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": [8, 12, 12] if smoke else [16, 24, 24]})
    vision.update(window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    return model, processor, device


def batches(processor, n: int, bs: int, frames: int, size: int, rng):
    from emoreason.reasoning import build_messages
    from emoreason.sft.collator import assistant_labels

    words = ["AU6", "cheek", "raiser", "AU12", "lip", "corner", "puller", "rises", "from", "frame", "peaks", "at", "happiness", "brow", "lowerer"]
    out = []
    for _ in range(n):
        texts, videos = [], []
        for _ in range(bs):
            answer = "<think>" + " ".join(rng.choice(words, int(rng.integers(80, 200)))) + \
                "</think><answer>happiness</answer>"
            messages = build_messages(None, "video") + [{"role": "assistant", "content": answer}]
            texts.append(processor.apply_chat_template(messages, tokenize=False))
            videos.append(rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8))
        out.append((texts, videos))
    return out, assistant_labels


def run(model, processor, data, labeller, device, vision_varlen: bool, steps_warm: int = 2) -> dict:
    from emoreason.kernels import enable_varlen_vision_attention

    model.set_attn_implementation({"vision_config": "sdpa", "text_config": "sdpa"})
    if vision_varlen:
        enable_varlen_vision_attention(model)
    model.train()
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, real, prep, patches = [], 0, [], 0
    for step, (texts, videos) in enumerate(data):
        t0 = time.perf_counter()
        batch = processor(text=texts, videos=videos, return_tensors="pt", padding=True)
        batch["labels"] = labeller(batch["input_ids"], processor.tokenizer)
        batch = {k: v.to(device) for k, v in batch.items()}
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= steps_warm:
            times.append(t2 - t1)
            prep.append(t1 - t0)
            real += int(batch["attention_mask"].sum())
            patches += int(batch["video_grid_thw"].prod(-1).sum())
    del optimizer
    n_params = sum(p.numel() for p in model.parameters())
    n_vis = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    seconds = sum(times)
    flops = 6 * (n_params - n_vis) * real + 6 * n_vis * patches
    return {"real_tok_per_s": real / seconds, "step_s": seconds / len(times), "preprocess_s": float(np.mean(prep)),
            "mfu_vs_989TF": flops / seconds / 989e12,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU-friendly) to check the script")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    smoke = args.smoke or not torch.cuda.is_available()
    model, processor, device = build(smoke)
    rng = np.random.default_rng(0)
    bs = 2 if smoke else args.batch_size
    frames, size = (4, 112) if smoke else (16, 336)
    data, labeller = batches(processor, args.steps, bs, frames, size, rng)
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "smoke": smoke, "batch_size": bs,
              "hf": run(model, processor, data, labeller, device, vision_varlen=False),
              "emoreason": run(model, processor, data, labeller, device, vision_varlen=True)}
    result["speedup"] = result["emoreason"]["real_tok_per_s"] / result["hf"]["real_tok_per_s"]
    print(json.dumps(result, indent=1))
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "sft_throughput.json"), "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
