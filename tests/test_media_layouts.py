"""Media layouts as real copies hold them: every DFEW variant, a media_root override, a missing clip reported
with every path tried, frame folders in natural order, and each dataset's frame rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoreason.datasets import load_records
from emoreason.video import FramePolicy, load_frames, load_media

from dataset_fixtures import DFEW_VARIANTS, FIXTURES, dfew_variant


@pytest.mark.parametrize("variant", DFEW_VARIANTS)
def test_every_dfew_layout_is_found(tmp_path, variant):
    expected = dfew_variant(tmp_path, variant)
    records = load_records("dfew", tmp_path, split="test", fold=1)
    assert not records.problems, [str(p) for p in records.problems]
    found = {r.id: (r.media["type"], Path(r.media["path"]).relative_to(tmp_path).as_posix()) for r in records}
    assert found == expected
    for record in records:
        loaded = load_media(record.media, FramePolicy(fps=2.0, max_frames=4, min_pixels=784, max_pixels=3136))
        assert len(loaded.frames) >= 2
    if variant == "clip_224x224_16f":  # time-normalised: its own (assumed) rate, not the full-rate folders'
        assert {r.media["fps"] for r in records} == {8.0}
    elif expected["dfew-00006"][0] == "frames":
        assert {r.media["fps"] for r in records} == {25.0}


def test_layouts_are_tried_in_the_documented_order(tmp_path):
    dfew_variant(tmp_path, "clip_224x224_16f")
    dfew_variant(tmp_path, "original")
    records = load_records("dfew", tmp_path, split="test", fold=1)
    assert {r.media["layout"] for r in records} == {"original"}  # full temporal resolution before 16 frames
    dfew_variant(tmp_path, "jpg_256")
    records = load_records("dfew", tmp_path, split="test", fold=1)
    assert {r.media["layout"] for r in records} == {"jpg_256"}
    forced = load_records("dfew", tmp_path, split="test", fold=1, layout="clip_224x224_16f")
    assert {r.media["layout"] for r in forced} == {"clip_224x224_16f"}


def test_media_root_override(tmp_path):
    labels, media = tmp_path / "labels", tmp_path / "disk2"
    dfew_variant(media, "jpg_256")
    (labels / "EmoLabel_DataSplit").parent.mkdir(parents=True)
    (media / "EmoLabel_DataSplit").rename(labels / "EmoLabel_DataSplit")
    assert len(load_records("dfew", labels, split="test", fold=1).problems) == 3  # clips are elsewhere
    for media_root in (media, media / "Clip" / "jpg_256"):  # the copy's root, or the layout folder itself
        records = load_records("dfew", labels, split="test", fold=1, media_root=str(media_root))
        assert len(records) == 3 and not records.problems
        assert all(Path(r.media["path"]).is_relative_to(media / "Clip" / "jpg_256") for r in records)


def test_a_missing_clip_names_every_path_tried(tmp_path):
    dfew_variant(tmp_path, "original")
    (tmp_path / "Clip" / "original" / "00007.mp4").unlink()
    records = load_records("dfew", tmp_path, split="test", fold=1)
    assert len(records) == 2
    (problem,) = records.problems
    assert problem.kind == "missing_media" and problem.sample_id == "dfew-00007"
    for tried in ("Clip/clip_224x224/00007", "Clip/jpg_256/00007", "Clip/clip_224x224_avi/00007.avi",
                  "Clip/clip_224x224_avi/7.avi", "Clip/original/00007.mp4", "Clip/original/7.mp4",
                  "Clip/clip_224x224_16f/00007"):
        assert str(tmp_path / tried) in problem.reason, tried


def _numbered_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for value, name in enumerate(names, start=1):  # frame k is a flat image of grey level 10·k
        Image.fromarray(np.full((28, 28, 3), 10 * value, np.uint8)).save(folder / name)


def test_frame_folders_are_read_in_natural_order_at_the_given_rate(tmp_path):
    _numbered_frames(tmp_path / "clip", [f"{i}.png" for i in range(1, 13)])  # 1.png … 12.png, unpadded
    loaded = load_frames(tmp_path / "clip", FramePolicy(nframes=12, min_pixels=784, max_pixels=784), fps=30.0)
    assert [int(f[0, 0, 0]) for f in loaded.frames] == [10 * k for k in range(1, 13)]  # not 1, 10, 11, 12, 2, …
    assert loaded.source_fps == 30.0 and loaded.timestamps[1] == pytest.approx(1 / 30)
    window = load_frames(tmp_path / "clip", FramePolicy(min_pixels=784, max_pixels=784), fps=30.0,
                         indices=[8, 10, 10, 11])
    assert [int(f[0, 0, 0]) for f in window.frames] == [90, 110, 110, 120] and window.indices == [8, 10, 10, 11]


@pytest.mark.parametrize(("name", "fps"), [("ckplus", 30.0), ("affwild2", 30.0), ("bp4d", 25.0)])
def test_frame_folder_rates_come_from_each_dataset(tmp_path, name, fps):
    FIXTURES[name](tmp_path)
    rates = {r.media.get("fps") for r in load_records(name, tmp_path) if r.media["type"] == "frames"}
    assert rates == {fps}


def test_au_estimator_reads_frame_folders_in_natural_order(tmp_path):
    from emoreason.au.media import open_media

    _numbered_frames(tmp_path / "clip", [f"{i}.png" for i in range(1, 13)])
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    stream = open_media(tmp_path / "clip")
    assert [int(f[0, 0, 0]) for f in stream.frames] == [10 * k for k in range(1, 13)]  # not 1, 10, 11, 12, 2, …
    assert stream.meta["skipped"] == ["notes.txt"]
