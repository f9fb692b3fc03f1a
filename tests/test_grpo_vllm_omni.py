"""GRPO with vLLM rollouts for an audio-visual model (the tiny Qwen2.5-Omni thinker) on a real vLLM server (CPU
build in .venv-vllm): the rollouts hear each clip as the policy's forward hears it (its track, or silence of its
duration for a clip without one), the server's prompt tokens equal the trainer's audio tokens included, and the
policy's weights land on the served thinker under its composite ``thinker.*`` names.

The model is re-initialised so its output changes with every input (``sensitive_model``) and served in the
composite layout training saves (``to_composite``), in float32 as the trainer runs it, so the server's sampling
log-probs can be held to the policy's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recipe_support import tiny_recipe
from vllm_support import (
    FAST_START,
    VLLM_MARKS,
    VLLM_PYTHON,
    free_port,
    sampling_gap,
    sensitive_model,
    stale_and_synced_gaps,
)

from emoreason.audio import silence_for
from emoreason.grpo.rollouts import RolloutError, merged_weights
from emoreason.grpo.train import build_trainer
from emoreason.models.omni import to_composite
from emoreason.serving.server import ServeConfig, VLLMServer

pytestmark = VLLM_MARKS


@pytest.fixture(scope="module")
def omni_server(tiny_omni_dir, tmp_path_factory):
    """SynthFACS-AV rows through the CoT pipeline, a clip of the same face without an audio track, and the
    sensitive tiny Omni model served with ``--weight-sync``."""
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline
    from emoreason.synth import ClipSpec, Identity, SynthConfig, build_dataset, generate_av_clip
    from emoreason.video import write_video

    root = tmp_path_factory.mktemp("omni-grpo")
    build_dataset(SynthConfig(out=str(root / "av"), clips=4, frames=16, size=112, difficulty="easy", identities=2,
                              audio=True), workers=1, progress=False)
    data = CoTPipeline(CoTConfig(dataset_root=str(root / "av"), output_dir=str(root / "cot")), progress=False).run()
    frames, _, _ = generate_av_clip(ClipSpec(0, "av", "happiness", Identity.sample(0, np.random.default_rng(0)),
                                             "test", seed=1, frames=16, size=112, difficulty="easy", audio=True))
    silent = write_video(frames, root / "silent.mp4", fps=8)  # no audio stream at all
    model = to_composite(sensitive_model(tiny_omni_dir, root / "model"))
    media = root / "media"  # frames and audio travel inline; nothing is read from here
    media.mkdir()
    cfg = ServeConfig(model=str(model), media_dir=str(media), port=free_port(), max_model_len=4096,
                      python=str(VLLM_PYTHON), startup_timeout_s=600, weight_sync=True, dtype="float32",
                      extra_args=FAST_START)
    log = root / "vllm.log"
    with VLLMServer(cfg, log_path=log) as server:
        yield {"server": server, "model": model, "data": data / "hf", "silent": silent, "log": log}


def _trainer(tmp_path, s, **kw):
    fields = {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 12, "max_steps": 2,
              "learning_rate": 1e-2, "seed": 0, "use_vllm": True, "vllm_mode": "server",
              "vllm_server_base_url": f"http://127.0.0.1:{s['server'].cfg.port}",
              "reward_options": {"length": {"max_chars": 40}}, **kw}
    return build_trainer(tiny_recipe("grpo", s["model"], s["data"], tmp_path / "g", **fields))


def _rollout_inputs(trainer, row):
    """The trainer's own prompt ids, conversation, frames and audio for one row."""
    trainer._rows = [row]
    try:
        prompt_ids, _, _ = trainer._tokenize_prompts([row["prompt"]])
        conversations, media, audio = trainer._rollout_inputs
    finally:
        trainer._rows = trainer._media_rows = trainer._rollout_inputs = None
    return prompt_ids, conversations[0], media[0], audio[0]


def test_omni_grpo_rollouts_hear_the_clip_and_sample_the_synced_policy(tmp_path, omni_server):
    from emoreason.audio import audio_window_s

    s = omni_server
    trainer, processor = _trainer(tmp_path, s)
    assert trainer.modalities == "audio+video" and trainer.vllm_rollouts is not None
    rollouts = trainer.vllm_rollouts
    window = audio_window_s(processor)
    speaking = dict(trainer.train_dataset[0])
    silent = {**dict(trainer.train_dataset[1]), "id": "silent", "media_path": str(s["silent"])}
    batch = [speaking, speaking, silent, silent]
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    # vLLM built each prompt token for token as the policy did: the clip's track, and silence of the track-less
    # clip's duration, interleaved with the frames (a mismatch raises, naming the sample)
    assert rollouts.prompts_checked == 2 and rollouts.prompt_mismatches == 0
    audio_id = processor.tokenizer.audio_token_id
    assert all(int((inputs["prompt_ids"][r] == audio_id).sum()) > 40 for r in range(4))
    assert all("input_features" in m for m in inputs["media"])
    assert sampling_gap(trainer) < 0.05, sampling_gap(trainer)  # it samples from the policy's own distribution
    assert not set(trainer._vision_token_ids()) & set(inputs["completion_ids"][inputs["completion_mask"].bool()]
                                                     .tolist())

    # the audio is what reaches the server: without it the server's prompt lacks the audio tokens ...
    prompt_ids, conversation, frames, track = _rollout_inputs(trainer, speaking)
    assert track is not None and "silent" not in track.meta
    sample = {"max_tokens": 1, "temperature": 1.0, "top_p": 1.0, "seed": 0, "labels": ["sample speaking"]}
    heard = rollouts.generate([(conversation, frames, 1)], expected_prompts=prompt_ids, audio=[track],
                              audio_window_s=window, **sample)[0][0]
    with pytest.raises(RolloutError, match="different prompt tokens for sample speaking"):
        rollouts.generate([(conversation, frames, 1)], expected_prompts=prompt_ids, audio=None, **sample)
    # ... and its content counts: the same frames heard with silence of the same span answer otherwise
    hushed = rollouts.generate([(conversation, frames, 1)], audio=[silence_for(frames)], audio_window_s=window,
                               **sample)[0][0]
    assert heard.token_ids != hushed.token_ids or abs(heard.logprobs[0] - hushed.logprobs[0]) > 1e-4, (
        "the clip's voice and silence gave the same first token and log-prob: the audio did not reach the server")

    # a real step through the loop: weights pushed before each step's rollouts, under names the server loads
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2 and all("rollouts/weight_sync_s" in h for h in logged)
    assert "were not loaded" not in s["log"].read_text()  # vLLM only warns about weights a reload missed

    # the sync lands on every part of the served thinker: move all weights (language model, vision and audio
    # encoders), and the server samples off-policy until they are pushed, then on-policy again
    model = trainer.accelerator.unwrap_model(trainer.model)
    with merged_weights(model) as weights:
        before = {name: tensor.clone() for name, tensor in weights.items()}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * 0.5)
    trainer.model.train()
    stale, synced = stale_and_synced_gaps(trainer, batch)
    assert synced < 0.05 and stale > 3 * synced, (stale, synced)
    with merged_weights(model) as weights:  # the sync sent what moved, under the composite names
        moved = [n for n in weights if not torch.equal(weights[n], before[n])]
    assert {n.split(".")[1] for n in moved} >= {"model", "visual", "audio_tower"}


def test_face_hidden_rollouts_send_the_blank_frames_and_the_voice_the_policy_gets(tmp_path, omni_server):
    """``modalities: audio`` (the face hidden): the server is sent the blank frames and the track the policy's
    forward gets, so its prompt and its sampling distribution are the policy's. Two clips in one batch carry the
    same blank frames with different voices: vLLM keyed the video by its frames alone and scored the second clip
    off-policy (mean log-prob gap 0.06, 0.01 for each clip alone) until the server keyed it with its track
    (``emoreason.serving.vllm_entry``)."""
    trainer, _ = _trainer(tmp_path, omni_server, modalities="audio")
    assert trainer.modalities == "audio"
    rows = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]
    trainer.model.train()
    trainer._generate_and_score_completions(rows)
    assert trainer.vllm_rollouts.prompts_checked == 2 and trainer.vllm_rollouts.prompt_mismatches == 0
    assert sampling_gap(trainer) < 0.05, sampling_gap(trainer)
    _, _, frames, track = _rollout_inputs(trainer, rows[0])
    assert not frames.frames.any() and track is not None  # what was sent: black frames, the clip's voice
