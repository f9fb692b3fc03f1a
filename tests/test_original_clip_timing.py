"""Frame folders timed on their original clip (DFEW's face crops, MAFW's frames): every model sees them on the
clip's time base, so the eval cache records it whatever the model hears; an original that cannot be read leaves the
frames on their own rate (one warning) instead of dropping the sample; the clip's duration is read once."""

from __future__ import annotations

import logging

import pytest

from emoreason.datasets import load_records
from emoreason.video import DEFAULT_FRAME_FOLDER_FPS, FramePolicy

from dataset_fixtures import dfew_face_crops_with_originals


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test is a run of its own for the one-warning-per-run rule."""
    import emoreason.audio.io as audio_io

    monkeypatch.setattr(audio_io, "_UNTIMED", set())


def test_video_only_cache_signature_names_the_clip_the_frames_are_timed_on(tmp_path):
    from emoreason.evaluation.runner import media_signature

    dfew_face_crops_with_originals(tmp_path)
    with_original = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1)}["dfew-00006"]
    without = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1, audio=False)}["dfew-00006"]
    assert media_signature(with_original) != media_signature(without)  # a video-only model: two time bases
    assert media_signature(with_original)["audio_layout"] == "original"
    assert "audio_layout" not in media_signature(without)


def test_an_unreadable_original_leaves_the_frames_on_their_own_rate_with_one_warning(tmp_path, caplog,
                                                                                     fresh_warnings):
    from emoreason.training.data import load_row_media
    from emoreason.video import load_media

    dfew_face_crops_with_originals(tmp_path)
    (tmp_path / "Clip" / "original" / "00006.mp4").write_bytes(b"not a video at all" * 64)
    (tmp_path / "Clip" / "original" / "7.mp4").write_bytes(b"\x00" * 512)
    records = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1)}
    with caplog.at_level(logging.WARNING):
        for clip in ("dfew-00006", "dfew-00007", "dfew-00006"):
            frames = load_media(records[clip].media, FramePolicy(nframes=16))
            assert frames.source_fps == DEFAULT_FRAME_FOLDER_FPS and "timed_by" not in frames.meta
            assert frames.indices == list(range(16))
        row = {"id": "dfew-00007", "media_type": "video", "video": records["dfew-00007"].media["path"],
               "audio_path": records["dfew-00007"].media["audio_path"]}
        frames = load_row_media(row, FramePolicy(nframes=16))
        assert frames.source_fps == DEFAULT_FRAME_FOLDER_FPS and "timed_by" not in frames.meta
    warned = [m for m in caplog.messages if "00006.mp4" in m or "7.mp4" in m]
    assert len(warned) == 1 and "own rate" in warned[0]


def test_the_originals_duration_is_read_once(tmp_path, monkeypatch):
    import av

    from emoreason.video import load_media

    dfew_face_crops_with_originals(tmp_path)
    media = {r.id: r for r in load_records("dfew", tmp_path, split="test", fold=1)}["dfew-00006"].media
    opened = []
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    for _ in range(3):  # three epochs
        assert load_media(media, FramePolicy(nframes=16)).source_fps == 8.0
    assert opened.count(media["audio_path"]) <= 1


def test_cot_shard_fingerprint_is_path_free_but_sees_the_originals(tmp_path, monkeypatch):
    """The same DFEW data under an absolute root, a relative one or moved keeps its CoT shards (no teacher call paid
    twice); gaining the original clips' audio still rebuilds them."""
    import shutil

    from emoreason.cot.pipeline import records_fingerprint

    dfew_face_crops_with_originals(tmp_path / "DFEW")
    absolute = load_records("dfew", tmp_path / "DFEW", split="test", fold=1)
    monkeypatch.chdir(tmp_path)
    relative = load_records("dfew", "DFEW", split="test", fold=1)
    shutil.copytree(tmp_path / "DFEW", tmp_path / "moved" / "DFEW")
    moved = load_records("dfew", tmp_path / "moved" / "DFEW", split="test", fold=1)
    assert absolute[0].media["path"] != moved[0].media["path"]
    assert records_fingerprint(list(absolute)) == records_fingerprint(list(relative)) == \
        records_fingerprint(list(moved))
    silent = load_records("dfew", tmp_path / "DFEW", split="test", fold=1, audio=False)
    assert records_fingerprint(list(silent)) != records_fingerprint(list(absolute))



def test_rows_cached_before_audio_layout_count_as_original_by_their_source():
    """Prediction rows cached before rows named the original's layout still count as heard from the original
    when their ``source`` is the record's ``audio_path``; a track read from the video itself does not."""
    from emoreason.evaluation.runner import audio_counts
    from emoreason.records import SampleRecord

    crops = SampleRecord("dfew-1", "dfew", {"type": "frames", "path": "/d/Clip/clip_224x224/00001",
                                            "audio_path": "/d/Clip/original/00001.mp4", "audio_layout": "original"})
    own = SampleRecord("mafw-2", "mafw", {"type": "video", "path": "/m/data/clips/00002.mp4"})
    old_rows = {"dfew-1": {"audio": {"heard": "track", "source": "/d/Clip/original/00001.mp4"}},
                "mafw-2": {"audio": {"heard": "track", "source": "/m/data/clips/00002.mp4"}}}
    counts = audio_counts([crops, own], old_rows, "audio+video")
    assert counts["heard_track"] == 2 and counts["from_original_video"] == 1
