"""Vocal evidence in rationales: the claim parser, the composer/checker pair, and the optional ``Vocal cues``
part of the response format (text-only rationales parse exactly as before)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from emoreason.audio.cues import (
    ProsodyReference,
    check_vocal_claims,
    compose_vocal_cues,
    describe,
    vocal_cues_section,
)
from emoreason.audio.prosody import ProsodyMeasurement, measure_prosody
from emoreason.reasoning import AUObservation, ResponseContent, format_response, parse_response
from emoreason.reasoning.vocal import parse_vocal_claims
from emoreason.synth import Identity
from emoreason.synth.voice import SpeakerVoice, activation_curve, neutral_reference, synthesize_speech


def _kinds(text: str) -> list[tuple[str, object, bool]]:
    return [(c.kind, c.value, c.negated) for c in parse_vocal_claims(text)]


def test_claims_are_read_with_values_times_and_negation():
    claims = parse_vocal_claims("Pitch averages 240 Hz and rises to 310 Hz at 1.2 s (a 6.5-semitone range); "
                                "loud, fast speech at 5.5 syllables per second.")
    assert [(c.kind, c.value) for c in claims] == [("pitch_mean", 240.0), ("pitch_peak", 310.0),
                                                    ("pitch_range", 6.5), ("loudness", "loud"), ("rate", "fast"),
                                                    ("rate_value", 5.5)]
    assert claims[1].time_s == 1.2
    assert _kinds("The voice is soft and slow, with falling intonation; jitter of 1.3 %, HNR 17 dB.") == [
        ("loudness", "soft", False), ("rate", "slow", False), ("pitch_direction", "falling", False),
        ("jitter", 1.3, False), ("hnr", 17.0, False)]
    assert _kinds("neither fast nor loud speech; a low-pitched voice") == [
        ("rate", "fast", True), ("loudness", "loud", True), ("pitch_level", "low", False)]
    assert _kinds("the voice is not loud or fast") == [("loudness", "loud", True), ("rate", "fast", True)]
    assert _kinds("F0 peaks at 355 Hz around 1.4 s, rising pitch, 68 dB") == [
        ("pitch_peak", 355.0, False), ("pitch_direction", "rising", False), ("loudness_db", 68.0, False)]


def test_the_parser_is_total_and_ignores_facial_text():
    for junk in (None, 42, b"\xff\xfe", "", "AU12 rises from frame 3 and peaks at frame 11", "a quick glance",
                 "x" * 100_000, "rises to Hz at s", "jitter %"):
        assert parse_vocal_claims(junk) == [] or junk == b"\xff\xfe"
    rng = random.Random(0)
    alphabet = "pitch rises to 310 Hz at 1.2 s loud fast not semitones % dB ;,."
    for _ in range(300):
        parse_vocal_claims("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))


@pytest.fixture(scope="module")
def voices():
    """Measured SynthFACS voices of one speaker, with that speaker's neutral reference."""
    identity = Identity.sample(4, np.random.default_rng(4))
    speaker = SpeakerVoice.for_identity(identity)
    face = np.concatenate([np.zeros(3), np.linspace(0, 1, 6), np.ones(4), np.linspace(1, 0.4, 3)])
    measured = {e: measure_prosody(synthesize_speech(e, speaker, activation_curve(face, 0.0 if e == "neutral"
                                                                                   else 0.9), 8, 11).waveform, 16000)
                for e in ("neutral", "anger", "sadness", "happiness", "fear", "surprise", "disgust", "contempt")}
    return measured, ProsodyReference(**neutral_reference(speaker, 16, 8.0))


def test_composed_cues_pass_the_checker_and_name_the_right_categories(voices):
    measured, reference = voices
    for emotion, m in measured.items():
        for seed in range(3):
            text = compose_vocal_cues(m, reference, seed=seed, with_voice_quality=True)
            verdict = check_vocal_claims(text, m, reference, strict=True)
            assert verdict.ok, (emotion, text, [(c.claim, c.status, c.measured) for c in verdict.checks])
            assert len(verdict.checks) >= 4
    anger, sad = describe(measured["anger"], reference), describe(measured["sadness"], reference)
    assert (anger.loudness, anger.pitch_level, anger.contour) == ("loud", "high", "rising")
    assert (sad.loudness, sad.rate, sad.contour) == ("soft", "slow", "falling")
    assert "loud" in compose_vocal_cues(measured["anger"], reference)
    assert vocal_cues_section(measured["sadness"], reference).startswith("Vocal cues: ")


def test_false_claims_are_caught_and_unverifiable_ones_are_not_accepted(voices):
    measured, reference = voices
    anger = measured["anger"]
    wrong = (f"pitch averages {anger.f0_mean_hz * 0.7:.0f} Hz and rises to {anger.f0_peak_hz * 1.4:.0f} Hz at "
             f"{anger.f0_peak_time_s:.1f} s; soft, slow speech at 2.0 syllables per second; falling intonation")
    verdict = check_vocal_claims(wrong, anger, reference)
    assert not verdict.ok
    assert {c.claim.kind for c in verdict.mismatches} == {"pitch_mean", "pitch_peak", "loudness", "rate",
                                                         "rate_value", "pitch_direction"}
    assert check_vocal_claims("speech is not loud", anger, reference).mismatches
    assert check_vocal_claims("speech is not soft", anger, reference).ok
    assert check_vocal_claims(f"pitch rises to {anger.f0_peak_hz:.0f} Hz at {anger.f0_peak_time_s + 1.0:.1f} s",
                              anger, reference).mismatches  # right value, wrong time
    no_reference = check_vocal_claims("loud, fast speech", anger, None)
    assert no_reference.ok and len(no_reference.unverifiable) == 2
    assert not check_vocal_claims("loud, fast speech", anger, None, strict=True).ok
    silent = ProsodyMeasurement(duration_s=2.0, voiced_fraction=0.0)
    assert not check_vocal_claims("pitch averages 200 Hz", silent, strict=True).ok
    assert compose_vocal_cues(silent) == "No voiced speech is detected."


def test_vocal_cues_section_extends_the_format_without_changing_text_only_parsing(voices):
    measured, reference = voices
    cues = compose_vocal_cues(measured["anger"], reference, seed=1)
    base = ResponseContent(emotion="anger", observations="AU4 (brow lowerer, C) and AU7 (lid tightener, D) rise "
                           "from frame 4.", interpretation="AU4 with AU7 gives the glare of anger.",
                           conclusion="The expression is anger.")
    plain = format_response(base)
    with_voice = format_response(ResponseContent(**{**base.__dict__, "vocal_cues": cues}))
    lines = with_voice.split("\n")
    assert lines[1].startswith("Observations:") and lines[2] == f"Vocal cues: {cues}" and \
        lines[3].startswith("Interpretation:")
    a, b = parse_response(plain), parse_response(with_voice)
    assert b.vocal_cues == cues and a.vocal_cues is None
    for field in ("emotion", "aus", "negated_aus", "format_ok", "sections_ok", "observations", "interpretation",
                  "conclusion", "au_intensities", "issues"):
        assert getattr(a, field) == getattr(b, field), field
    assert check_vocal_claims(b.vocal_cues, measured["anger"], reference).ok
    # text-only rationales in both styles: no vocal part, every facial reading as before
    for seed in range(40):
        rng = random.Random(seed)
        aus = sorted(rng.sample([1, 2, 4, 5, 6, 7, 9, 12, 15, 20, 23, 25, 26], k=rng.randint(1, 4)))
        observations = [AUObservation(au, rng.choice("ABCDE"), rng.randint(0, 5), rng.randint(6, 12)) for au in aus]
        content = ResponseContent(emotion=rng.choice(["anger", "fear", "sadness", "happiness"]),
                                  observations=observations, interpretation="The pattern is clear.",
                                  conclusion="That is the emotion.", absent_aus=[14])
        for style in ("tags", "json"):
            parsed = parse_response(format_response(content, style=style))
            voiced = parse_response(format_response(ResponseContent(**{**content.__dict__, "vocal_cues": cues}),
                                                    style=style))
            assert parsed.vocal_cues is None and parsed.sections_ok and parsed.aus == aus
            assert voiced.vocal_cues == cues and voiced.aus == aus and voiced.negated_aus == parsed.negated_aus
            assert voiced.observations == parsed.observations and voiced.emotion == parsed.emotion
