"""SynthFACS: procedural, AU-controlled face videos with exact ground truth (the embedded dataset); with
``audio``, SynthFACS-AV: the faces speak, with emotion-dependent prosody (``emoreason.synth.voice``)."""

from emoreason.synth.clips import (
    DIFFICULTIES,
    PROFILES,
    ClipSpec,
    generate_av_clip,
    generate_clip,
    sample_expression,
)
from emoreason.synth.dataset import EMOTION_SETS, SynthConfig, build_dataset, identity_splits, plan
from emoreason.synth.face import AU_REGIONS, RENDERED_AUS, Identity, Pose, region_mask, render_face

__all__ = [
    "AU_REGIONS",
    "DIFFICULTIES",
    "EMOTION_SETS",
    "PROFILES",
    "RENDERED_AUS",
    "ClipSpec",
    "Identity",
    "Pose",
    "SynthConfig",
    "build_dataset",
    "generate_av_clip",
    "generate_clip",
    "identity_splits",
    "plan",
    "region_mask",
    "render_face",
    "sample_expression",
]
