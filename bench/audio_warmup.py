"""An audio warm-up stage for the Omni thinker: train its audio encoder alone on SynthFACS-AV voices.

The audio counterpart of ``bench/tower_probe.py``'s vision warm-up (docs/benchmarks.md, "SFT above chance on
CPU"): the audio encoder (``audio_tower``, its projection to the language model's width included) is trained with
a linear emotion head on the clip's mean-pooled audio tokens — exactly the tokens the language model receives in
SFT: each clip encoded by the model's own processor with the face hidden (``modalities=audio``, the frame policy
timing the heard window, as the SFT collator does), pooled per clip from ``get_audio_features``. Cross-entropy
on the emotion; accuracy on the identity-disjoint validation and test splits per epoch with Wilson 95 % CIs.
``--save DIR`` keeps the whole model with the trained audio encoder (+ processor + build record): SFT starts
from it with the audio encoder at a low rate (``audio_learning_rate``).

    python bench/audio_warmup.py --model runs/demo/tiny-qwen2_5_omni --synth runs/demo/synthfacs-av \
        --frames '{fps: 4.0, max_frames: 2}' --epochs 10 --save runs/demo/audio-warmup
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_probe import load_split  # noqa: E402  (bench scripts are not a package)

# (input_features, feature_attention_mask) of one clip, as the processor hands them to the audio encoder
AudioInputs = tuple[torch.Tensor, torch.Tensor]


def encode_tracks(processor, synth: Path, rows: list[dict], policy) -> list[AudioInputs]:
    """Each clip's audio inputs as SFT with ``modalities=audio`` builds them: frames sampled under ``policy`` (they
    time the heard window), blanked, and the aligned track cut to the model's window, through the processor."""
    from emoreason.audio import audio_window_s
    from emoreason.audio.modalities import with_modalities
    from emoreason.inference import encode_batch
    from emoreason.reasoning import build_messages
    from emoreason.video import load_frames

    window = audio_window_s(processor)
    encoded = []
    for row in rows:
        path = str(synth / row["media"]["path"])
        frames, audio = with_modalities(load_frames(path, policy), "audio", window)
        inputs = encode_batch(processor, [build_messages(path, "video")], [frames], audio=[audio])
        encoded.append((inputs["input_features"], inputs["feature_attention_mask"]))
    return encoded


def pooled_audio_tokens(model, clips: list[AudioInputs]) -> torch.Tensor:
    """(clips, width): the mean of each clip's audio tokens as the language model receives them — the seam a
    shared encoder warm-up core can take (the vision one pools ``get_video_features`` the same way)."""
    longest = max(int(f.shape[-1]) for f, _ in clips)
    # pad to one length so the clips go through the encoder together; the mask drops the padding again
    features = torch.cat([torch.nn.functional.pad(f, (0, longest - f.shape[-1])) for f, _ in clips])
    masks = torch.cat([torch.nn.functional.pad(m, (0, longest - m.shape[-1])) for _, m in clips])
    tokens = model.get_audio_features(features, masks, return_dict=True).last_hidden_state
    _, lengths = model.model.audio_tower._get_feat_extract_output_lengths(masks.sum(-1))
    return torch.stack([t.mean(0) for t in torch.split(tokens, lengths.tolist())])


def audio_parameters(model) -> list[torch.nn.Parameter]:
    """The audio encoder's parameters, by the one classification per-module rates and freeze_audio use."""
    from emoreason.training.optim import module_of

    return [p for n, p in model.named_parameters() if module_of(n) == "audio"]


def train_audio_tower(model, train: list[AudioInputs], train_y: torch.Tensor,
                      held_out: dict[str, tuple[list[AudioInputs], torch.Tensor]], *, epochs: int, lr: float,
                      batch_size: int, seed: int) -> list[dict]:
    """AdamW on the audio encoder + a linear head; accuracy on each held-out split (name → (clips, labels)) after
    each epoch. Nothing else in the model changes."""
    from emoreason.evaluation.significance import wilson_interval

    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    encoder = audio_parameters(model)
    for p in encoder:
        p.requires_grad_(True)
    head = torch.nn.Linear(model.config.text_config.hidden_size, int(train_y.max()) + 1)
    optimizer = torch.optim.AdamW([*encoder, *head.parameters()], lr=lr, weight_decay=0.0)
    history = []
    for epoch in range(1, epochs + 1):
        started, total, correct = time.time(), 0.0, 0
        model.train()
        order = torch.randperm(len(train)).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            logits = head(pooled_audio_tokens(model, [train[i] for i in idx]))
            loss = torch.nn.functional.cross_entropy(logits, train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == train_y[idx]).sum())
        model.eval()
        entry = {"epoch": epoch, "loss": total / len(train), "train_accuracy": correct / len(train)}
        line = f"epoch {epoch}: loss {entry['loss']:.3f}  train {100 * entry['train_accuracy']:.1f} %"
        for split, (clips, labels) in held_out.items():
            with torch.no_grad():
                predicted = torch.cat([head(pooled_audio_tokens(model, clips[s:s + 64])).argmax(1)
                                       for s in range(0, len(clips), 64)])
            hits = int((predicted == labels).sum())
            low, high = wilson_interval(hits, len(clips))
            entry.update({f"{split}_accuracy": hits / len(clips), f"{split}_ci95": [low, high]})
            line += f"  {split} {100 * hits / len(clips):.1f} % [{100 * low:.1f}–{100 * high:.1f}]"
        history.append({**entry, "seconds": time.time() - started})
        print(line, flush=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def main(argv: list[str] | None = None) -> int:
    import yaml

    from emoreason.models import frame_policy_for, load_model_and_processor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an Omni model directory (`emoreason tiny-model --family "
                        "qwen2_5_omni --out`)")
    parser.add_argument("--synth", required=True, help="a SynthFACS-AV directory (`emoreason synth --audio`)")
    parser.add_argument("--frames", default="{}", help="frame-policy overrides as YAML (SFT's: they time the "
                        "heard window)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the per-epoch history as JSON here")
    parser.add_argument("--save", default=None, help="save the model with its trained audio encoder here")
    args = parser.parse_args(argv)

    synth = Path(args.synth)
    rows = {split: load_split(synth, split) for split in ("train", "val", "test")}
    classes = sorted({r["emotion"] for r in rows["train"]})
    for split in ("val", "test"):
        unseen = sorted({r["emotion"] for r in rows[split]} - set(classes))
        if unseen:
            raise SystemExit(f"{synth}: {split} classes {unseen} have no training clip")
    model, processor = load_model_and_processor(args.model, device="cpu")
    if not hasattr(model, "get_audio_features"):
        raise SystemExit(f"{args.model}: {type(model).__name__} has no audio encoder (an Omni thinker is needed)")
    policy = replace(frame_policy_for(processor), **(yaml.safe_load(args.frames) or {}))
    started = time.time()
    clips = {split: encode_tracks(processor, synth, rows[split], policy) for split in rows}
    tokens = int(model.model.audio_tower._get_feat_extract_output_lengths(clips["train"][0][1].sum(-1))[1])
    print(f"{len(rows['train'])} train / {len(rows['val'])} val / {len(rows['test'])} test clips, {len(classes)} "
          f"classes, {tokens} audio tokens per clip (encoded in {time.time() - started:.0f} s)", flush=True)
    labels = {split: torch.tensor([classes.index(r["emotion"]) for r in rows[split]]) for split in rows}
    held_out = {split: (clips[split], labels[split]) for split in ("val", "test")}
    history = train_audio_tower(model, clips["train"], labels["train"], held_out, epochs=args.epochs, lr=args.lr,
                                batch_size=args.batch_size, seed=args.seed)
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
        Path(args.out).write_text(json.dumps({"args": vars(args), "classes": classes, "audio_tokens": tokens,
                                              "history": history, "selected_epoch": selected["epoch"]},
                                             indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
