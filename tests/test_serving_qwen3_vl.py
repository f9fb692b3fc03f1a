"""Serving parity for the second family, Qwen3-VL, through real vLLM: its prompt carries the sampled frames'
timestamps as text (``<t seconds>`` before each temporal patch), so a server that sampled frames, read the
source fps or resized differently from training gives other prompt token ids. Same clip, same saved frame
policy: the server's prompt equals training's collator and evaluation's local backend for a video, a resampled
video, a frame folder, images (one whose size the processor resizes again) and inline media, and the greedy
answers are the same token for token (float32 on both sides). One server for the module."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from vllm_support import FAST_START, VLLM_MARKS, VLLM_PYTHON, free_port, sensitive_model

from emoreason.serving.server import ServeConfig, VLLMServer
from emoreason.synth import ClipSpec, Identity, generate_clip
from emoreason.video import FramePolicy, write_video

pytestmark = VLLM_MARKS
KEY = "test-key"


@pytest.fixture(scope="module")
def served_qwen3(tiny_model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("served3")
    model = sensitive_model(tiny_model_dirs["qwen3_vl"], root / "model",
                            FramePolicy(fps=4.0, max_frames=6, min_pixels=4096, max_pixels=16384))
    media, outside = root / "media", root / "outside"
    media.mkdir()
    outside.mkdir()
    identity = Identity.sample(0, np.random.default_rng(0))
    frames, _ = generate_clip(ClipSpec(0, "c", "happiness", identity, "test", seed=0, frames=8, size=112))
    clip = write_video(frames, media / "clip.mp4", fps=8)
    frames, _ = generate_clip(ClipSpec(5, "l", "fear", identity, "test", seed=5, frames=16, size=224))
    long_clip = write_video(frames, media / "long.mp4", fps=8)  # resampled to 6 frames, resized
    folder = media / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame[::2, ::2]).save(folder / f"{i:03d}.png")
    Image.fromarray(frames[8][::2, ::2]).save(media / "face.png")
    # 400 × 560: training's loader resizes it, then the processor again (to its 448² pixel bound); vLLM alone
    # resizes it once, to another grid
    Image.fromarray(frames[8]).resize((560, 400)).save(media / "photo.png")
    frames, _ = generate_clip(ClipSpec(9, "o", "anger", identity, "test", seed=9, frames=8, size=112))
    stray = write_video(frames, outside / "stray.mp4", fps=8)
    cfg = ServeConfig(model=str(model), media_dir=str(media), port=free_port(), max_model_len=2048,
                      python=str(VLLM_PYTHON), startup_timeout_s=600, dtype="float32", api_key=KEY,
                      extra_args=FAST_START)
    with VLLMServer(cfg, log_path=root / "vllm.log") as server:
        yield {"server": server, "cfg": cfg, "model": model, "media": media,
               "sources": [clip, long_clip, folder, media / "face.png", media / "photo.png", stray]}


def test_qwen3_vl_server_prompt_and_answer_equal_training_and_local_eval(served_qwen3):
    from test_serving import check_prompt_and_answer_parity

    check_prompt_and_answer_parity(served_qwen3, served_qwen3["sources"], KEY)
