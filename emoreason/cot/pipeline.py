"""The CoT synthesis pipeline: records → AU evidence → temporal analysis → rationale (template, teacher
rewrite, or self-distillation) → verification → TRL conversational rows → JSONL + HF datasets.

Sharded and resumable: each shard is written to a temporary file and renamed when complete, so a kill leaves
finished shards intact and unfinished ones absent; a re-run skips finished shards (idempotent, no duplicates).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from emoreason.client import EndpointConfig
from emoreason.config import to_yaml
from emoreason.cot.compose import compose_rationale
from emoreason.cot.evidence import evidence_for
from emoreason.cot.teacher import rewrite_batch, teacher_messages
from emoreason.cot.temporal import analyse
from emoreason.cot.verify import verify_rationale
from emoreason.datasets import load_records
from emoreason.knowledge import dataset_label_set
from emoreason.reasoning import build_messages
from emoreason.records import SampleRecord

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
    use_openface: bool = True
    allow_prototype: bool = True  # label-only samples get prototype-conditioned rationales (marked as such)
    shard_size: int = 256
    teacher: dict | None = None  # EndpointConfig fields + temperature, max_tokens, fallback_to_template
    self_distill: dict | None = None  # {model: DIR | endpoint: {...}, k: 4, temperature: 1.0, max_new_tokens}
    dataset_options: dict = field(default_factory=dict)  # extra adapter options (e.g. classes: 7)
    detector: str | None = None  # AU detector for samples without AU labels/CSVs: "landmarks" (emoreason[au])
    detector_options: dict = field(default_factory=dict)  # e.g. {cache_dir: ..., mode: video, max_faces: 2}

    def fingerprint(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("output_dir")
        return data


def _seed_for(cfg_seed: int, sample_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{cfg_seed}:{sample_id}".encode()).digest()[:4], "little")


def _labels_for_prompt(cfg: CoTConfig) -> list[str] | None:
    if cfg.prompt_labels != "dataset":
        return None
    name = {"affectnet": "affectnet8"}.get(cfg.dataset_format, cfg.dataset_format)
    try:
        return list(dataset_label_set(name))
    except KeyError:
        return None


def _row(record: SampleRecord, text: str, labels: list[str] | None, style: str, provenance: dict) -> dict:
    media_type = "image" if record.media["type"] == "image" else "video"
    prompt = build_messages(None, media_type=media_type, labels=labels, style=style)
    return {
        "id": record.id,
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
        "media_type": media_type,
        "video": record.media["path"] if media_type == "video" else None,
        "image": record.media["path"] if media_type == "image" else None,
        "emotion": record.emotion,
        "emotions": record.emotions,
        "aus": record.aus,
        "au_intensity": json.dumps(record.au_intensity, sort_keys=True),
        "valence": record.valence,
        "arousal": record.arousal,
        "split": record.split or "train",
        "subject": record.subject,
        "source": record.dataset,
        "evidence_source": provenance["evidence"],
        "provenance": json.dumps(provenance, sort_keys=True),
    }


class CoTPipeline:
    def __init__(self, cfg: CoTConfig, progress: bool = True):
        if cfg.style not in ("tags", "json"):
            raise ValueError(f"style must be tags or json, got {cfg.style!r}")
        self.cfg, self.progress = cfg, progress
        self.out = Path(cfg.output_dir)
        self.labels = _labels_for_prompt(cfg)
        self.teacher = EndpointConfig(**{k: v for k, v in (cfg.teacher or {}).items()
                                         if k in EndpointConfig.__dataclass_fields__}) if cfg.teacher else None
        self._distiller = None
        self.detector = None
        if cfg.detector:
            from emoreason.au.detector import build_detector

            options = {"cache_dir": str(self.out / "au_cache"), **cfg.detector_options}
            self.detector = build_detector(cfg.detector, **options)

    # --- per-shard work -----------------------------------------------------------------------------------
    def _prepare(self, record: SampleRecord) -> dict:
        cfg = self.cfg
        if not record.emotion:
            return {"record": record, "error": "no_label"}
        try:
            evidence = evidence_for(record, detector=self.detector, use_openface=cfg.use_openface,
                                    allow_prototype=cfg.allow_prototype)
        except Exception as exc:  # noqa: BLE001 - a detector failing on one clip (corrupt, missing) is recorded
            log.warning("evidence for %s failed: %s", record.id, exc)
            return {"record": record, "error": "evidence_error", "detail": {"error": f"{type(exc).__name__}: {exc}"}}
        if evidence is None or evidence.source == "openface_error":
            reason = "no_evidence" if evidence is None else "openface_error"
            return {"record": record, "error": reason, "detail": evidence.detail if evidence else {}}
        analysis = analyse(evidence, cfg.presence_threshold)
        present = set(analysis.aus)
        key = {t.au for t in analysis.tracks if t.peak >= cfg.key_au_threshold}
        seed = _seed_for(cfg.seed, record.id)
        composed = compose_rationale(analysis, record.emotion, seed, cfg.style, evidence.observed,
                                     record.valence, record.arousal)
        provenance = {"evidence": evidence.source, "observed": evidence.observed, "composer": "template",
                      "template_seed": seed, "verified": True}
        return {"record": record, "analysis": analysis, "present": present, "key": key, "text": composed.text,
                "provenance": provenance}

    def _teacher_pass(self, items: list[dict]) -> None:
        todo = [it for it in items if "error" not in it]
        if not todo or self.teacher is None:
            return
        options = self.cfg.teacher or {}
        batch = [teacher_messages(it["text"], it["analysis"], it["record"].emotion,
                                  it["record"].media.get("path") if options.get("send_media", False) else None,
                                  it["record"].media.get("type")) for it in todo]
        results = rewrite_batch(self.teacher, batch, temperature=float(options.get("temperature", 0.7)),
                                max_tokens=int(options.get("max_tokens", 512)))
        for item, (text, error) in zip(todo, results, strict=True):
            if error is not None:
                if options.get("fallback_to_template", False):
                    item["provenance"]["teacher_error"] = error
                    continue
                item["error"], item["detail"] = "teacher_error", {"error": error}
                continue
            item["text"] = text.strip()
            item["provenance"].update(composer="teacher", teacher=self.teacher.model or self.teacher.base_url)

    def _distill_pass(self, items: list[dict]) -> list[dict]:
        """Self-distillation: k sampled responses per item, keep the verified ones (one row each)."""
        from emoreason.cot.distill import sample_responses

        todo = [it for it in items if "error" not in it]
        responses = sample_responses(self.cfg.self_distill or {}, [it["record"] for it in todo], self.labels,
                                     self.cfg.style, self)
        expanded = [it for it in items if "error" in it]
        for item, candidates in zip(todo, responses, strict=True):
            for k, text in enumerate(candidates):
                clone = dict(item, text=text, provenance=dict(item["provenance"], composer="self_distill",
                                                              sample=k))
                expanded.append(clone)
        return expanded

    def run_shard(self, records: list[SampleRecord]) -> tuple[list[dict], list[dict], Counter]:
        items = [self._prepare(r) for r in records]
        if self.cfg.self_distill:
            items = self._distill_pass(items)
        elif self.teacher is not None:
            self._teacher_pass(items)
        rows, rejected, stats = [], [], Counter()
        seen: set[tuple[str, str]] = set()
        for item in items:
            record = item["record"]
            if "error" in item:
                stats[f"failed:{item['error']}"] += 1
                rejected.append({"id": record.id, "reasons": [item["error"]], "detail": item.get("detail", {})})
                continue
            verdict = verify_rationale(item["text"], record.emotion, item["present"], item["key"])
            if not verdict.ok:
                for reason in verdict.reasons:
                    stats[f"rejected:{reason}"] += 1
                rejected.append({"id": record.id, "reasons": verdict.reasons, "detail": verdict.details,
                                 "text": item["text"]})
                continue
            if (record.id, item["text"]) in seen:
                continue
            seen.add((record.id, item["text"]))
            stats["accepted"] += 1
            stats[f"evidence:{item['provenance']['evidence']}"] += 1
            rows.append(_row(record, item["text"], self.labels, self.cfg.style, item["provenance"]))
        return rows, rejected, stats

    # --- the whole run ------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        shards_dir = self.out / "shards"
        shards_dir.mkdir(exist_ok=True)
        fingerprint_path = self.out / "cot_config.json"
        if fingerprint_path.exists():
            if json.loads(fingerprint_path.read_text()) != cfg.fingerprint():
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
        done = sum((shards_dir / f"shard-{i:05d}.jsonl").exists() for i in range(len(shards)))
        if done:
            log.info("resuming: %d of %d shards already done", done, len(shards))
        bar = tqdm(total=len(records), desc="cot records", unit="rec", disable=not self.progress, mininterval=2)
        for index, shard in enumerate(shards):
            final = shards_dir / f"shard-{index:05d}.jsonl"
            if final.exists():
                bar.update(len(shard))
                continue
            rows, rejected, stats = self.run_shard(shard)
            self._atomic(shards_dir / f"shard-{index:05d}.rejected.jsonl", rejected)
            (shards_dir / f"shard-{index:05d}.stats.json").write_text(json.dumps(stats, sort_keys=True))
            self._atomic(final, rows)  # written last: its existence marks the shard done
            bar.update(len(shard))
        bar.close()
        return self._finish(len(shards), len(records), load_problems)

    @staticmethod
    def _atomic(path: Path, rows: list[dict]) -> None:
        tmp = path.parent / f".{path.name}.tmp"
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        os.replace(tmp, path)

    def _finish(self, n_shards: int, n_records: int, load_problems: list[str]) -> Path:
        import datasets

        shards_dir = self.out / "shards"
        rows, rejected, stats = [], [], Counter()
        for i in range(n_shards):
            rows += [json.loads(x) for x in (shards_dir / f"shard-{i:05d}.jsonl").read_text().splitlines()]
            rejected += [json.loads(x) for x in
                         (shards_dir / f"shard-{i:05d}.rejected.jsonl").read_text().splitlines()]
            stats.update(json.loads((shards_dir / f"shard-{i:05d}.stats.json").read_text()))
        self._atomic(self.out / "data.jsonl", rows)
        self._atomic(self.out / "rejected.jsonl", rejected)
        datasets.disable_progress_bars()
        if rows:
            by_split: dict[str, list[dict]] = {}
            for row in rows:
                by_split.setdefault(row["split"], []).append(row)
            dataset = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in by_split.items()})
            tmp_hf = self.out / ".hf.tmp"
            dataset.save_to_disk(str(tmp_hf))
            if (self.out / "hf").exists():
                import shutil

                shutil.rmtree(self.out / "hf")
            os.replace(tmp_hf, self.out / "hf")
        summary = {
            "records": n_records,
            "accepted": len(rows),
            "rejected_by_reason": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("rejected:")},
            "failed_by_reason": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("failed:")},
            "evidence_sources": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("evidence:")},
            "labels": dict(Counter(r["emotion"] for r in rows).most_common()),
            "aus": {f"AU{a}": n for a, n in sorted(Counter(a for r in rows for a in r["aus"]).items())},
            "splits": dict(Counter(r["split"] for r in rows)),
            "load_problems": load_problems,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("CoT data: %d accepted of %d records; rejected %s; failed %s", summary["accepted"], n_records,
                 summary["rejected_by_reason"], summary["failed_by_reason"])
        return self.out
