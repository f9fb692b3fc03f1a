"""One adapter per benchmark, each reading the layout the dataset is distributed in.

Layouts (paths relative to the dataset root) and protocols:

* ``dfew`` (Jiang et al. 2020): ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` with
  ``video_name,label`` (label 1–7); media ``Clip/clip_224x224/{id:05d}/`` frame folders, else
  ``Clip/original/{id:05d}.mp4``. 5-fold: fold k trains on train set_k, tests on test set_k.
* ``ferv39k`` (Wang et al. 2022): ``4_setups/All_scenes/{train,test}_All.csv`` rows ``<clip path> <label 0–6>``;
  media frame folders ``2_ClipsforFaceCrop/<clip path>/``.
* ``mafw`` (Liu et al. 2022): ``Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt`` rows
  ``<clip>.mp4 <label>`` (name or 1–11); media ``data/clips/<clip>.mp4``. Compound labels (``anger_disgust``)
  keep their components in ``emotions``.
* ``rafdb`` (Li et al. 2017): ``basic/EmoLabel/list_patition_label.txt`` rows ``train_00001.jpg 5``; images
  ``basic/Image/aligned/train_00001_aligned.jpg`` (else ``basic/Image/original/``). Split from the name prefix.
* ``affectnet`` (Mollahosseini et al. 2019): ``Manually_Annotated_file_lists/{training,validation}.csv`` with
  ``subDirectory_filePath, …, expression, valence, arousal``; images ``Manually_Annotated_Images/``.
  ``classes=8`` (default) or 7; the validation set is the test split; VA −2 means not annotated.
* ``ckplus`` (Lucey et al. 2010): ``cohn-kanade-images/Sxxx/nnn/*.png`` sequences, ``Emotion/Sxxx/nnn/*_emotion.txt``
  (0–7) and ``FACS/Sxxx/nnn/*_facs.txt`` (AU, intensity; 0 = unscored). 10 subject-independent folds.
* ``disfa`` (Mavadati et al. 2013): ``ActionUnit_Labels/SNxxx/SNxxx_au{N}.txt`` rows ``frame,intensity`` (0–5) for 12
  AUs; video ``Videos_LeftCamera/LeftVideoSNxxx_comp.avi``. AU present at intensity ≥ 2 (the usual protocol);
  3 subject-independent folds.
* ``bp4d`` (Zhang et al. 2014): ``AUCoding/AU_OCC/Fxxx_Tn.csv`` (``Frame,1,2,4,…``, 0/1, 9 = unknown) and optional
  ``AUCoding/AU_INT/AUnn/Fxxx_Tn_AUnn.csv`` (``frame,intensity``); frames ``Sequences/Fxxx/Tn/``. 3 folds by subject.
* ``affwild2`` (Kollias, ABAW): ``Annotations/{EXPR_Classification_Challenge,VA_Estimation_Challenge,
  AU_Detection_Challenge}/{Train_Set,Validation_Set}/<video>.txt``, one header line then one row per frame;
  −1 (EXPR, AU) and −5 (VA) mark unlabelled frames. Frames ``cropped_aligned/<video>/``, else
  ``videos/<video>.mp4``. Video-level emotion is the majority expression over labelled frames.
* ``emer`` (Lian et al. 2023): ``emer.csv`` with ``name,label,reason``; media ``video/<name>.mp4``.
* ``fea20k``: ``annotations/{train,test}.jsonl`` with ``id``, ``video`` or ``image``, ``emotion``, ``aus``
  (list or {AU: intensity}), ``rationale``.
* ``openface``: any folder of videos, each with an OpenFace CSV of the same stem beside it.
* ``synthfacs``: ``manifest.jsonl`` written by ``emoreason synth``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from emoreason.datasets.base import Collector, adapter, read_table
from emoreason.datasets.openface import OpenFaceError, read_openface_csv
from emoreason.knowledge import EMOTIONS, UnknownLabelError, canonical_emotion, map_dataset_label
from emoreason.knowledge.coded_aus import ABAW_AUS, BP4D_AUS, DISFA_AUS  # coded sets: one source of truth
from emoreason.records import SampleRecord
from emoreason.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


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

@adapter("dfew")
def load_dfew(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    fold = fold or 1
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        table = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{fold}.csv"
        for number, row in read_table(table, col, delimiter=","):
            where = f"{table}:{number}"
            try:
                clip = f"{int(row['video_name']):05d}"
            except (KeyError, ValueError):
                col.problem("malformed_row", where, f"bad video_name {row.get('video_name')!r}")
                continue
            ok, label = _label(col, "dfew", row.get("label"), where, clip)
            if not ok:
                continue
            frames = root / "Clip" / "clip_224x224" / clip
            media = {"type": "frames", "path": str(frames), "fps": 25.0} if frames.is_dir() else {
                "type": "video", "path": str(root / "Clip" / "original" / f"{clip}.mp4")}
            col.add(SampleRecord(id=f"dfew-{clip}", dataset="dfew", split=part, fold=fold, media=media,
                                 emotion=label, emotion_raw=row.get("label"), emotions=[label]), where)


@adapter("ferv39k")
def load_ferv39k(col: Collector, root: Path, split=None, fold=None, **_) -> None:
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
            if ok:
                col.add(SampleRecord(id=sid, dataset="ferv39k", split=part, media={
                    "type": "frames", "path": str(root / "2_ClipsforFaceCrop" / clip), "fps": 25.0},
                    emotion=label, emotion_raw=raw, emotions=[label], meta={"scene": clip.split("/")[0]}), where)


@adapter("mafw")
def load_mafw(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    fold = fold or 1
    for part in ("train", "test"):
        if not _wanted(split, part):
            continue
        table = root / "Train & Test Set" / "single" / "no_caption" / f"set_{fold}" / f"{part}.txt"
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
                col.add(SampleRecord(id=f"mafw-{stem}", dataset="mafw", split=part, fold=fold, media={
                    "type": "video", "path": str(root / "data" / "clips" / f"{stem}.mp4")},
                    emotion=labels[0] if len(labels) == 1 else None, emotion_raw=raw, emotions=labels), where)


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

@adapter("rafdb")
def load_rafdb(col: Collector, root: Path, split=None, fold=None, **_) -> None:
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
        aligned = root / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg"
        path = aligned if aligned.exists() else root / "basic" / "Image" / "original" / name
        col.add(SampleRecord(id=f"rafdb-{stem}", dataset="rafdb", split=part, media={"type": "image",
                             "path": str(path)}, emotion=label, emotion_raw=raw, emotions=[label]), where)


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
        frames = sorted(p for p in seq.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        col.add(SampleRecord(id=sid, dataset="ckplus", split=part, fold=record_fold, media={
            "type": "frames", "path": str(seq), "fps": 30.0}, emotion=label, emotion_raw=raw,
            emotions=[label] if label else [], aus=aus, au_intensity=intensity, subject=subject,
            meta={"frames": len(frames), "apex_frame": len(frames) - 1}), seq)


# --- AU benchmarks ---------------------------------------------------------------------------------------



@adapter("disfa")
def load_disfa(col: Collector, root: Path, split=None, fold=None, threshold: float = 2.0, **_) -> None:
    labels = root / "ActionUnit_Labels"
    subjects = sorted(p.name for p in labels.glob("SN*") if p.is_dir()) if labels.is_dir() else []
    if not subjects:
        col.problem("missing_file", labels, "no SNxxx label folders")
    folds = _subject_folds(subjects, 3)
    for subject in subjects:
        part = _fold_split(folds[subject], fold)
        if split is not None and part is not None and part != split:
            continue
        frames: dict[int, np.ndarray] = {}
        for au in DISFA_AUS:
            table = labels / subject / f"{subject}_au{au}.txt"
            values: list[float] = []
            for number, row in read_table(table, col, delimiter=",", header=False):
                try:
                    values.append(float(row[1]))
                except (IndexError, ValueError):
                    col.problem("malformed_row", f"{table}:{number}", f"expected 'frame,intensity', got {row}", subject)
            if values:
                frames[au] = np.asarray(values)
        if not frames:
            continue
        present, peaks = _au_summary(frames, threshold)
        col.add(SampleRecord(id=f"disfa-{subject}", dataset="disfa", split=part, fold=folds[subject], media={
            "type": "video", "path": str(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi")},
            aus=present, au_intensity=peaks, au_frames={str(a): v.tolist() for a, v in frames.items()},
            subject=subject, meta={"au_set": list(DISFA_AUS), "presence_threshold": threshold}), labels / subject)


@adapter("bp4d")
def load_bp4d(col: Collector, root: Path, split=None, fold=None, **_) -> None:
    occ_dir = root / "AUCoding" / "AU_OCC"
    tables = sorted(occ_dir.glob("*.csv")) if occ_dir.is_dir() else []
    if not tables:
        col.problem("missing_file", occ_dir, "no AU occurrence tables")
    folds = _subject_folds([t.stem.split("_")[0] for t in tables], 3)
    for table in tables:
        subject, task = table.stem.split("_", 1)
        part = _fold_split(folds[subject], fold)
        if split is not None and part is not None and part != split:
            continue
        occurrence: dict[int, list[float]] = {}
        frame_numbers: list[int] = []
        for number, row in read_table(table, col, delimiter=","):
            try:
                frame_numbers.append(int(float(row.get("Frame", row.get("frame", len(frame_numbers) + 1)))))
            except ValueError:
                col.problem("malformed_row", f"{table}:{number}", f"bad frame number {row.get('Frame')!r}", subject)
                frame_numbers.append(len(frame_numbers) + 1)
            for key, value in row.items():
                if key.strip().isdigit():
                    v = float(value)
                    occurrence.setdefault(int(key), []).append(np.nan if v == 9 else v)  # 9 = unknown
        frames = {au: np.asarray(v) for au, v in occurrence.items()}
        # FERA 2015 ships per-frame intensities (0–5) for a few AUs: they replace the 0/1 occurrence of those AUs,
        # so letters and apexes come from real intensities; the rest stay occurrence-only (see meta).
        intensity: dict[str, float] = {}
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
                frames[au] = per_frame
                intensity[str(au)] = float(np.nanmax(per_frame))
        occurrence_aus = sorted(au for au in frames if str(au) not in intensity)
        present = sorted(au for au, v in frames.items() if np.nanmax(np.nan_to_num(v, nan=0)) >= 1)
        col.add(SampleRecord(id=f"bp4d-{subject}-{task}", dataset="bp4d", split=part, fold=folds[subject], media={
            "type": "frames", "path": str(root / "Sequences" / subject / task), "fps": 25.0}, aus=present,
            au_intensity=intensity, au_frames={str(a): [None if np.isnan(x) else x for x in v.tolist()]
                                               for a, v in frames.items()},
            subject=subject, meta={"task": task, "au_set": list(BP4D_AUS), "occurrence_aus": occurrence_aus}), table)


@adapter("affwild2")
def load_affwild2(col: Collector, root: Path, split=None, fold=None, **_) -> None:
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
            record = SampleRecord(id=f"affwild2-{video}", dataset="affwild2", split=part,
                                  media=_affwild2_media(root, video), subject=video.split("_")[0])
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


def _affwild2_media(root: Path, video: str) -> dict:
    frames = root / "cropped_aligned" / video
    if frames.is_dir():
        return {"type": "frames", "path": str(frames), "fps": 30.0}
    base = video.removesuffix("_left").removesuffix("_right")
    for ext in (".mp4", ".avi"):
        candidate = root / "videos" / f"{base}{ext}"
        if candidate.exists():
            return {"type": "video", "path": str(candidate)}
    return {"type": "frames", "path": str(frames), "fps": 30.0}


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
        col.add(SampleRecord.from_dict(data), where)
