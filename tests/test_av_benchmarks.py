"""Audio-visual benchmarks in their distributed layouts (CREMA-D, RAVDESS): labels from the file names,
actor-independent folds, and clips whose audio reads at the processor's rate whatever their container, rate and
channels."""

from __future__ import annotations

from collections import Counter

from emoreason.audio import SAMPLE_RATE, audio_for_frames, probe_audio
from emoreason.datasets import load_records
from emoreason.evaluation.benchmarks import load_benchmark
from emoreason.evaluation.runner import benchmark_records
from emoreason.knowledge import dataset_label_set
from emoreason.video import FramePolicy, load_frames

from dataset_fixtures import FIXTURES


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
