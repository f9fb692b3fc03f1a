"""An audio-visual model (the tiny Qwen2.5-Omni thinker) served through `emoreason serve` by real vLLM (CPU build in
.venv-vllm) hears each clip's audio and sees its frames exactly as a local run does: the same prompt token ids,
the same greedy answer, and an answer that changes when only the audio changes.

One server for the module, started by the project's launcher with no extra vLLM flags (no
--trust-request-mm-kwargs): the launcher must allow the audio per prompt, and the one per-request switch
``use_audio_in_video`` must pass without that flag. The model is re-initialised so its output changes with every
input (``sensitive_model``) and saved with a frame policy whose frames the Omni processor would upscale and whose
sampled fps is not its default 2.0, so a server that resized, timed or interleaved differently answers differently."""

from __future__ import annotations

import asyncio
import json
import subprocess

import numpy as np
import pytest
import torch
from vllm_support import (
    FAST_START,
    VLLM_MARKS,
    VLLM_PYTHON,
    cli_env,
    emoreason_cli,
    free_port,
    sensitive_model,
)

from emoreason.client import ChatClient, EndpointConfig
from emoreason.models.omni import to_composite
from emoreason.records import SampleRecord
from emoreason.serving.server import ServeConfig, VLLMServer
from emoreason.synth import ClipSpec, Identity, generate_av_clip
from emoreason.video import FramePolicy, write_video

pytestmark = VLLM_MARKS
POLICY = FramePolicy(fps=4.0, max_frames=6, min_pixels=3136, max_pixels=12544)  # 6 frames of 112 × 112 from 2 s


@pytest.fixture(scope="module")
def served(tiny_omni_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("omni-served")
    model = to_composite(sensitive_model(tiny_omni_dir, root / "model", POLICY))  # the layout training saves
    media = root / "media"
    media.mkdir()
    spec = ClipSpec(0, "av", "happiness", Identity.sample(0, np.random.default_rng(0)), "test", seed=1, frames=16,
                    size=112, difficulty="easy", audio=True)
    frames, voice, _ = generate_av_clip(spec)
    _, sad_voice, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "voice_emotion": "sadness"}))
    clips = {"happy": write_video(frames, media / "happy.mp4", fps=8, audio=voice),
             "sad": write_video(frames, media / "sad.mp4", fps=8, audio=sad_voice),  # same frames, another voice
             "silent": write_video(frames, media / "silent.mp4", fps=8)}
    cfg = ServeConfig(model=str(model), media_dir=str(media), port=free_port(), max_model_len=4096,
                      python=str(VLLM_PYTHON), startup_timeout_s=600, dtype="float32", extra_args=FAST_START)
    with VLLMServer(cfg, log_path=root / "vllm.log") as server:
        yield {"server": server, "cfg": cfg, "model": model, "media": media, "clips": clips}


def _backend(s, modalities=None):
    from emoreason.evaluation.backends import EndpointBackend

    return EndpointBackend({"base_url": s["cfg"].base_url, "timeout_s": 300, "retries": 0}, {}, None, "tags",
                           max_new_tokens=12, media_dir=str(s["media"]), modalities=modalities)


def _send(s, record, modalities=None, **params):  # top log-probs keyed by token id
    backend = _backend(s, modalities)
    messages, extra = backend.request(record)

    async def go():
        client = ChatClient(EndpointConfig(base_url=s["cfg"].base_url, timeout_s=300, retries=0))
        try:
            return await client.chat(messages, temperature=0.0, extra_body={**extra, "return_token_ids": True,
                                                                             "return_tokens_as_token_ids": True},
                                     **params)
        finally:
            await client.close()

    return backend, asyncio.run(go())


def _record(path) -> SampleRecord:
    return SampleRecord(id=str(path), dataset="t", media={"type": "video", "path": str(path)})


def test_served_prompt_and_greedy_answer_equal_local_and_the_audio_counts(served):
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.inference import encode_batch, generate

    s = served
    local = LocalBackend(str(s["model"]), {}, None, "tags", batch_size=1, max_new_tokens=12)
    assert local.modalities == "audio+video"
    first = {}
    for name in ("happy", "sad"):
        record = _record(s["clips"][name])
        backend, result = _send(s, record, max_tokens=12, logprobs=True, top_logprobs=5)
        assert backend.modalities == "audio+video" and backend.frame_policy["modalities"] == "audio+video"
        assert result.ok, result.error
        served_ids = result.response.model_extra["prompt_token_ids"]
        _, conversations, media, audio, errors = local.inputs([record])
        assert not errors and audio[0] is not None
        local_ids = encode_batch(local.processor, conversations, media, audio=audio)["input_ids"][0].tolist()
        assert served_ids == local_ids, name  # frame size, fps, interleaving and the audio tokens all agree
        assert result.text == generate(local.model, local.processor, conversations, media, max_new_tokens=12,
                                       audio=audio)[0], name
        first[name] = {int(t.token.removeprefix("token_id:")): t.logprob
                       for t in result.response.choices[0].logprobs.content[0].top_logprobs}
        # the first token's log-probs, not only the argmax: a position off by one moves them by ~0.1
        inputs = encode_batch(local.processor, conversations, media, audio=audio)
        with torch.no_grad():
            logits = local.model(**inputs).logits[0, -1].float()
        expected = torch.log_softmax(logits, -1)
        assert all(abs(expected[token].item() - logprob) < 2e-3 for token, logprob in first[name].items()), name
    shared = set(first["happy"]) & set(first["sad"])
    assert shared and any(abs(first["happy"][t] - first["sad"][t]) > 1e-4 for t in shared), (
        "the same frames with another voice gave the same log-probs: the audio did not reach the served model")


def test_predict_endpoint_equals_predict_model_under_each_modality(served):
    s = served
    clips = [str(s["clips"][name]) for name in ("happy", "sad", "silent")]
    rows = {}
    for modalities in ("audio+video", "video"):
        for where in (["--endpoint", s["cfg"].base_url, "--media-dir", str(s["media"])], ["--model", str(s["model"])]):
            out = subprocess.run(emoreason_cli("predict", *clips, *where, "--modalities", modalities,
                                               "--max-tokens", "12", "--timeout", "300"),
                                 capture_output=True, text=True, env=cli_env(), timeout=900)
            rows[modalities, where[0]] = [json.loads(line) for line in out.stdout.splitlines()]
            assert len(rows[modalities, where[0]]) == 3, out.stderr[-3000:]
    for modalities in ("audio+video", "video"):
        for remote, local in zip(rows[modalities, "--endpoint"], rows[modalities, "--model"], strict=True):
            assert remote["text"] == local["text"] and remote["error"] == local["error"], (modalities, remote, local)
    happy, sad, silent = rows["audio+video", "--endpoint"]
    assert happy["text"] != sad["text"]  # only the voice differs
    assert silent["error"] is None  # no track: silence of the clip's duration, as locally
    assert rows["video", "--endpoint"][0]["text"] == rows["video", "--endpoint"][1]["text"]  # the same frames
    # the audio alone: blank frames go inline with their timing, which needs a server for trusted clients
    out = subprocess.run(emoreason_cli("predict", clips[0], "--endpoint", s["cfg"].base_url, "--media-dir",
                                       str(s["media"]), "--modalities", "audio", "--max-tokens", "4"),
                         capture_output=True, text=True, env=cli_env(), timeout=600)
    assert out.returncode == 1 and "--trust-request-mm-kwargs" in out.stderr, out.stderr[-2000:]


def test_eval_endpoint_hears_the_clips_and_records_it_as_local_eval_does(served, tmp_path):
    from dataset_fixtures import FIXTURES

    s = served
    FIXTURES["mer2023"](s["media"] / "mer2023")  # speaking clips under the server's media dir: sent by path
    common = ["--benchmark", "mer2023", "--root", str(s["media"] / "mer2023"), "max_new_tokens=16",
              "frames.fps=4.0", "frames.max_frames=6"]  # the served model's own policy: the server samples by it
    runs = {}
    for name, where in (("endpoint", ["--endpoint", s["cfg"].base_url, "--media-dir", str(s["media"])]),
                        ("local", ["--model", str(s["model"])])):
        out = subprocess.run(emoreason_cli("eval", *where, "--out", str(tmp_path / name), *common),
                             capture_output=True, text=True, env=cli_env(), timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        [metrics_path] = (tmp_path / name).rglob("metrics.json")
        rows = [json.loads(x) for x in (metrics_path.parent / "predictions.jsonl").read_text().splitlines()]
        runs[name] = (json.loads(metrics_path.read_text())["protocol"], {r["id"]: r for r in rows})
    (remote_protocol, remote), (local_protocol, local) = runs["endpoint"], runs["local"]
    assert remote_protocol["frame_policy"]["modalities"] == local_protocol["frame_policy"]["modalities"] == (
        "audio+video")
    assert remote_protocol["audio"] == local_protocol["audio"]  # what the samples heard, counted alike
    assert len(remote) == 2 and remote.keys() == local.keys()
    for key, row in remote.items():
        # a reply cut inside a multi-byte character: vLLM holds the bytes back, transformers decodes U+FFFD
        assert row["error"] is None and row["text"] == local[key]["text"].rstrip("\ufffd"), (row, local[key])


def test_audio_past_the_window_is_cut_by_the_client_and_refused_by_the_server(served, tmp_path):
    """The server decodes no more audio than the model hears (its feature extractor's window, 30 s here; vLLM's
    own cap is 600 s): a longer audio part is refused while decoding, with a 400 naming the limit. emoreason's
    client cuts a longer clip to the window first (with a warning, as local runs do), so the server takes it."""
    from emoreason.client import wav_data_url

    s = served
    voice = (0.2 * np.sin(np.linspace(0, 2 * np.pi * 220 * 32, 32 * 16000))).astype(np.float32)
    frames = np.random.default_rng(0).integers(0, 255, (32, 112, 112, 3), dtype=np.uint8)
    long_clip = write_video(frames, s["media"] / "long.mp4", fps=1, audio=voice)  # 32 s of video and voice
    backend, result = _send(s, _record(long_clip), max_tokens=2)
    assert result.ok, result.error
    assert backend.heard[str(long_clip)]["kept_s"] == 30.0  # cut to the window, recorded as local eval records it

    text = {"type": "text", "text": "How does it sound?"}
    for seconds, refused in ((30, False), (35, True)):
        part = {"type": "audio_url", "audio_url": {"url": wav_data_url(np.zeros(seconds * 16000, np.float32),
                                                                        16000)}}

        async def go(part=part):
            client = ChatClient(EndpointConfig(base_url=s["cfg"].base_url, timeout_s=300, retries=0))
            try:
                return await client.chat([{"role": "user", "content": [part, text]}], max_tokens=2)
            finally:
                await client.close()

        reply = asyncio.run(go())
        if refused:
            assert not reply.ok and " 400" in reply.error and "maximum allowed duration of 30s" in reply.error, (
                reply.error)
        else:
            assert reply.ok, reply.error
