"""An audio warm-up stage for the Omni thinker: train its audio encoder alone on SynthFACS-AV voices.

The audio counterpart of ``bench/tower_probe.py``'s vision warm-up (docs/benchmarks.md, "SFT above chance on
CPU"): the audio encoder (``audio_tower``, its projection to the language model's width included) is trained with
a linear emotion head on the clip's mean-pooled audio tokens — exactly the tokens the language model receives in
SFT: each clip encoded by the model's own processor with the face hidden (``modalities=audio``, the frame policy
timing the heard window, as the SFT collator does), pooled per clip from ``get_audio_features``. Cross-entropy
on the emotion; accuracy on the identity-disjoint validation and test splits per epoch with Wilson 95 % CIs.
The loop is the vision warm-up's (``emoreason.training.vision_warmup.train_tower``, this pooling in place of the
video tokens'); a clip that does not encode (no audio track, a corrupt or truncated file) is skipped with a warning
naming the file and the reason, listed under ``skipped`` in ``--out``, and the run goes on. ``--save DIR`` keeps
the whole model with the trained audio encoder through the vision warm-up's ``save_warm_model`` (processor, frame
policy, build record, the composite Omni layout vLLM serves; written aside and moved in place): SFT starts from it
with the audio encoder at a low rate (``audio_learning_rate``).

    python bench/audio_warmup.py --model runs/demo/tiny-qwen2_5_omni --synth runs/demo/synthfacs-av \
        --frames '{fps: 4.0, max_frames: 2}' --epochs 10 --save runs/demo/audio-warmup
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_probe import load_split  # noqa: E402  (bench scripts are not a package)

# (input_features, feature_attention_mask) of one clip, as the processor hands them to the audio encoder
AudioInputs = tuple[torch.Tensor, torch.Tensor]

log = logging.getLogger("audio_warmup")


def encode_tracks(processor, synth: Path, rows: list[dict], policy, split: str,
                  skipped: list[dict]) -> tuple[list[AudioInputs], list[dict]]:
    """Each clip's audio inputs as SFT with ``modalities=audio`` builds them: frames sampled under ``policy`` (they
    time the heard window), blanked, and the aligned track cut to the model's window, through the processor.
    Returns (inputs, rows) of the clips that encode; one that does not (no audio track, a corrupt or truncated
    file) is skipped with a warning naming the file and the reason, and appended to ``skipped``."""
    from emoreason.audio import audio_window_s
    from emoreason.audio.modalities import with_modalities
    from emoreason.inference import encode_batch
    from emoreason.reasoning import build_messages
    from emoreason.video import MediaError, load_frames

    window = audio_window_s(processor)
    encoded, kept = [], []
    for row in rows:
        path = str(synth / row["media"]["path"])
        try:
            frames, audio = with_modalities(load_frames(path, policy), "audio", window)
        except MediaError as exc:
            skipped.append({"id": row.get("id"), "clip": path, "split": split, "reason": str(exc)})
            log.warning("skipping %s clip %s: %s", split, path, exc)
            continue
        inputs = encode_batch(processor, [build_messages(path, "video")], [frames], audio=[audio])
        encoded.append((inputs["input_features"], inputs["feature_attention_mask"]))
        kept.append(row)
    return encoded, kept


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


def main(argv: list[str] | None = None) -> int:
    import yaml

    from emoreason.models import frame_policy_for, load_model_and_processor
    from emoreason.training.vision_warmup import save_warm_model, train_tower

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
    skipped: list[dict] = []
    clips = {}
    for split in list(rows):
        clips[split], rows[split] = encode_tracks(processor, synth, rows[split], policy, split, skipped)
    if len({r["emotion"] for r in rows["train"]}) < 2 or not rows["val"]:
        raise SystemExit(f"{synth}: after skipping {len(skipped)} clips that do not encode, too little is left to "
                         f"train and select on ({len(rows['train'])} train, {len(rows['val'])} val clips)")
    tokens = int(model.model.audio_tower._get_feat_extract_output_lengths(clips["train"][0][1].sum(-1))[1])
    print(f"{len(rows['train'])} train / {len(rows['val'])} val / {len(rows['test'])} test clips, {len(classes)} "
          f"classes, {tokens} audio tokens per clip, {len(skipped)} skipped (encoded in "
          f"{time.time() - started:.0f} s)", flush=True)
    labels = {split: torch.tensor([classes.index(r["emotion"]) for r in rows[split]]) for split in rows}
    held_out = {split: (clips[split], labels[split]) for split in ("val", "test") if clips[split]}
    # the vision warm-up's loop on the audio encoder (audio_tower, its projection included): emotion head only
    history = train_tower(model, clips["train"], labels["train"], torch.zeros(len(clips["train"]), 0), held_out,
                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, au_weight=0.0, seed=args.seed,
                          pool=pooled_audio_tokens, module=model.model.audio_tower)
    selected = max(history, key=lambda h: h["val_accuracy"])  # model selection on validation, never on test
    if "test_accuracy" in selected:
        print(f"test: last epoch {100 * history[-1]['test_accuracy']:.1f} %; at the validation-selected epoch "
              f"{selected['epoch']} {100 * selected['test_accuracy']:.1f} %; chance {100 / len(classes):.1f} %",
              flush=True)
    if args.save:  # frame policy, build record, the composite layout vLLM serves; written aside, moved in place
        save_warm_model(model, processor, policy, Path(args.model), Path(args.save))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "classes": classes, "audio_tokens": tokens,
                                              "history": history, "selected_epoch": selected["epoch"],
                                              "skipped": skipped},
                                             indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
