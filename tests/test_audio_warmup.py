"""bench/audio_warmup.py: the Omni audio encoder trained alone on pooled audio tokens (the audio warm-up stage)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from bench_support import load_bench


def _break_clips(synth: Path) -> tuple[str, str]:
    """The first training clip re-encoded without its audio track, the second cut to half its bytes (a truncated
    download): real files that do not encode, the first two of ``train.jsonl``."""
    import av
    import numpy as np

    from emoreason.video import write_video

    first, second = (synth / json.loads(line)["media"]["path"]
                     for line in (synth / "train.jsonl").read_text().splitlines()[:2])
    with av.open(str(first)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    write_video(frames, first)  # same frames, no audio argument: an mp4 with a video stream only
    data = second.read_bytes()
    second.write_bytes(data[:len(data) // 2])
    return str(first), str(second)


def test_audio_warmup_trains_only_the_audio_encoder_and_saves_a_model_sft_can_start_from(tmp_path, tiny_omni_dir,
                                                                                          caplog):
    """One epoch on a handful of SynthFACS-AV clips: the pooled tokens are per clip, the held-out splits are
    scored, only ``audio_tower`` parameters change, and the saved directory loads with its processor, in the
    composite layout vLLM serves, with its frame policy. A clip without an audio track and a truncated clip are
    skipped with a warning naming each file, listed in ``--out``, and the run goes on."""
    from emoreason.models import load_model_and_processor, saved_frame_policy
    from emoreason.models.omni import COMPOSITE_MODEL_TYPE
    from emoreason.synth import SynthConfig, build_dataset

    synth = tmp_path / "synth"
    build_dataset(SynthConfig(out=str(synth), clips=12, frames=4, size=56, audio=True, identities=6, seed=1),
                  workers=1, progress=False)
    seen = {json.loads(line)["emotion"] for line in (synth / "train.jsonl").read_text().splitlines()}
    for split in ("val", "test"):  # a dozen clips cannot cover 8 classes: score held-out clips of trained classes
        path = synth / f"{split}.jsonl"
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["emotion"] in seen]
        assert kept, split
        path.write_text("".join(line + "\n" for line in kept))
    silent, truncated = _break_clips(synth)
    out, warm = tmp_path / "history.json", tmp_path / "warm"
    with caplog.at_level(logging.WARNING):
        assert load_bench("audio_warmup").main(["--model", str(tiny_omni_dir), "--synth", str(synth), "--frames",
                                                "{max_frames: 2}", "--epochs", "1", "--lr", "1e-2", "--batch-size",
                                                "4", "--out", str(out), "--save", str(warm)]) == 0
    result = json.loads(out.read_text())
    history = result["history"]
    assert len(history) == 1 and {"val_accuracy", "test_accuracy", "val_ci95", "test_ci95"} <= set(history[0])
    assert result["audio_tokens"] > 0
    skipped = {s["clip"]: s for s in result["skipped"]}
    assert set(skipped) == {silent, truncated}, skipped
    assert "no audio track" in skipped[silent]["reason"] and skipped[silent]["split"] == "train"
    assert skipped[truncated]["reason"]
    for path in (silent, truncated):
        assert any(path in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING), path

    assert json.loads((warm / "config.json").read_text())["model_type"] == COMPOSITE_MODEL_TYPE
    assert saved_frame_policy(warm)["max_frames"] == 2 and not (tmp_path / "warm.tmp").exists()
    trained, processor = load_model_and_processor(warm, device="cpu")
    assert processor.feature_extractor is not None and (warm / "emoreason_model.json").is_file()
    untrained, _ = load_model_and_processor(tiny_omni_dir, device="cpu")
    before = dict(untrained.named_parameters())
    changed = {n for n, p in trained.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".audio_tower." in f".{n}" for n in changed), sorted(changed)[:5]
    assert any(".proj." in n for n in changed)  # the projection to the language model's width trains too


def test_pooled_audio_tokens_are_one_row_per_clip_and_ignore_padding(tiny_omni_dir, tmp_path):
    """Clips of different lengths pooled together give each clip the same vector it gets alone: the padding that
    batches them is masked out, so a clip's pooled tokens never depend on its batch-mates."""
    from emoreason.models import load_model_and_processor

    bench = load_bench("audio_warmup")
    model, processor = load_model_and_processor(tiny_omni_dir, device="cpu")
    extractor = processor.feature_extractor
    rng = torch.Generator().manual_seed(0)
    clips = []
    for seconds in (1.0, 2.0):
        wave = torch.randn(int(16000 * seconds), generator=rng).numpy() * 0.1
        feats = extractor(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True,
                          padding="longest")
        clips.append((feats["input_features"], feats["attention_mask"]))
    model.eval()
    with torch.no_grad():
        together = bench.pooled_audio_tokens(model, clips)
        alone = torch.cat([bench.pooled_audio_tokens(model, [c]) for c in clips])
    assert together.shape == (2, model.config.text_config.hidden_size)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
