"""SynthFACS-AV: voices whose measured prosody follows the emotion profiles, lips that move with the syllables,
masked clips with a stated label rule, determinism, and video-only SynthFACS left as it was."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from emoreason.audio import read_audio
from emoreason.audio.prosody import measure_prosody
from emoreason.synth import ClipSpec, Identity, SynthConfig, build_dataset, generate_av_clip, generate_clip
from emoreason.synth.dataset import MASKS
from emoreason.synth.voice import (
    VOCAL_PROFILES,
    SpeakerVoice,
    activation_curve,
    synthesize_speech,
    vocal_profile,
)

RAMP = np.concatenate([np.zeros(3), np.linspace(0, 1, 6), np.ones(4), np.linspace(1, 0.4, 3)])  # face: 16 frames


def _measure(emotion: str, speaker: SpeakerVoice, seeds=(1, 2, 3), strength: float = 0.9):
    out = [measure_prosody(synthesize_speech(emotion, speaker, activation_curve(RAMP, strength), 8, s).waveform,
                           16000) for s in seeds]
    return {k: float(np.mean([getattr(m, k) for m in out])) for k in
            ("f0_mean_hz", "f0_range_st", "f0_slope_st_per_s", "intensity_mean_db", "nucleus_rate_syl_per_s")}


@pytest.mark.parametrize("identity_seed", [0, 5])
def test_measured_prosody_follows_the_published_directions(identity_seed):
    speaker = SpeakerVoice.for_identity(Identity.sample(identity_seed, np.random.default_rng(identity_seed)))
    got = {e: _measure(e, speaker, strength=0.0 if e == "neutral" else 0.9) for e in
           ("neutral", "anger", "happiness", "fear", "sadness")}
    neutral = got["neutral"]
    for emotion in ("anger", "happiness", "fear"):  # high arousal: higher F0, faster (Juslin & Laukka 2003)
        assert got[emotion]["f0_mean_hz"] > 1.12 * neutral["f0_mean_hz"], emotion
        assert got[emotion]["f0_slope_st_per_s"] > 0.75, emotion  # rising contour
    assert got["anger"]["intensity_mean_db"] > neutral["intensity_mean_db"] + 3  # loud
    assert got["anger"]["nucleus_rate_syl_per_s"] > neutral["nucleus_rate_syl_per_s"]
    assert got["fear"]["nucleus_rate_syl_per_s"] > 1.1 * neutral["nucleus_rate_syl_per_s"]
    assert got["fear"]["f0_range_st"] < got["happiness"]["f0_range_st"]  # high but little-varying F0
    sad = got["sadness"]  # low, soft, slow, monotone, falling
    assert sad["f0_mean_hz"] < 0.95 * neutral["f0_mean_hz"]
    assert sad["intensity_mean_db"] < neutral["intensity_mean_db"] - 2
    assert sad["nucleus_rate_syl_per_s"] < 0.9 * neutral["nucleus_rate_syl_per_s"]
    assert sad["f0_slope_st_per_s"] < -0.75 and sad["f0_range_st"] < got["happiness"]["f0_range_st"]


def test_profiles_cover_every_emotion_and_compounds_average():
    from emoreason.knowledge import BASIC_EMOTIONS, COMPOUND_EMOTIONS

    assert set(BASIC_EMOTIONS) <= set(VOCAL_PROFILES)
    for name in BASIC_EMOTIONS:
        assert VOCAL_PROFILES[name].source
    compound = vocal_profile("happily_surprised")
    happy, surprised = VOCAL_PROFILES["happiness"], VOCAL_PROFILES["surprise"]
    assert compound.f0_ratio == pytest.approx(np.sqrt(happy.f0_ratio * surprised.f0_ratio))
    assert compound.intensity_db == pytest.approx((happy.intensity_db + surprised.intensity_db) / 2)
    assert all(vocal_profile(c).source.startswith("mean of") for c in COMPOUND_EMOTIONS)


def _spec(emotion: str = "anger", **kw) -> ClipSpec:
    identity = Identity.sample(2, np.random.default_rng(2))
    return ClipSpec(0, "c", emotion, identity, "test", seed=7, frames=16, size=96, difficulty="easy", audio=True,
                    **kw)


def test_clip_voice_is_deterministic_and_its_targets_are_what_praat_measures(tmp_path):
    frames, wave, truth = generate_av_clip(_spec())
    frames2, wave2, truth2 = generate_av_clip(_spec())
    assert np.array_equal(frames, frames2) and np.array_equal(wave, wave2) and truth == truth2
    assert wave.dtype == np.float32 and len(wave) == 2 * 16000 and np.abs(wave).max() < 0.99
    voice = truth["voice"]
    assert voice["emotion"] == "anger" and voice["label_rule"] is None
    measured = measure_prosody(wave, 16000)
    assert measured.f0_mean_hz == pytest.approx(voice["f0_mean_hz"], rel=0.03)
    assert measured.f0_peak_hz == pytest.approx(voice["f0_peak_hz"], rel=0.05)
    assert measured.speech_rate_syl_per_s == pytest.approx(voice["speech_rate_syl_per_s"], abs=0.5)
    reference = voice["reference"]  # the same speaker's neutral voice, measured
    assert measured.intensity_mean_db > reference["intensity_mean_db"] + 3


def test_lips_follow_the_syllables(tmp_path):
    from emoreason.video import write_video

    frames, wave, truth = generate_av_clip(_spec("contempt"))  # an expression without AU25/26 of its own
    syllables = truth["voice"]["syllables"]
    assert {25, 26} <= set(truth["aus"]) and len(syllables) == truth["voice"]["syllable_count"] >= 6
    assert {"type": "speech", "syllables": len(syllables)} in truth["distractors"]
    lips, jaw = np.array(truth["au_frames"]["25"]), np.array(truth["au_frames"]["26"])
    clip = read_audio(write_video(frames, tmp_path / "v.mp4", fps=8, audio=wave))
    window = int(0.02 * 16000)
    loudness = np.array([np.sqrt(np.mean(clip.waveform[max(0, int(f / 8 * 16000) - window):
                                                       int(f / 8 * 16000) + window] ** 2)) for f in range(16)])
    assert np.corrcoef(lips, loudness)[0, 1] > 0.7  # the lips are apart when the voice sounds
    assert np.corrcoef(jaw, loudness)[0, 1] > 0.3  # the jaw opens with it, by how open each vowel is
    for onset, offset in [(s["onset_s"], s["offset_s"]) for s in syllables]:
        inside = [f for f in range(16) if onset + 0.02 < f / 8 < offset - 0.02]
        assert all(lips[f] > 0 for f in inside)  # lips part during every syllable
    silent = [f for f in range(16) if not any(s["onset_s"] <= f / 8 <= s["offset_s"] for s in syllables)]
    assert silent and all(lips[f] == 0 and jaw[f] == 0 for f in silent)  # and close between them


def test_without_audio_nothing_changes(tmp_path):
    spec = ClipSpec(0, "c", "fear", Identity.sample(1, np.random.default_rng(1)), "test", seed=3, frames=8,
                    size=64)
    frames, wave, truth = generate_av_clip(spec)
    plain, plain_truth = generate_clip(spec)
    assert wave is None and "voice" not in truth and np.array_equal(frames, plain) and truth == plain_truth
    manifest = build_dataset(SynthConfig(out=str(tmp_path / "v"), clips=3, frames=4, size=64), 1, False)
    settings = json.loads((manifest.parent / "synthfacs_config.json").read_text())
    assert not {"audio", "masked_fraction", "masked_label"} & set(settings)
    record = json.loads(manifest.read_text().splitlines()[0])
    assert "voice" not in record and "audio" not in record["media"]
    with av.open(str(manifest.parent / record["media"]["path"])) as container:
        assert not container.streams.audio


def test_av_dataset_masked_clips_follow_the_stated_rule(tmp_path):
    import datasets

    manifest = build_dataset(SynthConfig(out=str(tmp_path / "voice"), clips=16, frames=8, size=64, seed=3,
                                         audio=True, masked_fraction=0.5), 1, False)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    masked = [r for r in records if r["meta"]["masked"]]
    assert 3 <= len(masked) <= 13 and len(masked) < len(records)
    for r in records:
        assert r["media"]["audio"] == {"sample_rate": 16000, "channels": 1, "codec": "aac"}
        assert r["voice"]["f0_mean_hz"] > 0 and r["voice"]["reference"]["f0_mean_hz"] > 0
        if r["meta"]["masked"]:  # the face masks (smile / poker face); the label is the felt emotion in the voice
            assert r["emotion"] == r["meta"]["voice_emotion"] != r["meta"]["face_emotion"]
            assert r["meta"]["face_emotion"] in MASKS and r["meta"]["label_rule"] == "voice"
        else:
            assert r["emotion"] == r["meta"]["voice_emotion"] == r["meta"]["face_emotion"]
        with av.open(str(manifest.parent / r["media"]["path"])) as container:
            assert container.streams.audio[0].rate == 16000
    ds = datasets.load_dataset("json", data_files=str(manifest), split="train")
    assert len(ds) == 16 and ds[0]["voice"]["syllables"][0]["vowel"] in "aeiou"
    face_rule = build_dataset(SynthConfig(out=str(tmp_path / "face"), clips=8, frames=4, size=64, seed=3,
                                          audio=True, masked_fraction=1.0, masked_label="face"), 1, False)
    for r in (json.loads(line) for line in face_rule.read_text().splitlines()):
        assert r["emotion"] == r["meta"]["face_emotion"] != r["meta"]["voice_emotion"]
    again = build_dataset(SynthConfig(out=str(tmp_path / "again"), clips=16, frames=8, size=64, seed=3,
                                      audio=True, masked_fraction=0.5), 1, False)
    assert again.read_text() == manifest.read_text()
    for r in records[:4]:
        assert (again.parent / r["media"]["path"]).read_bytes() == (manifest.parent / r["media"]["path"]).read_bytes()


def test_masked_without_audio_is_refused(tmp_path):
    with pytest.raises(ValueError, match="masked clips need a voice"):
        SynthConfig(out=str(tmp_path), masked_fraction=0.3).validate()
    with pytest.raises(ValueError, match="masked_label"):
        SynthConfig(out=str(tmp_path), audio=True, masked_label="both").validate()
