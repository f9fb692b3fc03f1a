"""Media as bytes: what a client sends and a server turns into frames under the same frame policy.

A video file travels as its own bytes. A frame folder (DFEW / MAFW / Aff-Wild2 style) travels as a zip of its
image files, stored uncompressed and byte-for-byte (so nothing is re-encoded), and the receiver unpacks it into
a folder and reads it with :func:`emoreason.video.load_frames` — the same ordering, fps convention, sampling and
resizing as a local run. ``emoreason serve`` installs :func:`load_frames_from_bytes` as vLLM's video loader, so
a served model sees the frames training and evaluation saw.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from emoreason.video.io import (
    IMAGE_EXTENSIONS,
    CorruptMediaError,
    EmptyMediaError,
    FramePolicy,
    LoadedFrames,
    MediaError,
    frame_files,
    load_frames,
    read_image,
    resize_image,
)

ZIP_MAGIC = b"PK\x03\x04"
FRAME_ARCHIVE_MIME = "application/zip"


class MediaTooLargeError(MediaError):
    """Media over a size cap (client or server); the message names the cap and how to raise it."""


def pack_frame_folder(folder: str | Path, max_bytes: int | None = None) -> bytes:
    """A zip (stored, not compressed) of the folder's image files under their own names."""
    folder = Path(folder)
    files = frame_files(folder)
    if not files:
        raise EmptyMediaError(folder, "no image frames found")
    size = sum(p.stat().st_size for p in files)
    if max_bytes is not None and size > max_bytes:
        raise MediaTooLargeError(folder, f"{len(files)} frames of {size / 2**20:.1f} MiB are over the "
                                         f"{max_bytes / 2**20:.0f} MiB inline cap")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.write(path, arcname=path.name)
    return buffer.getvalue()


def pack_frame_bytes(frames: list[bytes], max_bytes: int | None = None, source: str = "<frame list>") -> bytes:
    """A zip like :func:`pack_frame_folder` of encoded image frames given as bytes, in their order."""
    size = sum(len(f) for f in frames)
    if max_bytes is not None and size > max_bytes:
        raise MediaTooLargeError(source, f"{len(frames)} frames of {size / 2**20:.1f} MiB are over the "
                                         f"{max_bytes / 2**20:.0f} MiB media cap")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i, frame in enumerate(frames):
            archive.writestr(f"{i:06d}.png", frame)  # any image format: the reader sniffs the content
    return buffer.getvalue()


def _unpack_frames(data: bytes, target: Path, max_bytes: int | None, source: str) -> None:
    """Write the archive's image files into ``target`` (flat; names only, so nothing escapes it)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise CorruptMediaError(source, f"not a readable frame archive ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist()
                   if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS]
        total = sum(m.file_size for m in members)  # what unpacking would write: refuse zip bombs up front
        if max_bytes is not None and total > max_bytes:
            raise MediaTooLargeError(source, f"frame archive unpacks to {total / 2**20:.1f} MiB, over the "
                                             f"{max_bytes / 2**20:.0f} MiB cap")
        names = set()
        for member in members:
            name = Path(member.filename).name
            if name in names:
                raise CorruptMediaError(source, f"frame archive holds {name} twice")
            names.add(name)
            (target / name).write_bytes(archive.read(member))


def load_frames_from_bytes(data: bytes, policy: FramePolicy, max_bytes: int | None = None,
                           source: str = "<inline media>") -> LoadedFrames:
    """Frames from a video file's bytes or a packed frame folder, exactly as :func:`load_frames` reads the
    file or folder on disk. Raises MediaError subclasses naming ``source``."""
    if max_bytes is not None and len(data) > max_bytes:
        raise MediaTooLargeError(source, f"{len(data) / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB "
                                         "media cap")
    if not data:
        raise EmptyMediaError(source, "no bytes")
    with tempfile.TemporaryDirectory(prefix="emoreason-media-") as tmp:
        if data[:4] == ZIP_MAGIC:
            folder = Path(tmp) / "frames"
            folder.mkdir()
            _unpack_frames(data, folder, max_bytes, source)
            loaded = load_frames(folder, policy)
        else:
            path = Path(tmp) / "video"  # no image suffix: read as a video; decoders sniff the container
            path.write_bytes(data)
            loaded = load_frames(path, policy)
    loaded.path = source
    return loaded


def load_image_from_bytes(data: bytes, policy: FramePolicy, source: str = "<inline image>") -> np.ndarray:
    """An image's bytes decoded and resized exactly as :func:`load_frames` reads the image file on disk."""
    if not data:
        raise EmptyMediaError(source, "no bytes")
    return resize_image(read_image(source, io.BytesIO(data)), policy)
