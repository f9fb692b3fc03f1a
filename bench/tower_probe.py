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

The training loop is the product's vision warm-up (``emoreason.training.vision_warmup.train_tower``; the stage a
user runs is ``emoreason vision-warmup`` on a synth-cot dataset); this script keeps the diagnostic around it: the
SynthFACS manifest's splits and the test split's accuracy per epoch. ``--save DIR`` keeps the model with its
trained tower (the last epoch), as the stage saves it.

    python bench/tower_probe.py --model runs/learning/model --synth runs/learning/synthfacs \
        --frames '{fps: 4.0, max_frames: 2, min_pixels: 3136, max_pixels: 3136}' --epochs 30 --au-weight 3
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def load_split(synth: Path, split: str) -> list[dict]:
    path = synth / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {split} split (a SynthFACS directory from `emoreason synth`)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def encode_clips(processor, synth: Path, rows: list[dict], policy) -> list:
    """What the processor hands the tower in SFT, per clip (``emoreason.training.vision_warmup.Encoded``)."""
    from emoreason.training.vision_warmup import encode_clip
    from emoreason.video import load_frames

    return [encode_clip(processor, "video", load_frames(str(synth / row["media"]["path"]), policy)) for row in rows]


def main(argv: list[str] | None = None) -> int:
    import torch
    import yaml

    from emoreason.models import frame_policy_for, load_model_and_processor
    from emoreason.training.vision_warmup import save_warm_model, train_tower, vision_owner

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
    model, processor = load_model_and_processor(args.model)  # CUDA when there is one
    policy = replace(frame_policy_for(processor), **(yaml.safe_load(args.frames) or {}))
    clips = {split: encode_clips(processor, synth, rows[split], policy) for split in rows}
    tokens = int(clips["train"][0].grid.prod()) // vision_owner(model).visual.spatial_merge_size ** 2
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
        save_warm_model(model, processor, policy, Path(args.model), Path(args.save))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "classes": classes, "aus": aus,
                                              "video_tokens": tokens, "history": history,
                                              "selected_epoch": selected["epoch"]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
