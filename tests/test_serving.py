"""Serving through real vLLM (CPU build in .venv-vllm): the served model sees what training and local evaluation
see (same prompt tokens, same greedy answer for a video, a frame folder and images), the JSON answer is enforced
by guided decoding, the API key guards every route, oversized media is a clear error, bad input a 4xx.

One server for the module (started through the project's launcher, about a minute on 2 cores): a tiny model
whose output changes with every pixel it sees, saved with a frame policy unlike the defaults (4 fps, at most 6
frames, at most 12,544 pixels), so a server that sampled or resized differently would answer differently.
`make test-vllm` builds the venv first; without it the tests skip and say why."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from vllm_support import (
    FAST_START,
    VLLM_MARKS,
    VLLM_PYTHON,
    cli_env,
    emoreason_cli,
    free_port,
    sensitive_model,
)

from emoreason.client import ChatClient, EndpointConfig, media_kind, media_url, predict_many
from emoreason.reasoning import build_messages, parse_response, to_openai_messages
from emoreason.serving.server import ServeConfig, VLLMServer
from emoreason.synth import ClipSpec, Identity, generate_clip
from emoreason.video import FramePolicy, write_video

pytestmark = VLLM_MARKS
KEY = "test-key"
LABELS = ["happiness", "sadness", "surprise", "anger"]


@pytest.fixture(scope="module")
def served(tiny_model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    model = sensitive_model(tiny_model_dirs["qwen2_5_vl"], root / "model",
                            FramePolicy(fps=4.0, max_frames=6, min_pixels=3136, max_pixels=12544))
    media, outside = root / "media", root / "outside"
    media.mkdir()
    outside.mkdir()
    identity = Identity.sample(0, np.random.default_rng(0))
    clips = []
    for i, emotion in enumerate(("happiness", "sadness", "surprise")):
        frames, _ = generate_clip(ClipSpec(i, f"c{i}", emotion, identity, "test", seed=i, frames=8, size=112))
        clips.append(write_video(frames, media / f"clip{i}.mp4", fps=8))
    frames, _ = generate_clip(ClipSpec(5, "l", "fear", identity, "test", seed=5, frames=16, size=224))
    long_clip = write_video(frames, media / "long.mp4", fps=8)  # resampled to 6 frames, resized to ≤ 12,544 px
    folder = media / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame[::2, ::2]).save(folder / f"{i:03d}.png")
    Image.fromarray(frames[8][::2, ::2]).save(media / "face.png")  # 112 × 112: sides multiples of 28
    Image.fromarray(frames[8]).resize((150, 130)).save(media / "odd.png")  # not multiples: resampled
    # 400 × 560: training's loader resizes it, then the processor again (to its 448² pixel bound); vLLM's image
    # processor alone resizes it once, to another grid (13 × 18 patches of 28 instead of 13 × 19)
    Image.fromarray(frames[8]).resize((560, 400)).save(media / "photo.png")
    (media / "notes.mp4").write_text("this is not a video")
    frames, _ = generate_clip(ClipSpec(9, "o", "anger", identity, "test", seed=9, frames=8, size=112))
    stray = write_video(frames, outside / "stray.mp4", fps=8)  # outside the media dir: sent inline
    packed = outside / "frames"  # a frame folder outside the media dir: sent inline, packed
    packed.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(packed / f"frame_{i}.jpg", quality=95)
    cfg = ServeConfig(model=str(model), media_dir=str(media), port=free_port(), max_model_len=2048,
                      python=str(VLLM_PYTHON), startup_timeout_s=600, dtype="float32", api_key=KEY,
                      weight_sync=True, max_media_mb=1.0, extra_args=FAST_START)
    with VLLMServer(cfg, log_path=root / "vllm.log") as server:
        yield {"server": server, "cfg": cfg, "model": model, "media": media, "clips": clips, "long": long_clip,
               "folder": folder, "images": [media / "face.png", media / "odd.png", media / "photo.png"], "stray": stray,
               "packed": packed}


def _endpoint(cfg, **kw) -> EndpointConfig:
    return EndpointConfig(base_url=cfg.base_url, **{"api_key": KEY, "timeout_s": 300, "retries": 0, **kw})


def _raw(config: EndpointConfig, url: str, kind: str = "video", **params):
    async def go():
        client = ChatClient(config)
        try:
            return await client.chat(to_openai_messages(build_messages(None, kind), url), **params)
        finally:
            await client.close()

    return asyncio.run(go())


def same_text(served: str, local: str) -> bool:
    """The same generated tokens: a reply cut by max_tokens inside a multi-byte character ends in U+FFFD when
    transformers decodes it, while vLLM's incremental detokenizer holds the incomplete bytes back."""
    return served.rstrip("\ufffd") == local.rstrip("\ufffd")


def frame_list_url(folder) -> str:
    """The folder's frames as an OpenAI-style frame list (``data:video/jpeg;base64,F1,F2,…``), no timing."""
    import base64

    from emoreason.video import frame_files

    return "data:video/jpeg;base64," + ",".join(base64.b64encode(p.read_bytes()).decode() for p in frame_files(folder))


def _parity_sources(s) -> list:
    # by path under the media dir: a clip, a resampled clip, a frame folder, three images; inline: a clip and a
    # frame folder (packed)
    return [s["clips"][0], s["long"], s["folder"], *s["images"], s["stray"], s["packed"]]


def test_server_prompt_equals_training_collator_and_local_eval(served):
    # and a frame list without timing (any OpenAI client's way to send frames) is read like the folder
    check_prompt_and_answer_parity(served, [*_parity_sources(served), (frame_list_url(served["folder"]),
                                                                        served["folder"])], KEY)


def check_prompt_and_answer_parity(s: dict, sources: list, key: str, max_tokens: int = 12) -> None:
    """For each source: the server's prompt token ids equal evaluation's local backend (``encode_batch``) and
    training's collator (the prompt part), and its greedy answer equals the local model's, token for token."""
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.inference import encode_batch, generate
    from emoreason.sft.collator import IGNORE_INDEX, VideoSFTCollator
    from emoreason.video import load_frames

    local = LocalBackend(str(s["model"]), {}, None, "tags", batch_size=1)  # evaluation's local backend
    collator = VideoSFTCollator(local.processor, local.policy)  # training's collator, same saved policy
    config = EndpointConfig(base_url=s["cfg"].base_url, api_key=key, timeout_s=300, retries=0)
    answers = set()
    for source in sources:
        url, source = source if isinstance(source, tuple) else (None, source)  # (a URL of its own, what it holds)
        kind = media_kind(source)
        url = url or media_url(source, inline=not str(source).startswith(str(s["media"])))
        result = _raw(config, url, kind, max_tokens=max_tokens, temperature=0.0,
                      extra_body={"return_token_ids": True})
        assert result.ok, (source, result.error)
        served_ids = result.response.model_extra["prompt_token_ids"]
        assert result.response.usage.prompt_tokens == len(served_ids)

        messages = build_messages(str(source), kind)
        loaded = load_frames(source, local.policy)
        local_ids = encode_batch(local.processor, [messages], [loaded])["input_ids"][0]
        row = {"id": str(source), "prompt": build_messages(None, kind), "media_type": kind, kind: str(source),
               "completion": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}
        batch = collator([row])
        trained_prompt = int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])  # first assistant token
        assert local_ids.tolist() == served_ids, source
        assert batch["input_ids"][0, :trained_prompt].tolist() == served_ids, source
        local_answer = generate(local.model, local.processor, [messages], [loaded], max_new_tokens=max_tokens)[0]
        assert same_text(result.text, local_answer), source
        answers.add(local_answer)
    assert len(answers) >= len(sources) - 1  # the model answers differently to different inputs




def test_greedy_endpoint_answer_equals_local_answer(served, tmp_path):
    """`emoreason predict --endpoint` and `--model`, token for token (float32 on both sides)."""
    s = served
    sources = [str(p) for p in _parity_sources(s)]
    common = ["--max-tokens", "24"]
    remote = subprocess.run(emoreason_cli("predict", *sources, "--endpoint", s["cfg"].base_url, "--api-key", KEY,
                                          "--media-dir", str(s["media"]), *common),
                            capture_output=True, text=True, env=cli_env(), timeout=600)
    local = subprocess.run(emoreason_cli("predict", *sources, "--model", str(s["model"]), *common),
                           capture_output=True, text=True, env=cli_env(), timeout=600)
    assert remote.returncode == 0 and local.returncode == 0, (remote.stderr[-2000:], local.stderr[-2000:])
    remote_rows = [json.loads(x) for x in remote.stdout.splitlines()]
    local_rows = [json.loads(x) for x in local.stdout.splitlines()]
    assert [r["source"] for r in remote_rows] == sources == [r["source"] for r in local_rows]
    texts = set()
    for r, loc in zip(remote_rows, local_rows, strict=True):
        assert same_text(r["text"], loc["text"]), r["source"]
        texts.add(r["text"])
    assert len(texts) >= len(sources) - 1  # the model answers differently to different inputs


def test_json_answer_is_enforced_by_guided_decoding(served):
    s = served
    results = predict_many(_endpoint(s["cfg"], concurrency=4), [*s["clips"], s["folder"], s["images"][0]],
                           labels=LABELS, style="json", media_dir=s["media"], max_tokens=160)
    for result in results:
        assert result.error is None, result.error
        answer = json.loads(parse_response(result.text).answer)  # <answer> holds JSON of the answer schema
        assert set(answer) <= {"emotion", "aus", "valence", "arousal"} and {"emotion", "aus"} <= set(answer)
        assert result.emotion in LABELS and answer["emotion"] in LABELS
        assert set(answer["aus"]) <= set(result.aus) and all(isinstance(a, int) for a in answer["aus"])
        for value in (result.valence, result.arousal):
            assert value is None or -1 <= value <= 1
    plain = predict_many(_endpoint(s["cfg"]), [s["clips"][0]], labels=LABELS, media_dir=s["media"], max_tokens=160)
    assert parse_response(plain[0].text).answer is None  # the random model alone writes no answer at all


def test_client_returns_structured_results(served):
    s = served
    results = predict_many(_endpoint(s["cfg"], concurrency=4), [*s["clips"], s["stray"]], media_dir=s["media"],
                           max_tokens=32)
    for result in results:
        assert result.error is None, result.error
        assert isinstance(result.text, str) and result.latency_s > 0
    assert results[-1].source == str(s["stray"])  # outside the media dir: sent inline as base64, still served


def test_plain_openai_client_with_a_file_url(served):
    from openai import OpenAI

    cfg, clip = served["cfg"], served["clips"][0]
    client = OpenAI(base_url=cfg.base_url, api_key=KEY)
    response = client.chat.completions.create(model=cfg.name, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": clip.resolve().as_uri()}},
        {"type": "text", "text": "Which emotion?"}]}])
    assert response.choices[0].message.content is not None


def test_bad_input_is_a_4xx_and_the_server_keeps_serving(served):
    s = served
    config = _endpoint(s["cfg"], concurrency=2)
    missing, not_video = predict_many(config, [s["media"] / "missing.mp4", s["media"] / "notes.mp4"],
                                      media_dir=s["media"])
    assert "no such file" in missing.error
    assert not_video.error is not None and " 400" in not_video.error, not_video.error
    missing_url = _raw(config, (s["media"] / "missing.mp4").as_uri(), max_tokens=8)  # vLLM alone: a 500
    assert missing_url.error is not None and " 400" in missing_url.error and "no such file" in missing_url.error
    outside = _raw(config, s["stray"].resolve().as_uri(), max_tokens=8)  # file:// outside the allowed path
    assert outside.error is not None and " 40" in outside.error, outside.error
    oversized = _raw(config, s["clips"][0].resolve().as_uri(), max_tokens=100_000)
    assert oversized.error is not None and " 400" in oversized.error, oversized.error
    assert predict_many(config, [s["clips"][1]], media_dir=s["media"], max_tokens=8)[0].error is None


def test_requests_without_the_key_are_refused_on_every_route(served, monkeypatch):
    from emoreason.grpo.rollouts import RolloutError, VLLMServerRollouts

    s = served
    cfg = s["cfg"]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    no_key = predict_many(EndpointConfig(base_url=cfg.base_url, retries=0), [s["clips"][0]], media_dir=s["media"])
    assert no_key[0].error is not None and "401" in no_key[0].error

    def status(path: str, method: str = "GET", key: str | None = None) -> int:
        request = urllib.request.Request(cfg.root_url + path, method=method, data=b"" if method == "POST" else None,
                                         headers={"Authorization": f"Bearer {key}"} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("/health") == 200
    for path, method in (("/v1/models", "GET"), ("/tokenize", "POST"), ("/metrics", "GET"),
                         ("/reset_prefix_cache", "POST"), ("/collective_rpc", "POST")):
        assert status(path, method) == 401, path  # vLLM alone leaves all but /v1 open
    assert status("/v1/models", key=KEY) == 200 and status("/reset_prefix_cache", "POST", KEY) == 200
    with pytest.raises(RolloutError, match="401"):  # a GRPO trainer without the key is told why
        VLLMServerRollouts(cfg.root_url, "unused", timeout_s=60).check()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    VLLMServerRollouts(cfg.root_url, "unused", timeout_s=60).check()


def test_oversized_inline_video_is_a_clear_error_and_the_server_keeps_serving(served, tmp_path):
    s = served
    # the client's cap: refused before any request, naming the file, the cap and the way out
    capped = predict_many(_endpoint(s["cfg"], max_inline_mb=0.001), [s["stray"]], media_dir=s["media"])[0]
    assert "inline cap" in capped.error and str(s["stray"]) in capped.error and "--media-dir" in capped.error
    assert capped.latency_s == 0.0
    # the server's cap (--max-media-mb 1 here) for any client: a 400 that says why, not a 500
    big = tmp_path / "big.mp4"
    big.write_bytes(s["long"].read_bytes() + bytes(2 * 2**20))
    result = _raw(_endpoint(s["cfg"]), media_url(big, inline=True), max_tokens=4)
    assert result.error is not None and " 400" in result.error and "media cap" in result.error, result.error
    assert predict_many(_endpoint(s["cfg"]), [s["clips"][2]], media_dir=s["media"], max_tokens=8)[0].error is None


def test_the_json_variant_satisfies_the_guided_grammar(tmp_path):
    """The project's own JSON-variant reply (what SFT trains on) is accepted by the grammar the server enforces,
    and a tag-variant reply is not (checked with vLLM's xgrammar, in vLLM's environment)."""
    from emoreason.reasoning import AUObservation, ResponseContent, format_response, json_response_format

    content = ResponseContent("happiness", [AUObservation(6, "C", 2, 5), AUObservation(12, "D", 2, 6)],
                              "AU6+AU12 is the Duchenne smile.", "Happiness.", valence=0.6, arousal=0.4)
    cases = {"json": format_response(content, "json"), "tags": format_response(content, "tags")}
    (tmp_path / "case.json").write_text(json.dumps({"format": json_response_format(LABELS, 200), **cases}))
    script = ("import json, sys, xgrammar\nfrom xgrammar.testing import _is_grammar_accept_string as accepts\n"
              "case = json.load(open(sys.argv[1]))\n"
              "grammar = xgrammar.Grammar.from_structural_tag(json.dumps(case['format']))\n"
              "print(json.dumps({k: accepts(grammar, case[k]) for k in ('json', 'tags')}))\n")
    result = subprocess.run([str(VLLM_PYTHON), "-c", script, str(tmp_path / "case.json")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"json": True, "tags": False}


def test_vllm_media_hooks_decode_like_training(tmp_path):
    """Inside vLLM's own MediaConnector (in vLLM's environment, no server): an image URL gives the pixels
    training's loader gives, and a frame list without timing gives the frames of the same folder read locally
    (sampled and resized by the policy); a frame list with its timing is left to vLLM."""
    import base64

    from emoreason.video import load_frames

    policy = FramePolicy(fps=4.0, max_frames=6, min_pixels=3136, max_pixels=12544)
    frames, _ = generate_clip(ClipSpec(5, "l", "fear", Identity.sample(0, np.random.default_rng(0)), "test",
                                       seed=5, frames=16, size=224))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    photo = tmp_path / "photo.png"
    Image.fromarray(frames[8]).resize((560, 400)).save(photo)
    listed = "data:video/jpeg;base64," + ",".join(base64.b64encode(p.read_bytes()).decode()
                                                  for p in sorted(folder.iterdir()))
    case = {"policy": policy.__dict__, "image": media_url(photo, inline=True), "listed": listed,
            "out": str(tmp_path)}
    (tmp_path / "case.json").write_text(json.dumps(case))
    script = """
import json, sys
import numpy as np
from emoreason.serving import vllm_entry
vllm_entry.register_video_loader()
vllm_entry.read_frame_lists_like_folders()
vllm_entry.load_images_like_training()
from vllm.multimodal.media.connector import MediaConnector
case = json.load(open(sys.argv[1]))
kwargs = {"video": {"video_backend": "emoreason", "num_frames": -1, "frame_policy": case["policy"]},
          "image": {"frame_policy": case["policy"]}}
connector = MediaConnector(media_io_kwargs=kwargs)
np.save(case["out"] + "/image.npy", np.asarray(connector.fetch_image(case["image"]).media))
(video, meta) = connector.fetch_video(case["listed"]).media
np.save(case["out"] + "/listed.npy", np.asarray(video))
json.dump({k: meta[k] for k in ("fps", "frames_indices", "total_num_frames")}, open(case["out"] + "/meta.json", "w"))
timed = MediaConnector(media_io_kwargs={"video": {**kwargs["video"], "frames_indices": list(range(16)), "fps": 8.0}})
print(json.dumps({"timed_frames": int(timed.fetch_video(case["listed"]).media[0].shape[0])}))
"""
    env = cli_env()
    result = subprocess.run([str(VLLM_PYTHON), "-c", script, str(tmp_path / "case.json")], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = load_frames(photo, policy).frames[0]
    assert np.array_equal(np.load(tmp_path / "image.npy"), image)
    local = load_frames(folder, policy)
    assert np.array_equal(np.load(tmp_path / "listed.npy"), local.frames)
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "fps": local.source_fps, "frames_indices": local.indices, "total_num_frames": local.total_frames}
    assert json.loads(result.stdout.splitlines()[-1]) == {"timed_frames": 16}
