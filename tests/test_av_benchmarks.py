"""Audio-visual benchmarks in their distributed layouts (CREMA-D, RAVDESS): labels from the file names,
actor-independent folds, and clips whose audio reads at the processor's rate whatever their container, rate and
channels."""

from __future__ import annotations

from collections import Counter

import pytest

from emoreason.audio import SAMPLE_RATE, audio_for_frames, probe_audio
from emoreason.datasets import load_records
from emoreason.evaluation.benchmarks import load_benchmark
from emoreason.evaluation.runner import benchmark_records
from emoreason.knowledge import dataset_label_set
from emoreason.video import FramePolicy, load_frames

from dataset_fixtures import FIXTURES, dfew_face_crops_with_originals, mafw_frames_with_clips


def test_cremad_labels_levels_folds_and_flv_audio(tmp_path):
    FIXTURES["cremad"](tmp_path)
    records = {r.id: r for r in load_records("cremad", tmp_path)}
    assert records["cremad-1001_DFA_ANG_XX"].emotion == "anger" and records["cremad-1003_DFA_NEU_XX"].emotion == \
        "neutral"
    assert records["cremad-1007_IEO_HAP_HI"].meta == {"sentence": "IEO", "level": "HI"}
    assert records["cremad-1007_IEO_HAP_HI"].media["path"].endswith("VideoMP4/1007_IEO_HAP_HI.mp4")
    assert dataset_label_set("cremad") == ("anger", "disgust", "fear", "happiness", "neutral", "sadness")
    folds = {r.subject: r.fold for r in records.values()}
    test = load_records("cremad", tmp_path, split="test", fold=1)
    assert {r.subject for r in test} == {a for a, f in folds.items() if f == 1}  # actor-independent
    assert not {r.subject for r in test} & {r.subject for r in load_records("cremad", tmp_path, split="train",
                                                                              fold=1)}
    clip = records["cremad-1001_DFA_ANG_XX"].media["path"]
    assert clip.endswith(".flv") and probe_audio(clip).codec == "aac"
    frames = load_frames(clip, FramePolicy(nframes=4), resize=False)
    audio = audio_for_frames(clip, frames)
    assert audio.sample_rate == SAMPLE_RATE and abs(audio.duration_s - 1.0) < 0.1
    converted = audio_for_frames(records["cremad-1007_IEO_HAP_HI"].media["path"],
                                 load_frames(records["cremad-1007_IEO_HAP_HI"].media["path"], FramePolicy(nframes=4),
                                             resize=False))
    assert converted.source_rate == 44100 and converted.sample_rate == SAMPLE_RATE


def test_ravdess_default_is_the_standard_speech_8_class_protocol_and_folds_by_actor(tmp_path):
    """Livingstone & Russo (PLoS ONE 2018): 8 speech emotions, calm its own class; song and the calm→neutral
    merge only as named variants."""
    FIXTURES["ravdess"](tmp_path)
    records = load_records("ravdess", tmp_path)
    by_id = {r.id: r for r in records}
    assert by_id["ravdess-01-01-02-01-01-01-02"].emotion == "calm"  # kept: 8 classes
    assert by_id["ravdess-01-01-02-01-01-01-02"].emotion_raw == "calm"
    assert by_id["ravdess-01-01-08-01-01-01-08"].emotion == "surprise"
    assert all(r.meta["channel"] == "speech" for r in records)  # the song files are a variant
    assert not any(r.id.startswith("ravdess-02-") for r in records)  # the video-only copy has no audio
    assert Counter(r.fold for r in records) == Counter({1: 2, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1})  # 8 actors, 6 folds
    assert dataset_label_set("ravdess") == ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust",
                                            "surprise")
    merged = {r.id: r for r in load_records("ravdess", tmp_path, classes=7)}
    assert merged["ravdess-01-01-02-01-01-01-02"].emotion == "neutral"
    assert merged["ravdess-01-01-02-01-01-01-02"].emotion_raw == "calm"
    assert len(dataset_label_set("ravdess7")) == 7 and "calm" not in dataset_label_set("ravdess7")
    song = {r.id: r for r in load_records("ravdess", tmp_path, channel="song")}
    assert list(song) == ["ravdess-01-02-03-01-01-01-01", "ravdess-01-02-05-02-02-01-08"]
    assert song["ravdess-01-02-05-02-02-01-08"].emotion == "anger"
    assert len(load_records("ravdess", tmp_path, channel="all")) == len(records) + 2
    stereo = by_id["ravdess-01-01-03-01-01-01-03"].media["path"]
    info = probe_audio(stereo)
    assert (info.sample_rate, info.channels) == (48000, 2)
    audio = audio_for_frames(stereo, load_frames(stereo, FramePolicy(nframes=4), resize=False))
    assert audio.waveform.ndim == 1 and audio.sample_rate == SAMPLE_RATE


def test_ravdess_variants_are_named_benchmarks(tmp_path):
    FIXTURES["ravdess"](tmp_path)
    standard, merged, song = (load_benchmark(n) for n in ("ravdess", "ravdess_7class", "ravdess_song"))
    assert standard.protocol()["classes"] == list(dataset_label_set("ravdess"))
    assert merged.protocol()["classes"] == list(dataset_label_set("ravdess7"))
    assert song.protocol()["classes"] == list(dataset_label_set("ravdess_song"))
    assert len({standard.protocol_hash(), merged.protocol_hash(), song.protocol_hash()}) == 3
    calm = "ravdess-01-01-02-01-01-01-02"
    emotions = {spec.name: {r.id: r.emotion for r in benchmark_records(spec, str(tmp_path))}
                for spec in (standard, merged, song)}
    assert emotions["ravdess"][calm] == "calm" and emotions["ravdess_7class"][calm] == "neutral"
    assert list(emotions["ravdess_song"].values()) == ["happiness", "anger"]


def test_mer2023_release_layout_and_mer_semi(tmp_path):
    FIXTURES["mer2023"](tmp_path)
    records = {r.id: r for r in load_records("mer2023", tmp_path)}
    assert records["mer2023-sample_00000002"].emotion == "anxiety"  # "worried"
    assert records["mer2023-sample_00000002"].media["path"].endswith("train/sample_00000002.avi")
    assert records["mer2023-sample_00000001"].valence == 0.5  # −5..5 → −1..1
    assert dataset_label_set("mer2023") == ("neutral", "anger", "happiness", "sadness", "anxiety", "surprise")
    spec = load_benchmark("mer2023")
    semi = list(benchmark_records(spec, str(tmp_path)))
    assert spec.split == "test3" and [r.id for r in semi] == ["mer2023-sample_00000100", "mer2023-sample_00000101"]
    assert semi[0].valence is None and semi[0].emotion == "anger"  # test3 has no valence
    assert not [p for p in benchmark_records(spec, str(tmp_path)).problems]  # only test3 is read for MER-SEMI


def test_benchmark_files_name_their_protocols(tmp_path):
    for name, folds in (("cremad", 5), ("ravdess", 6)):
        spec = load_benchmark(name)
        assert spec.folds == list(range(1, folds + 1)) and spec.split == "test"
        FIXTURES[name](tmp_path / name)
        records = list(benchmark_records(spec, str(tmp_path / name), 1))
        assert records and all(r.split == "test" and r.fold == 1 for r in records)


def test_a_calm_answer_scores_as_neutral_where_the_benchmark_has_no_calm():
    """"calm" was neutral's synonym until RAVDESS's 8-class protocol made it a class: on a benchmark without calm
    (ravdess_7class, which merges calm into neutral; DFEW, MAFW) a "calm" answer to a neutral clip is still right;
    on 8-class RAVDESS it is a different class."""
    from emoreason.evaluation.runner import score
    from emoreason.records import SampleRecord

    records = [SampleRecord(id="a", dataset="x", media={"type": "video", "path": "a.mp4"}, emotion="neutral"),
               SampleRecord(id="b", dataset="x", media={"type": "video", "path": "b.mp4"}, emotion="happiness")]
    predictions = {"a": {"text": "<answer>calm</answer>"}, "b": {"text": "<answer>happy</answer>"}}
    for name, expected in (("ravdess_7class", 1.0), ("dfew", 1.0), ("mafw", 1.0), ("ravdess", 0.5)):
        spec = load_benchmark(name)
        spec.metrics = ["recognition"]
        assert score(spec, records, predictions)["recognition"]["war"] == expected, name


def test_dfew_face_crops_are_heard_with_their_original_clips_audio_on_the_clips_timeline(tmp_path):
    """DFEW's face crops carry no audio; its original clips do (R1-Omni hears DFEW that way). The record names the
    original as its audio source; an audio model hears that track from the moment of its first sampled frame, the
    crops timed on the clip (16 frames over its 2 s, not the folder's assumed 25 fps); a crop folder with no original
    keeps no source; ``audio=false`` turns it off."""
    import numpy as np

    from emoreason.audio.modalities import audio_source, with_modalities
    from emoreason.video import load_media

    dfew_face_crops_with_originals(tmp_path)
    records = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1)}
    assert {r.media["type"] for r in records.values()} == {"frames"}  # the frames still come from the crops
    assert records["dfew-00006"].media["audio_path"].endswith("Clip/original/00006.mp4")
    assert records["dfew-00007"].media["audio_path"].endswith("Clip/original/7.mp4")  # copies differ in padding
    assert records["dfew-00006"].media["audio_layout"] == "original"
    assert "audio_path" not in records["dfew-00012"].media
    assert not any("audio_path" in r.media for r in load_records("dfew", tmp_path, split="test", fold=1, audio=False))
    media = records["dfew-00006"].media
    frames, audio = with_modalities(load_media(media, FramePolicy(nframes=16)), "audio+video",
                                    path=audio_source(media))
    assert audio is not None and audio.path == media["audio_path"] and "mismatch" not in audio.meta
    assert abs(audio.duration_s - 2.0) < 0.1  # the whole clip, not the folder's assumed 0.64 s
    assert frames.source_fps == 8.0 and frames.meta["timed_by"] == media["audio_path"]
    window = {**media, "frame_indices": list(range(8, 16))}  # the clip's second half: its voiced second
    frames, audio = with_modalities(load_media(window, FramePolicy(nframes=8)), "audio+video",
                                    path=audio_source(window))
    assert frames.timestamps[0] == 1.0 and abs(audio.duration_s - 1.0) < 0.1
    assert np.abs(audio.waveform[: SAMPLE_RATE // 10]).max() > 0.1  # voiced from its first sample
    frames, audio = with_modalities(load_media(records["dfew-00012"].media, FramePolicy(nframes=16)), "audio+video",
                                    path=audio_source(records["dfew-00012"].media))
    assert audio is None and "timed_by" not in frames.meta  # no source of audio: silence, counted by the eval


def test_mafw_frame_folders_are_heard_with_the_release_clips_audio(tmp_path):
    from emoreason.audio.modalities import audio_source, with_modalities
    from emoreason.video import load_media

    mafw_frames_with_clips(tmp_path)
    records = {r.id: r for r in load_records("mafw", tmp_path, split="test", fold=1, layout="frames")}
    assert records["mafw-00005"].media["type"] == "frames"
    assert records["mafw-00005"].media["audio_path"].endswith("data/clips/00005.mp4")
    assert "audio_path" not in records["mafw-00006"].media
    default = {r.id: r for r in load_records("mafw", tmp_path, split="test", fold=1)}
    assert default["mafw-00005"].media["type"] == "video" and "audio_path" not in default["mafw-00005"].media  # its own
    media = records["mafw-00005"].media
    _, audio = with_modalities(load_media(media, FramePolicy(nframes=16)), "audio", path=audio_source(media))
    assert abs(audio.duration_s - 2.0) < 0.1


def test_eval_of_dfew_face_crops_hears_the_original_clips_and_names_the_silent_one(tmp_path, tiny_omni_dir,
                                                                                    caplog):
    """The default DFEW layout (face crops) evaluated with an audio model: the two clips with an original are
    heard with its track (each prediction row names the file), the crop without one hears silence with a warning
    naming it, and protocol.audio counts both."""
    import json

    from emoreason.evaluation.backends import LocalBackend
    from emoreason.evaluation.runner import evaluate, prompt_labels

    dfew_face_crops_with_originals(tmp_path / "DFEW")
    spec = load_benchmark("dfew", ["max_new_tokens=2", "frames.max_frames=4"])
    backend = LocalBackend(str(tiny_omni_dir), spec.frames, prompt_labels(spec), spec.style, 4, 2)
    with caplog.at_level("WARNING"):
        metrics = evaluate(spec, backend, tmp_path / "eval", root=str(tmp_path / "DFEW"), fold=1, progress=False)
    assert metrics["n"] == 3 and metrics["generation_errors"] == 0
    assert metrics["protocol"]["audio"] == {"modalities": "audio+video", "samples": 3, "heard_track": 2,
                                            "from_original_video": 2, "fitted_to_video": 0, "truncated": 0,
                                            "no_track_heard_silence": 1, "not_heard": 0}
    rows = {row["id"]: row for row in map(json.loads, (tmp_path / "eval" / "predictions.jsonl").read_text()
                                          .splitlines())}
    assert rows["dfew-00006"]["audio"]["source"].endswith("Clip/original/00006.mp4")
    assert rows["dfew-00012"]["audio"] == {"heard": "silence"}
    assert any("dfew-00012" in m and "silence" in m for m in caplog.messages)
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "2 of 3 samples heard their track (2 from the clip's original video" in summary
    # the cache answers for what was heard: the same clips without their originals (audio=false) are other inputs
    from emoreason.evaluation.runner import CacheMismatchError, benchmark_records, cache_key, open_cache

    silent = list(benchmark_records(spec, str(tmp_path / "DFEW"), 1))
    for record in silent:
        record.media = {k: v for k, v in record.media.items() if k not in ("audio_path", "audio_layout")}
    with pytest.raises(CacheMismatchError, match="audio_layout"):
        open_cache(tmp_path / "eval", cache_key(spec, backend, 1), records=silent)


def test_cot_rows_of_dfew_face_crops_measure_and_train_on_the_original_clips_audio(tmp_path):
    """The CoT pipeline measures a face-crop clip's voice on its original video's track and writes that file on
    the row (``audio_path``); the training loader hears the same track, timed on the same clip."""
    import json

    from emoreason.cot.pipeline import CoTConfig, CoTPipeline
    from emoreason.training.data import load_row_heard, load_row_media

    dfew_face_crops_with_originals(tmp_path / "DFEW")
    out = CoTPipeline(CoTConfig(dataset_format="dfew", dataset_root=str(tmp_path / "DFEW"), split="test", fold=1,
                                output_dir=str(tmp_path / "cot")), progress=False).run()
    rows = {row["clip_id"]: row for row in map(json.loads, (out / "data.jsonl").read_text().splitlines())
            if row["task"] == "cot"}
    assert rows["dfew-00006"]["audio_path"].endswith("Clip/original/00006.mp4")
    assert rows["dfew-00006"]["label_set"] == "dfew"  # what GRPO's emotion reward scores the answer in
    assert rows["dfew-00006"]["prosody"] is not None  # measured on the original's voiced second
    assert rows["dfew-00012"]["audio_path"] is None and rows["dfew-00012"]["prosody"] is None
    row = rows["dfew-00006"]
    frames, audio = load_row_heard(row, load_row_media(row, FramePolicy(nframes=16)))
    assert audio is not None and audio.path == row["audio_path"] and abs(audio.duration_s - 2.0) < 0.1


def test_mer2024_release_layout_and_mer_semi(tmp_path):
    """MER2024 as released (Lian et al., arXiv 2404.17113): labelled train clips in video-labeled/ with
    label-disdim.csv; MER-SEMI (test1) and MER-NOISE (test2) clips among the unlabelled pool; 6 classes as MER2023,
    weighted F1 reported."""
    from emoreason.evaluation.runner import score

    expected = FIXTURES["mer2024"](tmp_path)
    records = load_records("mer2024", tmp_path)
    assert Counter(r.split for r in records) == Counter(expected["counts"])
    assert Counter(p.kind for p in records.problems) == Counter(expected["problems"])
    by_id = {r.id: r for r in records}
    assert by_id["mer2024-sample_00000002"].emotion == "anxiety"  # "worried"
    assert by_id["mer2024-sample_00000002"].media["path"].endswith("video-labeled/sample_00000002.avi")
    assert by_id["mer2024-sample_00000001"].valence == 0.5
    assert by_id["mer2024-sample_00200001"].media["path"].endswith(
        "video-unlabeled-with-test2noise/sample_00200001.mp4")  # MER-NOISE: the noisy copy
    assert dataset_label_set("mer2024") == dataset_label_set("mer2023")
    spec = load_benchmark("mer2024")
    semi = benchmark_records(spec, str(tmp_path))
    assert spec.split == "test1" and [r.id for r in semi] == ["mer2024-sample_00100001", "mer2024-sample_00100002"]
    assert [p.sample_id for p in semi.problems] == ["mer2024-sample_00100003"]  # its clip is missing: named
    assert spec.protocol()["classes"] == list(dataset_label_set("mer2023"))
    predictions = {"mer2024-sample_00100001": {"text": "<answer>angry</answer>"},
                   "mer2024-sample_00100002": {"text": "<answer>worried</answer>"}}
    spec.metrics = ["recognition"]
    recognition = score(spec, list(semi), predictions)["recognition"]
    assert recognition["war"] == 0.5 and recognition["weighted_f1"] == 0.5


def test_cot_rows_name_the_label_set_each_benchmark_scores():
    """synth-cot writes the label set its rows' emotions are scored in (``label_set``), from the dataset format and
    adapter options: the same set each benchmark YAML scores (so GRPO's emotion reward and the eval agree on a
    "calm" answer), and the set its prompt lists (RAVDESS classes=7: seven classes, no calm)."""
    from emoreason.cot.pipeline import CoTConfig, _labels_for_prompt
    from emoreason.datasets.adapters import label_map_of
    from emoreason.evaluation.benchmarks import available_benchmarks

    for name in available_benchmarks():
        spec = load_benchmark(name)
        if spec.label_set is not None:
            assert label_map_of(spec.dataset_format, spec.dataset_options) == spec.label_set, name
    seven = _labels_for_prompt(CoTConfig(dataset_format="ravdess", dataset_options={"classes": 7}))
    assert seven == list(dataset_label_set("ravdess7")) and "calm" not in seven


def test_an_original_clip_without_a_track_is_heard_as_silence_naming_that_file(tmp_path, caplog):
    from emoreason.audio.modalities import audio_source, with_modalities
    from emoreason.evaluation.backends import hearing
    from emoreason.video import load_media, write_video

    dfew_face_crops_with_originals(tmp_path)
    original = tmp_path / "Clip" / "original" / "00006.mp4"
    write_video(load_frames(original, FramePolicy(nframes=16), resize=False).frames, original, fps=8)  # no audio
    media = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1)}["dfew-00006"].media
    frames, audio = with_modalities(load_media(media, FramePolicy(nframes=16)), "audio+video",
                                    path=audio_source(media))
    with caplog.at_level("WARNING"):
        assert hearing(frames, audio, "audio+video", "dfew-00006", audio_source(media)) == {"heard": "silence"}
    assert any("dfew-00006" in m and str(original) in m and "silence" in m for m in caplog.messages)


def test_an_endpoint_is_sent_the_face_crops_with_the_original_clips_audio(tmp_path, tiny_omni_dir):
    """Evaluating a served Omni model on DFEW's face crops: each request carries the crops inline (timed on the
    original clip) and the original clip's audio as an ``audio_url`` part with use_audio_in_video; the crop with no
    original is sent silence of its duration. (Real vLLM decoding of such requests: tests/test_serving_omni.py.)"""
    import base64
    import struct

    from emoreason.evaluation.backends import EndpointBackend
    from emoreason.evaluation.runner import prompt_labels

    from openai_stub import StubServer

    dfew_face_crops_with_originals(tmp_path / "DFEW")
    spec = load_benchmark("dfew", ["frames.max_frames=4"])
    records = {r.id: r for r in benchmark_records(spec, str(tmp_path / "DFEW"), 1)}
    with StubServer(lambda messages: ("ok", "<answer>happy</answer>"), root=str(tiny_omni_dir)) as server:
        backend = EndpointBackend({"base_url": server.base_url, "retries": 0}, spec.frames, prompt_labels(spec),
                                  spec.style, media_dir=str(tmp_path / "DFEW"))
        assert backend.modalities == "audio+video"
        results = backend.predict([records["dfew-00006"], records["dfew-00012"]])
        bodies = list(server.bodies)
    assert [error for _, error in results] == [None, None]
    seconds = []
    for body in bodies:
        parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
        video = next(p for p in parts if p["type"] == "video_url")["video_url"]["url"]
        assert video.startswith("data:")  # inline frames, not the crop folder or a file the server samples
        wav = base64.b64decode(next(p for p in parts if p["type"] == "audio_url")["audio_url"]["url"].split(",")[1])
        rate = struct.unpack("<I", wav[24:28])[0]
        seconds.append((len(wav) - 44) / 4 / rate)
        assert body["mm_processor_kwargs"] == {"use_audio_in_video": True}
    heard, silent = sorted(seconds, reverse=True)  # requests go concurrently: in either order
    assert abs(heard - 2.0) < 0.1 and abs(silent - 0.64) < 0.05  # the original's track; the crops' 16 frames at 25
    assert backend.heard["dfew-00006"]["source"] == records["dfew-00006"].media["audio_path"]
    assert backend.heard["dfew-00012"] == {"heard": "silence"}
