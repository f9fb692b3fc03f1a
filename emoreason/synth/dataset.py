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
from emoreason.synth.clips import DIFFICULTIES, PROFILES, ClipSpec, generate_clip, identity_summary
from emoreason.synth.face import Identity
from emoreason.video import write_video

log = logging.getLogger(__name__)

EMOTION_SETS = {
    "basic": BASIC_EMOTIONS,
    "compound": COMPOUND_EMOTIONS,
    "all": BASIC_EMOTIONS + COMPOUND_EMOTIONS,
}
SPLITS = ("train", "val", "test")
_IDENTITY_STREAM = 7919  # separates identity randomness from clip randomness in the seed sequence


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

    @property
    def n_identities(self) -> int:
        return self.identities or max(6, self.clips // 8)

    def settings(self) -> dict:
        data = asdict(self)
        data.pop("out")
        data["split_fractions"] = list(self.split_fractions)
        if self.profile == "apex_offset":  # the default: datasets built before the option resume unchanged
            data.pop("profile")
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
                              profile=cfg.profile))
    return specs


def _record(spec: ClipSpec, truth: dict, rel_path: str) -> dict:
    return {
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


def _done(out: Path, spec: ClipSpec) -> bool:
    return (out / "records" / f"{spec.clip_id}.json").is_file() and (out / "clips" / f"{spec.clip_id}.mp4").is_file()


def _make_clip(args: tuple[str, ClipSpec]) -> str:
    out, spec = Path(args[0]), args[1]
    frames, truth = generate_clip(spec)
    rel = f"clips/{spec.clip_id}.mp4"
    tmp_video = out / "clips" / f".{spec.clip_id}.{os.getpid()}.tmp.mp4"
    write_video(frames, tmp_video, fps=spec.fps)
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
