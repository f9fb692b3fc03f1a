"""SynthFACS-AV through CoT and SFT: rationales cite the measured voice, the verifier holds vocal claims to the
measurement, clips without (readable) audio stay face-only, and the tiny Omni recipe trains on the rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from recipe_support import ROOT, tiny_recipe

from emoreason.audio.cues import ProsodyReference, check_vocal_claims
from emoreason.audio.prosody import ProsodyMeasurement
from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.reasoning import parse_response
from emoreason.synth import SynthConfig, build_dataset
from emoreason.training import load_recipe


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def av_cot(tmp_path_factory):
    """12 SynthFACS-AV clips (a quarter masked); the same run with one clip's audio garbled; a video-only set."""
    root = tmp_path_factory.mktemp("avcot")
    build_dataset(SynthConfig(out=str(root / "av"), clips=12, frames=16, size=112, difficulty="easy", identities=4,
                              audio=True, masked_fraction=0.25), workers=1, progress=False)
    out = CoTPipeline(CoTConfig(dataset_root=str(root / "av"), output_dir=str(root / "cot")), progress=False).run()
    return root, out


def test_av_rationales_cite_the_measured_voice_and_pass_the_checker(av_cot):
    _, out = av_cot
    rows = _rows(out)
    assert len(rows) == 12
    for row in rows:
        text = row["completion"][0]["content"][0]["text"]
        parsed = parse_response(text)
        assert parsed.format_ok and parsed.vocal_cues, row["id"]
        measured = ProsodyMeasurement.from_dict(json.loads(row["prosody"]))
        assert f"{measured.f0_mean_hz:.0f} Hz" in parsed.vocal_cues
        reference = ProsodyReference(**json.loads(row["prosody_reference"]))
        assert reference.source.startswith("speaker neutral")
        verdict = check_vocal_claims(parsed.vocal_cues, measured, reference)
        assert verdict.ok and len(verdict.checks) >= 2


def test_the_verifier_rejects_a_wrong_vocal_claim_and_claims_without_audio(av_cot):
    from emoreason.cot.verify import REJECTION_REASONS

    root, out = av_cot
    pipeline = CoTPipeline(CoTConfig(dataset_root=str(root / "av"), output_dir=str(root / "unused")),
                           progress=False)
    from emoreason.datasets import load_records

    record = next(iter(load_records("synthfacs", str(root / "av"))))
    item = pipeline._prepare(record)
    text = item.texts["cot"][0]
    assert pipeline._verify(item, "cot", text).ok
    measured = item.prosody.f0_mean_hz
    wrong = text.replace(f"{measured:.0f} Hz", f"{measured * 1.6:.0f} Hz", 1)
    assert wrong != text
    verdict = pipeline._verify(item, "cot", wrong)
    assert verdict.reasons == ["vocal_mismatch"] and verdict.details["vocal_mismatches"][0]["measured"] == measured
    item.grounding.prosody = None  # the same claims about a clip whose voice was not measured
    assert pipeline._verify(item, "cot", text).reasons == ["vocal_unmeasured"]
    assert {"vocal_mismatch", "vocal_unmeasured"} <= set(REJECTION_REASONS)


def test_silent_or_unreadable_audio_keeps_the_rationale_face_only_and_the_run_goes_on(av_cot, tmp_path):
    root, _ = av_cot
    copy = tmp_path / "av"
    shutil.copytree(root / "av", copy)
    manifest = [json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines()]
    garbled = copy / manifest[0]["media"]["path"]
    data = bytearray(garbled.read_bytes())
    import av

    with av.open(str(garbled)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size and p.pos]
    noise = np.random.default_rng(0)
    for position, size in packets:
        data[position:position + size] = noise.integers(0, 256, size, dtype=np.uint8).tobytes()
    garbled.write_bytes(bytes(data))
    out = CoTPipeline(CoTConfig(dataset_root=str(copy), output_dir=str(tmp_path / "cot")), progress=False).run()
    rows = {r["clip_id"]: r for r in _rows(out)}
    assert len(rows) == 12
    broken = rows[manifest[0]["id"]]
    assert broken["prosody"] is None and "Vocal cues" not in broken["completion"][0]["content"][0]["text"]
    assert "audio stream cannot be decoded" in json.loads(broken["provenance"])["audio_error"]
    assert json.loads((out / "summary.json").read_text())["evidence_notes"]["audio_error"] == 1
    assert all(r["prosody"] for cid, r in rows.items() if cid != manifest[0]["id"])
    off = CoTPipeline(CoTConfig(dataset_root=str(root / "av"), output_dir=str(tmp_path / "off"), vocal_cues="off"),
                      progress=False).run()
    assert all(r["prosody"] is None and "Vocal cues" not in r["completion"][0]["content"][0]["text"]
               for r in _rows(off))


def test_tiny_omni_sft_on_synthfacs_av_saves_a_servable_model(av_cot, tiny_omni_dir, tmp_path):
    from emoreason.models import load_model_and_processor
    from emoreason.sft.train import run_sft

    _, out = av_cot
    shipped = load_recipe("sft", str(ROOT / "recipes/tiny/sft/synthfacs_omni.yaml"), None)
    assert shipped.script.tiny_model_family == "qwen2_5_omni"
    recipe = tiny_recipe("sft", tiny_omni_dir, out / "hf", tmp_path / "sft",
                         tiny_model_family="qwen2_5_omni", max_steps=2, per_device_train_batch_size=2,
                         max_length=shipped.training.max_length)
    final = run_sft(recipe)
    summary = json.loads((tmp_path / "sft" / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["data"]["train"]["dropped"] == {}
    assert summary["data"]["train"]["max_tokens"] > 52  # audio tokens counted with the video tokens
    config = json.loads((final / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni" and config["architectures"] == [
        "Qwen2_5OmniForConditionalGeneration"]  # the composite layout vLLM serves
    model, processor = load_model_and_processor(final, device="cpu")
    assert type(model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"


def test_grpo_rollouts_and_log_prob_forwards_hear_the_audio(av_cot, tiny_omni_dir, tmp_path):
    import torch

    from emoreason.grpo.train import build_trainer

    _, out = av_cot
    shipped = load_recipe("grpo", str(ROOT / "recipes/tiny/grpo/synthfacs_omni.yaml"), None)
    assert not shipped.training.use_vllm and shipped.script.dataset_name.endswith("cot-av/hf")
    model_dir = tiny_omni_dir
    recipe = tiny_recipe("grpo", model_dir, out / "hf", tmp_path / "g", num_generations=2,
                         per_device_train_batch_size=4, max_completion_length=8, max_steps=1, learning_rate=1e-4,
                         reward_funcs=["format", "emotion"], reward_weights=[0.5, 1.0])
    trainer, processor = build_trainer(recipe)
    assert trainer.row_checks["train"].max_tokens > 52  # the prompt check counts the audio tokens
    batch = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]
    torch.manual_seed(0)
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    media = inputs["media"]
    assert all({"input_features", "feature_attention_mask", "video_second_per_grid", "use_audio_in_video"} <= set(m)
               for m in media)
    audio_id = processor.tokenizer.audio_token_id
    for row in range(len(media)):  # the prompt holds the clip's audio tokens, interleaved with its video
        assert int((inputs["prompt_ids"][row] == audio_id).sum()) > 40
    forbidden = set(trainer._vision_token_ids())
    assert audio_id in forbidden and not forbidden & set(inputs["completion_ids"][inputs["completion_mask"].bool()]
                                                         .tolist())
    trainer.current_gradient_accumulation_steps = 1
    assert torch.isfinite(trainer.compute_loss(trainer.model, inputs))

    def completion_logps(rows):
        trainer._media_rows = rows
        try:
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            with torch.no_grad():
                return trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, mask, inputs["completion_ids"].size(1))[0]
        finally:
            trainer._media_rows = None

    louder = [{**m, "input_features": m["input_features"] + 1.0} for m in media]  # only the audio changes
    assert not torch.allclose(completion_logps(media), completion_logps(louder))


def test_eval_modalities_switch_what_an_omni_model_is_shown(av_cot, tiny_omni_dir, tiny_model_dirs, tmp_path):
    from emoreason.client import ModalitiesError, served_modalities
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.runner import benchmark_records, evaluate, prompt_labels
    from emoreason.video import write_video

    root, _ = av_cot
    model_dir = tiny_omni_dir
    spec = load_benchmark("synthfacs", ["split=null", "max_new_tokens=4"])
    records = list(benchmark_records(spec, str(root / "av")))[:3]
    silent = tmp_path / "silent.mp4"  # the first clip's frames without its voice
    from emoreason.video import FramePolicy, load_frames

    write_video(load_frames(records[0].media["path"], FramePolicy(nframes=16), resize=False).frames, silent, fps=8)
    records.append(type(records[0])(**{**records[0].__dict__, "id": "silent",
                                       "media": {**records[0].media, "path": str(silent)}}))
    shown = {}
    for modalities in (None, "video", "audio"):
        backend = LocalBackend(str(model_dir), spec.frames, prompt_labels(spec), spec.style, 4, 4,
                               modalities=modalities)
        ready, _, frames, audio, errors = backend.inputs(records)
        shown[modalities] = (backend, ready, frames, audio, errors)
    default, ready, frames, audio, errors = shown[None]
    assert default.modalities == "audio+video" and default.frame_policy["modalities"] == "audio+video"
    assert ready == [0, 1, 2, 3] and all(a is not None for a in audio[:3]) and audio[3] is None  # silent: no track
    assert frames[0].frames.any()
    video, ready, frames, audio, _ = shown["video"]
    assert "modalities" not in video.frame_policy and audio == [None] * 4
    hidden, ready, frames, audio, errors = shown["audio"]
    assert ready == [0, 1, 2] and not any(f.frames.any() for f in frames) and all(a is not None for a in audio)
    assert "silent.mp4: no audio track to hear (modalities: audio)" in errors[3]  # named, and the batch goes on
    metrics = evaluate(spec, hidden, tmp_path / "eval-audio", root=str(root / "av"), limit=3, progress=False)
    assert metrics["n"] == 3 and metrics["generation_errors"] == 0
    with pytest.raises(ValueError, match="takes no audio"):
        LocalBackend(str(tiny_model_dirs["qwen2_5_vl"]), spec.frames, None, "tags", modalities="audio")
    # an endpoint is sent the audio as well (tests/test_serving_omni.py); asked of a served model that hears none:
    with pytest.raises(ModalitiesError, match="takes no audio"):
        served_modalities("audio", False, "http://127.0.0.1:9/v1")


def test_eval_counts_what_each_sample_heard_in_metrics_and_summary(av_cot, tiny_omni_dir, tmp_path):
    """A mixed set: clips heard with their track, one without a track (heard silence), one whose track is 1 s short
    of its video (fitted). The counts go to metrics.json and the summary's protocol line; the video-only ablation
    hears nothing, and says so."""
    from emoreason.audio import read_audio
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.benchmarks import load_benchmark
    from emoreason.evaluation.runner import benchmark_records, evaluate, prompt_labels
    from emoreason.video import FramePolicy, load_frames, write_video

    root, _ = av_cot
    data = tmp_path / "av"
    shutil.copytree(root / "av", data)
    spec = load_benchmark("synthfacs", ["split=null", "max_new_tokens=2"])
    records = list(benchmark_records(spec, str(data)))[:4]
    for record in records[2:]:  # the third clip loses its track, the fourth keeps half of it
        path = record.media["path"]
        frames = load_frames(path, FramePolicy(nframes=16), resize=False).frames
        voice = read_audio(path).waveform
        write_video(frames, path, fps=8, audio=None if record is records[2] else voice[: len(voice) // 2])
    backend = LocalBackend(str(tiny_omni_dir), spec.frames, prompt_labels(spec), spec.style, 4, 2)
    metrics = evaluate(spec, backend, tmp_path / "eval", root=str(data), limit=4, progress=False)
    audio = metrics["protocol"]["audio"]
    assert audio == {"modalities": "audio+video", "samples": 4, "heard_track": 3, "from_original_video": 0,
                     "fitted_to_video": 1,
                     "truncated": 0, "no_track_heard_silence": 1, "not_heard": 0}
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["protocol"]["audio"] == audio
    summary = (tmp_path / "eval" / "summary.md").read_text().split("\n\n")[1]  # the protocol paragraph
    assert "audio audio+video: 3 of 4 samples heard their track (1 fitted to the video's length" in summary
    assert "1 had no track and heard silence" in summary
    again = evaluate(spec, backend, tmp_path / "eval", root=str(data), limit=4, progress=False)  # all cached: same counts
    assert again["protocol"]["audio"] == audio
    video = LocalBackend(str(tiny_omni_dir), spec.frames, prompt_labels(spec), spec.style, 4, 2, modalities="video")
    only = evaluate(spec, video, tmp_path / "eval-video", root=str(data), limit=4, progress=False)["protocol"]["audio"]
    assert only["modalities"] == "video" and only["not_heard"] == 4 and only["heard_track"] == 0


def test_prosody_is_measured_on_the_window_the_model_hears_and_cuts_are_counted(av_cot, tmp_path, caplog):
    """With a 1 s feature-extractor window (30 s for the tiny model and Whisper, 300 s for Qwen2.5-Omni-7B), the
    vocal cues describe the clip's first second as heard from the first sampled frame, not its 2 s track, each cut
    is named in a warning and counted in the summary."""
    from emoreason.audio import clip_audio
    from emoreason.audio.prosody import measure_prosody
    from emoreason.video import FramePolicy, load_frames

    root, _ = av_cot
    with caplog.at_level("WARNING"):
        out = CoTPipeline(CoTConfig(dataset_root=str(root / "av"), output_dir=str(tmp_path / "cot"),
                                    audio_window_s=1.0), progress=False).run()
    rows = {row["id"]: row for row in _rows(out)}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evidence_notes"]["audio_truncated"] == 12
    assert "audio cut to the feature extractor's window: 1.00 s kept" in caplog.text
    row = rows[sorted(rows)[0]]
    measured = ProsodyMeasurement.from_dict(json.loads(row["prosody"]))
    assert measured.duration_s == pytest.approx(1.0, abs=0.01)
    path = row["video"]
    heard = clip_audio(path, load_frames(path, FramePolicy()), max_s=1.0)
    assert heard.meta["truncated_to_s"] == 1.0 and heard.meta["truncated_from_s"] > 1.5
    assert measured == measure_prosody(heard.waveform, heard.sample_rate)


def test_vocal_cues_off_and_on_read_as_yaml_booleans_are_accepted(tmp_path):
    """`emoreason synth-cot ... vocal_cues=off` failed with "got False": YAML 1.1 reads off/on (and no/yes) as
    booleans. False is "off" and True the default "auto" (measure every clip with audio), on the command line and
    in a config file alike; other values are still refused."""
    from emoreason.config import load_config

    base = ["dataset_root=d", "output_dir=o"]
    assert load_config(CoTConfig, None, [*base, "vocal_cues=off"]).vocal_cues == "off"
    assert load_config(CoTConfig, None, [*base, "vocal_cues=on"]).vocal_cues == "auto"
    assert load_config(CoTConfig, None, [*base, "vocal_cues=auto"]).vocal_cues == "auto"
    config = tmp_path / "cot.yaml"
    config.write_text("dataset_root: d\noutput_dir: o\nvocal_cues: off\n")
    assert load_config(CoTConfig, config).vocal_cues == "off"
    with pytest.raises(ValueError, match="vocal_cues must be auto or off"):
        load_config(CoTConfig, None, [*base, "vocal_cues=maybe"])
