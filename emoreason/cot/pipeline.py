"""The CoT synthesis pipeline: records → AU evidence → temporal analysis → rationale (template, teacher
rewrite, or self-distillation) → verification → TRL conversational rows → JSONL + HF datasets.

Rows carry the evidence their text was built from (the row contract, ``emoreason.records.ROW_AU_COLUMNS``):
``aus``, ``au_intensity`` (peaks), ``au_timing`` (onset/apex/offset seconds), ``au_source``, ``au_observed``,
``au_coded`` and ``au_rarity`` — what the GRPO rewards score against. ``task`` says which row of the multi-task
curriculum a row is: ``cot`` (reasoning + answer), ``au_perception`` (the AU list) or ``emotion`` (the label),
emitted per clip with the probabilities in ``tasks``; every row passes the same verifier (``cot.verify``).

Sharded and resumable: each shard is written to a temporary file and renamed when complete, so a kill leaves
finished shards intact and unfinished ones absent; a re-run skips finished shards (idempotent, no duplicates).
Each shard's stats carry a fingerprint of its record ids: a shard whose records changed (a different record
list, ``max_records``, split) is rebuilt, never reused, and stale shards beyond the new count are removed.
Everything dropped, rejected, deduplicated or failed is counted in ``summary.json`` with its reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from emoreason.audio.cues import ProsodyReference, compose_vocal_cues
from emoreason.audio.prosody import ProsodyMeasurement, measure_prosody
from emoreason.client import EndpointConfig
from emoreason.config import to_yaml
from emoreason.cot.compose import compose_rationale
from emoreason.cot.evidence import AUEvidence, EvidenceError, evidence_for, make_detector, media_frame_count
from emoreason.cot.teacher import rewrite_batch, teacher_messages
from emoreason.cot.temporal import TIME_UNITS, TemporalAnalysis, Timeline, analyse
from emoreason.cot.verify import Grounding, Verdict, verify_au_list, verify_emotion_answer, verify_rationale
from emoreason.datasets import load_records
from emoreason.datasets.adapters import label_map_of
from emoreason.knowledge import au_name, dataset_label_set, display_name
from emoreason.reasoning import build_messages
from emoreason.reasoning.prompts import TASKS
from emoreason.records import SampleRecord, media_identity
from emoreason.video import FramePolicy

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


@dataclass
class CoTConfig:
    dataset_format: str = "synthfacs"
    dataset_root: str = "runs/demo/synthfacs"
    output_dir: str = "runs/cot/synthfacs"
    split: str | None = None
    fold: int | None = None
    max_records: int | None = None
    seed: int = 0
    style: str = "tags"  # tags | json
    prompt_labels: str | None = "dataset"  # "dataset": the benchmark's label set in the prompt; None: open vocabulary
    presence_threshold: float = 0.5  # AU intensity (0–5) from which an AU counts as present
    key_au_threshold: float = 1.5  # present AUs at or above this must be named by the rationale
    # evidence
    use_openface: bool = True  # read AU CSVs (OpenFace 2.x layout: OpenFace or `emoreason au-detect`)
    au_dir: str | None = None  # CSVs under this folder, mirroring the media tree (else beside the media)
    csv_source: str = "openface"  # au_source of CSV evidence (au-detect's CSVs say detector:landmarks themselves)
    min_confidence: float = 0.8  # CSV frames below this tracking confidence are unknown (no face)
    min_face_fraction: float = 0.5  # fewer face frames than this: the source gives no evidence
    detector: str | dict | None = None  # e.g. landmarks (emoreason[au]), or {name: landmarks, ...options}
    detector_options: dict = field(default_factory=dict)  # e.g. {aus: reliable, cache_dir: ..., mode: video}
    allow_prototype: bool = True  # label-only samples get prototype-conditioned rationales (marked as such)
    # how rationales speak about time
    time_unit: str = "seconds"  # seconds | sampled_frames (numbers of the frames shown under frame_policy)
    frame_policy: dict | None = None  # the recipe's frame policy (fps, max_frames, ...) for sampled_frames
    time_tolerance_s: float = 0.25  # how far a stated time may sit from the evidence
    # multi-task rows per clip: probability of each row type (cot | au_perception | emotion)
    tasks: dict = field(default_factory=lambda: {"cot": 1.0})
    shard_size: int = 256
    teacher: dict | None = None  # EndpointConfig fields + temperature, max_tokens, fallback_to_template
    self_distill: dict | None = None  # {model: DIR | endpoint: {...}, k: 4, temperature: 1.0, max_new_tokens}
    dataset_options: dict = field(default_factory=dict)  # extra adapter options (e.g. classes: 7)
    # audio-visual rationales: "auto" measures the prosody of every clip with an audio track (Praat) and adds a
    # "Vocal cues" part citing it, held to the measurement by the verifier; "off" keeps rationales face-only
    # (YAML's off / false read as "off", on / true as "auto")
    vocal_cues: str = "auto"
    # seconds of audio the model's feature extractor keeps (Whisper chunk_length: 30 s for the tiny model, 300 s for
    # Qwen2.5-Omni-7B): vocal cues are measured on what the model hears, from the first sampled frame (frame_policy)
    audio_window_s: float | None = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.tasks, list | tuple):  # `tasks: [cot, emotion]`: every clip gives each
            self.tasks = dict.fromkeys(self.tasks, 1.0)
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        if isinstance(self.vocal_cues, bool):  # YAML 1.1 reads `off` / `on` (no / yes) as booleans
            self.vocal_cues = "auto" if self.vocal_cues else "off"
        if self.vocal_cues not in ("auto", "off"):
            raise ValueError(f"vocal_cues must be auto or off, got {self.vocal_cues!r}")
        if self.time_unit == "sampled_frames" and not self.frame_policy:
            raise ValueError("time_unit sampled_frames needs frame_policy (the recipe's fps, max_frames, ...)")

    def fingerprint(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("output_dir")
        return data


def _seed_for(cfg_seed: int, sample_id: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{cfg_seed}:{sample_id}{salt}".encode()).digest()[:4], "little")


def _needs_cache_dir(spec: str | dict | None) -> bool:
    name = spec.get("name") if isinstance(spec, dict) else spec
    return name == "landmarks"


# Bumped whenever a row gains, loses or changes a column: resume rebuilds shards written in another format.
ROW_FORMAT_VERSION = 2


def records_fingerprint(records: list[SampleRecord], evidence_key: str | None = None) -> str:
    """sha256 of the row format (:data:`ROW_FORMAT_VERSION`), of the shard's records in order — each one's id and
    media without its paths (``emoreason.records.media_identity``: layout, frame rate, window, the original clip's
    layout, and whether an audio file is named) — and of the detector's ``fingerprint()`` (its estimator code,
    calibration, settings and the AUs it cites) when there is one: what resume compares before reusing a shard, so
    a changed estimator, a clip that gained its original's audio or a new row column never leaves old shards beside
    new ones, while the same data moved or under another spelling of its root keeps them (no teacher call paid
    twice)."""
    media = [{**media_identity(r.media), "audio_path": bool(r.media.get("audio_path"))} for r in records]
    text = f"#rows:{ROW_FORMAT_VERSION}\n" + "\n".join(
        f"{r.id}\t{json.dumps(m, sort_keys=True, default=str)}" for r, m in zip(records, media, strict=True))
    if evidence_key is not None:
        text += f"\n#evidence:{evidence_key}"
    return hashlib.sha256(text.encode()).hexdigest()


def _labels_for_prompt(cfg: CoTConfig) -> list[str] | None:
    name = label_map_of(cfg.dataset_format, cfg.dataset_options)
    return list(dataset_label_set(name)) if cfg.prompt_labels == "dataset" and name is not None else None


def _evidence_columns(evidence: AUEvidence | None, analysis: TemporalAnalysis | None) -> dict:
    """The row contract's AU columns, from the evidence a row's text was built on."""
    if evidence is None or analysis is None:
        return {"aus": None, "au_intensity": "{}", "au_timing": "{}", "au_source": None, "au_observed": False,
                "au_coded": None}
    timing = {str(t.au): {"onset_s": _round(t.onset_s), "apex_s": _round(t.apex_s), "offset_s": _round(t.offset_s)}
              for t in analysis.tracks if t.onset_s is not None}
    return {
        "aus": analysis.aus,
        "au_intensity": json.dumps({str(t.au): round(t.peak, 3) for t in analysis.tracks if t.peak is not None},
                                   sort_keys=True),
        "au_timing": json.dumps(timing, sort_keys=True),
        "au_source": evidence.source,
        "au_observed": evidence.observed,
        "au_coded": sorted(evidence.coded) if evidence.coded is not None and evidence.observed else None,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def au_list_text(analysis: TemporalAnalysis) -> str:
    """The AU-perception answer: every present AU with its name and letter (when known)."""
    if not analysis.tracks:
        return "<answer>none</answer>"
    parts = [f"AU{t.au} ({au_name(t.au)}" + (f", {t.letter})" if t.letter else ")") for t in
             sorted(analysis.tracks, key=lambda t: t.au)]
    return f"<answer>{', '.join(parts)}</answer>"


@dataclass
class _Item:
    """One record in flight: its evidence, and the candidate texts per task."""

    record: SampleRecord
    tasks: list[str]
    error: str | None = None
    detail: dict = field(default_factory=dict)
    evidence: AUEvidence | None = None
    analysis: TemporalAnalysis | None = None
    grounding: Grounding | None = None
    timeline: Timeline | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "task:reason" for a sampled row that cannot be made
    prosody: ProsodyMeasurement | None = None
    prosody_reference: ProsodyReference | None = None


class CoTPipeline:
    def __init__(self, cfg: CoTConfig, progress: bool = True):
        if cfg.style not in ("tags", "json"):
            raise ValueError(f"style must be tags or json, got {cfg.style!r}")
        self.cfg, self.progress = cfg, progress
        self.out = Path(cfg.output_dir)
        self.labels = _labels_for_prompt(cfg)
        # the label set the rows' emotions are scored in (GRPO's emotion reward reads it, as the eval does)
        self.label_set = label_map_of(cfg.dataset_format, cfg.dataset_options)
        self.teacher = EndpointConfig(**{k: v for k, v in (cfg.teacher or {}).items()
                                         if k in EndpointConfig.__dataclass_fields__}) if cfg.teacher else None
        # the landmark estimator caches its per-clip CSVs by media content; by default beside the output
        cache = {"cache_dir": str(self.out / "au_cache")} if _needs_cache_dir(cfg.detector) else {}
        self.detector = make_detector(cfg.detector, {**cache, **cfg.detector_options})
        # au-detect CSVs are read with the landmark detector's rule for which AUs count (default: reliable)
        self.landmark_aus = getattr(self.detector, "cite", None) or cfg.detector_options.get("aus", "reliable")
        fingerprint = getattr(self.detector, "fingerprint", None)
        self.evidence_key = str(fingerprint()) if callable(fingerprint) else None
        self.policy = FramePolicy(**cfg.frame_policy) if cfg.frame_policy else None
        self._distiller = None

    # --- per-record work ----------------------------------------------------------------------------------
    def _tasks_for(self, record: SampleRecord) -> list[str]:
        chosen = []
        for task in TASKS:
            ratio = float(self.cfg.tasks.get(task, 0.0))
            if ratio >= 1.0 or (ratio > 0 and random.Random(_seed_for(self.cfg.seed, record.id, task)).random() < ratio):
                chosen.append(task)
        return chosen

    def _timeline(self, record: SampleRecord, evidence: AUEvidence) -> Timeline | None:
        if not evidence.frames or record.media["type"] == "image":
            return None
        fps, n = evidence.fps, evidence.n_frames
        if not fps:
            fps = media_frame_count(record)[1]
        if n and record.media.get("audio_path"):  # heard with its original clip: timed on it, as frames and voice
            from emoreason.audio.io import fps_on_clip
            from emoreason.video import MediaError

            try:
                fps = fps_on_clip(n, record.media["audio_path"])
            except MediaError as exc:
                log.warning("sample %s: AU times on the frames' own rate: %s", record.id, exc)
        if not fps or not n:
            return None
        return Timeline.build(self.cfg.time_unit, fps, n, self.policy)

    def _prepare(self, record: SampleRecord) -> _Item:
        cfg = self.cfg
        item = _Item(record, self._tasks_for(record))
        if not record.emotion:
            item.error = "no_label"
            return item
        if not {"cot", "au_perception"} & set(item.tasks):
            return item
        try:
            evidence = evidence_for(record, self.detector, cfg.use_openface, cfg.allow_prototype, cfg.min_confidence,
                                    cfg.au_dir, cfg.dataset_root, cfg.csv_source, cfg.min_face_fraction, item.notes,
                                    self.landmark_aus)
            if evidence is None:
                item.error, item.detail = "no_evidence", {"notes": item.notes}
                return item
            item.timeline = self._timeline(record, evidence)
        except EvidenceError as exc:
            item.error, item.detail = exc.reason, {"error": str(exc)}
            return item
        except Exception as exc:  # a decoder or detector failing on one clip: recorded, and the batch goes on
            log.warning("evidence for %s failed", record.id, exc_info=True)
            item.error, item.detail = "evidence_error", {"error": f"{type(exc).__name__}: {exc}"}
            return item
        item.evidence = evidence
        item.analysis = analyse(evidence, cfg.presence_threshold)
        item.grounding = Grounding.build(item.analysis, evidence, cfg.key_au_threshold, item.timeline,
                                         cfg.time_tolerance_s)
        self._measure_voice(item)
        item.grounding.prosody, item.grounding.prosody_reference = item.prosody, item.prosody_reference
        seed = _seed_for(cfg.seed, record.id)
        noun = {"image": "image"}.get(record.media["type"], "video")
        if "cot" in item.tasks:
            vocal = compose_vocal_cues(item.prosody, item.prosody_reference, _seed_for(cfg.seed, record.id, "voice")
                                       ) if item.prosody is not None else None
            composed = compose_rationale(item.analysis, record.emotion, seed, cfg.style, evidence.observed,
                                         record.valence, record.arousal, item.timeline, evidence.coded, noun,
                                         vocal)
            item.texts["cot"] = [composed.text]
        if "au_perception" in item.tasks:
            if evidence.observed:
                item.texts["au_perception"] = [au_list_text(item.analysis)]
            else:  # an AU list must be seen, never inferred from the label
                item.tasks.remove("au_perception")
                item.skipped.append("au_perception:not_observed")
        item.provenance = {**item.provenance, "evidence": evidence.source, "observed": evidence.observed,
                           "composer": "template",
                           "template_seed": seed, "verified": True, "time_unit": cfg.time_unit,
                           **({"evidence_notes": item.notes} if item.notes else {}),
                           **({k: v for k, v in evidence.detail.items() if k in ("csv", "face_fraction")})}
        return item

    def _measure_voice(self, item: _Item) -> None:
        """The clip's prosody (Praat) on the audio the model hears with its frames (``emoreason.audio.clip_audio``:
        from the first frame sampled under ``frame_policy``, cut to ``audio_window_s`` — a cut is noted,
        ``audio_truncated``, and counted), and its speaker's neutral reference where the record carries one
        (``meta.prosody_reference``); a clip without a track stays face-only, and an unreadable track is noted
        (``audio_error``) and leaves the rationale face-only — the batch goes on."""
        record = item.record
        heard_elsewhere = bool(record.media.get("audio_path"))  # face crops heard with their original clip
        if self.cfg.vocal_cues == "off" or (record.media.get("type") != "video" and not heard_elsewhere):
            return
        from emoreason.audio import clip_audio
        from emoreason.audio.modalities import audio_source
        from emoreason.video import FramePolicy, MediaError, load_media

        try:  # a face-crop folder is heard with its original clip's track (media["audio_path"]), timed on that clip
            source = audio_source(record.media)  # load_media times the frames on it
            frames = load_media(record.media, self.policy or FramePolicy(), resize=False)
            audio = clip_audio(source, frames, max_s=self.cfg.audio_window_s)
        except MediaError as exc:
            log.warning("sample %s: audio not measured: %s", record.id, exc)
            item.notes.append("audio_error")
            item.provenance["audio_error"] = str(exc)
            return
        if audio is None:  # no audio track
            return
        if "truncated_to_s" in audio.meta:
            item.notes.append("audio_truncated")
            item.provenance["audio_truncated"] = {k: audio.meta[k] for k in ("truncated_to_s", "truncated_from_s")}
        item.prosody = measure_prosody(audio.waveform, audio.sample_rate)
        reference = (record.meta or {}).get("prosody_reference")
        item.prosody_reference = ProsodyReference(**reference) if reference else None

    def _teacher_pass(self, items: list[_Item], stats: Counter) -> None:
        todo = [it for it in items if "cot" in it.texts]
        if not todo or self.teacher is None:
            return
        options = self.cfg.teacher or {}
        batch = [teacher_messages(it.texts["cot"][0], it.analysis, it.record.emotion,
                                  it.record.media.get("path") if options.get("send_media", False) else None,
                                  it.record.media.get("type"), it.timeline) for it in todo]
        results = rewrite_batch(self.teacher, batch, temperature=float(options.get("temperature", 0.7)),
                                max_tokens=int(options.get("max_tokens", 512)))
        for item, (text, error) in zip(todo, results, strict=True):
            if error is not None:
                if options.get("fallback_to_template", False):
                    item.provenance["teacher_error"] = error
                    stats["teacher:fell_back_to_template"] += 1
                    continue
                item.texts.pop("cot")
                item.error, item.detail = "teacher_error", {"error": error}
                continue
            item.texts["cot"] = [text.strip()]
            item.provenance.update(composer="teacher", teacher=self.teacher.model or self.teacher.base_url)

    def _distill_pass(self, items: list[_Item], stats: Counter) -> None:
        """Self-distillation: k sampled responses per item replace the template; the verified ones are kept."""
        from emoreason.cot.distill import sample_responses

        todo = [it for it in items if "cot" in it.texts]
        responses = sample_responses(self.cfg.self_distill or {}, [it.record for it in todo], self.labels,
                                     self.cfg.style, self)
        for item, candidates in zip(todo, responses, strict=True):
            stats["self_distill:records"] += 1
            stats["self_distill:candidates"] += len(candidates)
            if not candidates:
                item.texts.pop("cot")
                item.error, item.detail = "self_distill_no_output", {"k": int((self.cfg.self_distill or {}).get("k", 4))}
                continue
            item.texts["cot"] = list(candidates)
            item.provenance["composer"] = "self_distill"

    def _verify(self, item: _Item, task: str, text: str) -> Verdict:
        record = item.record
        if task == "emotion":
            return verify_emotion_answer(text, record.emotion)
        if task == "au_perception":
            return verify_au_list(text, item.grounding)
        return verify_rationale(text, record.emotion, item.grounding.present, item.grounding.key,
                                grounding=item.grounding)

    def _row(self, item: _Item, task: str, text: str, provenance: dict) -> dict:
        record = item.record
        media_type = "image" if record.media["type"] == "image" else "video"
        prompt = build_messages(None, media_type=media_type, labels=self.labels, style=self.cfg.style, task=task,
                                time_unit=self.cfg.time_unit)
        suffix = "" if task == "cot" else f":{task}"
        if provenance.get("composer") == "self_distill":
            suffix += f":s{provenance['sample']}"
        return {
            "id": record.id + suffix,
            "clip_id": record.id,
            "task": task,
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
            "media_type": media_type,
            "video": record.media["path"] if media_type == "video" else None,
            "image": record.media["path"] if media_type == "image" else None,
            # the file the clip's audio is heard from where it is not the video's own (DFEW's original clip beside
            # its face crops: emoreason.datasets.adapters), so training hears what the vocal cues were measured on
            "audio_path": record.media.get("audio_path"),
            "emotion": record.emotion,
            "emotions": record.emotions,
            "label_set": self.label_set,
            # a label-only clip's emotion row is no prototype row: it carries no AU columns at all
            **_evidence_columns(item.evidence if task != "emotion" or (item.evidence and item.evidence.observed)
                                else None, item.analysis),
            "duration_s": _round(item.timeline.duration_s) if item.timeline else None,
            # the measured voice the row's vocal cues were built from (JSON; None for a face-only row)
            "prosody": json.dumps(item.prosody.to_dict(), sort_keys=True) if item.prosody is not None else None,
            "prosody_reference": json.dumps(item.prosody_reference.to_dict(), sort_keys=True)
            if item.prosody_reference is not None else None,
            "valence": record.valence,
            "arousal": record.arousal,
            "split": record.split or "train",
            "subject": record.subject,
            "source": record.dataset,
            "provenance": json.dumps(dict(provenance, task=task), sort_keys=True),
        }

    def run_shard(self, records: list[SampleRecord]) -> tuple[list[dict], list[dict], Counter]:
        stats: Counter = Counter()
        items = [self._prepare(r) for r in records]
        if self.cfg.self_distill:
            self._distill_pass(items, stats)
        elif self.teacher is not None:
            self._teacher_pass(items, stats)
        rows, rejected = [], []
        for item in items:
            record = item.record
            if item.evidence is not None:
                stats[f"evidence:{item.evidence.source}"] += 1
            for note in item.notes:
                stats[f"evidence_note:{note}"] += 1
            for skipped in item.skipped:
                stats[f"skipped:{skipped}"] += 1
            if item.error is not None:
                stats[f"failed:{item.error}"] += 1
                rejected.append({"id": record.id, "task": None, "reasons": [item.error], "detail": item.detail})
            seen: set[str] = set()
            for task in item.tasks:
                if task == "emotion" and not record.emotion:
                    continue
                texts = item.texts.get(task, [f"<answer>{display_name(record.emotion)}</answer>"]
                                       if task == "emotion" else [])
                verified = 0
                for k, text in enumerate(texts):
                    provenance = dict(item.provenance, composer=item.provenance.get("composer", "template")
                                      if task == "cot" else "template")
                    if task == "cot" and provenance["composer"] == "self_distill":
                        provenance["sample"] = k
                    verdict = self._verify(item, task, text)
                    if not verdict.ok:
                        for reason in verdict.reasons:
                            stats[f"rejected:{task}:{reason}"] += 1
                        rejected.append({"id": record.id, "task": task, "reasons": verdict.reasons,
                                         "detail": verdict.details, "text": text})
                        continue
                    if text in seen:
                        stats[f"deduplicated:{task}"] += 1
                        continue
                    seen.add(text)
                    verified += 1
                    stats[f"accepted:{task}"] += 1
                    rows.append(self._row(item, task, text, provenance))
                if task == "cot" and item.provenance.get("composer") == "self_distill" and texts and not verified:
                    stats["self_distill:none_verified"] += 1
        return rows, rejected, stats

    # --- the whole run ------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        shards_dir = self.out / "shards"
        shards_dir.mkdir(exist_ok=True)
        fingerprint_path = self.out / "cot_config.json"
        if fingerprint_path.exists():
            if json.loads(fingerprint_path.read_text()) != json.loads(json.dumps(cfg.fingerprint())):
                raise ValueError(f"{self.out} was written with a different config; use a new output_dir to "
                                 "change settings, or the same config to resume")
        else:
            fingerprint_path.write_text(json.dumps(cfg.fingerprint(), indent=2, sort_keys=True) + "\n")
            (self.out / "cot_config.yaml").write_text(to_yaml(cfg))
        for stale in shards_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

        records = load_records(cfg.dataset_format, cfg.dataset_root, split=cfg.split, fold=cfg.fold,
                               **cfg.dataset_options)
        load_problems = [str(p) for p in records.problems]
        records = list(records)[: cfg.max_records] if cfg.max_records else list(records)
        shards = [records[i:i + cfg.shard_size] for i in range(0, len(records), cfg.shard_size)]
        shard_stats = {"total": len(shards), "reused": 0, "rebuilt": 0, "removed_stale": 0}
        shard_stats["removed_stale"] = self._remove_stale_shards(shards_dir, len(shards))
        bar = tqdm(total=len(records), desc="cot records", unit="rec", disable=not self.progress, mininterval=2)
        for index, shard in enumerate(shards):
            final = shards_dir / f"shard-{index:05d}.jsonl"
            fingerprint = records_fingerprint(shard, self.evidence_key)
            if final.exists():
                if self._shard_fingerprint(shards_dir, index) == fingerprint:
                    shard_stats["reused"] += 1
                    bar.update(len(shard))
                    continue
                log.warning("shard %d: its records or the AU detector changed since it was written; rebuilding it",
                            index)
                self._remove_shard(shards_dir, index)
                shard_stats["rebuilt"] += 1
            rows, rejected, stats = self.run_shard(shard)
            self._atomic(shards_dir / f"shard-{index:05d}.rejected.jsonl", rejected)
            self._atomic_text(shards_dir / f"shard-{index:05d}.stats.json", json.dumps(
                {"records_sha256": fingerprint, "records": len(shard), "counts": stats}, sort_keys=True))
            self._atomic(final, rows)  # written last: its existence marks the shard done
            bar.update(len(shard))
        bar.close()
        if shard_stats["reused"]:
            log.info("resumed: %d of %d shards reused", shard_stats["reused"], len(shards))
        return self._finish(len(shards), len(records), load_problems, shard_stats)

    @staticmethod
    def _shard_fingerprint(shards_dir: Path, index: int) -> str | None:
        try:
            return json.loads((shards_dir / f"shard-{index:05d}.stats.json").read_text()).get("records_sha256")
        except (OSError, ValueError, AttributeError):
            return None

    @staticmethod
    def _remove_shard(shards_dir: Path, index: int) -> None:
        for suffix in (".jsonl", ".rejected.jsonl", ".stats.json"):
            (shards_dir / f"shard-{index:05d}{suffix}").unlink(missing_ok=True)

    def _remove_stale_shards(self, shards_dir: Path, n_shards: int) -> int:
        """Shards numbered beyond the current record list (it shrank) would be read by no one: remove them."""
        removed = 0
        for path in shards_dir.glob("shard-*.jsonl"):
            index = path.name.split("-")[1].split(".")[0]
            if path.name == f"shard-{index}.jsonl" and index.isdigit() and int(index) >= n_shards:
                self._remove_shard(shards_dir, int(index))
                removed += 1
        return removed

    @staticmethod
    def _atomic(path: Path, rows: list[dict]) -> None:
        CoTPipeline._atomic_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    @staticmethod
    def _atomic_text(path: Path, text: str) -> None:
        tmp = path.parent / f".{path.name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)

    def _finish(self, n_shards: int, n_records: int, load_problems: list[str], shard_stats: dict) -> Path:
        import datasets

        shards_dir = self.out / "shards"
        rows, rejected, stats = [], [], Counter()
        for i in range(n_shards):
            rows += [json.loads(x) for x in (shards_dir / f"shard-{i:05d}.jsonl").read_text().splitlines()]
            rejected += [json.loads(x) for x in
                         (shards_dir / f"shard-{i:05d}.rejected.jsonl").read_text().splitlines()]
            stats.update(json.loads((shards_dir / f"shard-{i:05d}.stats.json").read_text())["counts"])
        add_rarity_weights(rows)
        self._atomic(self.out / "data.jsonl", rows)
        self._atomic(self.out / "rejected.jsonl", rejected)
        datasets.disable_progress_bars()
        if rows:
            by_split: dict[str, list[dict]] = {}
            for row in rows:
                by_split.setdefault(row["split"], []).append(row)
            dataset = datasets.DatasetDict({k: rows_dataset(v) for k, v in by_split.items()})
            tmp_hf = self.out / ".hf.tmp"
            dataset.save_to_disk(str(tmp_hf))
            if (self.out / "hf").exists():
                import shutil

                shutil.rmtree(self.out / "hf")
            os.replace(tmp_hf, self.out / "hf")
        summary = _summary(self.cfg, rows, stats, n_records, load_problems, shard_stats)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("CoT data: %d rows from %d records; rejected %s; failed %s", summary["accepted"], n_records,
                 summary["rejected_by_reason"], summary["failed_by_reason"])
        return self.out


def rows_dataset(rows: list[dict]) -> datasets.Dataset:
    """A ``datasets.Dataset`` of the rows with every column any row has (None where a row lacks it):
    ``Dataset.from_list`` takes its columns from the first row alone and drops the others' silently."""
    import datasets

    columns = list(dict.fromkeys(key for row in rows for key in row))
    return datasets.Dataset.from_list([{key: row.get(key) for key in columns} for row in rows])


def _grouped(stats: Counter, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}


def _summary(cfg: CoTConfig, rows: list[dict], stats: Counter, n_records: int, load_problems: list[str],
             shard_stats: dict) -> dict:
    rejected_by_task: dict[str, dict[str, int]] = {}
    for key, value in _grouped(stats, "rejected:").items():
        task, reason = key.split(":", 1)
        rejected_by_task.setdefault(task, {})[reason] = value
    rejected_by_reason: Counter = Counter()
    for reasons in rejected_by_task.values():
        rejected_by_reason.update(reasons)
    observed = [r for r in rows if r["au_observed"]]
    return {
        "records": n_records,
        "accepted": len(rows),
        "accepted_by_task": _grouped(stats, "accepted:"),
        "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
        "rejected_by_task": rejected_by_task,
        "failed_by_reason": _grouped(stats, "failed:"),
        "deduplicated": _grouped(stats, "deduplicated:"),
        "skipped": _grouped(stats, "skipped:"),  # sampled rows not made (an AU list for a clip nobody observed)
        "self_distillation": _grouped(stats, "self_distill:"),
        "teacher": _grouped(stats, "teacher:"),
        "evidence_sources": _grouped(stats, "evidence:"),
        "evidence_notes": _grouped(stats, "evidence_note:"),
        "rows_by_au_source": dict(Counter(str(r["au_source"]) for r in rows).most_common()),
        "observed_rows": len(observed),
        "prototype_rows": sum(r["au_source"] == "prototype" for r in rows),
        "labels": dict(Counter(r["emotion"] for r in rows if r["task"] == "cot").most_common()),
        "aus": {f"AU{a}": n for a, n in sorted(Counter(a for r in observed if r["task"] == "cot"
                                                       for a in r["aus"]).items())},
        "splits": dict(Counter(r["split"] for r in rows)),
        "tasks": dict(cfg.tasks),
        "time_unit": cfg.time_unit,
        "shards": shard_stats,
        "load_problems": load_problems,
    }


def add_rarity_weights(rows: list[dict], epsilon: float = 1e-6) -> None:
    """``au_rarity`` per row with observed AUs, as Facial-R1 weighs samples (Wu et al., "Facial-R1", AAAI 2026;
    reference code RobitsG/Facial-R1 ``compute_au_weights``): each AU weighs 1 / (its share of all AU
    occurrences + ε), normalised to sum 1; a sample weighs the sum over its AUs, min–max normalised over the
    dataset to [0, 1] (all equal: 1). Counted once per clip; rows without observed AUs get None."""
    clips: dict[str, list[int]] = {}
    for row in rows:
        if row.get("au_observed") and row.get("aus"):
            clips.setdefault(row["clip_id"], row["aus"])
    counts = Counter(a for aus in clips.values() for a in aus)
    total = sum(counts.values())
    if not total:
        for row in rows:
            row["au_rarity"] = None
        return
    inverse = {a: 1.0 / (n / total + epsilon) for a, n in counts.items()}
    norm = sum(inverse.values())
    raw = {clip: sum(inverse[a] / norm for a in aus) for clip, aus in clips.items()}
    lo, hi = min(raw.values()), max(raw.values())
    for row in rows:
        weight = raw.get(row["clip_id"]) if row.get("au_observed") else None
        row["au_rarity"] = None if weight is None else (round((weight - lo) / (hi - lo), 6) if hi > lo else 1.0)
