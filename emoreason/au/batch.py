"""``emoreason au-detect``: many media files → one OpenFace-layout CSV each, in parallel, resumable.

Each input gets ``OUT/<name>.csv`` + ``OUT/<name>.au.json`` (written atomically, CSV last) and a status
record ``OUT/.au-detect/<name>.json``. A re-run skips inputs whose status matches the file (size, mtime) and
the estimator (settings, calibration, code and MediaPipe version: ``AUConfig.key``), so a run killed at any point resumes with no duplicate or half-written output.
Failures (missing, empty, corrupt, unsupported files) are recorded with their reason and the batch goes on;
``OUT/summary.json`` lists every input's status. With ``--workers`` > 1, a worker process that dies (a native
crash in the decoder or MediaPipe, the OOM killer) breaks only its pool: the files it left unfinished are
re-run one process each, and the one that kills its own process is recorded as failed — so a resume does not
hit the same crash forever.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from emoreason.au.analysis import AUConfig, analyse_to_csv, atomic_write
from emoreason.au.media import expand_inputs

log = logging.getLogger(__name__)


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A readable, collision-free output name per input (its stem; + a path hash when two stems clash)."""
    def stem_of(p: Path) -> str:
        return p.name if p.is_dir() else p.stem

    stems = Counter(stem_of(p) for p in paths)
    names = {}
    for p in paths:
        stem = stem_of(p)
        if stems[stem] > 1:
            stem = f"{stem}-{hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]}"
        names[p] = stem
    return names


def _fingerprint(path: Path) -> dict:
    if not path.exists():
        return {"exists": False}
    if path.is_dir():
        entries = sorted(path.iterdir())
        return {"exists": True, "entries": len(entries),
                "mtime_ns": max([path.stat().st_mtime_ns] + [e.stat().st_mtime_ns for e in entries])}
    stat = path.stat()
    return {"exists": True, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _work(args: tuple[str, str, dict]) -> dict:
    """Runs in a worker process: one input → CSV + sidecar; never raises (the reason goes in the status)."""
    source, csv_path, config_fields = args
    config = AUConfig(**config_fields)
    try:
        meta = analyse_to_csv(source, csv_path, config)
    except Exception as exc:  # noqa: BLE001 - a batch records every failure and goes on
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        return {"status": "failed", "error": reason, "error_type": type(exc).__name__}
    status = "ok"
    if meta["valid_frames"] == 0:
        status = "no_face"
    elif meta["warnings"]:
        status = "ok_with_warnings"
    return {"status": status, "frames": meta["frames"], "valid_frames": meta["valid_frames"],
            "warnings": meta["warnings"], "flag_counts": meta["flag_counts"], "csv": csv_path}


WORKER_DIED = "the worker process died while analysing this file (a native crash or out of memory)"


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: MediaPipe's graph threads do not survive fork
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _alone(work: Callable[[tuple], dict], job: tuple) -> dict:
    """One file in a process of its own: if that process dies, this file is the cause."""
    with _pool(1) as pool:
        try:
            return pool.submit(work, job).result()
        except BrokenProcessPool:
            return {"status": "failed", "error": WORKER_DIED, "error_type": "WorkerDied"}


def run_batch(inputs: list[str], out: str | Path, config: AUConfig | None = None, workers: int = 1,
              progress: bool = True, overwrite: bool = False, work: Callable[[tuple], dict] = _work) -> dict:
    """Process every input; returns (and writes) the summary. ``work`` is the per-file function run in the
    workers (a module-level function; tests pass one that crashes its process)."""
    config = config or AUConfig()
    out = Path(out)
    state = out / ".au-detect"
    state.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".*.tmp"), *state.glob(".*.tmp")]:  # left by a killed run
        stale.unlink(missing_ok=True)
    paths = expand_inputs(inputs)
    names = output_names(paths)
    key = config.key()
    results: dict[str, dict] = {}
    todo = []
    for path in paths:
        name = names[path]
        status_path = state / f"{name}.json"
        record = {"source": str(path), "name": name, "config_key": key, "input": _fingerprint(path)}
        if status_path.exists() and not overwrite:
            previous = json.loads(status_path.read_text())
            same = all(previous.get(k) == record[k] for k in ("source", "config_key", "input"))
            if same and (previous["status"] == "failed" or (out / f"{name}.csv").exists()):
                results[name] = previous
                continue
        todo.append((path, name, record))
    if len(results):
        log.info("resuming: %d of %d inputs already done", len(results), len(paths))
    bar = tqdm(total=len(paths), initial=len(results), desc="au-detect", unit="file", disable=not progress)
    fields = dataclasses.asdict(config)
    jobs = [(str(p), str(out / f"{name}.csv"), fields) for p, name, _ in todo]

    def finish(item: tuple[Path, str, dict], outcome: dict) -> None:
        _, name, record = item
        record = {**record, **outcome}
        atomic_write(state / f"{name}.json", json.dumps(record, indent=1) + "\n")
        results[name] = record
        if outcome["status"] == "failed":
            log.warning("%s: %s", record["source"], outcome["error"])
        bar.update(1)

    if workers <= 1 or len(jobs) <= 1:
        for item, job in zip(todo, jobs, strict=True):
            finish(item, work(job))
    else:
        orphaned = []
        with _pool(workers) as pool:
            futures = {pool.submit(work, job): (item, job) for item, job in zip(todo, jobs, strict=True)}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except BrokenProcessPool:  # a worker died: every unfinished file of this pool lands here
                    orphaned.append(futures[future])
                    continue
                finish(futures[future][0], outcome)
        if orphaned:
            log.warning("a worker process died; re-running its %d unfinished files one process each", len(orphaned))
        for item, job in orphaned:
            finish(item, _alone(work, job))
    bar.close()
    summary = summarise(results, config, key)
    atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def summarise(results: dict[str, dict], config: AUConfig, key: str) -> dict:
    by_status = Counter(r["status"] for r in results.values())
    return {"inputs": len(results), "by_status": dict(sorted(by_status.items())),
            "config": dataclasses.asdict(config), "config_key": key,
            "failed": {r["source"]: r["error"] for r in results.values() if r["status"] == "failed"},
            "no_face": sorted(r["source"] for r in results.values() if r["status"] == "no_face"),
            "warnings": {r["source"]: r["warnings"] for r in results.values() if r.get("warnings")},
            "files": {name: {k: r.get(k) for k in ("source", "status", "frames", "valid_frames", "csv", "error")
                             if r.get(k) is not None} for name, r in sorted(results.items())}}


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))
