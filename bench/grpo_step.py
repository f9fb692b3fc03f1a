"""GRPO step on video: time split generation / rewards / policy update, and rollout new-tokens/s, beside plain
HF generate of the same G completions measured in the same run (the peer baseline of
../shared/anchors/hf_baseline.py: H100, 3B shape, 80 new tok/s at G=8, 256 tokens).

    python bench/grpo_step.py            # CUDA: Qwen2.5-VL-3B-shaped random-init model, 16-frame 336x336 clips
    python bench/grpo_step.py --smoke    # tiny shapes on CPU: checks the script end to end
    python bench/grpo_step.py --rollouts vllm [--smoke]   # rollouts on a vLLM server (emoreason serve
                                         # --weight-sync, started here), weights synced every step
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_throughput import build  # noqa: E402  (same model shapes as the SFT benchmark)


def vllm_server(model, processor, root: Path, device: str):
    """The benchmark's model saved and served by vLLM with weight sync (the trainer pushes its weights); a
    context manager (the project's launcher: stopped with its whole process group on exit or on a signal)."""
    from emoreason.serving.server import ServeConfig, VLLMServer

    model_dir = root / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)  # with its chat template, which vLLM reads
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServeConfig(model=str(model_dir), media_dir=str(root), port=port, max_model_len=8192, weight_sync=True,
                      gpu_memory_utilization=0.4 if device == "cuda" else 0.3, startup_timeout_s=900)
    return VLLMServer(cfg, log_path=root / "vllm.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rollouts", choices=("hf", "vllm"), default="hf")
    args = parser.parse_args()
    smoke = args.smoke or not torch.cuda.is_available()
    g, length = (4, 32) if smoke else (args.generations, args.tokens)
    frames, size = (4, 112) if smoke else (16, 336)

    from trl import GRPOConfig

    from emoreason.cot.pipeline import CoTConfig, CoTPipeline
    from emoreason.grpo.train import grpo_dataset
    from emoreason.grpo.trainer import VideoGRPOTrainer
    from emoreason.inference import encode_batch
    from emoreason.models import frame_policy_for
    from emoreason.reasoning import build_messages
    from emoreason.rewards import get_reward
    from emoreason.synth import SynthConfig, build_dataset
    from emoreason.video import load_frames

    model, processor, device = build(smoke)
    model.config.use_cache = True
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(SynthConfig(out=f"{tmp}/s", clips=8, frames=frames, size=size, identities=3), progress=False)
        cot = CoTPipeline(CoTConfig(dataset_root=f"{tmp}/s", output_dir=f"{tmp}/c"), progress=False).run()
        data = grpo_dataset(str(cot / "hf"), "train")
        policy = frame_policy_for(processor)
        # --- plain HF generate: one video prompt, G sampled completions of fixed length -------------------------
        clip = data[0]["media_path"]
        loaded = load_frames(clip, policy)
        batch = encode_batch(processor, [build_messages(clip, "video")] * g, [loaded] * g).to(device)
        model.eval()
        with torch.no_grad():
            model.generate(**batch, max_new_tokens=8, min_new_tokens=8, do_sample=True)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.generate(**batch, max_new_tokens=length, min_new_tokens=length, do_sample=True)
            if device == "cuda":
                torch.cuda.synchronize()
            hf_seconds = time.perf_counter() - t0
        baseline = {"new_tok_per_s": g * length / hf_seconds, "seconds": hf_seconds}

        timings = {"generate_and_score": 0.0, "rewards": 0.0, "step": 0.0, "completion_tokens": 0}

        class Timed(VideoGRPOTrainer):
            def _calculate_rewards(self, *a, **k):
                t = time.perf_counter()
                out = super()._calculate_rewards(*a, **k)
                timings["rewards"] += time.perf_counter() - t
                return out

            def _generate_and_score_completions(self, inputs):
                t = time.perf_counter()
                out = super()._generate_and_score_completions(inputs)
                timings["generate_and_score"] += time.perf_counter() - t
                timings["completion_tokens"] += int(out["completion_mask"].sum())
                return out

            def training_step(self, *a, **k):
                t = time.perf_counter()
                out = super().training_step(*a, **k)
                timings["step"] += time.perf_counter() - t
                return out

        vllm_args: dict = {}
        with contextlib.ExitStack() as stack:
            if args.rollouts == "vllm":
                server = stack.enter_context(vllm_server(model, processor, Path(tmp), device))
                vllm_args = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": server.cfg.base_url}
            config = GRPOConfig(output_dir=f"{tmp}/g", max_steps=args.steps, num_generations=g,
                                per_device_train_batch_size=g, max_completion_length=length, report_to="none",
                                use_cpu=device == "cpu", bf16=device == "cuda", logging_steps=1, save_steps=10**6,
                                **vllm_args)
            trainer = Timed(model=model, processing_class=processor, args=config, train_dataset=data,
                            reward_funcs=[get_reward(n) for n in ("format", "emotion", "au_f1")],
                            frame_policy=policy)
            trainer.train()
        logged = [h for h in trainer.state.log_history if "rollouts/weight_sync_s" in h]
    generation = timings["generate_and_score"] - timings["rewards"]
    update = timings["step"] - timings["generate_and_score"]
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "smoke": smoke,
              "G": g, "tokens": length, "hf_generate": baseline,
              "emoreason_step": {"generation_s": generation / args.steps, "rewards_s": timings["rewards"] / args.steps,
                                 "update_s": update / args.steps,
                                 "rollout_new_tok_per_s": timings["completion_tokens"] / max(generation, 1e-9)},
              "rollouts": args.rollouts}
    if logged:  # part of generation_s: writing the weights and the in-place reload on the server
        result["emoreason_step"]["weight_sync_s"] = sum(h["rollouts/weight_sync_s"] for h in logged) / len(logged)
        steady = logged[1:]  # the server's first request warms it up (graph capture / compilation)
        if steady:
            result["emoreason_step"]["rollout_new_tok_per_s_after_first_step"] = sum(
                g * h["completions/mean_length"] for h in steady) / sum(
                h["rollouts/generation_s"] + h["rollouts/weight_sync_s"] for h in steady)
    result["rollout_speedup"] = result["emoreason_step"]["rollout_new_tok_per_s"] / baseline["new_tok_per_s"]
    print(json.dumps(result, indent=1))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "grpo_step.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
