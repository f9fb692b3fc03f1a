"""emoreason generate: run a local model on a video or image with the project's prompt; print the text. An audio
model (Qwen2.5-Omni) hears the video's audio track with it (silence for a clip without one)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate a response from a local model for a video or image",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model directory (e.g. from `emoreason tiny-model`)")
    media = p.add_mutually_exclusive_group()
    media.add_argument("--video", help="video file or folder of frames")
    media.add_argument("--image", help="image file")
    p.add_argument("--prompt", help="user text (default: the project's emotion-reasoning instruction)")
    p.add_argument("--labels", nargs="*", help="label set to put in the prompt (default: open vocabulary)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--fps", type=float, default=2.0, help="frame sampling rate for videos")
    p.add_argument("--max-frames", type=int, default=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from emoreason.inference import generate, model_audio
    from emoreason.models import frame_policy_for, load_model_and_processor
    from emoreason.reasoning import build_messages
    from emoreason.video import MediaError, load_frames

    model, processor = load_model_and_processor(args.model)
    media_type = "video" if args.video else "image" if args.image else None
    path = args.video or args.image
    messages = build_messages(path, media_type=media_type, labels=args.labels)
    if args.prompt:
        messages[-1]["content"][-1]["text"] = args.prompt
    policy = replace(frame_policy_for(processor), fps=args.fps, max_frames=args.max_frames)
    try:
        loaded = load_frames(path, policy) if path else None
        audio = model_audio(processor, [loaded])  # an audio model (Qwen2.5-Omni) hears the clip's track
    except MediaError as exc:
        raise ValueError(str(exc)) from exc
    text = generate(model, processor, [messages], [loaded], max_new_tokens=args.max_new_tokens, audio=audio)[0]
    print(text)
    return 0
