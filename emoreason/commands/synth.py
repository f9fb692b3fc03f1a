"""emoreason synth / synth-montage: build the SynthFACS dataset, or montages to check it by eye."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate SynthFACS clips with exact AU/emotion ground truth",
                              description="Write AU-controlled synthetic face clips (H.264 mp4) and a manifest "
                                          "of sample records, split by identity. Resumable after a kill.")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--difficulty", choices=["posed", "easy", "medium", "hard"], default="medium")
    p.add_argument("--emotions", choices=["basic", "compound", "all"], default="basic")
    p.add_argument("--profile", choices=["apex_offset", "onset_apex"], default="apex_offset",
                   help="temporal profile: neutral → apex → offset, or neutral → apex held to the end (CK+-style)")
    p.add_argument("--identities", type=int, help="number of synthetic subjects (default: clips/8, ≥ 6)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--audio", action="store_true",
                   help="SynthFACS-AV: each clip speaks (AAC track) with prosody that follows its emotion and "
                        "intensity; lips move with the syllables; the manifest records the prosody targets")
    p.add_argument("--masked-fraction", type=float, default=0.0,
                   help="with --audio: fraction of clips whose face shows another emotion than the voice")
    p.add_argument("--masked-label", choices=["voice", "face"], default="voice",
                   help="which modality a masked clip's label follows (default: voice, the felt emotion that "
                        "leaks through the voice while the face masks it)")
    p.set_defaults(func=run)

    m = subparsers.add_parser("synth-montage", help="write PNG montages of SynthFACS emotions and AUs")
    m.add_argument("--out", default="docs/img", help="directory for synthfacs_emotions.png and synthfacs_aus.png")
    m.add_argument("--seed", type=int, default=3)
    m.set_defaults(func=run_montage)


def run(args: argparse.Namespace) -> int:
    from emoreason.synth import SynthConfig, build_dataset

    cfg = SynthConfig(out=args.out, clips=args.clips, seed=args.seed, frames=args.frames, size=args.size,
                      fps=args.fps, difficulty=args.difficulty, emotions=args.emotions, identities=args.identities,
                      profile=args.profile, audio=args.audio, masked_fraction=args.masked_fraction,
                      masked_label=args.masked_label)
    print(build_dataset(cfg, workers=args.workers))
    return 0


def run_montage(args: argparse.Namespace) -> int:
    from pathlib import Path

    from emoreason.synth.montage import au_montage, emotion_montage

    out = Path(args.out)
    print(emotion_montage(out / "synthfacs_emotions.png", seed=args.seed))
    print(au_montage(out / "synthfacs_aus.png", seed=args.seed))
    return 0
