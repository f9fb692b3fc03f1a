"""Tiny fixture trees in each benchmark's on-disk layout, with planted problems.

Each ``make_<format>(root)`` writes the tree and returns what loading it must give: record counts per split
and the problem kinds planted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from emoreason.datasets.openface import write_openface_csv
from emoreason.video import write_video

_RNG = np.random.default_rng(0)


def _video(path: Path, frames: int = 4) -> Path:
    data = (_RNG.random((frames, 32, 32, 3)) * 255).astype(np.uint8)
    return write_video(data, path, fps=8)


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((_RNG.random((24, 24, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _frames(folder: Path, n: int = 3, names: list[str] | None = None) -> Path:
    for name in names or [f"{i + 1:05d}.jpg" for i in range(n)]:
        _image(folder / name)
    return folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_dfew(root: Path) -> dict:
    split_dir = root / "EmoLabel_DataSplit"
    _write(split_dir / "train(single-labeled)" / "set_1.csv",
           "video_name,label\n1,1\n2,4\n3,9\n4,7,extra\n99,2\n5,3\n")
    _write(split_dir / "test(single-labeled)" / "set_1.csv", "video_name,label\n6,5\n7,6\n")
    # fold 2 of the cross-validation: fold 1's test clips are in its train set, and the reverse
    _write(split_dir / "train(single-labeled)" / "set_2.csv", "video_name,label\n6,5\n7,6\n5,3\n")
    _write(split_dir / "test(single-labeled)" / "set_2.csv", "video_name,label\n1,1\n2,4\n")
    for clip in (1, 2, 5, 6):
        _frames(root / "Clip" / "clip_224x224" / f"{clip:05d}")
    _video(root / "Clip" / "original" / "00007.mp4")
    return {"counts": {"train": 3, "test": 2}, "problems": {"unknown_label": 1, "malformed_row": 1,
                                                           "missing_media": 1}, "kwargs": {"fold": 1}}


# DFEW as real copies hold it: the label tables plus one media variant each (docs: emoreason/datasets/adapters.py)
DFEW_VARIANTS = ("clip_224x224", "clip_224x224_16f", "jpg_256", "clip_224x224_avi", "original", "original_unpadded")


def dfew_variant(root: Path, variant: str) -> dict:
    """Test clips 6, 7 and 12 of fold 1 in one media layout; clip 12 is a folder of unpadded frame names
    (1.jpg … 12.jpg) where the variant has frame folders. Returns {clip id: (media type, path suffix)}."""
    split_dir = root / "EmoLabel_DataSplit"
    _write(split_dir / "test(single-labeled)" / "set_1.csv", "video_name,label\n6,5\n7,6\n12,1\n")
    expected = {}
    for clip in (6, 7, 12):
        padded = f"{clip:05d}"
        if variant in ("clip_224x224", "clip_224x224_16f", "jpg_256"):
            folder = root / "Clip" / variant / padded
            _frames(folder, 16, [f"{i}.jpg" for i in range(1, 13)] if clip == 12 else None)
            expected[f"dfew-{padded}"] = ("frames", f"Clip/{variant}/{padded}")
        else:
            name = {"clip_224x224_avi": f"clip_224x224_avi/{padded}.avi", "original": f"original/{padded}.mp4",
                    "original_unpadded": f"original/{clip}.mp4"}[variant]
            _video(root / "Clip" / name)
            expected[f"dfew-{padded}"] = ("video", f"Clip/{name}")
    return expected
def make_ferv39k(root: Path) -> dict:
    setups = root / "4_setups" / "All_scenes"
    _write(setups / "train_All.csv", "Action/Drink/0001 3\nAction/Drink/0002 0\nAction/Run/0003 12\n")
    _write(setups / "test_All.csv", "Daily/Talk/0004 6\nDaily/Talk/0005\n")
    for clip in ("Action/Drink/0001", "Action/Drink/0002", "Daily/Talk/0004"):
        _frames(root / "2_ClipsforFaceCrop" / clip)
    return {"counts": {"train": 2, "test": 1}, "problems": {"unknown_label": 1, "malformed_row": 1}}


def make_mafw(root: Path) -> dict:
    sets = root / "Train & Test Set" / "single" / "no_caption" / "set_1"
    _write(sets / "train.txt", "00001.mp4 happiness\n00002.mp4 anger_disgust\n00003.mp4 8\n00004.mp4 boredom\n")
    _write(sets / "test.txt", "00005.mp4 11\n00001.mp4 happiness\n")
    for clip in (1, 2, 3, 5):
        _video(root / "data" / "clips" / f"{clip:05d}.mp4")
    return {"counts": {"train": 3, "test": 1}, "problems": {"unknown_label": 1, "duplicate_id": 1},
            "kwargs": {"fold": 1}}


def make_rafdb(root: Path) -> dict:
    _write(root / "basic" / "EmoLabel" / "list_patition_label.txt",
           "train_00001.jpg 4\ntrain_00002.jpg 1\ntest_0001.jpg 7\ntest_0002.jpg 8\n")
    for stem in ("train_00001", "train_00002", "test_0001"):
        _image(root / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg")
    return {"counts": {"train": 2, "test": 1}, "problems": {"unknown_label": 1}}


def make_affectnet(root: Path) -> dict:
    head = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    _write(root / "Manually_Annotated_file_lists" / "training.csv", head +
           "1/a.jpg,0,0,24,24,,1,0.8,0.4\n2/b.jpg,0,0,24,24,,7,-0.5,0.2\n3/c.jpg,0,0,24,24,,9,0,0\n"
           "4/d.jpg,0,0,24,24,,2,-2,-2\n")
    _write(root / "Manually_Annotated_file_lists" / "validation.csv", head + "5/e.jpg,0,0,24,24,,6,-0.7,0.7\n")
    for rel in ("1/a.jpg", "2/b.jpg", "3/c.jpg", "4/d.jpg", "5/e.jpg"):
        _image(root / "Manually_Annotated_Images" / rel)
    return {"counts": {"train": 3, "test": 1}, "problems": {}}


def make_ckplus(root: Path) -> dict:
    for subject, take in (("S005", "001"), ("S010", "002"), ("S011", "001")):
        _frames(root / "cohn-kanade-images" / subject / take, 4)
    _write(root / "Emotion" / "S005" / "001" / "S005_001_00000004_emotion.txt", "   3.0000000e+00\n")
    _write(root / "Emotion" / "S011" / "001" / "S011_001_00000004_emotion.txt", "   9.0000000e+00\n")
    _write(root / "FACS" / "S005" / "001" / "S005_001_00000004_facs.txt",
           "   9.0000000e+00   4.0000000e+00\n   1.5000000e+01   0.0000000e+00\n   garbage\n")
    return {"counts": {None: 2}, "problems": {"unknown_label": 1, "malformed_row": 1}}


DISFA_FRAMES = 12  # frames per fixture video; AU6 and AU12 reach intensity 3 at frames 5–7 (1-based)


def make_disfa(root: Path) -> dict:
    """Three subjects, one in each of JAA-Net's partitions (SN001: 1, SN013: 2, SN003: 3)."""
    from emoreason.datasets.adapters import DISFA_AUS

    for subject in ("SN001", "SN013", "SN003"):
        for au in DISFA_AUS:
            values = [0, 0, 1, 2, 3, 3, 3, 1, 0, 0, 0, 0] if au in (6, 12) else [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
            _write(root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt",
                   "".join(f"{i + 1},{v}\n" for i, v in enumerate(values)))
        _video(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi", DISFA_FRAMES)
    return {"counts": {None: 3}, "problems": {}, "aus": [6, 12]}


BP4D_SUBJECTS = {"F001": 1, "F002": 1, "F003": 2, "F007": 3}  # JAA-Net's partitions (not a round-robin deal)
BP4D_FIRST_FRAME = 2440  # BP4D codes a segment of each task; frames are named by their number


def make_bp4d(root: Path) -> dict:
    """T1 of four subjects, 20 coded frames (2440–2459): AU6+AU12 on in frames 2445–2452, AU1 unknown (9) in
    frames 2450–2451, everything else off; frame images named by number."""
    aus = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    head = "Frame," + ",".join(map(str, aus)) + "\n"
    for subject in BP4D_SUBJECTS:
        rows = []
        for frame in range(BP4D_FIRST_FRAME, BP4D_FIRST_FRAME + 20):
            on = 2445 <= frame <= 2452
            values = [9 if au == 1 and frame in (2450, 2451) else int(on and au in (6, 12)) for au in aus]
            rows.append(f"{frame}," + ",".join(map(str, values)))
        _write(root / "AUCoding" / "AU_OCC" / f"{subject}_T1.csv", head + "\n".join(rows) + "\n")
        _frames(root / "Sequences" / subject / "T1", names=[f"{f}.jpg" for f in range(BP4D_FIRST_FRAME,
                                                                                     BP4D_FIRST_FRAME + 20)])
    _write(root / "AUCoding" / "AU_INT" / "AU12" / "F001_T1_AU12.csv", "2445,3\n2446,4\n")
    return {"counts": {None: 4}, "problems": {}, "aus": [6, 12]}


def make_affwild2(root: Path) -> dict:
    ann = root / "Annotations"
    _write(ann / "EXPR_Classification_Challenge" / "Train_Set" / "video1.txt",
           "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n-1\n4\n4\n0\n")
    _write(ann / "VA_Estimation_Challenge" / "Train_Set" / "video1.txt", "valence,arousal\n0.5,0.2\n-5,-5\n0.7,0.4\n0.6,0.3\n")
    _write(ann / "AU_Detection_Challenge" / "Train_Set" / "video1.txt",
           "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + "0,0,0,1,0,0,1,0,0,0,0,0\n" * 3 +
           "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n")
    _write(ann / "EXPR_Classification_Challenge" / "Validation_Set" / "video2.txt",
           "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n5\n5\n7\n")
    _write(ann / "AU_Detection_Challenge" / "Validation_Set" / "video2.txt",
           "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + "1,0,1,0,0,0,0,1,0,0,0,0\n" * 2 +
           "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n" + "0,0,0,0,0,0,0,0,0,0,0,0\n")
    _frames(root / "cropped_aligned" / "video1", 4)
    _video(root / "videos" / "video2.mp4")
    return {"counts": {"train": 1, "val": 1}, "problems": {}}


def make_emer(root: Path) -> dict:
    _write(root / "emer.csv", "name,label,reason\nsample_1,happy,The lip corners rise and the cheeks lift.\n"
           "sample_2,worried,Brows knit.\nsample_3,sad,Corners of the mouth go down.\n")
    _video(root / "video" / "sample_1.mp4")
    _video(root / "video" / "sample_3.mp4")
    return {"counts": {"test": 2}, "problems": {"missing_media": 1}}


def make_fea20k(root: Path) -> dict:
    lines = [json.dumps({"id": "a1", "video": "videos/a1.mp4", "emotion": "happy", "aus": {"AU6": 2.0, "12": 3.0},
                         "rationale": "AU6 and AU12."}),
             json.dumps({"id": "a2", "image": "images/a2.jpg", "emotion": "Surprise", "aus": ["AU1", "AU2"]}),
             "{not json", json.dumps({"id": "a3", "video": "videos/missing.mp4", "emotion": "fear"})]
    _write(root / "annotations" / "train.jsonl", "\n".join(lines) + "\n")
    _write(root / "annotations" / "test.jsonl", json.dumps({"id": "t1", "video": "videos/a1.mp4", "emotion": "sad",
                                                          "aus": [1, 4, 15], "rationale": "Brows and mouth."}) + "\n")
    _video(root / "videos" / "a1.mp4")
    _image(root / "images" / "a2.jpg")
    return {"counts": {"train": 2, "test": 1}, "problems": {"malformed_row": 1, "missing_media": 1}}


OPENFACE_VALUES = {6: [0.0, 1.25, 2.5, 3.75], 12: [0.5, 1.5, 4.0, 4.99], 4: [0.0, 0.0, 0.0, 0.1]}


def make_openface(root: Path) -> dict:
    _video(root / "clips" / "a.mp4")
    write_openface_csv(root / "clips" / "a.csv", OPENFACE_VALUES, fps=8.0)
    _video(root / "clips" / "b.mp4")
    return {"counts": {None: 1}, "problems": {"missing_file": 1}, "aus": [6, 12]}


def make_synthfacs(root: Path) -> dict:
    from emoreason.synth import SynthConfig, build_dataset

    build_dataset(SynthConfig(out=str(root), clips=6, frames=4, size=64, identities=3), workers=1, progress=False)
    return {"counts": None, "problems": {}}


def _speaking_video(path: Path, seconds: float = 1.0, stereo: bool = False, rate: int = 16000) -> Path:
    """A clip with a speech-band tone track (CREMA-D / RAVDESS clips are audio-visual)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    data = (_RNG.random((int(seconds * 8), 32, 32, 3)) * 255).astype(np.uint8)
    return write_video(data, path, fps=8, audio=np.stack([tone, tone]) if stereo else tone, audio_rate=rate,
                       audio_layout="stereo" if stereo else "mono")


def make_mer2023(root: Path) -> dict:
    """MER2023's release: <split>-label.csv (name, discrete[, valence]) beside <split>/<name>.mp4|.avi."""
    _write(root / "train-label.csv", "name,discrete,valence\nsample_00000001,happy,2.5\nsample_00000002,worried,"
                                      "-1.0\nsample_00000003,bored,0\nsample_00000009,sad,-3\n")
    _speaking_video(root / "train" / "sample_00000001.mp4")
    _speaking_video(root / "train" / "sample_00000002.avi")
    _speaking_video(root / "train" / "sample_00000003.mp4")
    _write(root / "test3-label.csv", "name,discrete\nsample_00000100,angry\nsample_00000101,surprise\n")
    _speaking_video(root / "test3" / "sample_00000100.mp4")
    _speaking_video(root / "test3" / "sample_00000101.mp4")
    return {"counts": {"train": 2, "test3": 2}, "problems": {"unknown_label": 1, "missing_media": 1,
                                                             "missing_file": 2}}


def make_mer2024(root: Path) -> dict:
    """MER2024's release: label-disdim.csv + video-labeled/ (train); the test clips among
    video-unlabeled-with-test2noise/, test labels in <split>-label.csv / <split>_name_convert_label.csv."""
    _write(root / "label-disdim.csv", "name,discrete,valence\nsample_00000001,happy,2.5\nsample_00000002,worried,"
                                      "-1.0\nsample_00000003,bored,0\n")
    _speaking_video(root / "video-labeled" / "sample_00000001.mp4")
    _speaking_video(root / "video-labeled" / "sample_00000002.avi")
    _speaking_video(root / "video-labeled" / "sample_00000003.mp4")
    _write(root / "test1-label.csv", "name,discrete\nsample_00100001,angry\nsample_00100002,sad\n"
                                     "sample_00100003,neutral\n")
    _write(root / "test2_name_convert_label.csv", "name,discrete\nsample_00200001,surprise\n")
    for name in ("sample_00100001", "sample_00100002", "sample_00200001", "sample_00300000"):  # last: unlabelled
        _speaking_video(root / "video-unlabeled-with-test2noise" / f"{name}.mp4")
    return {"counts": {"train": 2, "test1": 2, "test2": 1}, "problems": {"unknown_label": 1, "missing_media": 1}}


def make_cremad(root: Path) -> dict:
    """CREMA-D's release: VideoFlash/*.flv (FLV, H.264 + AAC), names <actor>_<sentence>_<emotion>_<level>."""
    for actor, emotion in ((1001, "ANG"), (1002, "HAP"), (1003, "NEU"), (1004, "SAD"), (1005, "DIS"), (1006, "FEA")):
        _speaking_video(root / "VideoFlash" / f"{actor}_DFA_{emotion}_XX.flv")
    _speaking_video(root / "VideoMP4" / "1007_IEO_HAP_HI.mp4", rate=44100)  # a converted copy, another rate
    _speaking_video(root / "VideoFlash" / "1008_ITS_BOR_XX.flv")  # no such class
    _speaking_video(root / "VideoFlash" / "notes_about_takes.flv")  # not a CREMA-D name
    return {"counts": {None: 7}, "problems": {"unknown_label": 1, "malformed_row": 1}}


def make_ravdess(root: Path) -> dict:
    """RAVDESS video archives extracted: Actor_NN/<7 fields>.mp4; only modality 01 (audio-video) is read, speech by
    default (the song file is read by the song variant)."""
    for actor in range(1, 8):
        _speaking_video(root / f"Actor_{actor:02d}" / f"01-01-0{actor}-01-01-01-{actor:02d}.mp4", stereo=True,
                        rate=48000)
    _speaking_video(root / "Actor_08" / "01-01-08-01-01-01-08.mp4", stereo=True, rate=48000)  # speech, surprised
    _speaking_video(root / "Actor_08" / "01-02-05-02-02-01-08.mp4", stereo=True, rate=48000)  # song: a variant
    _speaking_video(root / "Actor_01" / "01-02-03-01-01-01-01.mp4")  # song, fold 1
    _video(root / "Actor_08" / "02-01-03-01-01-01-08.mp4")  # video-only copy: skipped
    _speaking_video(root / "Actor_08" / "01-01-09-01-01-01-08.mp4")  # emotion code out of range
    _speaking_video(root / "Actor_08" / "01-01-03.mp4")  # truncated name
    return {"counts": {None: 8}, "problems": {"unknown_label": 1, "malformed_row": 1}}


def _late_voice_video(path: Path, seconds: float = 2.0, voice_from_s: float = 1.0, rate: int = 16000) -> Path:
    """An 8 fps clip silent until ``voice_from_s``, then a speech-band tone: where its audio starts tells which
    moment of the clip a sampled frame was heard at."""
    t = np.arange(int(seconds * rate)) / rate
    tone = np.where(t >= voice_from_s, 0.3 * np.sin(2 * np.pi * 180 * t), 0.0).astype(np.float32)
    data = (_RNG.random((int(seconds * 8), 32, 32, 3)) * 255).astype(np.uint8)
    return write_video(data, path, fps=8, audio=tone, audio_rate=rate)


def dfew_face_crops_with_originals(root: Path) -> None:
    """DFEW as the release ships it: face-crop frame folders (``Clip/clip_224x224``, no audio) beside the original
    clips (``Clip/original``, with their audio; 2 s, voiced from 1 s). Test clips of fold 1: 6 (padded original),
    7 (unpadded original ``7.mp4``), 12 (face crops only: no source of audio). Each crop folder holds 16 frames,
    which the adapter times at its assumed 25 fps (0.64 s) though the clip lasts 2 s."""
    _write(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", "video_name,label\n6,5\n7,6\n12,1\n")
    for clip in (6, 7, 12):
        _frames(root / "Clip" / "clip_224x224" / f"{clip:05d}", 16)
    _late_voice_video(root / "Clip" / "original" / "00006.mp4")
    _late_voice_video(root / "Clip" / "original" / "7.mp4")


def mafw_frames_with_clips(root: Path) -> None:
    """MAFW with MAE-DFER's frame folders (``data/frames``, no audio) beside the release's clips (``data/clips``):
    test clip 00005 has both, 00006 frames only."""
    _write(root / "Train & Test Set" / "single" / "no_caption" / "set_1" / "test.txt",
           "00005.mp4 happiness\n00006.mp4 anger\n")
    for stem in ("00005", "00006"):
        _frames(root / "data" / "frames" / stem, 16)
    _late_voice_video(root / "data" / "clips" / "00005.mp4")


FIXTURES = {name.removeprefix("make_"): fn for name, fn in globals().items() if name.startswith("make_")}
