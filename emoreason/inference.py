"""Local transformers inference: chat messages + media → model inputs → generated text.

``encode_batch`` is the one place messages and sampled frames become model inputs for generation; the
SFT collator and GRPO trainer build on the same processor call so every stage tokenises alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emoreason.audio import (
    LoadedAudio,
    audio_window_s,
    clip_audio,
    heard_track,
    omni_processor_kwargs,
    omni_video_fps,
    takes_audio,
)
from emoreason.video import LoadedFrames


def _media_kind(messages: list[dict]) -> str | None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") in ("video", "image"):
                    return part["type"]
    return None


def encode_batch(processor, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None],
                 add_generation_prompt: bool = True, padding_side: str = "left", template_kwargs: dict | None = None,
                 audio: Sequence[LoadedAudio | None] | None = None):
    """Render each conversation with the chat template (``template_kwargs``: its extra variables, e.g. TRL's
    ``chat_template_kwargs``) and encode it with its frames (and, for a processor that takes audio, the audio
    aligned with each video: :func:`emoreason.audio.clip_audio`).

    For a processor that takes audio, ``audio`` (one entry per conversation) says what each video is heard with:
    every video is interleaved with a track (``use_audio_in_video``), and a video whose entry is None — a clip
    without an audio track — gets silence of its own duration (:func:`~emoreason.audio.silence_for`, its
    ``meta["silent"]`` records it). So a row's tokens, and the model's answer, never depend on its batch-mates,
    and the length checks (SFT ``row_length``, GRPO ``prompt_length``) measure what training sees. ``audio=None``
    is a video-only encoding (the eval ``--modalities video`` ablation). The processor gets each video's sampled
    fps (rows of different fps are encoded apart and padded together) and the frames' own size (the Omni
    processor's default video bounds would resize frames the frame policy already sized), and the result carries
    ``use_audio_in_video=True`` for the model's forward and generate."""
    if not takes_audio(processor):
        return _encode(processor, conversations, media, add_generation_prompt, padding_side, template_kwargs)
    if audio is not None and len(audio) != len(media):
        raise ValueError(f"{len(media)} media entries but {len(audio)} audio entries")
    window = audio_window_s(processor)  # the extractor would drop the rest silently: cut here, named
    tracks = heard_tracks(media, audio, window)
    rates = {round(omni_video_fps(m), 3) for m in media if m is not None and m.kind != "image"}
    if len(rates) <= 1:
        return _encode(processor, conversations, media, add_generation_prompt, padding_side, template_kwargs,
                       tracks)
    rows = [_encode(processor, [c], [m], add_generation_prompt, padding_side, template_kwargs, [t])
            for c, m, t in zip(conversations, media, tracks, strict=True)]
    return _pad_rows(rows, processor.tokenizer.pad_token_id, padding_side)


def model_audio(processor, media: Sequence[LoadedFrames | None]) -> list[LoadedAudio | None] | None:
    """The ``audio`` argument of :func:`encode_batch` / :func:`generate` for a model run on ``media``: for a
    processor that takes audio, each video's aligned track (:func:`~emoreason.audio.clip_audio`; None for a clip
    without one, which the encoding fills with silence); None for a model that takes no audio. A corrupt audio
    stream raises :class:`~emoreason.video.CorruptMediaError` naming the file: audio is never dropped silently."""
    if not takes_audio(processor):
        return None
    window = audio_window_s(processor)
    return [clip_audio(m.path, m, max_s=window) if m is not None else None for m in media]


def heard_tracks(media: Sequence[LoadedFrames | None], audio: Sequence[LoadedAudio | None] | None,
                 max_s: float | None = None) -> list[LoadedAudio | None]:
    """What each row is heard with when an audio model encodes it (:func:`~emoreason.audio.heard_track`): its
    track, silence of its video's duration when it has none, cut to ``max_s``; None for an image or a row without
    media; None for every row (a video-only encoding) when ``audio`` is None."""
    if audio is None:
        return [None] * len(media)
    return [heard_track(loaded, a, max_s) for loaded, a in zip(media, audio, strict=True)]


def _encode(processor, conversations, media, add_generation_prompt: bool, padding_side: str,
            template_kwargs: dict | None = None, tracks: Sequence[LoadedAudio | None] | None = None):
    """One processor call; ``tracks`` (Omni only, one per row, None where silent) interleave audio."""
    texts, videos, images, video_tracks = [], [], [], []
    for messages, loaded, track in zip(conversations, media, tracks or [None] * len(media), strict=True):
        texts.append(processor.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt,
                                                   **(template_kwargs or {})))
        kind = _media_kind(messages)
        if kind is None:
            continue
        if loaded is None:
            raise ValueError("a conversation has a video/image part but no media was given for it")
        if kind == "image" or loaded.kind == "image":
            images.append(np.array(loaded.frames[0]))  # a writable copy for torch.from_numpy
        else:
            videos.append(loaded)
            video_tracks.append(track)
    # padding_side as an argument: the Omni processor's defaults (left) override the tokenizer's attribute
    kwargs: dict = {"text": texts, "return_tensors": "pt", "padding": True, "padding_side": padding_side}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = [np.array(v.frames) for v in videos]
        kwargs["video_metadata"] = [v.video_metadata() for v in videos]
        kwargs["do_sample_frames"] = False
    with_audio = any(t is not None for t in video_tracks)
    if tracks is not None and videos:
        kwargs.update(omni_processor_kwargs(videos, video_tracks))
        pixels = [int(v.frames.shape[1] * v.frames.shape[2]) for v in videos]
        # the frames as sampled: the Omni processor's class default (128·28·28 px minimum) would upscale them
        kwargs["videos_kwargs"] = {"size": {"shortest_edge": min(pixels), "longest_edge": max(pixels)}}
    tokenizer = processor.tokenizer
    previous, tokenizer.padding_side = tokenizer.padding_side, padding_side
    try:
        batch = processor(**kwargs)
    finally:
        tokenizer.padding_side = previous
    if with_audio:
        batch["use_audio_in_video"] = True
    return batch


# per-item tensors of a processor output, concatenated over rows in order (one entry per video / image / audio)
_ITEM_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "video_second_per_grid",
              "second_per_grid_ts", "input_features", "feature_attention_mask")


def _pad_rows(rows: list, pad_id: int, padding_side: str):
    """One batch from single-row encodings: token tensors padded to the longest row, media tensors concatenated
    in row order (the order the model reads their placeholders in)."""
    from transformers import BatchFeature

    longest = max(int(r["input_ids"].shape[1]) for r in rows)
    out: dict = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0)):
        padded = []
        for r in rows:
            extra = torch.full((1, longest - r[key].shape[1]), fill, dtype=r[key].dtype)
            padded.append(torch.cat([extra, r[key]] if padding_side == "left" else [r[key], extra], dim=1))
        out[key] = torch.cat(padded)
    for key in _ITEM_KEYS:
        parts = [r[key] for r in rows if key in r]
        if parts:
            out[key] = torch.cat([torch.as_tensor(p) for p in parts])
    batch = BatchFeature(out)
    if any(r.get("use_audio_in_video") for r in rows):
        batch["use_audio_in_video"] = True
    return batch


@torch.no_grad()
def generate(model, processor, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None],
             max_new_tokens: int = 128, do_sample: bool = False, temperature: float = 1.0,
             top_p: float = 1.0, seed: int | None = None,
             audio: Sequence[LoadedAudio | None] | None = None) -> list[str]:
    """Batched generation; returns the decoded new text of each conversation (special tokens removed). ``audio``
    (one entry per conversation) is encoded with the videos where the processor takes audio (``encode_batch``)."""
    inputs = encode_batch(processor, conversations, media, audio=audio).to(model.device)
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)
