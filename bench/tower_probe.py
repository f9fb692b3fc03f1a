"""Can the model's own vision tower learn SynthFACS expressions at all, without the language model?

The diagnostic between the two learning-check failures (docs/benchmarks.md, "Where the signal stops"): a linear
probe (``emoreason.evaluation.probe``) says whether a *frozen* tower's video tokens carry the class; SFT says
whether the whole model learns it. This trains the tower and its merger — the exact modules and inputs SFT
trains, frames under the same policy through the model's own processor — with a linear head on the clip's
mean-pooled video tokens (cross-entropy on the emotion), optionally plus a multi-label head on the clip's
ground-truth AUs (binary cross-entropy; the AU-perception curriculum's signal, VidEmo / Emotion-LLaMA's
multi-task rows, without the text). Accuracy on the identity-disjoint validation and test splits per epoch, with
Wilson 95 % CIs; the summary reports the last epoch and the epoch the validation split selects (never the test
split's best). If this learns and SFT does not, the language model is not reading the tower; if this stays
low, the faces are too hard for a randomly initialised tower at this data size.

``--save DIR`` keeps the model with its trained tower (the last epoch): a vision warm-up stage on the training
split's labels and AUs that SFT can start from (docs/benchmarks.md: SFT from it reads the faces).

    python bench/tower_probe.py --model runs/learning/model --synth runs/learning/synthfacs \
        --frames '{fps: 4.0, max_frames: 2, min_pixels: 3136, max_pixels: 3136}' --epochs 30 --au-weight 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path


def load_split(synth: Path, split: str) -> list[dict]:
    path = synth / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {split} split (a SynthFACS directory from `emoreason synth`)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def encode_clips(processor, synth: Path, rows: list[dict], policy) -> list[tuple]:
    """(pixel_values_videos, video_grid_thw) per clip: what the processor hands the tower in SFT."""
    from emoreason.inference import encode_batch
    from emoreason.reasoning import build_messages
    from emoreason.video import load_frames

    encoded = []
    for row in rows:
        path = str(synth / row["media"]["path"])
        inputs = encode_batch(processor, [build_messages(path, "video")], [load_frames(path, policy)])
        encoded.append((inputs["pixel_values_videos"], inputs["video_grid_thw"]))
    return encoded


def train_tower(model, train: list[tuple], train_y, train_aus, held_out: dict[str, tuple[list[tuple], object]], *,
                epochs: int, lr: float, batch_size: int, au_weight: float, seed: int) -> list[dict]:
    """Adam on tower + merger + heads; accuracy on each held-out split (name → (clips, labels)) after each epoch."""
    import torch

    from emoreason.evaluation.significance import wilson_interval

    torch.manual_seed(seed)
    visual = model.model.visual
    width = model.config.text_config.hidden_size
    head = torch.nn.Linear(width, int(train_y.max()) + 1)
    au_head = torch.nn.Linear(width, train_aus.shape[1])
    optimizer = torch.optim.AdamW([*visual.parameters(), *head.parameters(), *au_head.parameters()], lr=lr,
                                  weight_decay=0.0)

    def pooled(clips: list[tuple]):
        # the video tokens the language model receives, per clip (as emoreason.evaluation.probe.vision_features)
        out = model.model.get_video_features(torch.cat([c[0] for c in clips]), torch.cat([c[1] for c in clips]))
        return torch.stack([t.mean(0) for t in out.pooler_output])

    history = []
    for epoch in range(1, epochs + 1):
        started, total, correct = time.time(), 0.0, 0
        visual.train()
        order = torch.randperm(len(train)).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            features = pooled([train[i] for i in idx])
            logits = head(features)
            loss = torch.nn.functional.cross_entropy(logits, train_y[idx])
            if au_weight:
                loss = loss + au_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                    au_head(features), train_aus[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == train_y[idx]).sum())
        visual.eval()
        entry = {"epoch": epoch, "loss": total / len(train), "train_accuracy": correct / len(train)}
        line = f"epoch {epoch}: loss {total / len(train):.3f}  train {100 * correct / len(train):.1f} %"
        for split, (clips, labels) in held_out.items():
            with torch.no_grad():
                predicted = torch.cat([head(pooled(clips[s:s + 64])).argmax(1) for s in range(0, len(clips), 64)])
            hits = int((predicted == labels).sum())
            low, high = wilson_interval(hits, len(clips))
            entry.update({f"{split}_accuracy": hits / len(clips), f"{split}_ci95": [low, high]})
            line += f"  {split} {100 * hits / len(clips):.1f} % [{100 * low:.1f}–{100 * high:.1f}]"
        history.append({**entry, "seconds": time.time() - started})
        print(line, flush=True)
    return history


def main(argv: list[str] | None = None) -> int:
    import torch
    import yaml

    from emoreason.models import frame_policy_for, load_model_and_processor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model directory (e.g. `emoreason tiny-model --out`)")
    parser.add_argument("--synth", required=True, help="a SynthFACS directory (`emoreason synth --out`)")
    parser.add_argument("--frames", default="{}", help="frame-policy overrides as YAML (eval's frames= syntax)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--au-weight", type=float, default=0.0, help="weight of the AU multi-label loss (0: off)")
    parser.add_argument("--train-clips", type=int, default=None, help="first N training clips (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the per-epoch history as JSON here")
    parser.add_argument("--save", default=None, help="save the model with its trained tower here (a checkpoint SFT "
                        "can start from: does the language model read a tower that has learned the faces?)")
    args = parser.parse_args(argv)

    synth = Path(args.synth)
    rows = {"train": load_split(synth, "train")[:args.train_clips], "val": load_split(synth, "val"),
            "test": load_split(synth, "test")}
    classes = sorted({r["emotion"] for r in rows["train"]})
    for split in ("val", "test"):
        unseen = sorted({r["emotion"] for r in rows[split]} - set(classes))
        if unseen:
            raise SystemExit(f"{synth}: {split} classes {unseen} have no training clip")
    aus = sorted({int(a) for r in rows["train"] for a in r.get("aus") or []})
    model, processor = load_model_and_processor(args.model, device="cpu")
    policy = replace(frame_policy_for(processor), **(yaml.safe_load(args.frames) or {}))
    clips = {split: encode_clips(processor, synth, rows[split], policy) for split in rows}
    tokens = int(clips["train"][0][1].prod()) // model.model.visual.spatial_merge_size ** 2
    print(f"{len(rows['train'])} train / {len(rows['val'])} val / {len(rows['test'])} test clips, "
          f"{len(classes)} classes, {tokens} video tokens per clip, AU head over {len(aus)} AUs "
          f"(weight {args.au_weight})", flush=True)
    labels = {split: torch.tensor([classes.index(r["emotion"]) for r in rows[split]]) for split in rows}
    au_targets = torch.tensor([[float(a in {int(x) for x in r.get("aus") or []}) for a in aus]
                               for r in rows["train"]])
    held_out = {split: (clips[split], labels[split]) for split in ("val", "test")}
    history = train_tower(model, clips["train"], labels["train"], au_targets, held_out, epochs=args.epochs,
                          lr=args.lr, batch_size=args.batch_size, au_weight=args.au_weight, seed=args.seed)
    selected = max(history, key=lambda h: h["val_accuracy"])  # model selection on validation, never on test
    print(f"test: last epoch {100 * history[-1]['test_accuracy']:.1f} %; at the validation-selected epoch "
          f"{selected['epoch']} {100 * selected['test_accuracy']:.1f} %; chance {100 / len(classes):.1f} %",
          flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        record = Path(args.model) / "emoreason_model.json"  # the embedded model's build record travels with it
        if record.is_file():
            shutil.copyfile(record, Path(args.save) / record.name)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "classes": classes, "aus": aus,
                                              "video_tokens": tokens, "history": history,
                                              "selected_epoch": selected["epoch"]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
