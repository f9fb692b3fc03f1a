"""Decoded frames sent to an OpenAI-compatible server (vLLM) losslessly and inline, with their timing.

A frame folder, an image list or a window of a clip has no single file a server could open, and re-encoding it
to a lossy mp4 changes the pixels and the frame timing. Instead the frames the local pipeline decoded go as a
PNG frame sequence in one data URL (vLLM's ``video/jpeg`` frame-list format, which it decodes with PIL whatever
the image format), and their source indices, fps and frame count go in the request's ``media_io_kwargs`` so the
server builds the same video grid and temporal positions as the local model. Used by GRPO's vLLM rollouts and by
``emoreason eval --endpoint``.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from emoreason.video.io import LoadedFrames


def _png(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode()


def inline_media(loaded: LoadedFrames) -> tuple[str, dict]:
    """A data URL with the loaded frames (lossless) and the ``media_io_kwargs`` that make vLLM treat them
    as these exact frames: no re-sampling, the source fps, indices and frame count (temporal positions)."""
    if loaded.kind == "image":
        return f"data:image/png;base64,{_png(loaded.frames[0])}", {}
    url = "data:video/jpeg;base64," + ",".join(_png(f) for f in loaded.frames)
    meta = loaded.video_metadata()
    video_kwargs = {"num_frames": -1, "fps": float(meta["fps"]),
                    "frames_indices": [int(i) for i in meta["frames_indices"]],
                    "total_num_frames": int(meta["total_num_frames"])}
    if meta.get("duration") is not None:
        video_kwargs["duration"] = float(meta["duration"])
    return url, {"video": video_kwargs}
