"""bench/tower_probe.py: the vision tower trained alone on pooled video tokens (the learning check's diagnostic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_support import load_bench


@pytest.mark.slow
def test_tower_probe_learns_a_visible_label_through_the_models_own_tower(tmp_path, tiny_model_dirs):
    """bench/tower_probe.py trains the tower + merger on pooled video tokens: on clips whose colour is the label
    (a positive control), held-out accuracy must reach near 100 % — it fails if clips, labels and pooled tokens
    are misaligned, or if the tower's gradient does not flow."""
    from emoreason.synth import SynthConfig, build_dataset
    from emoreason.video import write_video

    synth = tmp_path / "synth"
    build_dataset(SynthConfig(out=str(synth), clips=64, frames=4, size=56, difficulty="easy", identities=16),
                  workers=1, progress=False)
    records = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    labels = sorted({r["emotion"] for r in records})
    rng = np.random.default_rng(0)
    for record in records:  # every clip becomes a flat colour that encodes its label, plus noise
        hue = labels.index(record["emotion"]) / len(labels)
        colour = np.array([255 * hue, 255 * (1 - hue), 128 + 100 * np.sin(6.28 * hue)], dtype=np.float32)
        frames = colour + rng.normal(0, 6, (4, 56, 56, 3))
        write_video(np.clip(frames, 0, 255).astype(np.uint8), synth / record["media"]["path"], fps=8)
    out = tmp_path / "history.json"
    assert load_bench("tower_probe").main(["--model", str(tiny_model_dirs["qwen2_5_vl"]), "--synth", str(synth),
                                           "--frames", "{max_frames: 4, min_pixels: 3136, max_pixels: 3136}",
                                           "--epochs", "8", "--lr", "3e-3", "--batch-size", "8",
                                           "--au-weight", "1", "--out", str(out)]) == 0
    history = json.loads(out.read_text())["history"]
    test_n = len((synth / "test.jsonl").read_text().splitlines())
    assert test_n >= 6 and history[-1]["test_accuracy"] >= 0.8, history[-1]
    assert history[0]["loss"] > history[-1]["loss"]
