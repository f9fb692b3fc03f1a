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
def tiny_omni_dir(tmp_path_factory):
    """The embedded Qwen2.5-Omni thinker (seed 0), built once per session; tests must not write into it."""
    from emoreason.models import build_tiny_model

    return build_tiny_model("qwen2_5_omni", tmp_path_factory.mktemp("tiny-omni") / "model", seed=0)


def _happy_clip():
    from emoreason.synth import ClipSpec, Identity, generate_clip

    identity = Identity.sample(0, np.random.default_rng(0))
    return generate_clip(ClipSpec(0, "fixture", "happiness", identity, "test", seed=1, frames=16, size=224,
                                  difficulty="easy"))


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory):
    """A 16-frame 8 fps H.264 mp4 of a SynthFACS face performing happiness."""
    from emoreason.video import write_video

    frames, _ = _happy_clip()
    return write_video(frames, tmp_path_factory.mktemp("media") / "clip.mp4", fps=8)


@pytest.fixture(scope="session")
def demo_image(tmp_path_factory):
    """The apex frame of that clip as a PNG."""
    from PIL import Image

    frames, truth = _happy_clip()
    path = tmp_path_factory.mktemp("media") / "face.png"
    Image.fromarray(frames[truth["apex_frame"]]).save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def grpo_data(tmp_path_factory):
    """16 easy SynthFACS clips through the CoT pipeline: the HF dataset GRPO trains on."""
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline
    from emoreason.synth import SynthConfig, build_dataset

    root = tmp_path_factory.mktemp("grpodata")
    build_dataset(SynthConfig(out=str(root / "synth"), clips=16, frames=8, size=112, difficulty="easy",
                              identities=4), workers=1, progress=False)
    return CoTPipeline(CoTConfig(dataset_root=str(root / "synth"), output_dir=str(root / "cot")),
                       progress=False).run() / "hf"
