"""``LandmarkAUDetector``: the ``AUDetector`` interface of ``emoreason.cot.evidence`` over the landmark
estimator, with results cached by media content.

The cache holds the same OpenFace-layout CSV ``au-detect`` writes (``CACHE/<sha256[:2]>/<sha256>-<config>.csv``),
read back with ``emoreason.datasets.read_openface_csv`` — one reader for both producers. A second run on the
same bytes with the same settings reads the CSV instead of recomputing; a changed calibration, estimator code
or MediaPipe version changes the key (``AUConfig.key``), so stale results are never reused. A clip where no frame has a usable
face yields no per-frame values (``{}``): no evidence, not "nothing active". Frames without a usable face, and
AUs whose region is covered, stay NaN (unknown) in what ``detect`` returns: losing sight of the face is not an
AU's offset, and a covered mouth is not "no AU12".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from emoreason.au.analysis import AUConfig, analyse_media, write_outputs
from emoreason.au.geometry import cited_aus
from emoreason.au.media import content_hash
from emoreason.datasets.openface import read_openface_csv
from emoreason.records import SampleRecord

log = logging.getLogger(__name__)


class LandmarkAUDetector:
    """Per-frame AU intensities (0–5) from raw pixels; ``name`` is what provenance records
    (``evidence: detector:landmarks``)."""

    name = "landmarks"

    def __init__(self, cache_dir: str | Path = ".cache/emoreason-au", min_confidence: float = 0.8,
                 aus: str | list[int] = "reliable", **config):
        cited_aus(aus, "video", ())  # validates ``aus`` now, not on the first clip
        self.cache_dir = Path(cache_dir)
        self.config = AUConfig(**config)
        self.min_confidence = min_confidence
        # "reliable": only AUs validated for the media's mode (docs/au_estimator.md). Not named ``aus``: the AUs a
        # detector codes are the keys of what ``detect`` returns (they depend on the media's mode).
        self.cite = aus
        self.computed = 0  # files analysed (not served from the cache), for reports and tests

    def fingerprint(self) -> str:
        """What this detector's evidence depends on (the estimator's cache key — its code, calibration,
        settings, MediaPipe version — and the AUs it cites): ``synth-cot`` rebuilds shards when it changes."""
        return json.dumps([self.config.key(), self.cite, self.min_confidence], default=str)

    def _media_path(self, record: SampleRecord) -> Path:
        path = record.media.get("path")
        if isinstance(path, list | tuple):
            if not path:
                raise ValueError(f"{record.id}: media has no path")
            path = Path(path[0]).parent if len(path) > 1 else path[0]
        return Path(str(path))

    def csv_for(self, media: str | Path) -> Path:
        """The cached CSV for ``media`` (computed now if it is not cached yet)."""
        media = Path(media)
        digest = content_hash(media)
        csv_path = self.cache_dir / digest[:2] / f"{digest}-{self.config.key()}.csv"
        if not csv_path.exists():
            result = analyse_media(media, self.config)
            write_outputs(result, csv_path, self.config, digest)
            self.computed += 1
        return csv_path

    def detect(self, record: SampleRecord) -> tuple[dict[int, np.ndarray], float | None]:
        csv_path = self.csv_for(self._media_path(record))
        track = read_openface_csv(csv_path)
        if not track.valid(self.min_confidence).any():
            return {}, track.fps
        mode = json.loads(csv_path.with_suffix(".au.json").read_text())["baseline_mode"]
        keep = cited_aus(self.cite, mode, track.intensity)
        usable = track.valid(self.min_confidence)
        # NaN (unknown) where there is no usable face; the CSV already holds NaN where an AU's region is covered
        frames = {au: np.where(usable, v, np.nan) for au, v in track.intensity.items() if au in keep}
        # the rate of the rows returned: with --stride N they are every Nth source frame
        fps = float(record.media["fps"]) / self.config.stride if record.media.get("fps") else track.fps
        return frames, (float(fps) if fps else None)


DETECTORS = {"landmarks": LandmarkAUDetector}


def build_detector(name: str, **options):
    """A detector by the name a CoT config gives (``detector: landmarks``)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown AU detector {name!r}; available: {sorted(DETECTORS)}")
    return DETECTORS[name](**options)
