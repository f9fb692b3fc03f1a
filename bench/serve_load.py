"""Serving under load, through `emoreason serve`'s launcher and vLLM's OpenAI server.

Burst (default): 32 concurrent video requests through emoreason's client, beside the plain OpenAI client sending
the same requests one after another, in the same run; failures, p50/p95 latency and requests/s.

Soak (``--soak SECONDS``): ``--clients`` concurrent clients on loopback for a bounded time, mixing videos and frame
folders (by path and inline), images and bad requests (missing file, not a video, a file outside the media dir,
an oversized upload, too many tokens, an unknown model). Reports p50/p95/p99 latency of good requests, their
failures (target 0), whether every bad request got a 4xx (target: all), and the resident memory of the server's
whole process group (vLLM's API server, engine core, workers) from after warm-up to the end (target < 10 %
growth).

    python bench/serve_load.py [--requests 32]
    python bench/serve_load.py --soak 300 --clients 16
    python bench/serve_load.py ... --endpoint URL --media-dir DIR   # an existing server (no RSS figure)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
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


def _soak_media(media: Path, outside: Path) -> dict[str, list[Path]]:
    """Clips under the media dir and outside it (sent inline), frame folders and images from SynthFACS."""
    from PIL import Image

    from emoreason.synth import ClipSpec, Identity, generate_clip
    from emoreason.video import write_video

    identity = Identity.sample(1, np.random.default_rng(1))
    out: dict[str, list[Path]] = {"video": [], "inline": [], "frames": [], "image": []}
    for i, emotion in enumerate(("happiness", "sadness", "surprise", "anger", "fear", "disgust")):
        frames, truth = generate_clip(ClipSpec(i, f"s{i}", emotion, identity, "test", seed=i, frames=16, size=112))
        out["video"].append(write_video(frames, media / f"soak{i}.mp4", fps=8))
        folder = media / f"frames{i}"
        folder.mkdir(exist_ok=True)
        for k, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{k:04d}.jpg", quality=95)
        out["frames"].append(folder)
        image = media / f"face{i}.png"
        Image.fromarray(frames[truth["apex_frame"]]).save(image)
        out["image"].append(image)
    for i in range(2):
        frames, _ = generate_clip(ClipSpec(10 + i, f"o{i}", "sadness", identity, "test", seed=10 + i, frames=8,
                                           size=112))
        out["inline"].append(write_video(frames, outside / f"out{i}.mp4", fps=8))
    (media / "notes.mp4").write_text("not a video")
    return out


def run(base_url: str, model: str | None, clips: list[Path], media_dir: Path, requests: int,
        api_key: str | None = None) -> dict:
    from openai import OpenAI

    from emoreason.client import EndpointConfig, predict_many

    sources = [clips[i % len(clips)] for i in range(requests)]
    config = EndpointConfig(base_url=base_url, model=model, api_key=api_key, concurrency=requests, timeout_s=300,
                            retries=1)
    start = time.perf_counter()
    results = predict_many(config, sources, media_dir=media_dir, max_tokens=32)
    wall = time.perf_counter() - start
    latencies = [r.latency_s for r in results if r.error is None]
    plain = OpenAI(base_url=base_url, api_key=config.key())
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


def _requests(media: dict[str, list[Path]], media_dir: Path, model: str, big: Path):
    """An endless, shuffled mix: (kind, good, request kwargs). One in five is a bad request."""
    from emoreason.client import media_url
    from emoreason.reasoning import build_messages, to_openai_messages

    def chat(url: str, kind: str = "video", **kw) -> dict:
        return {"model": model, "messages": to_openai_messages(build_messages(None, kind), url), "max_tokens": 32,
                "temperature": 0.0, **kw}

    good = [("video", lambda p=p: chat(media_url(p))) for p in media["video"]]
    good += [("inline video", lambda p=p: chat(media_url(p, inline=True))) for p in media["inline"]]
    good += [("frame folder", lambda p=p: chat(media_url(p))) for p in media["frames"]]
    good += [("inline frame folder", lambda p=p: chat(media_url(p, inline=True))) for p in media["frames"][:2]]
    good += [("image", lambda p=p: chat(media_url(p), "image")) for p in media["image"]]
    bad = [("missing file", lambda: chat((media_dir / "missing.mp4").resolve().as_uri())),
           ("not a video", lambda: chat((media_dir / "notes.mp4").resolve().as_uri())),
           ("outside media dir", lambda: chat(media["inline"][0].resolve().as_uri())),
           ("oversized upload", lambda: chat(media_url(big, inline=True))),
           ("too many tokens", lambda: chat(media_url(media["video"][0]), max_tokens=10**6)),
           ("unknown model", lambda: {**chat(media_url(media["video"][0])), "model": "no-such-model"})]
    rng = random.Random(0)
    while True:
        batch = [(k, True, f) for k, f in good] * 4 + [(k, False, f) for k, f in bad]
        rng.shuffle(batch)
        yield from batch


async def _soak(base_url: str, api_key: str, media: dict, media_dir: Path, seconds: float, clients: int,
                pgid: int | None, big: Path) -> dict:
    from openai import APIStatusError, AsyncOpenAI

    from emoreason.serving.process import group_rss_bytes

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=300, max_retries=0)
    model = (await client.models.list()).data[0].id
    source = _requests(media, media_dir, model, big)
    rows: list[dict] = []

    async def one(kind: str, good: bool, build) -> None:
        start = time.perf_counter()
        status, error = 200, None
        try:
            await client.chat.completions.create(**build())
        except APIStatusError as exc:
            status, error = exc.status_code, str(exc)[:200]
        except Exception as exc:  # transport faults: no status at all
            status, error = None, f"{type(exc).__name__}: {exc}"[:200]
        rows.append({"kind": kind, "good": good, "status": status, "error": error,
                     "latency_s": time.perf_counter() - start, "t": time.monotonic()})

    # warm-up: every kind of request once, so the RSS baseline includes what steady serving allocates
    warm = list(itertools.islice(source, 40))
    await asyncio.gather(*(one(*item) for item in warm))
    rows.clear()
    rss = [(0.0, group_rss_bytes(pgid))] if pgid else []
    start = time.monotonic()
    deadline = start + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await one(*next(source))

    async def sampler() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            if pgid:
                rss.append((time.monotonic() - start, group_rss_bytes(pgid)))

    await asyncio.gather(sampler(), *(worker() for _ in range(clients)))
    await client.close()
    good = [r for r in rows if r["good"]]
    bad = [r for r in rows if not r["good"]]
    latencies = [r["latency_s"] for r in good if r["error"] is None]
    result = {"seconds": seconds, "clients": clients, "good_requests": len(good),
              "good_failures": sum(r["error"] is not None for r in good),
              "good_per_s": len(good) / seconds,
              "p50_s": _percentile(latencies, 0.5), "p95_s": _percentile(latencies, 0.95),
              "p99_s": _percentile(latencies, 0.99),
              "bad_requests": len(bad), "bad_answered_4xx": sum(r["status"] is not None and 400 <= r["status"] < 500
                                                                for r in bad),
              "bad_by_status": {f"{k}: {s}": n for (k, s), n in sorted(
                  _count((r["kind"], r["status"]) for r in bad).items(), key=str)},
              "good_failure_examples": [r["error"] for r in good if r["error"]][:3]}
    if rss:
        base, end, peak = rss[0][1], rss[-1][1], max(v for _, v in rss)
        result.update(rss_after_warmup_mib=base / 2**20, rss_end_mib=end / 2**20, rss_peak_mib=peak / 2**20,
                      rss_growth_pct=100 * (end - base) / base)
    return result


def _count(items) -> dict:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="burst size")
    parser.add_argument("--soak", type=float, help="run the soak for this many seconds instead of the burst")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the soak")
    parser.add_argument("--endpoint")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    parser.add_argument("--media-dir")
    parser.add_argument("--model", help="model directory to serve (default: a freshly built tiny model)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile (faster start)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(args.media_dir) if args.media_dir else Path(tmp) / "media"
        media.mkdir(parents=True, exist_ok=True)
        outside = Path(tmp) / "outside"
        outside.mkdir()
        soak_media = _soak_media(media, outside) if args.soak else None
        big = Path(tmp) / "big.mp4"  # over the server's --max-media-mb (1 MiB here) and the client's cap
        big.write_bytes(bytes(3 * 2**20))
        clips = sorted(media.glob("clip*.mp4")) or _media(media, 8)

        def measure(base_url: str, name: str | None, key: str, pgid: int | None) -> dict:
            if args.soak:
                return asyncio.run(_soak(base_url, key, soak_media, media, args.soak, args.clients, pgid, big))
            return run(base_url, name, clips, media, args.requests, key)

        if args.endpoint:
            result = measure(args.endpoint, None, args.api_key or "EMPTY", None)
        else:
            from emoreason.models import build_tiny_model
            from emoreason.serving.process import port_in_use
            from emoreason.serving.server import ServeConfig, VLLMServer

            model = args.model or str(build_tiny_model("qwen2_5_vl", Path(tmp) / "tiny"))
            key = "bench-key"
            cfg = ServeConfig(model=model, media_dir=str(media), port=8765 if not port_in_use("127.0.0.1", 8765)
                              else 8766, max_model_len=2048, api_key=key, max_media_mb=1.0,
                              extra_args=["--enforce-eager"] if args.enforce_eager else [])
            with VLLMServer(cfg, log_path=Path(tmp) / "vllm.log") as server:
                result = measure(cfg.base_url, cfg.name, key, server.pgid)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for key, value in result.items():
        print(f"  {key:30s} {value:.3f}" if isinstance(value, float) else f"  {key:30s} {value}")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "serve_load.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
