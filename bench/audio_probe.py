"""How much emotion a SynthFACS-AV voice track carries before any model: a linear probe (``emoreason.evaluation.
probe.linear_probe``) on each clip's log-mel statistics (per-bin mean and std over time), computed by the
model's own feature extractor — what the Omni audio encoder receives. Fitted on the train split, scored on the
identity-disjoint test split (Wilson 95 % CI). The reference bar for the audio-only learning check
(``docs/benchmarks.md``): the signal a trained model could reach from the voice alone.

    python bench/audio_probe.py --model runs/demo/tiny-qwen2_5_omni --synth runs/demo/synthfacs-av
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def log_mel_stats(feature_extractor, clip: Path) -> np.ndarray:
    """Per-bin mean and std over the clip's (unpadded) log-mel frames."""
    from emoreason.audio import read_audio

    audio = read_audio(clip)
    feats = feature_extractor(audio.waveform, sampling_rate=audio.sample_rate, return_tensors="np",
                              return_attention_mask=True)
    mel = feats["input_features"][0][:, : int(feats["attention_mask"][0].sum())]
    return np.concatenate([mel.mean(1), mel.std(1)])


def main() -> None:
    from transformers import AutoProcessor

    from emoreason.evaluation.probe import linear_probe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an Omni model directory (its feature extractor)")
    parser.add_argument("--synth", required=True, help="a SynthFACS-AV directory (`emoreason synth --audio`)")
    args = parser.parse_args()
    extractor = AutoProcessor.from_pretrained(args.model).feature_extractor
    root = Path(args.synth)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    features = {"train": ([], []), "test": ([], [])}
    for row in rows:
        if row["split"] in features:
            xs, ys = features[row["split"]]
            xs.append(log_mel_stats(extractor, root / row["media"]["path"]))
            ys.append(row["emotion"])
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    result = linear_probe(np.array(train_x), train_y, np.array(test_x), test_y)
    most_frequent = max(test_y.count(c) for c in set(test_y)) / len(test_y)
    print(json.dumps({**{k: v for k, v in result.items() if k != "confusion"},
                      "chance_bar": max(result["chance"], most_frequent)}, default=str))


if __name__ == "__main__":
    main()
