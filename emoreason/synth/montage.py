"""Montages a person can check by eye: apex frame per emotion, and neutral vs AU-on per AU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emoreason.knowledge import BASIC_EMOTIONS, COMPOUND_EMOTIONS, au_name, display_name, prototypes_for
from emoreason.synth.face import RENDERED_AUS, Identity, render_face

_TILE = 192


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(tile).convert("RGB")
    canvas = Image.new("RGB", (im.width, im.height + 18), (255, 255, 255))
    canvas.paste(im, (0, 0))
    ImageDraw.Draw(canvas).text((4, im.height + 3), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _grid(tiles: list[np.ndarray], columns: int) -> Image.Image:
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(Image.fromarray(tile), ((i % columns) * w, (i // columns) * h))
    return sheet


def _identity(seed: int) -> Identity:
    ident = Identity.sample(0, np.random.default_rng(seed))
    return Identity(**{**ident.__dict__, "glasses": False, "offset": (0.0, 0.0)})


def emotion_montage(path: str | Path, seed: int = 3, intensity: float = 4.0) -> Path:
    """Apex frame of each basic and compound emotion (canonical prototype at ``intensity``)."""
    ident = _identity(seed)
    tiles = []
    for emotion in (*BASIC_EMOTIONS, *COMPOUND_EMOTIONS):
        protos = prototypes_for(emotion)
        aus = {a: intensity for a in (protos[0].aus if protos else ()) if a in RENDERED_AUS}
        codes = "+".join(str(a) for a in sorted(aus)) or "-"
        tiles.append(_label(render_face(ident, aus, size=_TILE), f"{display_name(emotion)} ({codes})"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _grid(tiles, 6).save(path)
    return path


def au_montage(path: str | Path, seed: int = 3) -> Path:
    """For every rendered AU: the neutral face beside the same face with only that AU at intensity 5."""
    ident = _identity(seed)
    neutral = render_face(ident, {}, size=_TILE)
    tiles = []
    for au in RENDERED_AUS:
        tiles.append(_label(neutral, "neutral"))
        tiles.append(_label(render_face(ident, {au: 5.0}, size=_TILE), f"AU{au} {au_name(au)}"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _grid(tiles, 8).save(path)
    return path
