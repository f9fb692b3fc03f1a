"""emoreason.video: backends agree, the qwen-vl-utils policy holds, bad inputs raise typed errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emoreason.video import (
    CorruptMediaError,
    EmptyMediaError,
    FramePolicy,
    MediaError,
    MissingMediaError,
    load_frames,
    smart_resize,
    write_video,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = (np.random.default_rng(1).random((40, 96, 128, 3)) * 255).astype(np.uint8)
    return write_video(frames, tmp_path_factory.mktemp("v") / "clip.mp4", fps=10)


def test_decord_and_pyav_agree(clip):
    policy = FramePolicy(fps=2.0, min_pixels=32 * 32)
    a = load_frames(clip, policy, backend="decord")
    b = load_frames(clip, policy, backend="pyav")
    assert a.backend == "decord" and b.backend == "pyav"
    assert a.total_frames == b.total_frames == 40
    assert a.indices == b.indices and a.timestamps == b.timestamps
    assert len(a.indices) == 8  # 4 s at 2 fps
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2.0


def test_policy_nframes_even_and_bounds(clip):
    # rounded to a multiple of 2 with round(), as qwen-vl-utils does (5 → 4, 7 → 8)
    assert len(load_frames(clip, FramePolicy(nframes=5, min_pixels=32 * 32)).indices) == 4
    assert len(load_frames(clip, FramePolicy(nframes=7, min_pixels=32 * 32)).indices) == 8
    assert len(load_frames(clip, FramePolicy(fps=30.0, max_frames=12, min_pixels=32 * 32)).indices) == 12
    few = load_frames(clip, FramePolicy(fps=0.1, min_frames=4, min_pixels=32 * 32))
    assert len(few.indices) == 4 and few.indices[0] == 0 and few.indices[-1] == 39
    # max_frames below the default min_frames (4) is the cap, as in qwen-vl-utils (it took every frame before)
    two = load_frames(clip, FramePolicy(fps=2.0, max_frames=2, min_pixels=32 * 32))
    assert two.indices == [0, 39]
    assert FramePolicy(fps=2.0, min_frames=4).num_frames(3, 8.0) == 2  # a clip shorter than min_frames: all it has
    loaded = load_frames(clip, FramePolicy(nframes=4, factor=28, min_pixels=56 * 56, max_pixels=112 * 112))
    t, h, w, _ = loaded.frames.shape
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 112 * 112
    budget = load_frames(clip, FramePolicy(nframes=8, factor=28, min_pixels=28 * 28, max_pixels=10**6,
                                           total_pixels=8 * 56 * 56))
    assert budget.frames.shape[1] * budget.frames.shape[2] <= 2 * 56 * 56 * 1.1


def test_smart_resize_matches_qwen_rules():
    assert smart_resize(224, 224, 28, 56 * 56, 224 * 224) == (224, 224)
    h, w = smart_resize(1080, 1920, 28, 56 * 56, 768 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 768 * 28 * 28 and abs(w / h - 16 / 9) < 0.1
    assert smart_resize(10, 10, 28, 56 * 56, 10**6) == (56, 56)
    with pytest.raises(ValueError):
        smart_resize(1, 500, 28)


def test_frame_folder_image_and_image_list(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(np.full((48, 64, 3), i * 30, np.uint8)).save(folder / f"{i:05d}.jpg")
    loaded = load_frames(folder, FramePolicy(nframes=4, min_pixels=28 * 28), resize=False)
    assert loaded.kind == "frames" and loaded.total_frames == 7 and loaded.indices == [0, 2, 4, 6]
    single = load_frames(folder / "00003.jpg")
    assert single.kind == "image" and single.frames.shape[0] == 1
    listed = load_frames([folder / "00000.jpg", folder / "00001.jpg", folder / "00002.jpg"],
                         FramePolicy(nframes=2, min_pixels=28 * 28), resize=False)
    assert listed.frames.shape[0] == 2


def test_bad_inputs_raise_typed_errors_naming_the_file(tmp_path, clip):
    with pytest.raises(MissingMediaError, match="nope.mp4"):
        load_frames(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyMediaError, match="empty.mp4"):
        load_frames(empty)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    with pytest.raises(MediaError, match="truncated.mp4"):
        load_frames(truncated)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(CorruptMediaError, match="junk.mp4"):
        load_frames(junk)
    (tmp_path / "no_frames").mkdir()
    with pytest.raises(EmptyMediaError, match="no_frames"):
        load_frames(tmp_path / "no_frames")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(CorruptMediaError, match="broken.jpg"):
        load_frames(broken)


def test_batch_callers_record_and_continue(tmp_path, clip):
    sources = [clip, tmp_path / "missing.mp4", clip]
    loaded, failed = [], []
    for source in sources:
        try:
            loaded.append(load_frames(source, FramePolicy(nframes=2, min_pixels=32 * 32)))
        except MediaError as exc:
            failed.append(exc.path)
    assert len(loaded) == 2 and failed == [str(tmp_path / "missing.mp4")]
