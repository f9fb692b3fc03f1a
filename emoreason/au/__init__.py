"""AU evidence from raw faces, offline: MediaPipe FaceMesh landmarks (``emoreason[au]``) → a geometric FACS
AU estimator (pure numpy, :mod:`emoreason.au.geometry`) → OpenFace-2.x-layout CSVs and the ``AUDetector``
interface of the CoT pipeline. See docs/au_estimator.md for the measures, the calibration and its limits.

MediaPipe is imported only when landmarks are computed, so the numpy core works without the extra.
"""

from emoreason.au.analysis import AUConfig, MediaAUs, analyse_media, analyse_to_csv, openface_rows
from emoreason.au.detector import DETECTORS, LandmarkAUDetector, build_detector
from emoreason.au.geometry import AU_SPECS, AUFrames, QualityLimits, estimate, frontalise

__all__ = [
    "AU_SPECS",
    "DETECTORS",
    "AUConfig",
    "AUFrames",
    "LandmarkAUDetector",
    "MediaAUs",
    "QualityLimits",
    "analyse_media",
    "analyse_to_csv",
    "build_detector",
    "estimate",
    "frontalise",
    "openface_rows",
]
