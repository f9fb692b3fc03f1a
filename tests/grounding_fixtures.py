"""A DFEW-layout tree (labels only) of SynthFACS face clips, with AU CSVs in OpenFace 2.x layout written from
the clips' exact ground truth — beside each frame folder / video, under a mirroring ``au_dir``, or not at all.

Frame folders are ``Clip/clip_224x224/<id>/`` (one JPEG per frame); every third clip is a video
``Clip/original/<id>.mp4`` instead, as DFEW copies in the wild mix both. Returns the SynthFACS record behind
each DFEW id, so tests can hold rows to the truth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from emoreason.datasets import load_records
from emoreason.datasets.openface import write_openface_csv
from emoreason.knowledge.coded_aus import OPENFACE_AUS
from emoreason.records import SampleRecord
from emoreason.video import FramePolicy, load_frames

DFEW_CODES = {"happiness": 1, "sadness": 2, "neutral": 3, "anger": 4, "surprise": 5, "disgust": 6, "fear": 7}


def openface_values(record: SampleRecord, n: int) -> dict[int, list[float]]:
    """What OpenFace would write for the clip if it measured perfectly: all 17 _r AUs, zeros where inactive."""
    frames = record.au_frames or {}
    return {au: [float(x) for x in frames.get(str(au), [0.0] * n)] for au in OPENFACE_AUS}


def make_dfew_tree(root: Path, synth_root: Path, csv: str | None = "beside", au_dir: Path | None = None,
                   video_every: int = 3) -> dict[str, SampleRecord]:
    """``csv``: "beside" (next to the media), "au_dir" (mirrored under ``au_dir``) or None (labels only)."""
    truth: dict[str, SampleRecord] = {}
    lines = ["video_name,label"]
    records = [r for r in load_records("synthfacs", synth_root) if r.emotion in DFEW_CODES]
    for number, record in enumerate(records, start=1):
        clip = f"{number:05d}"
        n = int(record.media.get("frames") or 16)
        if number % video_every == 0:
            media = root / "Clip" / "original" / f"{clip}.mp4"
            media.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(record.media["path"], media)
            csv_rel = Path("Clip") / "original" / f"{clip}.csv"
        else:
            folder = root / "Clip" / "clip_224x224" / clip
            folder.mkdir(parents=True, exist_ok=True)
            loaded = load_frames(record.media["path"], FramePolicy(nframes=n), resize=False)
            for k, frame in enumerate(loaded.frames[:n], start=1):
                Image.fromarray(np.asarray(frame)).save(folder / f"{k:05d}.jpg", quality=92)
            csv_rel = Path("Clip") / "clip_224x224" / f"{clip}.csv"
        if csv == "beside":
            write_openface_csv(root / csv_rel, openface_values(record, n), fps=float(record.media["fps"]))
        elif csv == "au_dir":
            (au_dir / csv_rel).parent.mkdir(parents=True, exist_ok=True)
            write_openface_csv(au_dir / csv_rel, openface_values(record, n), fps=float(record.media["fps"]))
        lines.append(f"{number},{DFEW_CODES[record.emotion]}")
        truth[f"dfew-{clip}"] = record
    for part, rows in (("train", lines), ("test", lines[:1])):
        table = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / "set_1.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text("\n".join(rows) + "\n")
    return truth


def csv_of(root: Path, sample_id: str) -> Path:
    clip = sample_id.removeprefix("dfew-")
    beside = root / "Clip" / "clip_224x224" / f"{clip}.csv"
    return beside if beside.exists() else root / "Clip" / "original" / f"{clip}.csv"
