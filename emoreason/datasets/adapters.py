"""One adapter per benchmark, each reading the layouts the dataset is found in.

Every adapter takes ``media_root`` (look for clips there instead of under the dataset root; it may also point
straight at one layout's folder), ``layout`` (try only the named layout) and ``fps`` (override a frame folder's
rate). Media layouts are tried in the order listed; a clip found in none is a ``missing_media`` problem that
names every path tried. Frame folders are read in natural order (2.jpg before 10.jpg). Frame rates of frame
folders come from each dataset's paper where it states one; where it does not, the rate is marked as assumed.

Layouts (paths relative to the dataset root) and protocols:

* ``dfew`` (Jiang et al., ACM MM 2020): ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` with
  ``video_name,label`` (label 1–7). 5-fold: fold k trains on train set_k, tests on test set_k — so fold 1's train
  set holds the test clips of folds 2–5 (one model per fold). Media, in order: ``Clip/clip_224x224/{00001}/``
  (official face crops), ``Clip/jpg_256/{00001}/`` (MAE-DFER's preprocessing), ``Clip/clip_224x224_avi/``
  ``{00001}.avi`` (or unpadded), ``Clip/original/{00001}.mp4`` then ``Clip/original/{1}.mp4`` (copies differ in
  zero padding), and last ``Clip/clip_224x224_16f/{00001}/`` (16 frames per clip whatever its length: time is
  lost, so it comes only when nothing else is there). The paper states no single frame rate (clips are cut from
  movies); 25 fps is assumed for full-rate frame folders and 8 fps (16 frames ≈ 2 s) for the 16-frame variant —
  pass ``fps`` when your copy says otherwise. Audio: only ``Clip/original`` carries it (the face crops are frames
  or silent AVIs), so whatever layout the frames come from, ``media["audio_path"]`` names the clip's original
  (``{00001}.mp4`` or ``{1}.mp4``) where the copy has it, as R1-Omni hears DFEW; an audio model hears that track,
  the frames timed on the original clip (see *Audio beside frames* below).
* ``ferv39k`` (Wang et al., CVPR 2022): ``4_setups/All_scenes/{train,test}_All.csv`` rows ``<clip path> <label>``;
  media frame folders ``2_ClipsforFaceCrop/<clip path>/`` (25 fps assumed: the paper states none).
* ``mafw`` (Liu et al., ACM MM 2022): ``Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt`` (or
  ``split/single/no_caption/…`` as MAE-DFER's copy has it) rows ``<clip>.mp4 <label>`` (name or 1–11); media
  ``data/clips/<clip>.mp4``, else ``data/frames/<clip>/`` (MAE-DFER; 25 fps assumed). Compound labels
  (``anger_disgust``) keep their components in ``emotions``. Audio: the clips carry it; a clip read from its
  frame folder (``layout=frames``, or a copy of frames beside the clips) has ``media["audio_path"]`` = its clip.
* ``rafdb`` (Li et al. 2017): ``basic/EmoLabel/list_patition_label.txt`` rows ``train_00001.jpg 5``; images
  ``basic/Image/aligned/train_00001_aligned.jpg``, else ``basic/Image/original/``. Split from the name prefix.
* ``affectnet`` (Mollahosseini et al. 2019): ``Manually_Annotated_file_lists/{training,validation}.csv`` with
  ``subDirectory_filePath, …, expression, valence, arousal``; images ``Manually_Annotated_Images/``.
  ``classes=8`` (default) or 7; the validation set is the test split; VA −2 means not annotated.
* ``ckplus`` (Lucey et al., CVPRW 2010): ``cohn-kanade-images/Sxxx/nnn/*.png`` sequences (30 fps, the Cohn-Kanade
  recording rate: Kanade, Cohn & Tian, FG 2000), ``Emotion/Sxxx/nnn/*_emotion.txt`` (0–7) and
  ``FACS/Sxxx/nnn/*_facs.txt`` (AU, intensity; 0 = unscored). 10 subject-independent folds (sorted subjects
  dealt round-robin: CK+ publishes no fold list).
* ``disfa`` (Mavadati et al., IEEE TAC 2013): ``ActionUnit_Labels/SNxxx/SNxxx_au{N}.txt`` rows ``frame,intensity``
  (0–5) for 12 AUs; media ``Videos_LeftCamera/LeftVideoSNxxx_comp.avi`` (20 fps, the paper's rate), else frame
  folders ``SNxxx/`` numbered from 0 (JAA-Net's layout). AU present at intensity ≥ 2 (the usual protocol). 3
  subject-exclusive folds: JAA-Net's partitions (``DISFA_FOLDS``).
* ``bp4d`` (Zhang et al., IVC 2014): ``AUCoding/AU_OCC/Fxxx_Tn.csv`` (``Frame,1,2,4,…``, 0/1, 9 = unknown) and
  optional ``AUCoding/AU_INT/AUnn/Fxxx_Tn_AUnn.csv`` (``frame,intensity``); frames ``Sequences/Fxxx/Tn/``, else
  ``Fxxx/Tn/`` (JAA-Net's layout), named by frame number (25 fps, the paper's rate). 3 subject-exclusive folds:
  JAA-Net's partitions (``BP4D_FOLDS``).
* ``affwild2`` (Kollias & Zafeiriou, ABAW): ``Annotations/{EXPR_Classification_Challenge,VA_Estimation_Challenge,
  AU_Detection_Challenge}/{Train_Set,Validation_Set}/<video>.txt``, one header line then one row per frame;
  −1 (EXPR, AU) and −5 (VA) mark unlabelled frames. Frames ``cropped_aligned/<video>/`` (30 fps), else
  ``videos/<video>.mp4`` / ``.avi``. Video-level emotion is the majority expression over labelled frames.
* ``emer`` (Lian et al. 2023): ``emer.csv`` with ``name,label,reason``; media ``video/<name>.mp4``.
* ``fea20k``: ``annotations/{train,test}.jsonl`` with ``id``, ``video`` or ``image``, ``emotion``, ``aus``
  (list or {AU: intensity}), ``rationale``.
* ``openface``: any folder of videos, each with an OpenFace CSV of the same stem beside it.
* ``synthfacs``: ``manifest.jsonl`` written by ``emoreason synth``.
* ``mer2023`` (Lian et al., "MER 2023: Multi-label Learning, Modality Robustness, and Semi-Supervised Learning",
  ACM MM 2023): the release's ``{train,test1,test2,test3}-label.csv`` (``name, discrete[, valence]``) beside the
  clip folders ``{train,test1,test2,test3}/<name>.mp4`` (or ``.avi``), as MERTools' ``normalize_dataset_format``
  reads it. Splits keep the release's names: test1 = MER-MULTI, test2 = MER-NOISE, test3 = MER-SEMI.
* ``mer2024`` (Lian et al., arXiv 2404.17113): ``label-disdim.csv`` + ``video-labeled/`` (train), test clips in
  ``video-unlabeled-with-test2noise/``; test1 = MER-SEMI, test2 = MER-NOISE; the test label file names are
  assumed (see ``load_mer2024``). 6 classes as MER2023.
* ``cremad`` (Cao et al., "CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset", IEEE TAC 2014): the
  GitHub release's ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv`` (audio-visual; e.g.
  ``1001_DFA_ANG_XX.flv``), else ``VideoMP4/<name>.mp4`` (a common conversion). The label is the *intended*
  emotion of the file name (6 classes: ANG, DIS, FEA, HAP, NEU, SAD), level LO/MD/HI/XX in ``meta``. The dataset
  publishes no split: 5 actor-independent folds (sorted actors dealt round-robin), marked as emoreason's.
* ``ravdess`` (Livingstone & Russo, "The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS)",
  PLoS ONE 13(5): e0196391, 2018): the Zenodo video archives extracted as
  ``Actor_NN/<modality>-<channel>-<emotion>-<intensity>-<statement>-<repetition>-<actor>.mp4``; only modality
  01 (full audio-video) is read (02 has no audio). The default is the standard protocol: speech (channel 01),
  8 classes (neutral, calm, happy, sad, angry, fearful, disgust, surprised; calm its own class). Named variants:
  ``classes=7`` merges calm into neutral (``emotion_raw`` keeps "calm"; not comparable to 8-class figures),
  ``channel=song`` reads the song files (6 classes: song has no disgust or surprise), ``channel=all`` both.
  No official split: 6 actor-independent folds of 4 actors (sorted, round-robin).

**Audio beside frames** (``dfew``, ``mafw``): face crops and frame folders carry no audio track. Where the copy
also holds the clip's original video, ``media["audio_path"]`` names it (``media["audio_layout"]`` its layout): an audio
model (Qwen2.5-Omni) hears that track, from the moment of the first sampled frame, with the frames timed on the
original clip (``emoreason.audio.frames_on_clip``: frame *i* of *N* at *i/N* of its duration); the eval counts
those samples (``protocol.audio.from_original_video``) and names the file per sample. Options: ``audio=false``
(the frames' own file only), ``audio_root`` (where the original videos are, if not under the dataset root or
``media_root``). A clip with no original found is heard as silence, with a warning naming it, and counted.

**Frame-level AU protocol** (``disfa``, ``bp4d``, ``affwild2`` with ``windows={stride, frames, step}``): one sample
per ``stride``-th annotated frame, whose media is a window of ``frames`` source frames ``step`` apart centred on
it (``media["frame_indices"]``, clamped at the clip's ends), and whose ``aus`` are the AUs active *at that frame*;
``meta["au_known"]`` lists the AUs coded there (BP4D's 9 and Aff-Wild2's −1 are unknown). Without ``windows``
each video is one sample (AUs active anywhere), which is what data pipelines want and no benchmark reports.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoreason.datasets.base import Collector, adapter, read_table
from emoreason.datasets.media import Layout, frame_positions, locate, missing_reason, window_positions
from emoreason.datasets.openface import OpenFaceError, read_openface_csv
from emoreason.knowledge import (
    DATASET_LABEL_MAPS,
    EMOTIONS,
    UnknownLabelError,
    canonical_emotion,
    map_dataset_label,
)
from emoreason.knowledge.coded_aus import ABAW_AUS, BP4D_AUS, DISFA_AUS  # coded sets: one source of truth
from emoreason.records import SampleRecord
from emoreason.video import VIDEO_EXTENSIONS, frame_files


def _label(col: Collector, dataset: str, raw: object, where: str, sample_id: str) -> tuple[bool, str | None]:
    """(ok, canonical label); an unknown label is recorded as a problem and ok=False."""
    try:
        return True, map_dataset_label(dataset, raw, where=where)
    except UnknownLabelError as exc:
        col.problem("unknown_label", where, str(exc), sample_id)
        return False, None


def _wanted(split: str | None, candidate: str) -> bool:
    return split is None or split == candidate


def _fold_split(record_fold: int, fold: int | None) -> str | None:
    if fold is None:
        return None
    return "test" if record_fold == fold else "train"


def _subject_folds(subjects: list[str], n_folds: int) -> dict[str, int]:
    """Subject-independent folds: sorted subjects dealt round-robin into folds 1..n."""
    return {s: i % n_folds + 1 for i, s in enumerate(sorted(set(subjects)))}


def _au_summary(frames: dict[int, np.ndarray], threshold: float) -> tuple[list[int], dict[str, float]]:
    peaks = {au: float(np.nanmax(v)) if np.isfinite(v).any() else 0.0 for au, v in frames.items()}
    present = sorted(au for au, p in peaks.items() if p >= threshold)
    return present, {str(au): round(p, 3) for au, p in sorted(peaks.items()) if p > 0}


# --- dynamic facial expression benchmarks -------------------------------------------------------------------

DFEW_LAYOUTS = (
    Layout("clip_224x224", "Clip/clip_224x224/{padded}", "frames", 25.0, "official face crops; fps assumed"),
    Layout("jpg_256", "Clip/jpg_256/{padded}", "frames", 25.0, "MAE-DFER's preprocessing; fps assumed"),
    Layout("clip_224x224_avi", "Clip/clip_224x224_avi/{padded}.avi", "video"),
    Layout("clip_224x224_avi_unpadded", "Clip/clip_224x224_avi/{plain}.avi", "video"),
    Layout("original", "Clip/original/{padded}.mp4", "video"),
    Layout("original_unpadded", "Clip/original/{plain}.mp4", "video"),
    Layout("clip_224x224_16f", "Clip/clip_224x224_16f/{padded}", "frames", 8.0,
           "16 frames per clip, time-normalised; 8 fps (a 2 s clip) assumed"),
)

# where DFEW's audio is: only the original clips carry it (the face crops are frames or silent AVIs)
DFEW_AUDIO_LAYOUTS = tuple(x for x in DFEW_LAYOUTS if x.name.startswith("original"))


def _media(col: Collector, root: Path, layouts, options: dict, where: str, sid: str, **names) -> dict | None:
    """The clip's media by the adapter's layouts, or None after recording a problem naming every path tried."""
    media, tried = locate(root, layouts, options.get("media_root"), options.get("layout"), options.get("fps"),
                          **names)
    if media is None:
        col.problem("missing_media", where, missing_reason(sid, tried), sid)
    return media


def _with_audio(media: dict, root: Path, layouts, options: dict, **names) -> dict:
    """``media`` with ``audio`` (and ``audio_layout``): the clip's original video, where the dataset ships one
    beside the face crops / frame folders its frames come from (those carry no audio track). An audio model hears
    that file's track, timed to the same clip (``emoreason.audio.frames_on_clip``); the eval counts it
    (``protocol.audio.from_original_video``). Looked for under ``audio_root`` when given (a folder holding the
    dataset's original-video layout, or those videos themselves), else the dataset root, then ``media_root``.
    ``audio=false`` turns it off (the frames' own file only: a frame folder is then heard as silence, named in a
    warning). A clip with no original video found keeps its media as it is."""
    wanted = options.get("audio", True)
    if wanted is False or str(wanted).lower() in ("false", "off", "no", "0", "none"):
        return media
    bases = [options["audio_root"]] if options.get("audio_root") else [None] + (
        [options["media_root"]] if options.get("media_root") else [])
    for base in bases:
        found, _ = locate(root, layouts, base, **names)
        if found is not None:
            if Path(found["path"]).resolve() != Path(media["path"]).resolve():
                media = {**media, "audio_path": found["path"], "audio_layout": found["layout"]}
            return media
    return media


@adapter("dfew")
def load_dfew(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    fold = fold or 1
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        table = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{fold}.csv"
        for number, row in read_table(table, col, delimiter=","):
            where = f"{table}:{number}"
            try:
                number_id = int(row["video_name"])
            except (KeyError, ValueError):
                col.problem("malformed_row", where, f"bad video_name {row.get('video_name')!r}")
                continue
            clip = f"{number_id:05d}"
            ok, label = _label(col, "dfew", row.get("label"), where, clip)
            if not ok:
                continue
            media = _media(col, root, DFEW_LAYOUTS, options, where, f"dfew-{clip}", padded=clip, plain=number_id)
            if media is not None:
                media = _with_audio(media, root, DFEW_AUDIO_LAYOUTS, options, padded=clip, plain=number_id)
                col.add(SampleRecord(id=f"dfew-{clip}", dataset="dfew", split=part, fold=fold, media=media,
                                     emotion=label, emotion_raw=row.get("label"), emotions=[label]), where)


FERV39K_LAYOUTS = (Layout("face_crops", "2_ClipsforFaceCrop/{clip}", "frames", 25.0, "fps assumed"),)


@adapter("ferv39k")
def load_ferv39k(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        table = root / "4_setups" / "All_scenes" / f"{part}_All.csv"
        for number, row in read_table(table, col, delimiter=" ", header=False):
            where = f"{table}:{number}"
            if len(row) != 2:
                col.problem("malformed_row", where, f"expected '<clip path> <label>', found {len(row)} fields")
                continue
            clip, raw = row
            sid = "ferv39k-" + clip.strip("/").replace("/", "-")
            ok, label = _label(col, "ferv39k", raw, where, sid)
            if not ok:
                continue
            media = _media(col, root, FERV39K_LAYOUTS, options, where, sid, clip=clip.strip("/"))
            if media is not None:
                col.add(SampleRecord(id=sid, dataset="ferv39k", split=part, media=media, emotion=label,
                                     emotion_raw=raw, emotions=[label], meta={"scene": clip.split("/")[0]}), where)


MAFW_LAYOUTS = (
    Layout("clips", "data/clips/{stem}.mp4", "video"),
    Layout("frames", "data/frames/{stem}", "frames", 25.0, "MAE-DFER's frame folders; fps assumed"),
)
MAFW_AUDIO_LAYOUTS = MAFW_LAYOUTS[:1]  # the clips: the frame folders carry no audio
MAFW_SPLIT_DIRS = ("Train & Test Set", "split")  # the official archive; MAE-DFER's copy


@adapter("mafw")
def load_mafw(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    fold = fold or 1
    split_root = next((root / d for d in MAFW_SPLIT_DIRS if (root / d).is_dir()), root / MAFW_SPLIT_DIRS[0])
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        table = split_root / "single" / "no_caption" / f"set_{fold}" / f"{part}.txt"
        for number, row in read_table(table, col, delimiter=" ", header=False):
            where = f"{table}:{number}"
            if len(row) != 2:
                col.problem("malformed_row", where, f"expected '<clip> <label>', found {len(row)} fields")
                continue
            clip, raw = row
            stem = Path(clip).stem
            components = raw.split("_") if "_" in raw and not raw.isdigit() else [raw]
            labels = []
            for component in components:
                ok, label = _label(col, "mafw", component, where, f"mafw-{stem}")
                if not ok:
                    break
                labels.append(label)
            else:
                media = _media(col, root, MAFW_LAYOUTS, options, where, f"mafw-{stem}", stem=stem)
                if media is not None:
                    media = _with_audio(media, root, MAFW_AUDIO_LAYOUTS, options, stem=stem)
                    col.add(SampleRecord(id=f"mafw-{stem}", dataset="mafw", split=part, fold=fold, media=media,
                                         emotion=labels[0] if len(labels) == 1 else None, emotion_raw=raw,
                                         emotions=labels), where)


@adapter("emer")
def load_emer(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    table = root / "emer.csv"
    for number, row in read_table(table, col, delimiter=","):
        where = f"{table}:{number}"
        name = row.get("name", "")
        label = canonical_emotion(row.get("label", ""))
        if label is None:
            col.problem("unknown_label", where, f"emer: unknown label {row.get('label')!r}", name)
            continue
        col.add(SampleRecord(id=f"emer-{name}", dataset="emer", split="test", media={
            "type": "video", "path": str(root / "video" / f"{name}.mp4")}, emotion=label,
            emotion_raw=row.get("label"), emotions=[label], rationale=row.get("reason") or None), where)


@adapter("fea20k")
def load_fea20k(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        path = root / "annotations" / f"{part}.jsonl"
        if not path.is_file():
            col.problem("missing_file", path, "annotation file not found")
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
                sid = str(item["id"])
            except (ValueError, KeyError, TypeError) as exc:
                col.problem("malformed_row", where, f"not a JSON object with an id ({exc})")
                continue
            ok, label = _label(col, "fea20k", item.get("emotion"), where, sid)
            if not ok:
                continue
            raw_aus = item.get("aus") or []
            intensity = {str(int(str(k).upper().removeprefix("AU"))): float(v) for k, v in raw_aus.items()} \
                if isinstance(raw_aus, dict) else {}
            aus = [int(a) for a in intensity] if intensity else [int(str(a).upper().removeprefix("AU")) for a in raw_aus]
            kind = "video" if "video" in item else "image"
            col.add(SampleRecord(id=f"fea20k-{sid}", dataset="fea20k", split=part, media={
                "type": kind, "path": str(root / item.get(kind, ""))}, emotion=label,
                emotion_raw=item.get("emotion"), emotions=[label], aus=aus, au_intensity=intensity,
                rationale=item.get("rationale") or item.get("description")), where)


# --- static image benchmarks ------------------------------------------------------------------------------

RAFDB_LAYOUTS = (Layout("aligned", "basic/Image/aligned/{stem}_aligned.jpg", "image"),
                 Layout("original", "basic/Image/original/{name}", "image"))


@adapter("rafdb")
def load_rafdb(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    table = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    for number, row in read_table(table, col, delimiter=" ", header=False):
        where = f"{table}:{number}"
        if len(row) != 2:
            col.problem("malformed_row", where, f"expected '<image> <label>', found {len(row)} fields")
            continue
        name, raw = row
        part = "train" if name.startswith("train") else "test"
        if not _wanted(split, part):
            continue
        stem = Path(name).stem
        ok, label = _label(col, "rafdb", raw, where, stem)
        if not ok:
            continue
        media = _media(col, root, RAFDB_LAYOUTS, options, where, f"rafdb-{stem}", stem=stem, name=name)
        if media is not None:
            col.add(SampleRecord(id=f"rafdb-{stem}", dataset="rafdb", split=part, media=media, emotion=label,
                                 emotion_raw=raw, emotions=[label]), where)


@adapter("affectnet")
def load_affectnet(col: Collector, root: Path, split=None, fold=None, classes: int = 8, **_) -> None:
    dataset = {7: "affectnet7", 8: "affectnet8"}.get(int(classes))
    if dataset is None:
        raise ValueError(f"affectnet classes must be 7 or 8, got {classes}")
    for part, name in (("train", "training.csv"), ("test", "validation.csv")):
        if not _wanted(split, part):
            continue
        table = root / "Manually_Annotated_file_lists" / name
        for number, row in read_table(table, col, delimiter=","):
            where = f"{table}:{number}"
            rel = row.get("subDirectory_filePath", "")
            sid = Path(rel).stem
            ok, label = _label(col, dataset, row.get("expression"), where, sid)
            if not ok or label is None:  # None: not an emotion (none/uncertain/no-face) or outside the class set
                continue
            va = [float(row[k]) for k in ("valence", "arousal")] if row.get("valence") else [-2.0, -2.0]
            valid = all(-1.0 <= x <= 1.0 for x in va)  # −2 marks "not annotated"
            col.add(SampleRecord(id=f"affectnet-{sid}", dataset="affectnet", split=part, media={
                "type": "image", "path": str(root / "Manually_Annotated_Images" / rel)}, emotion=label,
                emotion_raw=row.get("expression"), emotions=[label], valence=va[0] if valid else None,
                arousal=va[1] if valid else None), where)


@adapter("ckplus")
def load_ckplus(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    images = root / "cohn-kanade-images"
    if not images.is_dir():
        col.problem("missing_file", images, "image folder not found")
        return
    sequences = sorted(p for p in images.glob("S*/*") if p.is_dir())
    folds = _subject_folds([p.parent.name for p in sequences], 10)
    for seq in sequences:
        subject, take = seq.parent.name, seq.name
        sid = f"ckplus-{subject}-{take}"
        record_fold = folds[subject]
        part = _fold_split(record_fold, fold)
        if split is not None and part is not None and part != split:
            continue
        emotion_files = sorted((root / "Emotion" / subject / take).glob("*_emotion.txt"))
        label, raw = None, None
        if emotion_files:
            raw = emotion_files[0].read_text().strip()
            ok, label = _label(col, "ckplus", raw, str(emotion_files[0]), sid)
            if not ok:
                continue
        aus, intensity = [], {}
        for facs in sorted((root / "FACS" / subject / take).glob("*_facs.txt")):
            for number, line in enumerate(facs.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    au, level = int(float(parts[0])), float(parts[1]) if len(parts) > 1 else 0.0
                except ValueError:
                    col.problem("malformed_row", f"{facs}:{number}", f"not 'AU intensity': {line.strip()!r}", sid)
                    continue
                aus.append(au)
                if level > 0:
                    intensity[str(au)] = level
        frames = frame_files(seq)
        col.add(SampleRecord(id=sid, dataset="ckplus", split=part, fold=record_fold, media={
            "type": "frames", "path": str(seq), "fps": 30.0}, emotion=label, emotion_raw=raw,
            emotions=[label] if label else [], aus=aus, au_intensity=intensity, subject=subject,
            meta={"frames": len(frames), "apex_frame": len(frames) - 1}), seq)


# --- AU benchmarks ---------------------------------------------------------------------------------------


# JAA-Net's subject-exclusive partitions (Shao et al., "Deep Adaptive Attention for Joint Facial Action Unit
# Detection and Face Alignment", ECCV 2018; github.com/ZhiwenShao/PyTorch-JAANet data/list/{BP4D,DISFA}_part*),
# the 3-fold protocol of DRML (Zhao et al., CVPR 2016) that later work (ME-GraphAU, Facial-R1) reports on.
# Fold k tests on partition k and trains on the other two (ME-GraphAU numbers its folds the other way round:
# its fold 1 tests partition 3; the mean over folds is the same).
BP4D_FOLDS = {
    1: ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    2: ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    3: ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
}
DISFA_FOLDS = {
    1: ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    2: ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    3: ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
}
DISFA_LAYOUTS = (Layout("left_camera", "Videos_LeftCamera/LeftVideo{subject}_comp.avi", "video"),
                 Layout("frames", "{subject}", "frames", 20.0, "JAA-Net's frame folders, numbered from 0"))
BP4D_LAYOUTS = (Layout("sequences", "Sequences/{subject}/{task}", "frames", 25.0),
                Layout("subject_task", "{subject}/{task}", "frames", 25.0, "JAA-Net's layout"))
AFFWILD2_LAYOUTS = (Layout("cropped_aligned", "cropped_aligned/{video}", "frames", 30.0),
                    Layout("videos_mp4", "videos/{base}.mp4", "video"),
                    Layout("videos_avi", "videos/{base}.avi", "video"))


@dataclass(frozen=True)
class Windows:
    """Frame-level AU protocol: a sample every ``stride``-th annotated frame, ``frames`` source frames ``step``
    apart centred on it."""

    stride: int = 1
    frames: int = 16
    step: int = 1

    @classmethod
    def parse(cls, value: object) -> Windows | None:
        if value is None or isinstance(value, Windows):
            return value
        if not isinstance(value, dict) or set(value) - {"stride", "frames", "step"}:
            raise ValueError(f"windows must be a mapping with stride, frames and step, got {value!r}")
        windows = cls(**{k: int(v) for k, v in value.items()})
        if min(windows.stride, windows.frames, windows.step) < 1:
            raise ValueError(f"windows need stride, frames and step ≥ 1, got {value!r}")
        return windows


def _published_fold(col: Collector, dataset: str, subject: str, table: dict[int, tuple[str, ...]], fold: int | None,
                    where: Path) -> tuple[bool, int | None]:
    """(keep, fold of the subject): a subject in none of the published partitions is reported and left out when
    a fold protocol is asked for."""
    found = next((k for k, subjects in table.items() if subject in subjects), None)
    if found is None and fold is not None:
        col.problem("unknown_subject", where, f"{dataset}: subject {subject} is in none of the published folds",
                    subject)
        return False, None
    return True, found


def _add_windows(col: Collector, dataset: str, base_id: str, media: dict, centres: list[tuple[int, int, dict]],
                 total: int, windows: Windows, where: Path, record_fields: dict, meta: dict) -> None:
    """One record per ``stride``-th centre: (frame number, source position, {AU: present | None = unknown})."""
    for index, (frame, position, states) in enumerate(centres):
        if index % windows.stride or not any(v is not None for v in states.values()):
            continue
        window = window_positions(position, windows.frames, windows.step, total)
        col.add(SampleRecord(
            id=f"{base_id}-f{frame:05d}", dataset=dataset, media={**media, "frame_indices": window},
            aus=[au for au, v in states.items() if v], **record_fields,
            meta={**meta, "centre_frame": frame, "au_known": sorted(au for au, v in states.items() if v is not None),
                  "window": {"frames": windows.frames, "step": windows.step, "stride": windows.stride}}), where)


def _centres(col: Collector, media: dict, rows: list[tuple[int, dict]], where: Path, sid: str,
             folder_offset: int = 0) -> tuple[list[tuple[int, int, dict]], int]:
    """Annotated frames mapped to source positions: frame folders by the numbers in their file names, videos by
    frame number − 1. Annotated frames with no image are counted in one problem per clip."""
    if media["type"] == "frames":
        positions, total = frame_positions(media["path"], folder_offset)
    else:
        total = max((frame for frame, _ in rows), default=0)
        positions = {frame: frame - 1 for frame, _ in rows}
    centres = [(frame, positions[frame], states) for frame, states in rows if frame in positions]
    if len(centres) < len(rows):
        missing = [frame for frame, _ in rows if frame not in positions]
        col.problem("missing_media", where, f"{len(missing)} annotated frames have no image in {media['path']} "
                    f"(first: frame {missing[0]})", sid)
    return centres, total


@adapter("disfa")
def load_disfa(col: Collector, root: Path, split=None, fold=None, threshold: float = 2.0, windows=None,
               **options) -> None:
    windows = Windows.parse(windows)
    labels = root / "ActionUnit_Labels"
    subjects = sorted(p.name for p in labels.glob("SN*") if p.is_dir()) if labels.is_dir() else []
    if not subjects:
        col.problem("missing_file", labels, "no SNxxx label folders")
    for subject in subjects:
        keep, record_fold = _published_fold(col, "disfa", subject, DISFA_FOLDS, fold, labels / subject)
        part = _fold_split(record_fold, fold)
        if not keep or (split is not None and part is not None and part != split):
            continue
        per_frame: dict[int, dict[int, float]] = {}  # AU → {frame: intensity}
        for au in DISFA_AUS:
            table = labels / subject / f"{subject}_au{au}.txt"
            for number, row in read_table(table, col, delimiter=",", header=False):
                try:
                    per_frame.setdefault(au, {})[int(float(row[0]))] = float(row[1])
                except (IndexError, ValueError):
                    col.problem("malformed_row", f"{table}:{number}", f"expected 'frame,intensity', got {row}", subject)
        if not per_frame:
            continue
        media = _media(col, root, DISFA_LAYOUTS, options, str(labels / subject), f"disfa-{subject}", subject=subject)
        if media is None:
            continue
        fields = {"split": part, "fold": record_fold, "subject": subject}
        meta = {"au_set": list(DISFA_AUS), "presence_threshold": threshold}
        if windows is not None:
            frames = sorted({f for values in per_frame.values() for f in values})
            rows = [(f, {au: (v[f] >= threshold) if f in v else None for au, v in per_frame.items()}) for f in frames]
            centres, total = _centres(col, media, rows, labels / subject, f"disfa-{subject}", folder_offset=1)
            _add_windows(col, "disfa", f"disfa-{subject}", media, centres, total, windows, labels / subject, fields,
                         meta)
            continue
        frames = {au: np.asarray([v[f] for f in sorted(v)]) for au, v in per_frame.items()}
        present, peaks = _au_summary(frames, threshold)
        col.add(SampleRecord(id=f"disfa-{subject}", dataset="disfa", media=media, aus=present, au_intensity=peaks,
                             au_frames={str(a): v.tolist() for a, v in frames.items()}, meta=meta, **fields),
                labels / subject)


@adapter("bp4d")
def load_bp4d(col: Collector, root: Path, split=None, fold=None, windows=None, **options) -> None:
    windows = Windows.parse(windows)
    occ_dir = root / "AUCoding" / "AU_OCC"
    tables = sorted(occ_dir.glob("*.csv")) if occ_dir.is_dir() else []
    if not tables:
        col.problem("missing_file", occ_dir, "no AU occurrence tables")
    for table in tables:
        subject, task = table.stem.split("_", 1)
        keep, record_fold = _published_fold(col, "bp4d", subject, BP4D_FOLDS, fold, table)
        part = _fold_split(record_fold, fold)
        if not keep or (split is not None and part is not None and part != split):
            continue
        occurrence: dict[int, list[float]] = {}
        coded: list[tuple[int, dict[int, bool | None]]] = []
        for number, row in read_table(table, col, delimiter=","):
            frame_key = next((k for k in row if k.strip().lower() == "frame"), None)
            states: dict[int, bool | None] = {}
            for key, value in row.items():
                if key.strip().isdigit():
                    v = float(value)
                    occurrence.setdefault(int(key), []).append(np.nan if v == 9 else v)  # 9 = unknown
                    states[int(key)] = None if v == 9 else v >= 1
            try:
                coded.append((int(float(row[frame_key])), states))
            except (TypeError, KeyError, ValueError):
                col.problem("malformed_row", f"{table}:{number}", "no frame number", f"bp4d-{subject}-{task}")
        media = _media(col, root, BP4D_LAYOUTS, options, str(table), f"bp4d-{subject}-{task}", subject=subject,
                       task=task)
        if media is None:
            continue
        fields = {"split": part, "fold": record_fold, "subject": subject}
        meta = {"task": task, "au_set": list(BP4D_AUS)}
        if windows is not None:
            centres, total = _centres(col, media, coded, table, f"bp4d-{subject}-{task}")
            _add_windows(col, "bp4d", f"bp4d-{subject}-{task}", media, centres, total, windows, table, fields, meta)
            continue
        frames = {au: np.asarray(v) for au, v in occurrence.items()}
        # FERA 2015 ships per-frame intensities (0–5) for a few AUs: they replace the 0/1 occurrence of those AUs,
        # so letters and apexes come from real intensities; the rest stay occurrence-only (see meta).
        intensity: dict[str, float] = {}
        rows = max((len(v) for v in occurrence.values()), default=0)
        frame_numbers = [f for f, _ in coded] if len(coded) == rows else list(range(1, rows + 1))
        position = {n: i for i, n in enumerate(frame_numbers)}
        for au in list(frames):
            int_table = root / "AUCoding" / "AU_INT" / f"AU{au:02d}" / f"{table.stem}_AU{au:02d}.csv"
            if not int_table.is_file():
                continue
            per_frame = np.full(len(frame_numbers), np.nan)
            for number, r in read_table(int_table, col, delimiter=",", header=False):
                try:
                    frame, value = int(float(r[0])), float(r[1])
                except (IndexError, ValueError):
                    col.problem("malformed_row", f"{int_table}:{number}", f"expected 'frame,intensity', got {r}",
                                subject)
                    continue
                if frame in position and value != 9:
                    per_frame[position[frame]] = value
            if np.isfinite(per_frame).any():
                intensity[str(au)] = float(np.nanmax(per_frame))
                # frames the intensity table leaves out: off where occurrence says off, else unknown (NaN)
                off = np.nan_to_num(frames[au], nan=1.0) == 0
                frames[au] = np.where(np.isfinite(per_frame), per_frame, np.where(off, 0.0, np.nan))
        meta["occurrence_aus"] = sorted(au for au in frames if str(au) not in intensity)
        present = sorted(au for au, v in frames.items() if np.nanmax(np.nan_to_num(v, nan=0)) >= 1)
        col.add(SampleRecord(id=f"bp4d-{subject}-{task}", dataset="bp4d", media=media, aus=present,
                             au_intensity=intensity, au_frames={str(a): [None if np.isnan(x) else x for x in v.tolist()]
                                                                for a, v in frames.items()}, meta=meta, **fields), table)


@adapter("affwild2")
def load_affwild2(col: Collector, root: Path, split=None, fold=None, windows=None, **options) -> None:
    windows = Windows.parse(windows)
    ann = root / "Annotations"
    tasks = {"expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge",
             "au": "AU_Detection_Challenge"}
    for part, folder in (("train", "Train_Set"), ("val", "Validation_Set")):
        if not _wanted(split, part):
            continue
        videos: dict[str, dict[str, Path]] = {}
        for task, task_dir in tasks.items():
            for txt in sorted((ann / task_dir / folder).glob("*.txt")):
                videos.setdefault(txt.stem, {})[task] = txt
        for video, files in sorted(videos.items()):
            if windows is not None and "au" not in files:
                continue
            where = next(iter(files.values()))
            media = _media(col, root, AFFWILD2_LAYOUTS, options, str(where), f"affwild2-{video}", video=video,
                           base=video.removesuffix("_left").removesuffix("_right"))
            if media is None:
                continue
            if windows is not None:
                rows = []
                for number, r in read_table(files["au"], col, delimiter=","):
                    try:  # line n (after the header) is frame n − 1; −1 = not annotated
                        rows.append((number - 1, {int(k.upper().removeprefix("AU")): None if float(v) < 0
                                                  else float(v) >= 1 for k, v in r.items()}))
                    except ValueError:
                        col.problem("malformed_row", f"{files['au']}:{number}",
                                    f"AU values must be -1, 0 or 1, got {list(r.values())}", f"affwild2-{video}")
                centres, total = _centres(col, media, rows, files["au"], f"affwild2-{video}")
                _add_windows(col, "affwild2", f"affwild2-{video}", media, centres, total, windows, files["au"],
                             {"split": part, "subject": video.split("_")[0]}, {"au_set": list(ABAW_AUS)})
                continue
            record = SampleRecord(id=f"affwild2-{video}", dataset="affwild2", split=part, media=media,
                                  subject=video.split("_")[0])
            if "expr" in files:
                labels = [int(r[0]) for _, r in read_table(files["expr"], col, delimiter=",", header=False)
                          if r and r[0].lstrip("-").isdigit()]
                mapped = [map_dataset_label("affwild2_expr", x) if 0 <= x <= 6 else None for x in labels]
                counted = Counter(x for x in mapped if x is not None)
                if counted:
                    record.emotion = counted.most_common(1)[0][0]
                    record.emotions = [record.emotion]
                record.meta["expr_frames"] = [x if x is not None else None for x in mapped]
            if "va" in files:
                rows = [r for _, r in read_table(files["va"], col, delimiter=",")]
                va = np.asarray([[float(r["valence"]), float(r["arousal"])] for r in rows]) if rows else np.zeros((0, 2))
                ok = (va > -5).all(axis=1) if len(va) else np.zeros(0, bool)
                if ok.any():
                    record.valence, record.arousal = (round(float(x), 4) for x in va[ok].mean(axis=0))
                record.meta["va_frames"] = [[float(a), float(b)] if k else None for (a, b), k in zip(va, ok, strict=True)]
            if "au" in files:
                au_rows = [r for _, r in read_table(files["au"], col, delimiter=",")]
                frames = {}
                for key in (au_rows[0] if au_rows else {}):
                    number = int(key.upper().removeprefix("AU"))
                    values = np.asarray([float(r[key]) for r in au_rows])
                    frames[number] = np.where(values < 0, np.nan, values)
                record.au_frames = {str(a): [None if np.isnan(x) else x for x in v.tolist()] for a, v in frames.items()}
                record.aus = sorted(a for a, v in frames.items() if np.nanmax(np.nan_to_num(v, nan=0)) >= 1)
                record.meta["au_set"] = list(ABAW_AUS)
                record.meta["occurrence_aus"] = sorted(frames)  # 0/1 per frame: no intensity is known
            col.add(record, next(iter(files.values())))


# --- AU evidence beside clips, and the embedded dataset ------------------------------------------------------

@adapter("openface")
def load_openface(col: Collector, root: Path, split=None, fold=None, min_confidence: float = 0.8,
                  threshold: float = 1.0, **_) -> None:
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    for video in videos:
        csv_path = video.with_suffix(".csv")
        sid = f"openface-{video.relative_to(root).with_suffix('').as_posix().replace('/', '-')}"
        if not csv_path.is_file():
            col.problem("missing_file", csv_path, "no OpenFace CSV beside the video", sid)
            continue
        try:
            track = read_openface_csv(csv_path)
        except (OpenFaceError, FileNotFoundError) as exc:
            col.problem("malformed_row", csv_path, str(exc), sid)
            continue
        frames = track.au_frames(min_confidence)
        present, peaks = _au_summary(frames, threshold)
        col.add(SampleRecord(id=sid, dataset="openface", split=split, media={"type": "video", "path": str(video),
                             "fps": track.fps}, aus=present, au_intensity=peaks,
                             au_frames={str(a): [round(float(x), 3) if np.isfinite(x) else None for x in v]
                                        for a, v in frames.items()},
                             meta={"openface_csv": str(csv_path), "valid_frames": int(track.valid(min_confidence).sum()),
                                   "frames": len(track)}), csv_path)


@adapter("synthfacs")
def load_synthfacs(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    manifest = root / "manifest.jsonl" if root.is_dir() else root
    base = manifest.parent
    if not manifest.is_file():
        col.problem("missing_file", manifest, "manifest.jsonl not found (run `emoreason synth`)")
        return
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            col.problem("malformed_row", where, f"invalid JSON ({exc})")
            continue
        if not _wanted(split, data.get("split")):
            continue
        if data.get("emotion") not in EMOTIONS:
            col.problem("unknown_label", where, f"synthfacs: unknown label {data.get('emotion')!r}", data.get("id"))
            continue
        media = dict(data["media"])
        media["path"] = str(base / media["path"])
        data["media"] = media
        if (data.get("voice") or {}).get("reference"):  # SynthFACS-AV: the speaker's neutral voice, measured
            data["meta"] = {**data.get("meta", {}), "prosody_reference": data["voice"]["reference"]}
        col.add(SampleRecord.from_dict(data), where)


# --- audio-visual emotion benchmarks (speech) ------------------------------------------------------------------

MER2023_SPLITS = ("train", "test1", "test2", "test3")
MER2023_LAYOUTS = (Layout("mp4", "{part}/{name}.mp4", "video"), Layout("avi", "{part}/{name}.avi", "video"))


def _load_mer(col: Collector, root: Path, dataset: str, part: str, table: Path, layouts, options: dict) -> None:
    """One MER label table (``name, discrete[, valence]``) of split ``part``, media by ``layouts``."""
    for number, row in read_table(table, col, delimiter=","):
        where = f"{table}:{number}"
        name = (row.get("name") or "").strip()
        if not name:
            col.problem("malformed_row", where, "no name")
            continue
        sid = f"{dataset}-{name}"
        ok, label = _label(col, dataset, row.get("discrete"), where, sid)
        if not ok:
            continue
        media = _media(col, root, layouts, options, where, sid, part=part, name=name)
        if media is None:
            continue
        valence = row.get("valence")
        try:  # MER valence is on −5..5 (the test sets have none)
            valence = max(-1.0, min(1.0, float(valence) / 5.0)) if valence not in (None, "") else None
        except ValueError:
            valence = None
        col.add(SampleRecord(id=sid, dataset=dataset, split=part, media=media, emotion=label,
                             emotion_raw=row.get("discrete"), emotions=[label], valence=valence), where)


@adapter("mer2023")
def load_mer2023(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    for part in MER2023_SPLITS:
        if _wanted(split, part):
            _load_mer(col, root, "mer2023", part, root / f"{part}-label.csv", MER2023_LAYOUTS, options)


def _mer2024_layouts(*folders: str) -> tuple[Layout, ...]:
    return tuple(Layout(f"{folder}_{ext}", f"{folder}/{{name}}.{ext}", "video") for folder in folders
                 for ext in ("mp4", "avi"))


# split: (label tables tried in order, media layouts tried in order); see the adapter's docstring
MER2024_SPLITS = {
    "train": (("label-disdim.csv", "train-label.csv"), _mer2024_layouts("video-labeled", "train")),
    "test1": (("test1-label.csv", "test1_name_convert_label.csv"),
              _mer2024_layouts("video-unlabeled-with-test2noise", "video-unlabeled", "test1")),
    "test2": (("test2-label.csv", "test2_name_convert_label.csv"),
              _mer2024_layouts("video-unlabeled-with-test2noise", "test2")),
}


@adapter("mer2024")
def load_mer2024(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    """MER2024 (Lian et al., "MER 2024: Semi-Supervised Learning, Noise Robustness, and Open-Vocabulary Multimodal
    Emotion Recognition", arXiv 2404.17113), the discrete tracks: 6 classes as MER2023 (neutral, angry, happy, sad,
    worried, surprise), scored by weighted F1.

    The release, as MERTools' MER2024 preprocessing reads it: ``label-disdim.csv`` (``name, discrete, valence``;
    valence on −5..5) for the 5,030 labelled clips in ``video-labeled/<name>.mp4``, and the unlabelled pool
    ``video-unlabeled-with-test2noise/<name>.mp4`` (``video-unlabeled/`` in copies without the noise), among which
    the test clips hide: ``test1`` = MER-SEMI (1,169 clips), ``test2`` = MER-NOISE (1,170 clips, the noisy copies —
    so only the ``-with-test2noise`` folder). Assumed, as the release's test labels could not be confirmed: each
    test split's labels are a ``<split>-label.csv`` (MER2023's convention) or ``<split>_name_convert_label.csv``
    (the file the organisers' ``generate_final_test1_test2_gt`` writes), with ``name, discrete``. A copy
    normalised to MER2023's layout (``<split>-label.csv`` beside ``<split>/<name>.mp4``) is read too. ``.avi``
    clips are found beside ``.mp4`` (MER2023's clips, part of MER2024, include some)."""
    for part, (tables, layouts) in MER2024_SPLITS.items():
        if not _wanted(split, part):
            continue
        table = next((root / t for t in tables if (root / t).is_file()), root / tables[0])
        _load_mer(col, root, "mer2024", part, table, layouts, options)


CREMAD_LAYOUTS = (Layout("video_flash", "VideoFlash/{name}.flv", "video", note="the GitHub release"),
                  Layout("video_mp4", "VideoMP4/{name}.mp4", "video", note="a common mp4 conversion"))
CREMAD_FOLDS, RAVDESS_FOLDS = 5, 6
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def _speech_split(record_fold: int, fold: int | None, split: str | None) -> tuple[bool, str | None]:
    part = _fold_split(record_fold, fold)
    return split is None or part is None or part == split, part


@adapter("cremad")
def load_cremad(col: Collector, root: Path, split=None, fold=None, **options) -> None:
    base = Path(options["media_root"]) if options.get("media_root") else root
    names = sorted({p.stem for folder, ext in (("VideoFlash", "flv"), ("VideoMP4", "mp4"))
                    for p in (base / folder).glob(f"*.{ext}")})
    if not names:
        col.problem("missing_file", base / "VideoFlash", "no CREMA-D clips (VideoFlash/*.flv or VideoMP4/*.mp4)")
        return
    folds = _subject_folds([n.split("_")[0] for n in names], CREMAD_FOLDS)
    for name in names:
        where = str(base / "VideoFlash" / f"{name}.flv")
        parts = name.split("_")
        if len(parts) != 4 or not parts[0].isdigit():
            col.problem("malformed_row", where, f"not <actor>_<sentence>_<emotion>_<level>: {name!r}")
            continue
        actor, sentence, code, level = parts
        wanted, part = _speech_split(folds[actor], fold, split)
        if not wanted:
            continue
        sid = f"cremad-{name}"
        ok, label = _label(col, "cremad", code, where, sid)
        if not ok:
            continue
        media = _media(col, root, CREMAD_LAYOUTS, options, where, sid, name=name)
        if media is not None:
            col.add(SampleRecord(id=sid, dataset="cremad", split=part, fold=folds[actor], media=media, emotion=label,
                                 emotion_raw=code, emotions=[label], subject=actor,
                                 meta={"sentence": sentence, "level": level}), where)


RAVDESS_CHANNELS = {"speech": ("01",), "song": ("02",), "all": ("01", "02")}


def ravdess_label_map(classes: int = 8, channel: str = "speech") -> str:
    """The label map of a RAVDESS protocol (Livingstone & Russo 2018): ``ravdess`` (speech, 8 classes — the
    standard), ``ravdess7`` (calm counted as neutral), ``ravdess_song`` (song: 6 classes)."""
    if int(classes) not in (7, 8):
        raise ValueError(f"ravdess classes must be 8 (the standard protocol) or 7 (calm merged into neutral), "
                         f"got {classes}")
    if channel not in RAVDESS_CHANNELS:
        raise ValueError(f"ravdess channel must be one of {', '.join(RAVDESS_CHANNELS)}, got {channel!r}")
    return "ravdess7" if int(classes) == 7 else "ravdess_song" if channel == "song" else "ravdess"


def label_map_of(dataset_format: str, options: dict | None = None) -> str | None:
    """The label map (``emoreason.knowledge.DATASET_LABEL_MAPS``) a format's records are labelled in under its
    adapter ``options`` — the label set its protocol scores (RAVDESS ``classes=7`` → ``ravdess7``, AffectNet
    ``classes=7`` → ``affectnet7``, Aff-Wild2 → ``affwild2_expr``); None for a format without one (``openface``)."""
    options = options or {}
    if dataset_format == "ravdess":
        return ravdess_label_map(options.get("classes", 8), options.get("channel", "speech"))
    if dataset_format == "affectnet":
        return f"affectnet{int(options.get('classes', 8))}"
    if dataset_format == "affwild2":  # a video's emotion is its EXPR frames' majority
        return "affwild2_expr"
    return dataset_format if dataset_format in DATASET_LABEL_MAPS else None


@adapter("ravdess")
def load_ravdess(col: Collector, root: Path, split=None, fold=None, classes: int = 8, channel: str = "speech",
                 **options) -> None:
    """RAVDESS audio-video files; the standard protocol by default (speech, 8 classes: Livingstone & Russo, PLoS ONE
    2018), ``classes=7`` (calm → neutral) and ``channel=song|all`` as named variants."""
    labels = ravdess_label_map(classes, channel)
    channels = RAVDESS_CHANNELS[channel]
    base = Path(options["media_root"]) if options.get("media_root") else root
    files = sorted(base.glob("Actor_*/*.mp4"))
    if not files:
        col.problem("missing_file", base, "no RAVDESS clips (Actor_NN/*.mp4)")
        return
    folds = _subject_folds([p.parent.name for p in files], RAVDESS_FOLDS)
    for path in files:
        fields = path.stem.split("-")
        if len(fields) != 7 or not all(f.isdigit() for f in fields):
            col.problem("malformed_row", path, f"not a RAVDESS file name (7 two-digit fields): {path.name!r}")
            continue
        modality, vocal, code, intensity, statement, repetition, actor = fields
        if modality != "01" or vocal not in channels:  # 02 = video-only (no audio track), 03 = audio-only
            continue
        sid = f"ravdess-{path.stem}"
        index = int(code) - 1
        if not 0 <= index < len(RAVDESS_EMOTIONS):
            col.problem("unknown_label", path, f"ravdess: unknown emotion code {code!r}", sid)
            continue
        wanted, part = _speech_split(folds[path.parent.name], fold, split)
        if not wanted:
            continue
        raw = RAVDESS_EMOTIONS[index]
        ok, label = _label(col, labels, raw, str(path), sid)
        if ok:
            col.add(SampleRecord(id=sid, dataset="ravdess", split=part, fold=folds[path.parent.name],
                                 media={"type": "video", "path": str(path)}, emotion=label, emotion_raw=raw,
                                 emotions=[label], subject=f"actor{actor}",
                                 meta={"channel": "speech" if vocal == "01" else "song",
                                       "intensity": "strong" if intensity == "02" else "normal",
                                       "statement": statement, "repetition": repetition}), path)
