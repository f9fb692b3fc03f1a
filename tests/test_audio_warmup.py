"""bench/audio_warmup.py: the Omni audio encoder trained alone on pooled audio tokens (the audio warm-up stage)."""

from __future__ import annotations

import json

import torch
from bench_support import load_bench


def test_audio_warmup_trains_only_the_audio_encoder_and_saves_a_model_sft_can_start_from(tmp_path, tiny_omni_dir):
    """One epoch on a handful of SynthFACS-AV clips: the pooled tokens are per clip, the held-out splits are
    scored, only ``audio_tower`` parameters change, and the saved directory loads with its processor."""
    from emoreason.models import load_model_and_processor
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
    out, warm = tmp_path / "history.json", tmp_path / "warm"
    assert load_bench("audio_warmup").main(["--model", str(tiny_omni_dir), "--synth", str(synth), "--frames",
                                            "{max_frames: 2}", "--epochs", "1", "--lr", "1e-2", "--batch-size",
                                            "4", "--out", str(out), "--save", str(warm)]) == 0
    history = json.loads(out.read_text())["history"]
    assert len(history) == 1 and {"val_accuracy", "test_accuracy", "val_ci95", "test_ci95"} <= set(history[0])
    assert json.loads(out.read_text())["audio_tokens"] > 0

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
