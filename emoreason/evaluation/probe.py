"""Linear probe of a video-LLM's vision features: can the video tokens a model feeds its language model separate
the classes at all?

The diagnostic that tells a vision path that carries the label (the language model has not learnt to read it yet)
from one that does not (frames, resolution or the tower lose it): the model's own vision tower and merger encode
each clip's frames under a frame policy, exactly the tokens the language model receives; the tokens are
mean-pooled per clip and a multinomial logistic regression is fitted on the training clips and scored on held-out
clips (the linear-probe protocol of representation learning: Alain & Bengio 2016, "Understanding intermediate
layers using linear classifier probes"; CLIP, Radford et al. 2021, §3.2). Accuracy comes with its Wilson 95 % CI.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def vision_features(model_dir: str | Path, media: Sequence[str | Path], policy, batch_size: int = 16,
                    pool: str = "mean") -> np.ndarray:
    """Merger outputs (the video tokens' embeddings) per clip: ``mean``-pooled, shape (clips, text width), or
    ``flat`` (every token in order, what attention can read position by position; clips of one frame policy and
    size give the same token count), shape (clips, tokens x text width)."""
    if pool not in ("mean", "flat"):
        raise ValueError(f"pool must be mean or flat, got {pool!r}")
    import torch

    from emoreason.inference import encode_batch
    from emoreason.models import load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import load_frames

    model, processor = load_model_and_processor(model_dir, device="cpu")
    model.eval()
    pooled = []
    for start in range(0, len(media), batch_size):
        paths = [str(p) for p in media[start:start + batch_size]]
        frames = [load_frames(p, policy) for p in paths]
        inputs = encode_batch(processor, [build_messages(p, "video") for p in paths], frames)
        with torch.no_grad():
            out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        pooled.extend((t.float().mean(0) if pool == "mean" else t.float().flatten()).numpy() for t in out.pooler_output)
    return np.stack(pooled)


def linear_probe(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str],
                 weight_decay: float = 1e-3, steps: int = 200) -> dict:
    """Multinomial logistic regression (L-BFGS, L2) on standardised features; held-out accuracy and its CI."""
    import torch

    from emoreason.evaluation.significance import wilson_interval

    classes = sorted(set(train_y))
    index = {c: i for i, c in enumerate(classes)}
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs = torch.tensor((train_x - mean) / std, dtype=torch.float32)
    ys = torch.tensor([index[c] for c in train_y])
    head = torch.nn.Linear(xs.shape[1], len(classes))
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(xs), ys) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_acc = float((head(xs).argmax(1) == ys).float().mean())
        pred = head(torch.tensor((test_x - mean) / std, dtype=torch.float32)).argmax(1).tolist()
    correct = sum(classes[p] == y for p, y in zip(pred, test_y, strict=True))
    low, high = wilson_interval(correct, len(test_y))
    return {"classes": len(classes), "train_n": len(train_y), "test_n": len(test_y), "train_accuracy": train_acc,
            "test_accuracy": correct / len(test_y), "test_ci95": [low, high], "chance": 1 / len(classes)}


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


# bump when vision_features or linear_probe change what they compute: older cached results are then not reused
PROBE_VERSION = 1


def probe_key(model_dir: str | Path, train: Sequence[tuple[str | Path, str]], test: Sequence[tuple[str | Path, str]],
              policy, pool: str, weight_decay: float, steps: int = 200) -> dict:
    """Everything a probe's result depends on: the model's files (path, size, mtime: weights written again in the
    same directory are new weights), each clip (the same stamp) and its label, in order, the frame policy, the
    pooling, the probe's regularisation and optimiser steps, and the probe code's version."""
    model_dir = Path(model_dir)
    return {"version": PROBE_VERSION, "steps": steps,
            "model": [_file_stamp(p) for p in sorted(model_dir.iterdir()) if p.is_file()],
            "train": [[*_file_stamp(Path(m)), label] for m, label in train],
            "test": [[*_file_stamp(Path(m)), label] for m, label in test],
            "frame_policy": asdict(policy), "pool": pool, "weight_decay": weight_decay}


def cached_probe(cache_dir: str | Path, model_dir: str | Path, train: Sequence[tuple[str | Path, str]],
                 test: Sequence[tuple[str | Path, str]], policy, pool: str = "flat",
                 weight_decay: float = 1e-3, steps: int = 200) -> dict:
    """``linear_probe`` on ``vision_features`` of (clip, label) pairs, cached in ``cache_dir`` under a digest of
    ``probe_key``: another model state, dataset, split, frame policy or pooling is another probe. The result
    names the frame policy and pooling it was computed with."""
    key = probe_key(model_dir, train, test, policy, pool, weight_decay, steps)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"vision_probe-{digest}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["result"]
    feats = {name: vision_features(model_dir, [m for m, _ in pairs], policy, pool=pool)
             for name, pairs in (("train", train), ("test", test))}
    result = linear_probe(feats["train"], [label for _, label in train], feats["test"], [label for _, label in test],
                          weight_decay=weight_decay, steps=steps)
    result.update(frame_policy=asdict(policy), pool=pool)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": result}, indent=2) + "\n")
    tmp.replace(cache)  # a killed run leaves no half-written cache
    return result
