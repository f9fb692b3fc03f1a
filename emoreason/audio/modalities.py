"""What a sample is shown: the modality switch shared by evaluation (``emoreason eval --modalities``) and training
(the recipes' ``modalities`` key), so an audio-only model is trained and evaluated on the same blank frames."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from emoreason.audio.io import LoadedAudio, NoAudioError, clip_audio, frames_on_clip, takes_audio
from emoreason.video import LoadedFrames

MODALITIES = ("audio+video", "video", "audio")


def resolve_modalities(asked: str | None, hears: bool | None, no_audio: str = "this model takes no audio") -> str:
    """What a model is shown: ``asked`` (the ablation switch) or, by default, all it takes — audio+video for one
    that hears (Qwen2.5-Omni), else video. ``hears`` None (a served model whose weights are not readable here):
    only what is asked. Audio asked of a model that takes none is a ValueError starting ``no_audio``."""
    if asked is not None and asked not in MODALITIES:
        raise ValueError(f"modalities must be one of {', '.join(MODALITIES)}, got {asked!r}")
    if asked is None:
        return "audio+video" if hears else "video"
    if asked != "video" and hears is False:
        raise ValueError(f"modalities {asked!r}: {no_audio}")
    return asked


def model_modalities(processor, asked: str | None) -> str:
    """:func:`resolve_modalities` for a local model, from its processor."""
    return resolve_modalities(asked, takes_audio(processor), "this model takes no audio (its processor has no "
                                                             "audio input)")


def audio_source(media: dict) -> str | None:
    """The file a sample's audio is read from: ``media["audio_path"]`` where the adapter found the clip's audio in
    another file than its frames (DFEW's and MAFW's original videos beside their face crops / frame folders),
    else the media's own file (None for an image list)."""
    path = media.get("audio_path") or media.get("path")
    return str(path) if isinstance(path, (str, Path)) else None


def with_modalities(frames: LoadedFrames, modalities: str, max_s: float | None = None,
                    path: str | None = None) -> tuple[LoadedFrames, LoadedAudio | None]:
    """(frames, audio) a sample is shown under ``modalities``: ``video`` — the frames, no audio; ``audio+video`` —
    the frames and the clip's aligned audio (None for a clip without a track); ``audio`` — the audio with the
    frames blanked, so the prompt and token layout stay those of the full model while the face carries nothing. A
    corrupt audio stream, or ``audio`` on a clip without a track, raises MediaError naming the file. Audio past
    ``max_s`` (the model's window) is cut, named and recorded (``emoreason.audio.fit_window``). ``path``: the
    file to read the track from (default: the file the frames came from; :func:`audio_source` of the record's
    media). Frames heard with another file's track are timed on that clip (``emoreason.audio.frames_on_clip``)."""
    if modalities == "video" or frames.kind == "image":
        if modalities == "audio":
            raise NoAudioError(frames.path, f"{frames.kind} have no audio track to hear")
        return frames, None
    source = str(path or frames.path)
    if frames.kind != "video" and source == str(frames.path):
        audio = None  # a frame folder or image list, and no other file to hear: no track
    else:
        frames = frames_on_clip(frames, source)
        audio = clip_audio(source, frames, max_s=max_s)
    if modalities == "audio+video":
        return frames, audio
    if audio is None:
        raise NoAudioError(source, "no audio track to hear (modalities: audio)")
    return replace(frames, frames=np.zeros_like(frames.frames)), audio
