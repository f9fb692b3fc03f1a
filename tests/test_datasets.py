"""Adapters on fixture trees in each benchmark's layout: counts, labels, folds, and planted problems."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from emoreason.datasets import FORMATS, load_records, read_openface_csv
from emoreason.datasets.openface import OpenFaceError

from dataset_fixtures import FIXTURES, OPENFACE_VALUES


def test_every_format_has_a_fixture():
    from emoreason.datasets import adapters  # noqa: F401

    assert set(FORMATS) == set(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_loads_with_expected_counts_and_problems(name, tmp_path):
    expected = FIXTURES[name](tmp_path)
    records = load_records(name, tmp_path, **expected.get("kwargs", {}))
    if expected["counts"] is not None:
        assert dict(Counter(r.split for r in records)) == expected["counts"], [str(p) for p in records.problems]
    assert dict(Counter(p.kind for p in records.problems)) == expected["problems"]
    for problem in records.problems:
        assert str(tmp_path) in problem.where  # every problem names its file
    for record in records:
        assert record.dataset == name and record.id
    if "aus" in expected:
        assert all(r.aus == expected["aus"] for r in records)


def test_label_mapping_and_fold_protocol(tmp_path):
    FIXTURES["dfew"](tmp_path / "dfew")
    dfew = {r.id: r for r in load_records("dfew", tmp_path / "dfew", fold=1)}
    assert dfew["dfew-00001"].emotion == "happiness" and dfew["dfew-00002"].emotion == "anger"
    assert dfew["dfew-00005"].emotion == "neutral" and dfew["dfew-00006"].split == "test"
    assert dfew["dfew-00001"].media["type"] == "frames" and dfew["dfew-00007"].media["type"] == "video"
    assert [r.id for r in load_records("dfew", tmp_path / "dfew", split="test", fold=1)] == ["dfew-00006",
                                                                                          "dfew-00007"]
    FIXTURES["mafw"](tmp_path / "mafw")
    mafw = {r.id: r for r in load_records("mafw", tmp_path / "mafw", fold=1)}
    assert mafw["mafw-00002"].emotions == ["anger", "disgust"] and mafw["mafw-00002"].emotion is None
    assert mafw["mafw-00003"].emotion == "contempt" and mafw["mafw-00005"].emotion == "disappointment"
    FIXTURES["affectnet"](tmp_path / "an")
    eight = {r.id: r for r in load_records("affectnet", tmp_path / "an")}
    seven = {r.id: r for r in load_records("affectnet", tmp_path / "an", classes=7)}
    assert eight["affectnet-b"].emotion == "contempt" and "affectnet-b" not in seven
    assert eight["affectnet-a"].valence == 0.8 and eight["affectnet-d"].valence is None
    FIXTURES["ckplus"](tmp_path / "ck")
    ck = {r.id: r for r in load_records("ckplus", tmp_path / "ck")}
    assert ck["ckplus-S005-001"].emotion == "disgust" and ck["ckplus-S005-001"].aus == [9, 15]
    assert ck["ckplus-S005-001"].au_intensity == {"9": 4.0} and ck["ckplus-S010-002"].emotion is None
    folds = {r.fold for r in ck.values()}
    held_out = load_records("ckplus", tmp_path / "ck", split="test", fold=min(folds))
    assert {r.fold for r in held_out} == {min(folds)}
    FIXTURES["affwild2"](tmp_path / "aw")
    aw = {r.id: r for r in load_records("affwild2", tmp_path / "aw")}
    video1 = aw["affwild2-video1"]
    assert video1.emotion == "happiness" and video1.meta["expr_frames"] == [None, "happiness", "happiness", "neutral"]
    assert video1.valence == pytest.approx(0.6) and video1.aus == [6, 12]
    assert video1.au_frames["6"] == [1.0, 1.0, 1.0, None]
    assert aw["affwild2-video2"].emotion == "sadness" and aw["affwild2-video2"].media["type"] == "video"


def test_openface_values_read_back_exactly(tmp_path):
    FIXTURES["openface"](tmp_path)
    header = (tmp_path / "clips" / "a.csv").read_text().splitlines()[0]
    assert ", " in header and "AU06_r" in header and "AU12_c" in header
    track = read_openface_csv(tmp_path / "clips" / "a.csv")
    for au, values in OPENFACE_VALUES.items():
        np.testing.assert_array_equal(track.intensity[au], np.round(values, 2))
    assert track.occurrence[12].tolist() == [0.0, 1.0, 1.0, 1.0]
    record = load_records("openface", tmp_path)[0]
    assert record.au_frames["12"] == [0.5, 1.5, 4.0, 4.99] and record.au_intensity["12"] == 4.99


def test_openface_malformed_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("frame, face_id, timestamp, confidence, success, AU12_r\n1, 0, 0.0, 0.9, 1, 1.0\n2, 0, 0.1\n")
    with pytest.raises(OpenFaceError, match=r"bad.csv:3"):
        read_openface_csv(path)


def test_unknown_format_and_missing_root(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset format"):
        load_records("nope", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_records("dfew", tmp_path / "missing")


def test_inspect_cli_reports_planted_problems(tmp_path):
    FIXTURES["dfew"](tmp_path)
    out = subprocess.run([sys.executable, "-m", "emoreason", "data", "inspect", str(tmp_path), "--format", "dfew",
                          "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout)
    assert summary["records"] == 5 and summary["problem_counts"] == {"unknown_label": 1, "malformed_row": 1,
                                                                      "missing_media": 1}
    assert summary["labels"]["happiness"] == 1
    text = subprocess.run([sys.executable, "-m", "emoreason", "data", "inspect", str(tmp_path), "--format", "dfew"],
                          capture_output=True, text=True, check=True).stdout
    assert "set_1.csv:4" in text and "missing_media" in text
