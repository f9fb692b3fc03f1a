"""Where a clip's media sits in the copies of a dataset found in the wild, and windows around annotated frames.

Real copies of one dataset differ: DFEW circulates as 224×224 frame folders, 16-frame time-normalised folders,
MAE-DFER's 256-pixel JPEG folders, AVI clips and the original MP4s named with or without zero padding. Each
adapter lists its ``Layout`` s in a documented order; ``locate`` tries them (under ``media_root`` when given,
else the dataset root) and returns the first that exists, or every path it tried so a missing clip is reported
with all of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emoreason.video import frame_files


@dataclass(frozen=True)
class Layout:
    """One way a dataset's clips are stored: ``template`` relative to the media root, with ``{name}`` fields."""

    name: str
    template: str
    kind: str  # "frames" (a folder of images) | "video" | "image"
    fps: float | None = None  # the frame rate of a frame folder (videos carry theirs)
    note: str = ""


def locate(root: Path, layouts: Sequence[Layout], media_root: str | Path | None = None, layout: str | None = None,
           fps: float | None = None, **names: object) -> tuple[dict | None, list[str]]:
    """(media dict, paths tried): the first layout whose file or folder exists.

    ``media_root`` replaces the dataset root for media, and may also point straight at one layout's folder
    (``/data/DFEW/Clip/jpg_256``): each layout's last path component is tried there too. ``layout`` (a layout
    name) restricts the search to that layout; ``fps`` overrides a frame layout's rate."""
    chosen = [x for x in layouts if x.name == layout] if layout else list(layouts)
    if layout and not chosen:
        raise ValueError(f"unknown media layout {layout!r}; known: {', '.join(x.name for x in layouts)}")
    base = Path(media_root) if media_root else root
    tried: list[str] = []
    for candidate in chosen:
        relative = candidate.template.format(**names)
        paths = [base / relative]
        if media_root:
            paths.append(base / Path(relative).name)
        for path in paths:
            if str(path) in tried:
                continue
            tried.append(str(path))
            found = path.is_dir() if candidate.kind == "frames" else path.is_file()
            if found:
                media: dict = {"type": candidate.kind, "path": str(path)}
                if candidate.kind == "frames":
                    media["fps"] = float(fps or candidate.fps or 0) or None
                media["layout"] = candidate.name
                return media, tried
    return None, tried


def missing_reason(what: str, tried: Sequence[str]) -> str:
    return f"no media for {what}; tried {len(tried)} paths: " + ", ".join(tried)


_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a file name


def frame_positions(folder: str | Path, offset: int = 0) -> tuple[dict[int, int], int]:
    """({frame number: position in natural order}, frame count) of a frame folder, numbers read from the
    file names (``2440.jpg``, ``frame_00012.png``) plus ``offset`` (1 where files count from 0 but labels
    from 1)."""
    files = frame_files(folder)
    positions = {}
    for position, path in enumerate(files):
        match = _NUMBER.search(path.stem)
        if match:
            positions.setdefault(int(match.group(1)) + offset, position)
    return positions, len(files)


def window_positions(centre: int, frames: int, step: int, total: int) -> list[int]:
    """``frames`` source positions ``step`` apart with ``centre`` at index ``frames // 2`` (the later of the two
    middle frames for an even count), clamped to the clip: edge windows repeat the first or last frame."""
    return [min(max(centre + (k - frames // 2) * step, 0), total - 1) for k in range(frames)]
