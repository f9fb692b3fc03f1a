"""SynthFACS dataset builder: clips + a manifest of sample records, split by identity.

Deterministic by seed (every clip depends only on the seed, its index and the settings), parallel over
processes, resumable after a kill: a clip counts as done only when its mp4 *and* its record were renamed into
place, so a killed run leaves no partial file marked done and a re-run skips finished clips.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emoreason.knowledge import BASIC_EMOTIONS, COMPOUND_EMOTIONS
from emoreason.synth.clips import DIFFICULTIES, PROFILES, ClipSpec, generate_av_clip, identity_summary
from emoreason.synth.face import Identity
from emoreason.synth.voice import SAMPLE_RATE as VOICE_RATE
from emoreason.video import write_video

log = logging.getLogger(__name__)

EMOTION_SETS = {
    "basic": BASIC_EMOTIONS,
    "compound": COMPOUND_EMOTIONS,
    "all": BASIC_EMOTIONS + COMPOUND_EMOTIONS,
}
SPLITS = ("train", "val", "test")
_IDENTITY_STREAM = 7919  # separates identity randomness from clip randomness in the seed sequence
_MASK_STREAM = 5  # which clips are masked, and with what
MASKED_LABEL_RULES = ("voice", "face")
# Masking displays: a smile or a poker face covers the felt emotion (Ekman & Friesen 1975, *Unmasking the Face*);
# the default label rule follows the leakage hypothesis — what is masked in the face leaks through less
# controlled channels such as the voice (Ekman & Friesen 1969, "Nonverbal leakage and clues to deception",
# Psychiatry 32:88–106)
MASKS = ("happiness", "neutral")


@dataclass(frozen=True)
class SynthConfig:
    out: str
    clips: int = 200
    seed: int = 0
    frames: int = 16
    size: int = 224
    fps: float = 8.0
    difficulty: str = "medium"
    emotions: str = "basic"
    profile: str = "apex_offset"  # apex_offset | onset_apex (CK+-style: the apex is held to the last frame)
    identities: int | None = None  # default: one identity per 8 clips, at least 6
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # SynthFACS-AV (``--audio``): clips speak; a ``masked_fraction`` of them show another emotion on the face
    # than in the voice, and the label follows ``masked_label`` ("voice": the felt emotion leaks through the
    # voice while the face masks it; "face": the displayed emotion)
    audio: bool = False
    masked_fraction: float = 0.0
    masked_label: str = "voice"

    def validate(self) -> None:
        if self.clips < 1:
            raise ValueError("clips must be ≥ 1")
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        if self.emotions not in EMOTION_SETS:
            raise ValueError(f"emotions must be one of {', '.join(EMOTION_SETS)}")
        if self.size % 2 or self.size < 32 or self.frames < 2:
            raise ValueError("size must be even and ≥ 32; frames ≥ 2")
        if not 0.0 <= self.masked_fraction <= 1.0:
            raise ValueError("masked_fraction must be within 0..1")
        if self.masked_fraction and not self.audio:
            raise ValueError("masked clips need a voice: use --audio with --masked-fraction")
        if self.masked_label not in MASKED_LABEL_RULES:
            raise ValueError(f"masked_label must be one of {', '.join(MASKED_LABEL_RULES)}")

    @property
    def n_identities(self) -> int:
        return self.identities or max(6, self.clips // 8)

    def settings(self) -> dict:
        data = asdict(self)
        data.pop("out")
        data["split_fractions"] = list(self.split_fractions)
        if self.profile == "apex_offset":  # the default: datasets built before the option resume unchanged
            data.pop("profile")
        if not self.audio:  # a video-only dataset records exactly the settings it always did
            for key in ("audio", "masked_fraction", "masked_label"):
                data.pop(key)
        return data


def identity_splits(cfg: SynthConfig) -> dict[int, str]:
    """Identity → split; no identity appears in two splits."""
    ids = np.random.default_rng([cfg.seed, _IDENTITY_STREAM]).permutation(cfg.n_identities)
    n_val = max(1, int(round(cfg.split_fractions[1] * len(ids)))) if len(ids) >= 3 else 0
    n_train = max(1, int(round(cfg.split_fractions[0] * len(ids))))
    if len(ids) >= 3:  # keep at least one identity for test as well
        n_train = min(n_train, len(ids) - n_val - 1)
    out = {}
    for rank, identity in enumerate(ids):
        out[int(identity)] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return out


def plan(cfg: SynthConfig) -> list[ClipSpec]:
    """Every clip's specification, in index order."""
    emotions = EMOTION_SETS[cfg.emotions]
    splits = identity_splits(cfg)
    identities = {i: Identity.sample(i, np.random.default_rng([cfg.seed, _IDENTITY_STREAM, i]))
                  for i in range(cfg.n_identities)}
    order_rng = np.random.default_rng([cfg.seed, 1])
    specs = []
    cycle: list[str] = []
    for index in range(cfg.clips):
        if not cycle:  # balanced: every emotion once per block, in a seeded order
            cycle = [emotions[i] for i in order_rng.permutation(len(emotions))]
        emotion = cycle.pop()
        identity = int(np.random.default_rng([cfg.seed, 2, index]).integers(cfg.n_identities))
        clip_seed = int(np.random.default_rng([cfg.seed, 3, index]).integers(2**31))
        specs.append(ClipSpec(index=index, clip_id=f"synthfacs-s{cfg.seed}-{index:06d}", emotion=emotion,
                              identity=identities[identity], split=splits[identity], seed=clip_seed,
                              frames=cfg.frames, size=cfg.size, fps=cfg.fps, difficulty=cfg.difficulty,
                              profile=cfg.profile, **_voice_plan(cfg, index, emotion, emotions)))
    return specs


def _voice_plan(cfg: SynthConfig, index: int, label: str, emotions: tuple[str, ...]) -> dict:
    """Audio fields of a clip's spec: none without audio; for a masked clip, which modality shows what.

    The planned emotion is the label. Rule "voice": the voice carries it and the face shows a mask (a smile or
    a poker face, whichever differs from it). Rule "face": the face carries it and the voice another emotion.
    """
    if not cfg.audio:
        return {}
    rng = np.random.default_rng([cfg.seed, _MASK_STREAM, index])
    if rng.uniform() >= cfg.masked_fraction:
        return {"audio": True}
    if cfg.masked_label == "voice":
        options = [m for m in MASKS if m != label]
        other = options[int(rng.integers(len(options)))]
        return {"audio": True, "face_emotion": other, "voice_emotion": label, "label_rule": "voice"}
    options = [e for e in emotions if e != label]
    other = options[int(rng.integers(len(options)))]
    return {"audio": True, "face_emotion": label, "voice_emotion": other, "label_rule": "face"}


def _record(spec: ClipSpec, truth: dict, rel_path: str) -> dict:
    record = {
        "id": spec.clip_id, "dataset": "synthfacs", "split": spec.split, "fold": None,
        "media": {"type": "video", "path": rel_path, "fps": spec.fps, "frames": spec.frames,
                  "width": spec.size, "height": spec.size},
        "emotion": truth["emotion"], "emotion_raw": truth["emotion"], "emotions": truth["emotions"],
        "aus": truth["aus"], "au_intensity": truth["au_intensity"], "au_frames": truth["au_frames"],
        "apex_frame": truth["apex_frame"], "valence": truth["valence"], "arousal": truth["arousal"],
        "rationale": None, "subject": f"synth-{spec.identity.identity_id:04d}",
        "meta": {"difficulty": spec.difficulty, "profile": spec.profile, "seed": spec.seed, "expression_aus": truth["expression_aus"],
                 "distractors": json.dumps(truth["distractors"]), "identity": json.dumps(
                     identity_summary(spec.identity))},
    }
    if spec.audio:  # SynthFACS-AV: the audio ground truth (prosody targets) beside the AU ground truth
        voice = truth["voice"]
        record["media"]["audio"] = {"sample_rate": VOICE_RATE, "channels": 1, "codec": "aac"}
        record["voice"] = voice
        record["meta"].update(masked=voice["label_rule"] is not None, face_emotion=voice["face_emotion"],
                              voice_emotion=voice["emotion"], label_rule=voice["label_rule"])
    return record


def _done(out: Path, spec: ClipSpec) -> bool:
    return (out / "records" / f"{spec.clip_id}.json").is_file() and (out / "clips" / f"{spec.clip_id}.mp4").is_file()


def _make_clip(args: tuple[str, ClipSpec]) -> str:
    out, spec = Path(args[0]), args[1]
    frames, waveform, truth = generate_av_clip(spec)
    rel = f"clips/{spec.clip_id}.mp4"
    tmp_video = out / "clips" / f".{spec.clip_id}.{os.getpid()}.tmp.mp4"
    write_video(frames, tmp_video, fps=spec.fps, audio=waveform, audio_rate=VOICE_RATE)
    os.replace(tmp_video, out / rel)
    tmp_record = out / "records" / f".{spec.clip_id}.{os.getpid()}.tmp"
    tmp_record.write_text(json.dumps(_record(spec, truth, rel), sort_keys=True))
    os.replace(tmp_record, out / "records" / f"{spec.clip_id}.json")  # the record's rename marks the clip done
    return spec.clip_id


def build_dataset(cfg: SynthConfig, workers: int | None = None, progress: bool = True) -> Path:
    """Write clips, per-clip records and the manifest; returns the manifest path."""
    cfg.validate()
    out = Path(cfg.out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "records").mkdir(exist_ok=True)
    settings_path = out / "synthfacs_config.json"
    if settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != cfg.settings():
            raise ValueError(f"{out} was built with other settings ({previous}); use a new --out or the same "
                             "settings to resume")
    else:
        settings_path.write_text(json.dumps(cfg.settings(), indent=2, sort_keys=True) + "\n")
    for stale in [*(out / "clips").glob(".*.tmp.mp4"), *(out / "records").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)  # partial files of a killed run

    specs = plan(cfg)
    todo = [s for s in specs if not _done(out, s)]
    if len(todo) < len(specs):
        log.info("resuming: %d of %d clips already done", len(specs) - len(todo), len(specs))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="synthfacs clips", unit="clip", mininterval=2,
               disable=not progress)
    if workers == 1:
        for spec in todo:
            _make_clip((str(out), spec))
            bar.update()
    else:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_make_clip, [(str(out), s) for s in todo], chunksize=2):
                bar.update()
    bar.close()
    return write_manifest(out, specs)


def write_manifest(out: Path, specs: list[ClipSpec]) -> Path:
    """manifest.jsonl (all splits, index order) and {train,val,test}.jsonl, each written atomically."""
    records = [json.loads((out / "records" / f"{s.clip_id}.json").read_text()) for s in specs]
    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    lines = []
    for record in records:
        line = json.dumps(record, sort_keys=True)
        lines.append(line)
        by_split[record["split"]].append(line)
    for name, content in (("manifest", lines), *by_split.items()):
        tmp = out / f".{name}.jsonl.tmp"
        tmp.write_text("".join(x + "\n" for x in content))
        os.replace(tmp, out / f"{name}.jsonl")
    summary = {"clips": len(records), "splits": {k: len(v) for k, v in by_split.items()},
               "subjects": {k: len({json.loads(x)["subject"] for x in v}) for k, v in by_split.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("wrote %s: %s", out / "manifest.jsonl", summary)
    return out / "manifest.jsonl"
