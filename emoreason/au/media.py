"""Frame streams for the AU estimator: every frame of a video (PyAV, decoded one at a time), a folder of
frames, or a single image — with the errors the batch reports per file (emoreason.video's MediaError family).
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from emoreason.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from emoreason.video.io import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MissingMediaError,
    frame_files,
    natural_key,
)

FOLDER_FPS = 25.0  # frame folders carry no rate; DFEW/MAFW-style folders are usually 25 fps


@dataclass
class MediaStream:
    path: str
    kind: str  # video | frames | image
    fps: float
    frames: Iterator[np.ndarray]  # RGB uint8
    meta: dict
    indices: list[int] = field(default_factory=list)  # source frame index of each frame yielded so far


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, frame folders and glob patterns → media paths (a folder of videos/images is walked one level:
    videos and sub-folders of frames are items; a folder that holds images directly is one frame sequence)."""
    out: list[Path] = []
    for raw in inputs:
        # a pattern that matches nothing stays as it is: it is then reported as a missing input
        matches = (sorted(glob.glob(raw, recursive=True)) or [raw]) if glob.has_magic(raw) else [raw]
        for match in matches:
            path = Path(match)
            if path.is_dir() and not _has_images(path):
                children = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS
                                  or (p.is_dir() and _has_images(p)))
                out.extend(children)
            else:
                out.append(path)
    unique: dict[Path, Path] = {}
    for path in out:  # the same file named twice (e.g. by two globs) is processed once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def media_kind(path: Path) -> str:
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    raise MediaError(path, f"unsupported file type {suffix or '(none)'}: not a video or image")


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, or of a frame folder's image names and bytes (the cache key)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def open_media(path: str | Path, stride: int = 1) -> MediaStream:
    """A frame stream over ``path`` (every ``stride``-th frame; a video still decodes every frame, but only
    the kept ones are converted to RGB); raises MissingMediaError / EmptyMediaError / CorruptMediaError."""
    if stride < 1:
        raise ValueError(f"stride must be ≥ 1, got {stride}")
    path = Path(path)
    if not path.exists():
        raise MissingMediaError(path, "no such file or directory")
    kind = media_kind(path)
    if kind != "frames" and path.stat().st_size == 0:
        raise EmptyMediaError(path, "file is empty (0 bytes)")
    if kind == "image":
        frame, gray = _read_image(path)
        return MediaStream(str(path), kind, 1.0, iter([frame]), {"grayscale": gray, "skipped": []}, [0])
    if kind == "frames":
        return _frame_folder(path, stride)
    return _video(path, stride)


def _read_image(path: Path) -> tuple[np.ndarray, bool]:
    try:
        with Image.open(path) as im:
            gray = im.mode in ("L", "LA", "I", "I;16", "1", "F")
            return np.asarray(im.convert("RGB")), gray
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptMediaError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc


def _frame_folder(path: Path, stride: int = 1) -> MediaStream:
    images = frame_files(path)  # natural order (2.jpg before 10.jpg): the frames evaluation and training read
    frames = set(images)
    skipped = sorted((p.name for p in path.iterdir() if p not in frames), key=natural_key)
    if not images:
        raise EmptyMediaError(path, "no image frames found")
    meta = {"skipped": skipped, "grayscale": False, "bad_frames": []}
    indices: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        shape = None
        for index in range(0, len(images), stride):
            image = images[index]
            indices.append(index)
            try:
                frame, gray = _read_image(image)
            except CorruptMediaError as exc:
                meta["bad_frames"].append(f"{image.name}: {exc.reason}")
                yield np.zeros((0, 0, 3), dtype=np.uint8)  # keeps frame numbering; becomes a no-face row
                continue
            meta["grayscale"] = meta["grayscale"] or gray
            if shape is not None and frame.shape != shape:
                meta["bad_frames"].append(f"{image.name}: size {frame.shape[:2]} differs from {shape[:2]}")
            shape = shape or frame.shape
            yield frame

    return MediaStream(str(path), "frames", FOLDER_FPS, frames(), meta, indices)


def _video(path: Path, stride: int = 1) -> MediaStream:
    import av

    try:
        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise EmptyMediaError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
    except MediaError:
        raise
    except Exception as exc:
        raise CorruptMediaError(path, f"cannot open the video ({type(exc).__name__}: {exc})") from exc
    meta = {"grayscale": stream.codec_context.pix_fmt in ("gray", "gray8", "gray16le"), "skipped": [],
            "declared_frames": int(stream.frames or 0), "decode_error": None}

    indices: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    indices.append(index)
                    yield frame.to_ndarray(format="rgb24")
        except Exception as exc:  # truncated/corrupt stream: keep what decoded, record why it stopped
            meta["decode_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            container.close()

    return MediaStream(str(path), "video", fps, frames(), meta, indices)
