"""From any visual source (video file, frame folder, image, list of images) to model-ready frames.

One sampling policy (qwen-vl-utils compatible) serves training, evaluation and serving, so all three see
the same frames.
"""

from emoreason.video.io import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CorruptMediaError,
    EmptyMediaError,
    FramePolicy,
    LoadedFrames,
    MediaError,
    MissingMediaError,
    load_frames,
    sampled_indices,
    smart_resize,
    write_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "CorruptMediaError",
    "EmptyMediaError",
    "FramePolicy",
    "LoadedFrames",
    "MediaError",
    "MissingMediaError",
    "load_frames",
    "sampled_indices",
    "smart_resize",
    "write_video",
]
