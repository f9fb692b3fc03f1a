"""Audio: reading a clip's audio track aligned with its sampled frames, prosody measurement, vocal cues."""

from emoreason.audio.io import (
    AUDIO_TOKENS_PER_SECOND,
    SAMPLE_RATE,
    AudioInfo,
    AudioLengthMismatchError,
    LoadedAudio,
    NoAudioError,
    audio_for_frames,
    audio_token_count,
    omni_processor_kwargs,
    omni_video_fps,
    probe_audio,
    read_audio,
)

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioLengthMismatchError",
    "LoadedAudio",
    "NoAudioError",
    "audio_for_frames",
    "audio_token_count",
    "omni_processor_kwargs",
    "omni_video_fps",
    "probe_audio",
    "read_audio",
]
