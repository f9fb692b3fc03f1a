"""Audio through training: the SFT collator (and ``encode_batch`` under it) carries each clip's audio track to the
tiny Qwen2.5-Omni thinker, counts audio tokens in the row check, and keeps clips without audio working."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from emoreason.audio import clip_audio, read_audio
from emoreason.inference import encode_batch
from emoreason.models import frame_policy_for, load_model_and_processor
from emoreason.reasoning import build_messages
from emoreason.sft import SampleMediaError, VideoSFTCollator
from emoreason.sft.collator import IGNORE_INDEX
from emoreason.synth import ClipSpec, Identity, generate_av_clip
from emoreason.training.data import MEDIA_ERROR, check_rows
from emoreason.video import load_frames, write_video


@pytest.fixture(scope="module")
def omni(tiny_omni_dir):
    model, processor = load_model_and_processor(tiny_omni_dir, device="cpu")
    return model, processor


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One face with a happy voice, the same face with a sad voice, another face (another subject, angry) with the
    happy voice, the same face silent, the same face at another frame rate, a clip whose audio is 1 s short of its
    2 s video, and one with a garbled audio stream."""
    root = tmp_path_factory.mktemp("avrows")
    identity = Identity.sample(0, np.random.default_rng(0))
    spec = ClipSpec(0, "av", "happiness", identity, "test", seed=1, frames=16, size=112, difficulty="easy",
                    audio=True)
    frames, voice, _ = generate_av_clip(spec)
    _, sad_voice, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "voice_emotion": "sadness",
                                                   "label_rule": "voice"}))
    other_face, _, _ = generate_av_clip(ClipSpec(**{**spec.__dict__, "emotion": "anger", "seed": 7,
                                                    "identity": Identity.sample(1, np.random.default_rng(1))}))
    assert not np.array_equal(other_face, frames)
    out = {"happy": write_video(frames, root / "happy.mp4", fps=8, audio=voice),
           "other_face": write_video(other_face, root / "other_face.mp4", fps=8, audio=voice),
           "sad": write_video(frames, root / "sad.mp4", fps=8, audio=sad_voice),
           "silent": write_video(frames, root / "silent.mp4", fps=8),
           "slow": write_video(frames, root / "slow.mp4", fps=4, audio=np.concatenate([voice, voice])),
           "short": write_video(frames, root / "short.mp4", fps=8, audio=voice[: len(voice) // 2])}
    data = bytearray(out["happy"].read_bytes())
    noise = np.random.default_rng(0)
    for position, size in _audio_packets(out["happy"]):  # garble the audio packets only: the video still decodes
        data[position:position + size] = noise.integers(0, 256, size, dtype=np.uint8).tobytes()
    (root / "garbled.mp4").write_bytes(bytes(data))
    out["garbled"] = root / "garbled.mp4"
    return out


def _audio_packets(path) -> list[tuple[int, int]]:
    import av

    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size and p.pos is not None]


def _row(path, sample_id: str) -> dict:
    messages = build_messages(None, "video")  # as synth-cot stores it: the path lives in the media column
    return {"id": sample_id, "prompt": messages, "media_type": "video", "video": str(path),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": "<answer>happiness</answer>"}]}]}


def _omni_audio_tokens(seconds: float) -> int:
    """Audio tokens Qwen2.5-Omni gives ``seconds`` of 16 kHz audio, computed apart from the processor: Whisper's
    log-mel has one frame per started 10 ms hop (160 samples), then the audio encoder's stride-2 conv and its
    stride-2 pooling (``_get_feat_extract_output_lengths``: (n-1)//2+1, then (n-2)//2+1)."""
    mel = math.ceil(round(seconds * 16000) / 160)
    return ((mel - 1) // 2 + 1 - 2) // 2 + 1


def _collator(processor) -> VideoSFTCollator:
    return VideoSFTCollator(processor, replace(frame_policy_for(processor), nframes=8, max_pixels=12544))


def test_audio_only_training_hides_the_face_and_keeps_the_voice(omni, clips, tiny_model_dirs):
    """``modalities: audio`` (the recipe key): the frames evaluation's ``--modalities audio`` shows — blank — so
    two different faces give the same pixels, while different voices still give different audio features."""
    model, processor = omni
    hidden = VideoSFTCollator(processor, _collator(processor).policy, modalities="audio")
    assert hidden.modalities == "audio"
    happy, other_face, sad = (hidden([_row(clips[name], name)]) for name in ("happy", "other_face", "sad"))
    seen = _collator(processor)
    assert not torch.equal(seen([_row(clips["happy"], "h")])["pixel_values_videos"],
                           seen([_row(clips["other_face"], "o")])["pixel_values_videos"])  # the faces differ
    assert torch.equal(happy["pixel_values_videos"], other_face["pixel_values_videos"])  # hidden: identical
    assert torch.equal(happy["input_ids"], other_face["input_ids"])  # same audio length, same token layout
    assert torch.equal(happy["input_features"], other_face["input_features"])  # the same voice
    assert happy["input_features"].shape == sad["input_features"].shape
    assert (happy["input_features"] - sad["input_features"]).abs().max() > 0.1  # another voice is heard
    answer = happy["labels"][0] != IGNORE_INDEX
    logits_happy, logits_sad = _loss_and_logits(model, happy)[1], _loss_and_logits(model, sad)[1]
    assert (logits_happy[0][answer] - logits_sad[0][answer]).abs().max() > 1e-3, "the voice reaches the logits"
    with pytest.raises(SampleMediaError, match="silent-row.*no audio track"):  # nothing to hear: named, dropped
        hidden.row_length(_row(clips["silent"], "silent-row"))
    _, vl_processor = load_model_and_processor(tiny_model_dirs["qwen2_5_vl"], device="cpu")
    with pytest.raises(ValueError, match="takes no audio"):
        VideoSFTCollator(vl_processor, frame_policy_for(vl_processor), modalities="audio")


def test_grpo_row_check_hides_the_face_the_same_way(omni, clips, tiny_model_dirs):
    """GRPO's prompt_length under ``modalities: audio``: the voice is counted, a clip with nothing to hear is a
    named media error (the row check drops it), and a model that hears no audio is refused."""
    from emoreason.grpo.train import prompt_length

    _, processor = omni
    policy = _collator(processor).policy
    row = {**_row(clips["happy"], "happy"), "media_path": str(clips["happy"])}
    heard = prompt_length(processor, policy, row, modalities="audio")
    assert heard == prompt_length(processor, policy, row)  # the same token layout as audio+video: frames blanked
    assert prompt_length(processor, policy, row, modalities="video") < heard  # no audio tokens
    with pytest.raises(SampleMediaError, match="silent.*no audio track"):
        prompt_length(processor, policy, {**_row(clips["silent"], "silent"), "media_path": str(clips["silent"])},
                      modalities="audio")
    _, vl_processor = load_model_and_processor(tiny_model_dirs["qwen2_5_vl"], device="cpu")
    with pytest.raises(ValueError, match="takes no audio"):
        prompt_length(vl_processor, frame_policy_for(vl_processor), row, modalities="audio")


def _loss_and_logits(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.loss, out.logits


def test_audio_reaches_the_logits_through_the_sft_collator(omni, clips):
    model, processor = omni
    collator = _collator(processor)
    happy = collator([_row(clips["happy"], "happy")])
    assert happy["use_audio_in_video"] is True
    assert {"input_features", "feature_attention_mask", "video_second_per_grid", "pixel_values_videos"} <= set(happy)
    assert float(happy["video_second_per_grid"][0]) == pytest.approx(0.5)  # 8 frames of a 2 s clip: 4 fps
    assert happy["video_grid_thw"][0].tolist() == [4, 8, 8]  # the policy's 112 px frames, not the processor's
    ids = happy["input_ids"][0]
    tok = processor.tokenizer
    # the count computed apart from the processor: the decoded track from the first sampled frame to its end, at
    # 16 kHz → one mel frame per started 10 ms hop → the encoder's two stride-2 steps
    track = read_audio(clips["happy"])
    first = load_frames(clips["happy"], collator.policy).timestamps[0]
    heard_s = track.start_s + track.duration_s - first
    assert abs(heard_s - 2.0) < 0.1  # the clip: 16 frames at 8 fps with a voice as long
    assert int(happy["feature_attention_mask"].sum()) == math.ceil(round(heard_s * 16000) / 160)
    assert int((ids == tok.audio_token_id).sum()) == _omni_audio_tokens(heard_s)
    assert (happy["labels"][0][ids == tok.audio_token_id] == IGNORE_INDEX).all()
    sad = collator([_row(clips["sad"], "sad")])
    assert torch.equal(happy["pixel_values_videos"], sad["pixel_values_videos"])  # only the audio differs
    loss_happy, logits_happy = _loss_and_logits(model, happy)
    loss_sad, logits_sad = _loss_and_logits(model, sad)
    assert torch.isfinite(loss_happy) and torch.isfinite(loss_sad)
    answer = happy["labels"][0] != IGNORE_INDEX
    assert (logits_happy[0][answer] - logits_sad[0][answer]).abs().max() > 1e-3, "only the audio changed"
    assert torch.equal(_loss_and_logits(model, collator([_row(clips["happy"], "again")]))[1], logits_happy)


def test_row_length_counts_the_audio_tokens(omni, clips):
    _, processor = omni
    collator = _collator(processor)
    row = _row(clips["happy"], "happy")
    batch = collator([row])
    audio_tokens = int((batch["input_ids"][0] == processor.tokenizer.audio_token_id).sum())
    assert audio_tokens > 40  # ~2 s at 25 tokens per second
    assert collator.row_length(row) == int(batch["attention_mask"].sum())
    silent_row = _row(clips["silent"], "silent")
    silent = collator([silent_row])
    heard = int((silent["input_ids"][0] == processor.tokenizer.audio_token_id).sum())
    frames = load_frames(clips["silent"], collator.policy)
    assert heard == _omni_audio_tokens(2.0 - frames.timestamps[0])  # silence from the first frame to the video's end
    assert collator.row_length(silent_row) == collator.row_length(row) - audio_tokens + heard


def test_a_clip_without_audio_is_encoded_the_same_alone_and_beside_speaking_clips(omni, clips):
    """A clip with no track always hears silence of its own duration, so its tokens and the model's answer do not
    depend on its batch-mates (``use_audio_in_video`` applies to every video of a forward)."""
    model, processor = omni
    collator = _collator(processor)
    silent = collator([_row(clips["silent"], "silent")])
    assert silent["use_audio_in_video"] is True and silent["input_features"].shape[0] == 1
    silence = silent["input_features"][0][:, silent["feature_attention_mask"][0].bool()]
    assert silence.shape[1] > 100 and float(silence.max() - silence.min()) < 1e-6  # log-mel of silence: flat
    loss_alone, logits_alone = _loss_and_logits(model, silent)
    assert torch.isfinite(loss_alone)
    mixed = collator([_row(clips["happy"], "happy"), _row(clips["silent"], "silent")])
    assert mixed["input_features"].shape[0] == 2 and mixed["use_audio_in_video"] is True
    loss, logits = _loss_and_logits(model, mixed)
    assert torch.isfinite(loss)
    n = int(silent["attention_mask"].sum())  # right padding: each row's own tokens come first
    assert int(mixed["attention_mask"][1].sum()) == n
    assert torch.equal(mixed["input_ids"][1, :n], silent["input_ids"][0])
    assert torch.allclose(logits[1, :n], logits_alone[0], atol=1e-4)
    alone = _loss_and_logits(model, collator([_row(clips["happy"], "happy")]))[1]
    m = int(mixed["attention_mask"][0].sum())
    assert torch.allclose(logits[0, :m], alone[0, :m], atol=1e-4)
    assert collator.row_length(_row(clips["silent"], "silent")) == n  # the check measures what training sees


def test_generation_inputs_of_a_clip_without_audio_do_not_depend_on_the_batch(omni, clips):
    model, processor = omni
    policy = replace(frame_policy_for(processor), nframes=8, max_pixels=12544)
    frames = {k: load_frames(clips[k], policy) for k in ("happy", "silent")}
    track = clip_audio(clips["happy"], frames["happy"])
    messages = {k: build_messages(str(clips[k]), "video") for k in frames}
    alone = encode_batch(processor, [messages["silent"]], [frames["silent"]], audio=[None])
    mixed = encode_batch(processor, [messages["happy"], messages["silent"]], [frames["happy"], frames["silent"]],
                         audio=[track, None])
    n = int(alone["attention_mask"].sum())
    assert torch.equal(mixed["input_ids"][1, -n:], alone["input_ids"][0])  # left padding: own tokens last
    with torch.no_grad():
        row = model(**alone).logits[0, -1]
        both = model(**mixed).logits[1, -1]
    assert torch.allclose(row, both, atol=1e-4)


def test_rows_of_different_fps_are_encoded_apart_and_padded_together(omni, clips):
    model, processor = omni
    collator = _collator(processor)
    rows = [_row(clips["happy"], "happy"), _row(clips["slow"], "slow")]
    batch = collator(rows)
    assert [round(float(s), 3) for s in batch["video_second_per_grid"]] == [0.5, 1.0]  # 4 fps and 2 fps
    loss, logits = _loss_and_logits(model, batch)
    for i, row in enumerate(rows):
        alone = collator([row])
        n = int(alone["attention_mask"].sum())
        assert torch.equal(batch["input_ids"][i, :n], alone["input_ids"][0])
        assert torch.allclose(logits[i, :n], _loss_and_logits(model, alone)[1][0], atol=1e-4)


def test_bad_audio_is_named_per_sample_and_the_check_goes_on(omni, clips, caplog):
    import datasets

    _, processor = omni
    collator = _collator(processor)
    with pytest.raises(SampleMediaError, match="sample garbled: .*garbled.mp4: the audio stream cannot be decoded"):
        collator.row_length(_row(clips["garbled"], "garbled"))
    with caplog.at_level("WARNING"):
        short = collator([_row(clips["short"], "short")])
    assert "sample short: audio track" in caplog.text and "fitted to the video" in caplog.text
    assert short["use_audio_in_video"] is True
    rows = datasets.Dataset.from_list([_row(clips[k], k) for k in ("happy", "garbled", "silent", "short")])
    check = check_rows(rows, collator.row_length, max_length=None)
    assert check.kept == [0, 2, 3] and check.dropped == {MEDIA_ERROR: ["garbled"]}


def test_video_only_omni_encoding_keeps_the_policy_size_and_fps(omni, clips):
    _, processor = omni
    policy = replace(frame_policy_for(processor), nframes=8, max_pixels=12544)
    frames = load_frames(clips["happy"], policy)
    batch = encode_batch(processor, [build_messages(str(clips["happy"]), "video")], [frames])
    assert batch["video_grid_thw"][0].tolist() == [4, 8, 8]
    assert float(batch["video_second_per_grid"][0]) == pytest.approx(0.5)
    assert "input_features" not in batch


def test_omni_recipe_freezes_the_audio_encoder_and_lora_adapts_only_the_language_model(tiny_omni_dir, tmp_path):
    from peft import get_peft_model
    from recipe_support import ROOT, tiny_recipe

    from emoreason.training import load_for_training, load_recipe

    real = load_recipe("sft", str(ROOT / "recipes/qwen2_5_omni_7b/sft/mer2023.yaml"), None)
    assert real.script.freeze_audio and real.model.model_name_or_path == "Qwen/Qwen2.5-Omni-7B"
    recipe = tiny_recipe("sft", tiny_omni_dir, tmp_path / "data", tmp_path / "out",
                         tiny_model_family="qwen2_5_omni", freeze_audio=True, freeze_vision=True, use_peft=True,
                         lora_r=4, lora_alpha=8)
    model, _, peft_config = load_for_training(recipe)
    assert not any(p.requires_grad for p in model.model.audio_tower.parameters())
    peft_model = get_peft_model(model, peft_config)
    adapted = {n for n, _ in peft_model.named_modules() if n.endswith("lora_A")}
    assert adapted and all(".language_model." in n for n in adapted)


@pytest.mark.parametrize("flags, trainable", [
    ({"freeze_vision": True, "freeze_language": True}, {"projector", "audio"}),  # stage-1 alignment: both towers' paths
    ({"freeze_vision": True, "freeze_audio": True}, {"projector", "language"}),
    ({"freeze_vision": False, "freeze_audio": False}, {"vision", "projector", "audio", "language"}),
])
def test_the_audio_encoder_is_frozen_by_freeze_audio_alone(tiny_omni_dir, flags, trainable):
    """freeze_language used to freeze the audio encoder (classified as language): an alignment stage that trains
    the encoders' paths then left the ears frozen while freeze_audio=false said otherwise."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from emoreason.training import freeze
    from emoreason.training.optim import module_of
    from emoreason.training.recipe import EmoreasonArguments

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir)
    freeze(model, EmoreasonArguments(**flags))
    assert {module_of(n) for n, _ in model.named_parameters()} == {"vision", "projector", "audio", "language"}
    for name, param in model.named_parameters():
        assert param.requires_grad == (module_of(name) in trainable), name


def test_audio_learning_rate_reaches_the_audio_encoder_alone(tiny_omni_dir):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from emoreason.training.optim import module_of, split_param_groups
    from emoreason.training.recipe import EmoreasonArguments

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir)
    rates = EmoreasonArguments(audio_learning_rate=5e-3, vision_learning_rate=1e-3).module_learning_rates()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    split_param_groups(optimizer, model, rates)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    expected = {"audio": 5e-3, "vision": 1e-3, "projector": 1e-4, "language": 1e-4}
    for name, param in model.named_parameters():
        assert rate[id(param)] == expected[module_of(name)], name
    assert any(module_of(n) == "audio" for n, _ in model.named_parameters())


@contextmanager
def _heard_features():
    """The log-mel features each forward of a Qwen2.5-Omni audio encoder receives (a global forward pre-hook on the
    real module, (mel bins, frames) per call), so a test sees what the model heard."""
    heard: list[torch.Tensor] = []

    def hook(module, args):
        if type(module).__name__ == "Qwen2_5OmniAudioEncoder":
            heard.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield heard
    finally:
        handle.remove()


def _spread(features: torch.Tensor) -> float:
    return float(features.max() - features.min())


def test_the_generate_command_carries_the_clip_audio_to_an_omni_model(clips, tiny_omni_dir, capsys):
    from emoreason.cli import main

    heard = {}
    for name in ("happy", "sad", "silent"):
        with _heard_features() as features:
            assert main(["generate", "--model", str(tiny_omni_dir), "--video", str(clips[name]), "--fps", "4",
                         "--max-new-tokens", "2"]) == 0
        assert features, f"{name}: the audio encoder never ran"
        heard[name] = features[0]
    assert _spread(heard["happy"]) > 1.0 and _spread(heard["silent"]) < 1e-6  # a voice; a clip without a track: silence
    assert not torch.equal(heard["happy"], heard["sad"])  # the frames are the same: the voices differ
    capsys.readouterr()
    assert main(["generate", "--model", str(tiny_omni_dir), "--video", str(clips["garbled"])]) == 1
    assert "garbled.mp4: the audio stream cannot be decoded" in capsys.readouterr().err


def test_self_distillation_from_a_local_omni_model_hears_the_audio(tiny_omni_dir, clips, caplog):
    from types import SimpleNamespace

    from emoreason.cot.distill import sample_responses
    from emoreason.records import SampleRecord

    records = [SampleRecord(name, "synthfacs_av", {"type": "video", "path": str(clips[name])}, emotion="happiness")
               for name in ("happy", "garbled", "silent")]
    options = {"model": str(tiny_omni_dir), "k": 2, "max_new_tokens": 2, "seed": 0, "fps": 4}
    with caplog.at_level("WARNING"), _heard_features() as features:
        out = sample_responses(options, records, None, "cot", SimpleNamespace())
    assert [len(o) for o in out] == [2, 0, 2]
    assert "self-distillation skipped garbled" in caplog.text and "audio stream cannot be decoded" in caplog.text
    assert len(features) == 2 and _spread(features[0]) > 1.0 and _spread(features[1]) < 1e-6


def test_a_frame_folder_is_timed_by_its_dataset_fps_like_the_same_frames_in_a_video(omni, clips, tmp_path):
    """Frame folders carry the rate their adapter states (``media["fps"]``, else video.io's default): the Omni
    processor's fps and the silence they hear follow it, so a folder of a clip's frames encodes as the clip does."""
    from PIL import Image

    from emoreason.audio import omni_video_fps
    from emoreason.video import load_media

    _, processor = omni
    policy = replace(frame_policy_for(processor), nframes=8, max_pixels=12544)
    video = load_frames(clips["silent"], policy, resize=False)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(load_frames(clips["silent"], replace(policy, nframes=16), resize=False).frames):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.png")
    frames = load_media({"type": "frames", "path": str(folder), "fps": 8.0}, policy)
    assert omni_video_fps(frames) == pytest.approx(omni_video_fps(video)) == pytest.approx(4.0)  # 8 of 16 at 8 fps
    messages = build_messages(None, "video")
    from_folder = encode_batch(processor, [messages], [frames], audio=[None])
    from_video = encode_batch(processor, [messages], [load_frames(clips["silent"], policy)], audio=[None])
    assert float(from_folder["video_second_per_grid"][0]) == pytest.approx(0.5)
    assert torch.equal(from_folder["input_ids"], from_video["input_ids"])


def test_audio_beyond_the_feature_extractor_window_is_cut_named_and_counted(omni, tmp_path, caplog):
    """Whisper's extractor keeps ``chunk_length`` seconds (30 s for the tiny model): a longer track is cut before
    the processor, with a warning naming the clip and the duration kept, and recorded in the audio's meta."""
    from emoreason.audio import audio_window_s

    _, processor = omni
    assert audio_window_s(processor) == 30.0
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8)
    voice = (0.2 * np.sin(np.linspace(0, 2 * np.pi * 220 * 32, 32 * 16000))).astype(np.float32)
    path = write_video(frames, tmp_path / "long.mp4", fps=1, audio=voice)  # 32 s of video and voice
    policy = replace(frame_policy_for(processor), nframes=4, max_pixels=12544)
    loaded = load_frames(path, policy)
    with caplog.at_level("WARNING"):
        heard = clip_audio(path, loaded, max_s=audio_window_s(processor))
    assert heard.duration_s == pytest.approx(30.0) and heard.meta["truncated_to_s"] == 30.0
    assert f"{path}: audio cut to the feature extractor's window: 30.00 s kept of 3" in caplog.text
    caplog.clear()
    whole = clip_audio(path, loaded)
    with caplog.at_level("WARNING"):
        batch = encode_batch(processor, [build_messages(None, "video")], [loaded], audio=[whole])
    assert "long.mp4: audio cut to the feature extractor's window: 30.00 s kept" in caplog.text
    assert int((batch["input_ids"][0] == processor.tokenizer.audio_token_id).sum()) == _omni_audio_tokens(30.0)


def test_the_row_check_counts_rows_that_hear_silence_a_fitted_or_a_cut_track(omni, clips, tmp_path):
    import datasets

    from emoreason.grpo.train import prompt_length

    _, processor = omni
    collator = _collator(processor)
    frames = np.random.default_rng(0).integers(0, 255, (32, 32, 32, 3), dtype=np.uint8)
    voice = (0.2 * np.sin(np.linspace(0, 2 * np.pi * 220 * 32, 32 * 16000))).astype(np.float32)
    long = write_video(frames, tmp_path / "long.mp4", fps=1, audio=voice)  # 32 s: past the tiny model's 30 s
    rows = datasets.Dataset.from_list([_row(clips["happy"], "happy"), _row(clips["silent"], "silent"),
                                       _row(clips["short"], "short"), _row(long, "long")])
    check = check_rows(rows, collator.row_length, max_length=None)
    assert check.kept == [0, 1, 2, 3]
    assert check.notes == {"audio_silence": ["silent"], "audio_fitted": ["short"], "audio_truncated": ["long"]}
    assert check.summary()["notes"] == {"audio_fitted": 1, "audio_silence": 1, "audio_truncated": 1}
    cached = check_rows(rows, collator.row_length, max_length=None, cache_dir=tmp_path / "c")
    assert check_rows(rows, collator.row_length, max_length=None, cache_dir=tmp_path / "c").notes == cached.notes
    grpo_rows = [{**r, "media_path": r["video"]} for r in rows]
    assert prompt_length(processor, collator.policy, grpo_rows[3]).notes == ("audio_truncated",)
