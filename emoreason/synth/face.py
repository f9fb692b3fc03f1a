"""SynthFACS face renderer: a frontal cartoon face whose geometry is driven by AU intensities (0–5).

Each AU moves what FACS says its muscle moves (Ekman, Friesen & Hager 2002):

=====  ==========================================================================================
AU1    inner brow ends rise; short horizontal wrinkles above the inner brows
AU2    outer brow ends rise (arched brow); lateral forehead wrinkles
AU4    brows lowered and drawn together; vertical lines at the glabella
AU5    upper lids raised, more eye white above the iris
AU6    cheeks raised, lower lids pushed up, crow's-feet at the outer eye corners, infraorbital furrow
AU7    lids tightened: lower lid raised and straightened, aperture narrowed
AU9    nose wrinkled: bridge wrinkles, nostril wings raised, inner brows pulled down a little
AU10   upper lip raised (centre), nasolabial furrow deepened
AU12   lip corners pulled up and out, nasolabial furrow deepened
AU14   lip corners tightened inward with dimples
AU15   lip corners pulled down
AU16   lower lip pulled down, lower teeth showing
AU17   chin boss pushed up: lower lip raised, mouth curved down, chin wrinkles
AU20   lips stretched horizontally and thinned
AU23   lips tightened: narrowed, thinner
AU24   lips pressed together: much thinner, bulges above and below
AU25   lips part
AU26   jaw drops: mouth opens, chin moves down
AU43   eyes closed (AU45 blink is the same closure, brief)
=====  ==========================================================================================

Coordinates are in face units (x right, y down, 1 = half the face width, origin at the face centre); a pose
(translation, roll, scale) maps them to pixels. Rendering is supersampled ×2 then reduced, with PIL only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from emoreason.knowledge.coded_aus import SYNTHFACS_AUS

RENDERED_AUS: tuple[int, ...] = SYNTHFACS_AUS  # the coded set lives in emoreason.knowledge

# Where each AU acts, in face units (x0, y0, x1, y1): what a test may see change when only that AU is on.
AU_REGIONS: dict[int, tuple[float, float, float, float]] = {
    1: (-0.75, -1.05, 0.75, -0.38), 2: (-0.85, -1.05, 0.85, -0.38), 4: (-0.75, -0.95, 0.75, -0.3),
    5: (-0.7, -0.5, 0.7, -0.12), 6: (-0.95, -0.55, 0.95, 0.2), 7: (-0.7, -0.5, 0.7, -0.12),
    9: (-0.65, -0.75, 0.65, 0.65), 10: (-0.65, -0.05, 0.65, 0.8), 12: (-0.75, 0.05, 0.75, 0.85),
    14: (-0.6, 0.3, 0.6, 0.8), 16: (-0.6, 0.3, 0.6, 0.95), 15: (-0.6, 0.3, 0.6, 0.85), 17: (-0.6, 0.35, 0.6, 1.35),
    20: (-0.75, 0.3, 0.75, 0.85), 23: (-0.6, 0.3, 0.6, 0.8), 24: (-0.6, 0.3, 0.6, 0.85),
    25: (-0.6, 0.3, 0.6, 0.85), 26: (-1.1, 0.0, 1.1, 1.7), 43: (-0.7, -0.5, 0.7, -0.12),
    45: (-0.7, -0.5, 0.7, -0.12),
}


@dataclass(frozen=True)
class Identity:
    """A synthetic subject: what stays the same across all clips of one person."""

    identity_id: int
    skin: tuple[int, int, int]
    hair_color: tuple[int, int, int]
    hair_style: str  # none | short | long
    glasses: bool
    background: tuple[int, int, int]
    face_height: float  # face half-height / half-width
    eye_spacing: float
    eye_size: float
    mouth_width: float
    brow_thickness: float
    nose_length: float
    scale: float  # face half-width as a fraction of the image size
    offset: tuple[float, float]  # face centre offset, fraction of image size

    @staticmethod
    def sample(identity_id: int, rng: np.random.Generator) -> Identity:
        tone = rng.uniform(0, 1)
        skin = tuple(int(c) for c in np.array([245, 205, 175]) * (1 - tone) + np.array([120, 80, 55]) * tone)
        hair = [(30, 25, 20), (90, 60, 30), (160, 120, 70), (200, 180, 140), (120, 120, 120)][rng.integers(5)]
        background = tuple(int(x) for x in rng.integers(60, 230, size=3))
        return Identity(
            identity_id=identity_id, skin=skin, hair_color=hair,
            hair_style=["none", "short", "long"][rng.integers(3)], glasses=bool(rng.uniform() < 0.25),
            background=background, face_height=float(rng.uniform(1.2, 1.42)),
            eye_spacing=float(rng.uniform(0.9, 1.1)), eye_size=float(rng.uniform(0.85, 1.15)),
            mouth_width=float(rng.uniform(0.85, 1.15)), brow_thickness=float(rng.uniform(0.8, 1.3)),
            nose_length=float(rng.uniform(0.85, 1.15)), scale=float(rng.uniform(0.27, 0.33)),
            offset=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03))))


@dataclass(frozen=True)
class Pose:
    dx: float = 0.0  # fraction of image size
    dy: float = 0.0
    roll: float = 0.0  # degrees
    zoom: float = 1.0


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))


def _quad(p0, p1, p2, n: int = 10) -> list[tuple[float, float]]:
    """Points of a quadratic Bézier curve."""
    out = []
    for i in range(n + 1):
        t = i / n
        out.append(((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
                    (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1]))
    return out


class _Canvas:
    """Maps face units to supersampled pixels and draws."""

    def __init__(self, size: int, identity: Identity, pose: Pose, supersample: int = 2):
        self.ss = supersample
        self.size = size * supersample
        self.image = Image.new("RGB", (self.size, self.size), identity.background)
        self.draw = ImageDraw.Draw(self.image)
        unit = identity.scale * pose.zoom * self.size
        cx = self.size * (0.5 + identity.offset[0] + pose.dx)
        cy = self.size * (0.5 + identity.offset[1] + pose.dy)
        a = math.radians(pose.roll)
        self._m = (unit * math.cos(a), -unit * math.sin(a), unit * math.sin(a), unit * math.cos(a), cx, cy)
        self.unit = unit

    def pt(self, p) -> tuple[float, float]:
        a, b, c, d, cx, cy = self._m
        return (cx + a * p[0] + b * p[1], cy + c * p[0] + d * p[1])

    def pts(self, ps) -> list[tuple[float, float]]:
        return [self.pt(p) for p in ps]

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.unit)))

    def polygon(self, ps, fill, outline=None, width: float = 0.0) -> None:
        self.draw.polygon(self.pts(ps), fill=fill)
        if outline is not None:
            self.line([*ps, ps[0]], outline, width)

    def line(self, ps, fill, width: float) -> None:
        self.draw.line(self.pts(ps), fill=fill, width=self.w(width), joint="curve")

    def ellipse(self, center, rx: float, ry: float, fill=None, outline=None, width: float = 0.0, n: int = 28):
        ps = [(center[0] + rx * math.cos(2 * math.pi * i / n), center[1] + ry * math.sin(2 * math.pi * i / n))
              for i in range(n)]
        self.draw.polygon(self.pts(ps), fill=fill)
        if outline is not None:
            self.line([*ps, ps[0]], outline, width)

    def result(self, size: int) -> np.ndarray:
        return np.asarray(self.image.resize((size, size), Image.BILINEAR if self.ss == 1 else Image.BOX))


def render_face(identity: Identity, aus: Mapping[int, float] | None = None, pose: Pose = Pose(),
                size: int = 224, occluder: tuple[float, float, float] | None = None,
                supersample: int = 2) -> np.ndarray:
    """Render one frame (H, W, 3 uint8). ``aus`` maps AU number → intensity 0–5; ``occluder`` = (x, y,
    radius) in face units draws an occluding hand-like blob."""
    aus = aus or {}

    def t(au: int) -> float:
        return min(1.0, max(0.0, float(aus.get(au, 0.0)) / 5.0))

    cv = _Canvas(size, identity, pose, supersample)
    skin, dark = identity.skin, _mix(identity.skin, (40, 25, 20), 0.55)
    crease = _mix(identity.skin, (60, 35, 30), 0.45)
    fh = identity.face_height

    # --- head: hair behind, face outline (jaw follows AU26), ears ---------------------------------------
    jaw = 0.12 * t(26)
    if identity.hair_style == "long":
        cv.ellipse((0, -0.15), 1.18, fh * 0.95 + 0.25, fill=identity.hair_color)
    for side in (-1, 1):
        cv.ellipse((side * 1.0, -0.1), 0.12, 0.22, fill=_mix(skin, (0, 0, 0), 0.08))
    upper = [(math.cos(a), -fh * 0.85 * math.sin(a)) for a in np.linspace(0, math.pi, 20)]
    lower = [(math.cos(a), (fh + jaw) * math.sin(a) * 0.92 + 0.08 * math.sin(a) ** 8)
             for a in np.linspace(math.pi, 2 * math.pi, 20)]
    lower = [(x, -y) for x, y in lower]
    cv.polygon(upper + lower, fill=skin, outline=_mix(skin, (0, 0, 0), 0.35), width=0.015)
    if identity.hair_style in ("short", "long"):
        cap = [(math.cos(a) * 1.03, -fh * 0.87 * math.sin(a) - 0.02) for a in np.linspace(0, math.pi, 20)]
        cv.polygon(cap + [(-0.97, -0.72), (-0.4, -0.93), (0.3, -0.95), (0.97, -0.72)], fill=identity.hair_color)

    # --- forehead wrinkles (AU1 centre, AU2 lateral) and glabella lines (AU4) ---------------------------
    for k in range(3):
        y = -0.78 - 0.07 * k
        if t(1) > 0.05:
            cv.line(_quad((-0.2, y), (0, y - 0.03), (0.2, y)), _mix(skin, crease, t(1)), 0.012)
        if t(2) > 0.05:
            for s in (-1, 1):
                cv.line(_quad((s * 0.28, y + 0.02), (s * 0.42, y - 0.02), (s * 0.58, y + 0.03)),
                        _mix(skin, crease, t(2)), 0.012)
    if t(4) > 0.05:
        for s in (-1, 1):
            cv.line([(s * 0.05, -0.52), (s * 0.035, -0.36)], _mix(skin, crease, t(4)), 0.014)

    # --- eyes ------------------------------------------------------------------------------------------
    closure = max(t(43), t(45))
    ex, ey = 0.38 * identity.eye_spacing, -0.3
    ew, eh = 0.19 * identity.eye_size, 0.10 * identity.eye_size
    up = eh * (1 + 0.9 * t(5) - 0.35 * t(7) - 0.2 * t(6)) * (1 - closure)
    low = eh * 0.75 * (1 - 0.55 * t(6) - 0.6 * t(7)) * (1 - closure)
    for s in (-1, 1):
        c = (s * ex, ey)
        left, right = (c[0] - ew, ey), (c[0] + ew, ey)
        top = _quad(left, (c[0], ey - 2 * up), right, 12)
        bottom = _quad(right, (c[0], ey + 2 * low), left, 12)
        if up + low > 0.004:
            cv.polygon(top + bottom, fill=(245, 245, 240))
            r = 0.075 * identity.eye_size
            cv.ellipse((c[0], ey + 0.01), r, r, fill=(70, 50, 35))
            cv.ellipse((c[0], ey + 0.01), r * 0.45, r * 0.45, fill=(15, 10, 10))
            # lids cover the iris outside the aperture
            cv.polygon(top + [(right[0] + 0.02, ey - 0.13), (left[0] - 0.02, ey - 0.13)], fill=skin)
            cv.polygon(bottom + [(left[0] - 0.02, ey + 0.13), (right[0] + 0.02, ey + 0.13)], fill=skin)
        cv.line(top, dark, 0.018)
        cv.line(bottom, _mix(skin, dark, 0.6), 0.01)
        # crow's feet (AU6) and cheek furrow raised by AU6
        if t(6) > 0.05:
            for k in (-1, 0, 1):
                cv.line([(s * (ex + ew + 0.03), ey + 0.03 * k), (s * (ex + ew + 0.12), ey + 0.07 * k - 0.01)],
                        _mix(skin, crease, t(6)), 0.012)
        furrow_y = ey + 0.2 - 0.08 * t(6)
        cv.line(_quad((s * (ex - 0.14), furrow_y), (s * ex, furrow_y + 0.05), (s * (ex + 0.16), furrow_y - 0.02)),
                _mix(skin, crease, 0.25 + 0.6 * t(6)), 0.012)
        # cheek prominence rises with AU6
        cv.ellipse((s * 0.52, 0.12 - 0.1 * t(6)), 0.16, 0.1, fill=_mix(skin, (225, 120, 110), 0.12 + 0.18 * t(6)))

    # --- brows (after the eyes, whose lid masks reach up to them) -----------------------------------------------------------------------------------------
    inner_y = -0.52 - 0.15 * t(1) + 0.11 * t(4) + 0.05 * t(9)
    inner_x = 0.15 - 0.06 * t(4)
    mid_y = -0.62 - 0.06 * t(1) - 0.10 * t(2) + 0.07 * t(4)
    outer_y = -0.53 - 0.16 * t(2) + 0.04 * t(4)
    bw = 0.045 * identity.brow_thickness
    for s in (-1, 1):
        brow = _quad((s * inner_x, inner_y), (s * 0.36, mid_y - 0.04), (s * 0.62, outer_y))
        cv.line(brow, _mix(identity.hair_color, (30, 20, 15), 0.5), bw)

    # --- nose: wings rise with AU9 (and a little AU10), bridge wrinkles with AU9 -----------------------------
    nl = identity.nose_length
    wing_y = 0.2 * nl - 0.06 * t(9) - 0.03 * t(10)
    cv.line([(0.0, -0.25), (0.02, 0.2 * nl - 0.06)], _mix(skin, dark, 0.35), 0.012)
    cv.line(_quad((-0.14, wing_y), (0, wing_y + 0.08), (0.14, wing_y)), _mix(skin, dark, 0.7), 0.018)
    for s in (-1, 1):
        cv.ellipse((s * 0.07, wing_y + 0.015), 0.03, 0.018, fill=_mix(skin, (30, 20, 20), 0.6))
    if t(9) > 0.05:
        for k in range(3):
            y = -0.16 + 0.05 * k
            cv.line(_quad((-0.08, y), (0, y - 0.025), (0.08, y)), _mix(skin, crease, t(9)), 0.012)

    # --- mouth ---------------------------------------------------------------------------------------------
    mw = 0.3 * identity.mouth_width
    my = 0.58
    corner_x = mw * (1 + 0.25 * t(12) + 0.35 * t(20) - 0.18 * t(14) - 0.15 * t(23) - 0.1 * t(24))
    corner_y = my - 0.13 * t(12) + 0.11 * t(15) + 0.03 * t(20) + 0.02 * t(17)
    upper_thick = 0.055 * (1 - 0.5 * t(23) - 0.75 * t(24) - 0.3 * t(20)) + 0.005
    lower_thick = 0.075 * (1 - 0.5 * t(23) - 0.7 * t(24) - 0.3 * t(20)) + 0.005 + 0.02 * t(16)
    upper_raise = 0.07 * t(10)
    chin_push = 0.05 * t(17)
    gap = 0.03 * t(25) + 0.17 * t(26) + 0.04 * t(16)
    if t(24) > 0.3 or t(23) > 0.5:
        gap = 0.04 * t(16)
    inner_up = my - upper_raise - 0.6 * chin_push - 0.01 * t(17)
    inner_low = my + gap - chin_push
    mid_bend = 0.04 * t(17)  # chin boss makes the lip line an inverted U
    lip_color = _mix(skin, (170, 60, 70), 0.55)
    lc, rc = (-corner_x, corner_y), (corner_x, corner_y)
    inner_top = _quad(lc, (0, 2 * inner_up - corner_y - mid_bend), rc)
    inner_bottom = _quad(rc, (0, 2 * inner_low - corner_y - mid_bend), lc)
    outer_top = _quad(lc, (-mw * 0.35, inner_up - 2.3 * upper_thick), (0, inner_up - upper_thick * 1.3))
    outer_top += _quad((0, inner_up - upper_thick * 1.3), (mw * 0.35, inner_up - 2.3 * upper_thick), rc)
    outer_bottom = _quad(rc, (0, 2 * (inner_low + lower_thick) - corner_y - mid_bend), lc)
    cv.polygon(outer_top + inner_top[::-1], fill=lip_color)
    cv.polygon(outer_bottom + inner_bottom[::-1], fill=lip_color)
    if gap > 0.008:
        cv.polygon(inner_top + inner_bottom, fill=(70, 20, 25))
        if gap > 0.05:
            teeth = _quad((-corner_x * 0.7, inner_up + 0.005), (0, inner_up + 0.03), (corner_x * 0.7, inner_up + 0.005))
            cv.polygon(teeth + [(corner_x * 0.6, inner_up + 0.004)], fill=(240, 238, 225))
    cv.line(inner_top, _mix(lip_color, (60, 15, 20), 0.5 + 0.4 * t(24)), 0.012 + 0.01 * t(24))
    if t(24) > 0.05:  # bulges above and below pressed lips
        cv.line(_quad((-mw * 0.6, my - 0.1), (0, my - 0.13), (mw * 0.6, my - 0.1)), _mix(skin, crease, t(24)), 0.01)
        cv.line(_quad((-mw * 0.6, my + 0.12), (0, my + 0.15), (mw * 0.6, my + 0.12)), _mix(skin, crease, t(24)),
                0.01)
    for s in (-1, 1):
        # nasolabial furrow from the nose wing to beside the lip corner: deeper with AU10, AU12, AU9
        depth = max(t(10), 0.8 * t(12), 0.5 * t(9))
        start = (s * 0.17, wing_y + 0.02)
        end = (s * (corner_x + 0.08), corner_y + 0.04)
        cv.line(_quad(start, (s * (0.3 + 0.08 * t(12)), (start[1] + end[1]) / 2), end),
                _mix(skin, crease, 0.15 + 0.75 * depth), 0.012 + 0.01 * depth)
        if t(14) > 0.05:  # dimples
            cv.ellipse((s * (corner_x + 0.05), corner_y), 0.018, 0.03, fill=_mix(skin, crease, t(14)))
    # chin: mentolabial sulcus and chin-boss wrinkles (AU17)
    chin_y = inner_low + lower_thick + 0.12 + jaw * 0.9
    cv.line(_quad((-0.12, chin_y - chin_push), (0, chin_y + 0.03 - chin_push), (0.12, chin_y - chin_push)),
            _mix(skin, crease, 0.2 + 0.6 * t(17)), 0.01)
    if t(17) > 0.05:
        for k in range(4):
            cv.ellipse((-0.09 + 0.06 * k, chin_y + 0.12 + 0.02 * (k % 2)), 0.012, 0.012,
                       fill=_mix(skin, crease, t(17)))

    # --- accessories and occluders ---------------------------------------------------------------------
    if identity.glasses:
        for s in (-1, 1):
            cv.ellipse((s * ex, ey), ew + 0.07, eh + 0.1, outline=(25, 25, 30), width=0.02)
        cv.line([(-ex + ew + 0.07, ey), (ex - ew - 0.07, ey)], (25, 25, 30), 0.02)
    if occluder is not None:
        ox, oy, radius = occluder
        cv.ellipse((ox, oy), radius, radius * 0.75, fill=_mix(skin, (200, 150, 120), 0.4),
                   outline=_mix(skin, (0, 0, 0), 0.3), width=0.012)
    return cv.result(size)


def region_mask(identity: Identity, au: int, size: int = 224, pose: Pose = Pose(), margin: float = 0.06) -> np.ndarray:
    """Boolean (H, W) mask of the face region an AU acts on, in pixels (for tests and montages)."""
    x0, y0, x1, y1 = AU_REGIONS[au]
    cv = _Canvas(size, identity, pose, supersample=1)
    corners = cv.pts([(x0 - margin, y0 - margin), (x1 + margin, y0 - margin), (x1 + margin, y1 + margin),
                      (x0 - margin, y1 + margin)])
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(corners, fill=255)
    return np.asarray(mask) > 0
