"""The adversarial corpus: rationales the verifier must reject (tricky phrasings, one or more per rejection
reason) and rationales it must keep accepting. A clip of 2 s at 8 fps with DISFA-coded evidence:

* AU12 (lip corner puller) D: onset 0.25 s, apex 0.875 s, offset 1.75 s;
* AU6 (cheek raiser) C: onset 0.375 s, apex 1.0 s, offset 1.625 s;
* coded: DISFA's 12 AUs (so AU7 and AU14 are unknown, never absent). Label: happiness.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from emoreason.cot.evidence import evidence_for
from emoreason.cot.temporal import Timeline, analyse
from emoreason.cot.verify import (
    REJECTION_REASONS,
    Grounding,
    verify_au_list,
    verify_emotion_answer,
    verify_rationale,
)
from emoreason.records import SampleRecord
from emoreason.video import FramePolicy

N, FPS = 16, 8.0


def _ramp(on: int, apex: int, off: int, peak: float) -> list[float]:
    values = np.zeros(N)
    for i in range(N):
        if on <= i <= apex:
            values[i] = peak * (i - on + 1) / (apex - on + 1)
        elif apex < i < off:
            values[i] = peak * (off - i) / (off - apex)
    return values.tolist()


def _grounding(unit: str = "seconds", media: str = "video", emotion: str = "happiness",
               prototype: bool = False) -> Grounding:
    if prototype:
        record = SampleRecord(id="p", dataset="dfew", media={"type": "video", "path": "p.mp4"}, emotion=emotion)
        evidence = evidence_for(record, use_openface=False)
        return Grounding.build(analyse(evidence), evidence, 1.5)
    frames = {"6": _ramp(3, 8, 13, 3.0), "12": _ramp(2, 7, 14, 4.0)}
    frames.update({str(a): [0.0] * N for a in (1, 2, 4, 5, 9, 15, 17, 20, 25, 26)})
    record = SampleRecord(id="c", dataset="disfa", media={"type": media, "path": "c.mp4", "fps": FPS},
                          emotion=emotion, au_frames=frames)
    evidence = evidence_for(record)
    analysis = analyse(evidence, 0.5)
    timeline = None
    if media != "image":
        policy = FramePolicy(fps=4.0, max_frames=8, min_frames=4)
        timeline = Timeline.build(unit, FPS, N, policy if unit == "sampled_frames" else None)
    return Grounding.build(analysis, evidence, 1.5, timeline)


def _text(observations: str, interpretation: str = "AU6 with AU12 is the Duchenne marker of felt enjoyment.",
          conclusion: str = "The face shows happiness.", answer: str = "happiness") -> str:
    return (f"<think>\nObservations: {observations}\nInterpretation: {interpretation}\nConclusion: {conclusion}\n"
            f"</think>\n<answer>{answer}</answer>")


GOOD_OBS = ("AU12 (lip corner puller, D) rises from 0.2 s and peaks at 0.9 s; AU6 (cheek raiser, C) rises from "
            "0.4 s and peaks at 1.0 s.")

ACCEPT = {
    "plain": _text(GOOD_OBS),
    "letter_within_one": _text(GOOD_OBS.replace("puller, D", "puller, C").replace("raiser, C", "raiser, B")),
    "coded_absences": _text(GOOD_OBS + " Neither AU4 (brow lowerer) nor AU15 (lip corner depressor) appears."),
    "hypothetical_meaning": _text(GOOD_OBS, "AU6 with AU12 is a Duchenne smile. AU4 would indicate anger, but "
                                            "it does not appear. If AU15 were present it would suggest sadness."),
    "offset_after_apex": _text(GOOD_OBS.replace("peaks at 0.9 s", "peaks at 0.9 s before fading by 1.8 s")),
    "coactive_time": _text(GOOD_OBS + " AU6 and AU12 are both active at 0.6 s."),
    "leading_time": _text(GOOD_OBS + " From 0.5 s on, AU6 and AU12 co-occur."),
    "names_only": _text("The lip corner puller (D) rises from 0.2 s and peaks at 0.9 s, and the cheek raiser (C) "
                        "peaks at 1.0 s."),
    "comma_and_ends_negation": _text("There is no AU4, and AU12 (lip corner puller, D) peaks at 0.9 s; AU6 (cheek "
                                     "raiser, C) peaks at 1.0 s."),
    "no_letters": _text("AU12 (lip corner puller) peaks at 0.9 s and AU6 (cheek raiser) peaks at 1.0 s."),
    "rules_out": _text(GOOD_OBS, "AU6 with AU12 is a Duchenne smile. The absence of AU20 (lip stretcher) rules out "
                                 "fear. Since AU9 (nose wrinkler) does not appear, disgust can be excluded."),
}

# (name, text, reason it must be rejected for, grounding options)
REJECT = [
    ("hedge_might", _text(GOOD_OBS + " AU9 might be slightly active."), "hallucinated_au", {}),
    ("hedge_perhaps", _text(GOOD_OBS + " Perhaps AU9 rises at 0.8 s."), "hallucinated_au", {}),
    ("hedge_seems", _text(GOOD_OBS + " The nose wrinkler seems to engage."), "hallucinated_au", {}),
    ("rhetorical_no_doubt", _text(GOOD_OBS + " No doubt AU9 wrinkles the nose."), "hallucinated_au", {}),
    ("rhetorical_as_expected", _text(GOOD_OBS + " As expected, AU9 rises."), "hallucinated_au", {}),
    ("rhetorical_not_subtle", _text(GOOD_OBS + " AU9 is not subtle here."), "hallucinated_au", {}),
    ("rhetorical_not_only", _text(GOOD_OBS + " Not only AU12 but also AU9 is engaged."), "hallucinated_au", {}),
    ("double_negative_not_absent", _text(GOOD_OBS + " AU9 is not absent."), "hallucinated_au", {}),
    ("double_negative_not_that", _text(GOOD_OBS + " It is not that AU9 is absent."), "hallucinated_au", {}),
    ("cannot_be_missed", _text(GOOD_OBS + " AU9 cannot be missed."), "hallucinated_au", {}),
    ("unmistakable", _text(GOOD_OBS + " Unmistakably, AU9 rises."), "hallucinated_au", {}),
    ("does_not_fade_is_a_claim", _text(GOOD_OBS + " AU9 does not fade until 1.5 s."), "hallucinated_au", {}),
    ("no_longer_is_a_claim", _text(GOOD_OBS + " AU9 is no longer visible by 1.5 s."), "hallucinated_au", {}),
    ("generic_yet_deictic", _text(GOOD_OBS + " AU9 typically rises here."), "hallucinated_au", {}),
    ("negation_list_ends_at_verb", _text(GOOD_OBS + " No AU4 is visible and AU9 rises."), "hallucinated_au", {}),
    ("double_negative_no_absence", _text(GOOD_OBS + " There is no absence of AU9."), "hallucinated_au", {}),
    ("hedge_cannot_rule_out", _text(GOOD_OBS + " We cannot rule out AU9."), "hallucinated_au", {}),
    ("hedge_could_not_be_ruled_out", _text(GOOD_OBS + " AU9 could not be ruled out."), "hallucinated_au", {}),
    ("negated_present", _text(GOOD_OBS + " There is no AU6."), "negated_present_au", {}),
    ("negated_present_post", _text(GOOD_OBS, "The cheek raiser does not appear, so the smile is social."),
     "negated_present_au", {}),
    ("missing_key", _text("AU12 (lip corner puller, D) rises from 0.2 s and peaks at 0.9 s.",
                          "AU12 pulls the lip corners up."), "missing_key_au", {}),
    ("invalid_au", _text(GOOD_OBS + " AU99 rises."), "invalid_au", {}),
    ("letter_two_away", _text(GOOD_OBS.replace("puller, D", "puller, A")), "intensity_mismatch", {}),
    ("letter_code_suffix", _text(GOOD_OBS.replace("AU6 (cheek raiser, C)", "AU6E")), "intensity_mismatch", {}),
    ("source_frame_number", _text(GOOD_OBS + " AU12 peaks at frame 400."), "wrong_time_unit", {}),
    ("ordinal_source_frame", _text(GOOD_OBS + " AU12 peaks in the 40th frame."), "wrong_time_unit", {}),
    ("after_the_clip", _text(GOOD_OBS + " AU12 is strongest at 9.5 s."), "timing_outside_clip", {}),
    ("minutes_after_the_clip", _text(GOOD_OBS + " AU12 peaks after 2 minutes."), "timing_outside_clip", {}),
    ("negative_time", _text(GOOD_OBS.replace("from 0.2 s", "from -0.5 s")), "timing_outside_clip", {}),
    ("shown_frame_out_of_range", _text("AU12 (lip corner puller, D) rises from frame 2 and peaks at frame 400; AU6 "
                                       "(cheek raiser, C) peaks at frame 5."), "timing_outside_clip",
     {"unit": "sampled_frames"}),
    ("seconds_in_frame_rationale", _text(GOOD_OBS), "wrong_time_unit", {"unit": "sampled_frames"}),
    ("apex_far_from_peak", _text(GOOD_OBS.replace("peaks at 0.9 s", "peaks at 0.2 s")), "timing_mismatch", {}),
    ("onset_after_apex", _text(GOOD_OBS.replace("rises from 0.2 s", "rises from 1.5 s")), "timing_mismatch", {}),
    ("offset_before_evidence", _text(GOOD_OBS.replace("peaks at 1.0 s", "peaks at 1.0 s and subsides at 1.1 s")),
     "timing_mismatch", {}),
    ("ms_far_apex", _text(GOOD_OBS + " AU12 reaches its maximum at 1900 ms."), "timing_mismatch", {}),
    ("time_in_an_image", _text(GOOD_OBS), "timing_mismatch", {"media": "image"}),
    ("uncoded_absence", _text(GOOD_OBS + " There is no AU7 (lid tightener)."), "uncoded_absence", {}),
    ("uncoded_absence_post", _text(GOOD_OBS, "AU12 with AU6 is a felt smile; AU14 is absent, so no contempt."),
     "uncoded_absence", {}),
    ("label_first", _text("A happy face: " + GOOD_OBS), "label_first", {}),
    ("label_first_synonym", _text(GOOD_OBS + " The person is smiling with joy."), "label_first", {}),
    ("wrong_answer", _text(GOOD_OBS, answer="anger"), "wrong_answer", {}),
    ("format_no_sections", f"<think>{GOOD_OBS}</think><answer>happiness</answer>", "format", {}),
    ("format_text_after", _text(GOOD_OBS) + " trailing", "format", {}),
    ("prototype_as_observed", _text("AU1 (inner brow raiser), AU4 (brow lowerer) and AU15 (lip corner depressor) "
                                    "are visible.", "AU1 with AU4 is the oblique brow of sorrow.",
                                    "The face shows sadness.", "sadness"), "unmarked_prototype",
     {"prototype": True, "emotion": "sadness"}),
    ("prototype_claims_absence", _text("No AU measurements exist for this video, so nothing below was observed. "
                                       "The cues to look for would be AU1, AU4 and AU15. There is no AU12.",
                                       "Were these cues present, AU1 with AU4 is the brow of sorrow.",
                                       "If these cues hold, the expression is sadness.", "sadness"),
     "uncoded_absence", {"prototype": True, "emotion": "sadness"}),
    ("prototype_beyond_prototype", _text("No AU measurements exist for this video, so nothing below was observed. "
                                         "The cues to look for would be AU1, AU4, AU9 and AU15.",
                                         "Were these cues present, AU1 with AU4 is the brow of sorrow.",
                                         "If these cues hold, the expression is sadness.", "sadness"),
     "hallucinated_au", {"prototype": True, "emotion": "sadness"}),
]


@pytest.mark.parametrize("name", sorted(ACCEPT))
def test_corpus_acceptances_stay(name):
    verdict = verify_rationale(ACCEPT[name], "happiness", *_sets(_grounding()), grounding=_grounding())
    assert verdict.ok, (name, verdict.reasons, verdict.details)


@pytest.mark.parametrize(("name", "text", "reason", "options"), REJECT, ids=[r[0] for r in REJECT])
def test_corpus_rejections(name, text, reason, options):
    grounding = _grounding(**options)
    label = options.get("emotion", "happiness")
    verdict = verify_rationale(text, label, grounding.present, grounding.key, grounding=grounding)
    assert not verdict.ok and reason in verdict.reasons, (name, verdict.reasons, verdict.details)


def _sets(grounding: Grounding) -> tuple[set[int], set[int]]:
    return grounding.present, grounding.key


def test_corpus_covers_every_rejection_reason():
    assert {r[2] for r in REJECT} == set(REJECTION_REASONS)


def test_prototype_rationale_in_sampled_frames_and_seconds_accepts_composer_output():
    """The composer's own text passes its verifier, in both time units, for every seed tried."""
    from emoreason.cot.compose import compose_rationale
    from emoreason.records import SampleRecord as Record

    for unit in ("seconds", "sampled_frames"):
        grounding = _grounding(unit)
        record = Record(id="c", dataset="disfa", media={"type": "video", "path": "c.mp4", "fps": FPS},
                        emotion="happiness", au_frames={"6": _ramp(3, 8, 13, 3.0), "12": _ramp(2, 7, 14, 4.0)})
        analysis = analyse(evidence_for(record), 0.5)
        for seed in range(150):
            text = compose_rationale(analysis, "happiness", seed, timeline=grounding.timeline,
                                     coded=grounding.coded).text
            verdict = verify_rationale(text, "happiness", grounding.present, grounding.key, grounding=grounding)
            assert verdict.ok, (unit, seed, verdict.reasons, verdict.details, text)
            assert bool(re.search(r"frame \d", text)) == (unit == "sampled_frames"), text


@pytest.mark.parametrize(("text", "ok"), [
    ("<answer>AU6 (cheek raiser, C), AU12 (lip corner puller, D)</answer>", True),
    ("<answer>AU12 (lip corner puller, C), AU6 (cheek raiser, B)</answer>", True),
    ("<answer>AU6 (cheek raiser, C)</answer>", False),  # misses AU12
    ("<answer>AU6 (cheek raiser, C), AU12 (lip corner puller, D), AU9 (nose wrinkler)</answer>", False),
    ("<answer>AU6 (cheek raiser, C), AU12 (lip corner puller, A)</answer>", False),
    ("AU6 and AU12 <answer>AU6 (cheek raiser, C), AU12 (lip corner puller, D)</answer>", False),
    ("<answer>none</answer>", False),
])
def test_au_perception_rows_go_through_the_same_gate(text, ok):
    assert verify_au_list(text, _grounding()).ok is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("<answer>happiness</answer>", True), ("<answer>Happy</answer>", True), ("<answer>anger</answer>", False),
    ("<answer>happiness, AU12 rises</answer>", False), ("<think>x</think><answer>happiness</answer>", False),
])
def test_emotion_rows_go_through_the_same_gate(text, ok):
    assert verify_emotion_answer(text, "happiness").ok is ok
