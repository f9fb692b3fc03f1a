"""Shared fixtures: tiny models of both families and a real H.264 clip, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    from emoreason.models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_model(family, root / family, seed=0) for family in ("qwen2_5_vl", "qwen3_vl")}


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory):
    """A 16-frame 8 fps H.264 mp4 of a cartoon face whose smile grows."""
    from emoreason.commands.demo import demo_face_frames
    from emoreason.video import write_video

    root = tmp_path_factory.mktemp("media")
    frames = demo_face_frames(16, 224)
    return write_video(frames, root / "clip.mp4", fps=8)


@pytest.fixture(scope="session")
def demo_image(tmp_path_factory):
    from PIL import Image

    from emoreason.commands.demo import demo_face_frames

    path = tmp_path_factory.mktemp("media") / "face.png"
    Image.fromarray(demo_face_frames(2, 224)[-1]).save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
