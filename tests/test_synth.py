"""SynthFACS: AUs move their own face region, monotone in intensity, deterministic, split by identity,
decodable with decord and PyAV, and resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emoreason.synth import (
    RENDERED_AUS,
    ClipSpec,
    Identity,
    SynthConfig,
    build_dataset,
    generate_clip,
    plan,
    region_mask,
    render_face,
)
from emoreason.video import FramePolicy, load_frames

FACS_REQUIRED = {1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43, 45}


def test_renders_every_required_au():
    assert set(RENDERED_AUS) >= FACS_REQUIRED


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_au_changes_its_region_only_and_grows_with_intensity(seed):
    identity = Identity.sample(seed, np.random.default_rng(seed))
    neutral = render_face(identity, {}).astype(int)
    for au in RENDERED_AUS:
        on = render_face(identity, {au: 5.0}).astype(int)
        changed = np.abs(on - neutral).max(-1) > 8
        inside = region_mask(identity, au)
        assert changed[inside].sum() > 30, f"AU{au} barely changes its region"
        assert changed[~inside].sum() == 0, f"AU{au} changes pixels outside its region"
        effect = [np.abs(render_face(identity, {au: float(i)}).astype(int) - neutral).sum() for i in range(6)]
        assert all(a < b for a, b in zip(effect, effect[1:], strict=False)), f"AU{au} not monotone: {effect}"


def test_aus_are_distinguishable_from_each_other():
    identity = Identity.sample(0, np.random.default_rng(0))
    frames = {au: render_face(identity, {au: 5.0}).astype(int) for au in RENDERED_AUS}
    for a in RENDERED_AUS:
        for b in RENDERED_AUS:
            if a < b and {a, b} != {43, 45}:  # a blink is an eye closure, brief
                assert np.abs(frames[a] - frames[b]).sum() > 0, (a, b)


def test_clip_ground_truth_and_determinism():
    identity = Identity.sample(0, np.random.default_rng(0))
    spec = ClipSpec(0, "c0", "happiness", identity, "train", seed=11, frames=16, size=112, difficulty="easy")
    frames, truth = generate_clip(spec)
    again, truth2 = generate_clip(spec)
    assert np.array_equal(frames, again) and truth == truth2
    assert frames.shape == (16, 112, 112, 3)
    assert 12 in truth["expression_aus"] and set(truth["expression_aus"]) <= set(truth["aus"])
    for au, values in truth["au_frames"].items():
        assert len(values) == 16 and max(values) == pytest.approx(truth["au_intensity"][au])
    assert 0 <= truth["apex_frame"] < 16
    assert truth["valence"] > 0  # happiness sits on the positive side of the circumplex


def _read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dataset_splits_by_identity_decodes_and_loads(tmp_path):
    cfg = SynthConfig(out=str(tmp_path / "s"), clips=24, seed=5, frames=8, size=96, difficulty="hard",
                      emotions="all")
    manifest = build_dataset(cfg, workers=1, progress=False)
    records = _read_manifest(manifest)
    assert len(records) == 24 and len({r["id"] for r in records}) == 24
    subjects: dict[str, set[str]] = {}
    for r in records:
        subjects.setdefault(r["split"], set()).add(r["subject"])
    assert set(subjects) <= {"train", "val", "test"} and len(subjects) >= 2
    splits = list(subjects.values())
    for i in range(len(splits)):
        for j in range(i + 1, len(splits)):
            assert not splits[i] & splits[j], "a synthetic subject appears in two splits"
    for r in records[:6]:
        path = manifest.parent / r["media"]["path"]
        for backend in ("decord", "pyav"):
            loaded = load_frames(path, FramePolicy(nframes=8, min_pixels=32 * 32), backend=backend, resize=False)
            assert loaded.total_frames == 8 and loaded.frames.shape == (8, 96, 96, 3)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(manifest), split="train")
    assert len(ds) == 24 and set(ds[0]["aus"]) == set(records[0]["aus"])


def test_same_seed_same_dataset(tmp_path):
    a = build_dataset(SynthConfig(out=str(tmp_path / "a"), clips=6, seed=2, frames=4, size=64), 1, False)
    b = build_dataset(SynthConfig(out=str(tmp_path / "b"), clips=6, seed=2, frames=4, size=64), 1, False)
    assert a.read_text() == b.read_text()
    for r in _read_manifest(a):
        fa = load_frames(a.parent / r["media"]["path"], FramePolicy(nframes=4), resize=False).frames
        fb = load_frames(b.parent / r["media"]["path"], FramePolicy(nframes=4), resize=False).frames
        assert np.array_equal(fa, fb)


def test_settings_mismatch_on_resume_is_refused(tmp_path):
    build_dataset(SynthConfig(out=str(tmp_path), clips=2, frames=4, size=64), 1, False)
    with pytest.raises(ValueError, match="other settings"):
        build_dataset(SynthConfig(out=str(tmp_path), clips=2, frames=4, size=96), 1, False)


def test_kill_and_resume_is_complete_and_duplicate_free(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "emoreason", "synth", "--out", str(out), "--clips", "40", "--frames", "8",
            "--size", "96", "--seed", "9", "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 5:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "records").glob("*.json")))
    assert 0 < done_before < 40, "the kill should land mid-run"
    assert not (out / "manifest.jsonl").exists()
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    records = _read_manifest(out / "manifest.jsonl")
    ids = [r["id"] for r in records]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert not list(out.glob("clips/.*tmp*")) and len(list((out / "clips").glob("*.mp4"))) == 40
    reference = build_dataset(SynthConfig(out=str(tmp_path / "ref"), clips=40, frames=8, size=96, seed=9), 2, False)
    assert (out / "manifest.jsonl").read_text() == reference.read_text()


def test_plan_is_balanced_over_emotions():
    specs = plan(SynthConfig(out="unused", clips=16, emotions="basic"))
    counts: dict[str, int] = {}
    for s in specs:
        counts[s.emotion] = counts.get(s.emotion, 0) + 1
    assert len(counts) == 8 and set(counts.values()) == {2}
