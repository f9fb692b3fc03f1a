"""Audio: reading a clip's track (mono, 16 kHz, aligned with the sampled frames), its bad inputs, Praat prosody,
and the Qwen2.5-Omni token timing the alignment serves."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from emoreason.audio import (
    AudioLengthMismatchError,
    NoAudioError,
    audio_for_frames,
    audio_token_count,
    omni_processor_kwargs,
    omni_video_fps,
    probe_audio,
    read_audio,
)
from emoreason.audio.prosody import ProsodyMeasurement, measure_prosody
from emoreason.video import CorruptMediaError, FramePolicy, MissingMediaError, load_frames, write_video

RATE = 16000


def _tone(hz: float, seconds: float, rate: int = RATE, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_av(path: Path, audio: np.ndarray | None, rate: int, layout: str = "mono", frames: int = 16,
             fps: int = 8) -> Path:
    """A grey H.264 mp4 with an AAC track of any layout / rate (``audio``: (channels, samples) or (samples,))."""
    return write_video(np.full((frames, 32, 32, 3), 128, np.uint8), path, fps=fps, audio=audio, audio_rate=rate,
                       audio_layout=layout)


def _png(tmp_path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "face.png")
    return tmp_path / "face.png"


def _dominant_hz(wave: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


# --- reading ------------------------------------------------------------------------------------------------

def test_written_track_reads_back_aligned_and_deterministic(tmp_path):
    tone = _tone(220, 2.0)
    a = write_video(np.zeros((16, 32, 32, 3), np.uint8), tmp_path / "a.mp4", fps=8, audio=tone)
    b = write_video(np.zeros((16, 32, 32, 3), np.uint8), tmp_path / "b.mp4", fps=8, audio=tone)
    assert a.read_bytes() == b.read_bytes()
    info = probe_audio(a)
    assert (info.codec, info.sample_rate, info.channels) == ("aac", RATE, 1)
    loaded = read_audio(a)
    assert loaded.sample_rate == RATE and loaded.start_s == 0.0 and loaded.waveform.dtype == np.float32
    assert abs(_dominant_hz(loaded.waveform[:RATE]) - 220) < 3
    # no offset between what was written and what is read (the AAC priming delay is compensated)
    n = RATE
    lags = [float(np.dot(loaded.waveform[k:k + n], tone[:n])) for k in range(0, 200)]
    assert int(np.argmax(lags)) == 0


@pytest.mark.parametrize(("rate", "layout"), [(44100, "stereo"), (48000, "mono"), (22050, "stereo"),
                                              (8000, "mono"), (11025, "5.1")])
def test_any_rate_and_layout_becomes_16k_mono(tmp_path, rate, layout):
    channels = av.AudioLayout(layout).nb_channels
    path = write_av(tmp_path / "x.mp4", np.stack([_tone(330, 2.0, rate)] * channels), rate, layout)
    loaded = read_audio(path)
    assert loaded.sample_rate == RATE and loaded.source_rate == rate and loaded.source_channels == channels
    assert loaded.waveform.ndim == 1 and abs(loaded.duration_s - 2.0) < 0.15
    assert abs(_dominant_hz(loaded.waveform[:RATE]) - 330) < 3
    assert 0.2 < np.abs(loaded.waveform[2000:RATE]).max() < 0.4  # same level, not summed over channels


def test_stereo_is_the_mean_of_the_channels(tmp_path):
    left = _tone(300, 2.0)
    path = write_av(tmp_path / "phase.mp4", np.stack([left, -left]), RATE, "stereo")
    assert np.abs(read_audio(path).waveform).max() < 0.02  # opposite channels cancel, as vLLM's mono mix does
    path = write_av(tmp_path / "one.mp4", np.stack([left, np.zeros_like(left)]), RATE, "stereo")
    assert 0.12 < np.abs(read_audio(path).waveform[2000:]).max() < 0.18


def test_audio_for_frames_covers_the_sampled_video(tmp_path):
    path = write_video(np.zeros((16, 32, 32, 3), np.uint8), tmp_path / "c.mp4", fps=8, audio=_tone(200, 2.0))
    frames = load_frames(path, FramePolicy(nframes=8), resize=False)
    clip = audio_for_frames(path, frames)
    assert clip.start_s == frames.timestamps[0] == 0.0
    # the whole track, as vLLM takes it: the 2 s of the 16-frame / 8 fps video plus the AAC last-frame padding
    assert len(clip.waveform) == len(read_audio(path).waveform) and 2 * RATE <= len(clip.waveform) < 2.1 * RATE
    fitted = audio_for_frames(path, frames, span="video")
    assert len(fitted.waveform) == 2 * RATE and 0 < fitted.meta["trimmed_s"] < 0.1
    assert np.array_equal(fitted.waveform, clip.waveform[:2 * RATE])
    assert omni_video_fps(frames) == pytest.approx(4.0)  # 8 of 16 frames over 2 s → 2 temporal patches per s
    with pytest.raises(NoAudioError, match="image"):
        audio_for_frames(path, load_frames(_png(tmp_path), FramePolicy()))


def test_bad_inputs_are_named_errors(tmp_path):
    silent = write_video(np.zeros((8, 32, 32, 3), np.uint8), tmp_path / "silent.mp4", fps=8)
    with pytest.raises(NoAudioError, match="silent.mp4: no audio track"):
        read_audio(silent)
    assert probe_audio(silent) is None
    with pytest.raises(MissingMediaError, match="missing.mp4"):
        read_audio(tmp_path / "missing.mp4")
    good = write_video(np.zeros((16, 32, 32, 3), np.uint8), tmp_path / "good.mp4", fps=8, audio=_tone(200, 2.0))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMediaError, match="truncated.mp4: PyAV cannot open"):
        read_audio(truncated)
    garbled = tmp_path / "garbled.mp4"
    spoiled = bytearray(data)
    start = spoiled.find(b"mdat") + 200
    spoiled[start:start + 3800] = np.random.default_rng(0).integers(0, 256, 3800, dtype=np.uint8).tobytes()
    garbled.write_bytes(bytes(spoiled))
    with pytest.raises(CorruptMediaError, match="garbled.mp4: the audio stream cannot be decoded"):
        read_audio(garbled)


def test_length_mismatch_is_an_error_or_padded_on_request(tmp_path):
    path = write_av(tmp_path / "short.mp4", _tone(200, 1.0), RATE, frames=16, fps=8)  # 2 s video, 1 s audio
    frames = load_frames(path, FramePolicy(nframes=8), resize=False)
    with pytest.raises(AudioLengthMismatchError, match=r"short.mp4: audio track \(1.\d+ s\) ends 0.9\d s before"):
        audio_for_frames(path, frames)
    padded = audio_for_frames(path, frames, on_mismatch="pad")
    assert len(padded.waveform) == 2 * RATE and 0.9 < padded.meta["padded_s"] < 1.0
    assert np.abs(padded.waveform[int(1.1 * RATE):]).max() == 0.0
    long = write_av(tmp_path / "long.mp4", _tone(200, 3.5), RATE, frames=16, fps=8)
    with pytest.raises(AudioLengthMismatchError, match="runs on"):
        audio_for_frames(long, load_frames(long, FramePolicy(nframes=8), resize=False))


def test_token_count_and_processor_kwargs_match_qwen2_5_omni(tmp_path):
    from transformers import WhisperFeatureExtractor
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=RATE, hop_length=160, n_fft=400,
                                        chunk_length=30, return_attention_mask=True)
    for samples in (32000, 33333, 400):
        mask = extractor(np.zeros(samples, np.float32), sampling_rate=RATE, padding="max_length",
                         return_attention_mask=True)["attention_mask"]
        expected = int(_get_feat_extract_output_lengths(np.asarray(mask).sum(-1))[0])
        assert audio_token_count(samples) == expected, samples
    path = write_video(np.zeros((16, 32, 32, 3), np.uint8), tmp_path / "k.mp4", fps=8, audio=_tone(200, 2.0))
    frames = load_frames(path, FramePolicy(nframes=8), resize=False)
    kwargs = omni_processor_kwargs([frames, frames], [audio_for_frames(path, frames), None])
    assert kwargs["fps"] == pytest.approx(4.0) and kwargs["audio_from_video_indices"] == [0]
    assert kwargs["load_audio_from_video"] is True and len(kwargs["audio"]) == 1
    other = load_frames(path, FramePolicy(nframes=4), resize=False)
    with pytest.raises(ValueError, match="different fps"):
        omni_processor_kwargs([frames, other], [None, None])


# --- prosody ------------------------------------------------------------------------------------------------

def _pulse_voice(f0: np.ndarray, rate: int = RATE, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """A buzz (one decaying pulse per period) following the F0 track ``f0`` (Hz per sample)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(f0))
    pos = 0.0
    ring = np.exp(-np.arange(80) / 12.0) * np.sin(2 * np.pi * 700 * np.arange(80) / rate)
    while pos < len(f0) - 80:
        i = int(pos)
        out[i:i + 80] += ring
        pos += rate / f0[i] * (1 + jitter * rng.standard_normal())
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def test_prosody_measures_known_pitch_rise_and_loudness():
    t = np.arange(2 * RATE) / RATE
    rising = _pulse_voice(150 * 2 ** (t * 6 / 12 / 2))  # 150 Hz → 6 semitones higher over 2 s
    m = measure_prosody(rising, RATE)
    assert m.duration_s == 2.0 and m.voiced_fraction > 0.9
    assert 150 < m.f0_min_hz < 165 and 195 < m.f0_max_hz < 215
    assert m.f0_slope_st_per_s == pytest.approx(3.0, abs=0.3)
    assert m.f0_peak_hz == pytest.approx(212, rel=0.03) and m.f0_peak_time_s > 1.8
    assert m.f0_contour[0][1] == pytest.approx(153, rel=0.03) and len(m.f0_contour) == 20
    louder = measure_prosody(rising * 2, RATE)
    assert louder.intensity_mean_db - m.intensity_mean_db == pytest.approx(6.0, abs=0.2)  # ×2 amplitude = +6 dB
    assert louder.f0_mean_hz == m.f0_mean_hz


def test_jitter_grows_with_period_irregularity_and_silence_measures_nothing():
    flat = np.full(2 * RATE, 200.0)
    steady = measure_prosody(_pulse_voice(flat, jitter=0.0), RATE)
    shaky = measure_prosody(_pulse_voice(flat, jitter=0.02), RATE)
    assert steady.jitter_local_pct < 0.5 < 1.5 < shaky.jitter_local_pct
    assert steady.hnr_db > shaky.hnr_db
    silence = measure_prosody(np.zeros(RATE, np.float32), RATE)
    assert silence.f0_mean_hz is None and silence.voiced_fraction == 0.0 and silence.syllables == 0


def test_syllable_rate_counts_nuclei():
    t = np.arange(2 * RATE) / RATE
    voice = _pulse_voice(np.full(len(t), 180.0))
    for per_second in (3, 5):
        envelope = np.clip(np.sin(2 * np.pi * per_second * t), 0, None) ** 2  # `per_second` bursts per second
        m = measure_prosody(voice * envelope, RATE)
        assert m.syllables == 2 * per_second, per_second
        assert m.nucleus_rate_syl_per_s == pytest.approx(per_second, rel=0.05)


def test_measurement_round_trips_through_json():
    import json

    t = np.arange(RATE) / RATE
    m = measure_prosody(_pulse_voice(np.full(len(t), 140.0)), RATE)
    again = ProsodyMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m and again.f0_at(0.5) == pytest.approx(140, rel=0.03)
