"""The sample record: what every dataset adapter yields and every stage reads (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MEDIA_TYPES = ("video", "frames", "image")


@dataclass
class SampleRecord:
    id: str
    dataset: str
    media: dict[str, Any]  # {type: video|frames|image, path: str | list[str], fps?: float}
    split: str | None = None
    fold: int | None = None
    emotion: str | None = None  # canonical label (emoreason.knowledge)
    emotion_raw: str | None = None  # as the dataset wrote it
    emotions: list[str] = field(default_factory=list)  # multi-label / compound components
    aus: list[int] = field(default_factory=list)  # AUs present
    au_intensity: dict[str, float] = field(default_factory=dict)  # {"12": peak 0–5}
    au_frames: dict[str, list[float]] | None = None  # optional per-frame intensities (or 0/1 occurrence)
    valence: float | None = None  # −1..1
    arousal: float | None = None
    rationale: str | None = None  # reference explanation text
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.media.get("type") not in MEDIA_TYPES:
            raise ValueError(f"{self.id}: media type must be one of {MEDIA_TYPES}, got {self.media.get('type')!r}")
        self.aus = sorted({int(a) for a in self.aus})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
