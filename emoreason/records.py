"""The sample record: what every dataset adapter yields and every stage reads (docs/ARCHITECTURE.md) — and the
AU columns of a training row (what ``synth-cot`` writes and the GRPO rewards score against).

Training-row AU contract (``ROW_AU_COLUMNS``), all from the evidence the row's text was built on:

* ``aus`` — AUs present in that evidence (list; None when the clip has no evidence at all);
* ``au_intensity`` — JSON ``{"12": peak 0–5}`` for the present AUs whose intensity is known;
* ``au_timing`` — JSON ``{"12": {"onset_s", "apex_s", "offset_s"}}`` in seconds from the clip's start;
* ``au_source`` — one of ``AU_SOURCES`` (``detector:NAME`` for a detector);
* ``au_observed`` — False for prototype evidence (the label's FACS prototype): AU rewards give None there;
* ``au_coded`` — the AUs the source codes (claims of other AUs are unknown, not wrong); None when unknown;
* ``au_rarity`` — Facial-R1's per-sample AU-rarity weight in [0, 1] (None without observed AUs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MEDIA_TYPES = ("video", "frames", "image")
AU_SOURCES = ("dataset_labels", "dataset_frames", "openface", "detector:NAME", "synthetic", "prototype")
ROW_AU_COLUMNS = ("aus", "au_intensity", "au_timing", "au_source", "au_observed", "au_coded", "au_rarity")


def media_identity(media: dict[str, Any]) -> dict[str, Any]:
    """What of a record's ``media`` decides what a model is shown, without where the copy sits: the media type and
    the layout it was found in (DFEW's 16-frame folders and its mp4s are other inputs under one clip id), the frame
    rate, a window's frame indices and, where the clip's audio is another file (DFEW's/MAFW's original clip, which
    also times the frames), that file's layout. The eval cache and the CoT shards compare it, so moving the data
    or spelling its root otherwise keeps them."""
    identity = {k: media.get(k) for k in ("type", "layout", "fps", "frame_indices")}
    if media.get("audio_layout"):
        identity["audio_layout"] = media["audio_layout"]
    return identity


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
