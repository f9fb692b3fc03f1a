"""From any visual source (video file, frame folder, image, list of images) to model-ready frames.

One sampling policy (qwen-vl-utils compatible) serves training, evaluation and serving, so all three see
the same frames.
"""

from emoreason.video.inline import inline_media
from emoreason.video.io import (
    DEFAULT_FRAME_FOLDER_FPS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CorruptMediaError,
    EmptyMediaError,
    FramePolicy,
    LoadedFrames,
    MediaError,
    MissingMediaError,
    frame_files,
    load_frames,
    load_media,
    natural_key,
    sampled_indices,
    smart_resize,
    write_video,
)

__all__ = [
    "DEFAULT_FRAME_FOLDER_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "CorruptMediaError",
    "EmptyMediaError",
    "FramePolicy",
    "LoadedFrames",
    "MediaError",
    "MissingMediaError",
    "frame_files",
    "inline_media",
    "load_frames",
    "load_media",
    "natural_key",
    "sampled_indices",
    "smart_resize",
    "write_video",
]
