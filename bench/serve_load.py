"""Serving under load: 32 concurrent video requests through emoreason's client to vLLM's OpenAI server,
beside the plain OpenAI client sending the same requests one after another, in the same run.

Starts the server itself (tiny embedded model and SynthFACS clips unless --model/--media are given), or
uses --endpoint. Reports failures, p50/p95 latency and requests/s.

    python bench/serve_load.py [--requests 32] [--endpoint URL --media-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _media(root: Path, n: int) -> list[Path]:
    from emoreason.synth import ClipSpec, Identity, generate_clip
    from emoreason.video import write_video

    identity = Identity.sample(0, np.random.default_rng(0))
    paths = []
    for i in range(n):
        frames, _ = generate_clip(ClipSpec(i, f"c{i}", "happiness", identity, "test", seed=i, frames=8, size=112))
        paths.append(write_video(frames, root / f"clip{i}.mp4", fps=8))
    return paths


def run(base_url: str, model: str | None, clips: list[Path], media_dir: Path, requests: int) -> dict:
    from openai import OpenAI

    from emoreason.client import EndpointConfig, predict_many

    sources = [clips[i % len(clips)] for i in range(requests)]
    config = EndpointConfig(base_url=base_url, model=model, concurrency=requests, timeout_s=300, retries=1)
    start = time.perf_counter()
    results = predict_many(config, sources, media_dir=media_dir, max_tokens=32)
    wall = time.perf_counter() - start
    latencies = [r.latency_s for r in results if r.error is None]
    plain = OpenAI(base_url=base_url, api_key="EMPTY")
    name = model or plain.models.list().data[0].id
    start, plain_lat = time.perf_counter(), []
    for source in sources:
        t0 = time.perf_counter()
        plain.chat.completions.create(model=name, max_tokens=32, temperature=0.0, messages=[{"role": "user",
                                      "content": [{"type": "video_url", "video_url": {"url": source.resolve().as_uri()}},
                                                  {"type": "text", "text": "Which emotion?"}]}])
        plain_lat.append(time.perf_counter() - t0)
    plain_wall = time.perf_counter() - start
    return {"requests": requests, "failures": sum(r.error is not None for r in results),
            "p50_s": _percentile(latencies, 0.5) if latencies else None,
            "p95_s": _percentile(latencies, 0.95) if latencies else None, "req_per_s": requests / wall,
            "plain_sequential_req_per_s": requests / plain_wall,
            "plain_sequential_p50_s": statistics.median(plain_lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--endpoint")
    parser.add_argument("--media-dir")
    parser.add_argument("--model", help="model directory to serve (default: a freshly built tiny model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(args.media_dir) if args.media_dir else Path(tmp) / "media"
        media.mkdir(parents=True, exist_ok=True)
        clips = sorted(media.glob("*.mp4")) or _media(media, 8)
        if args.endpoint:
            result = run(args.endpoint, None, clips, media, args.requests)
        else:
            from emoreason.models import build_tiny_model
            from emoreason.serving.server import ServeConfig, VLLMServer

            model = args.model or str(build_tiny_model("qwen2_5_vl", Path(tmp) / "tiny"))
            cfg = ServeConfig(model=model, media_dir=str(media), port=8765, num_frames=4, max_model_len=2048)
            with VLLMServer(cfg, log_path=Path(tmp) / "vllm.log"):
                result = run(cfg.base_url, cfg.name, clips, media, args.requests)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    for key, value in result.items():
        print(f"  {key:30s} {value:.3f}" if isinstance(value, float) else f"  {key:30s} {value}")


if __name__ == "__main__":
    main()
