"""Run a benchmark: load records by the benchmark's protocol, predict (cached per sample, so an interrupted
run resumes and a re-run re-scores without re-generating), parse, score, report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tqdm import tqdm

from emoreason.datasets import load_records
from emoreason.evaluation.benchmarks import BenchmarkSpec
from emoreason.evaluation.metrics import au_f1, ccc, fold_summary, recognition_metrics, rmse
from emoreason.evaluation.rationale import rationale_metrics
from emoreason.knowledge import dataset_label_set
from emoreason.reasoning import parse_response

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.jsonl"


def prompt_labels(spec: BenchmarkSpec) -> list[str] | None:
    return list(dataset_label_set(spec.label_set)) if spec.prompt_labels and spec.label_set else None


def _cached(path: Path) -> dict[str, dict]:
    cache: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a kill: ignored, that sample is predicted again
                continue
            if row.get("text") is not None or row.get("error", "").startswith("media"):
                cache[row["id"]] = row
    return cache


def predict_all(records, backend, out: Path, batch_size: int, progress: bool = True) -> dict[str, dict]:
    path = out / PREDICTIONS
    cache = _cached(path)
    todo = [r for r in records if r.id not in cache]
    if cache:
        log.info("resuming: %d of %d predictions cached in %s", len(records) - len(todo), len(records), path)
    with path.open("a", encoding="utf-8") as handle, tqdm(total=len(records), initial=len(records) - len(todo),
                                                          desc="predict", unit="sample", disable=not progress,
                                                          mininterval=2) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for record, (text, error) in zip(chunk, backend.predict(chunk), strict=True):
                row = {"id": record.id, "text": text, "error": error}
                handle.write(json.dumps(row) + "\n")
                if text is not None or (error or "").startswith("media"):
                    cache[record.id] = row
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(chunk))
    return cache


def score(spec: BenchmarkSpec, records, predictions: dict[str, dict], judge: dict | None = None) -> dict:
    """All metric groups of the benchmark; ``judge`` (endpoint settings) adds EMER-style LLM-judged overlap."""
    parsed = [parse_response(predictions.get(r.id, {}).get("text") or "") for r in records]
    errors = sum(1 for r in records if predictions.get(r.id, {}).get("text") is None)
    metrics: dict = {"benchmark": spec.name, "n": len(records), "generation_errors": errors}
    labelled = [(r, p) for r, p in zip(records, parsed, strict=True) if r.emotion]
    if "recognition" in spec.metrics and labelled:
        labels = list(dataset_label_set(spec.label_set)) if spec.label_set else None
        metrics["recognition"] = recognition_metrics([r.emotion for r, _ in labelled],
                                                     [p.emotion for _, p in labelled], labels)
    if "au" in spec.metrics and spec.au_set:
        with_aus = [(r, p) for r, p in zip(records, parsed, strict=True) if r.au_frames or r.aus]
        metrics["au"] = au_f1([r.aus for r, _ in with_aus], [p.aus for _, p in with_aus], spec.au_set)
    if "va" in spec.metrics:
        rows = [(r, p) for r, p in zip(records, parsed, strict=True) if r.valence is not None]
        if rows:
            from emoreason.knowledge import va_anchor

            def predicted(p):
                if p.valence is not None and p.arousal is not None:
                    return p.valence, p.arousal
                return va_anchor(p.emotion) if p.emotion else (0.0, 0.0)

            pv = [predicted(p) for _, p in rows]
            metrics["va"] = {
                "valence_ccc": ccc([r.valence for r, _ in rows], [x[0] for x in pv]),
                "arousal_ccc": ccc([r.arousal for r, _ in rows], [x[1] for x in pv]),
                "valence_rmse": rmse([r.valence for r, _ in rows], [x[0] for x in pv]),
                "arousal_rmse": rmse([r.arousal for r, _ in rows], [x[1] for x in pv]), "n": len(rows)}
    if "rationale" in spec.metrics or "rouge" in spec.metrics:
        truth = [r.aus if (r.au_frames is not None or r.aus or r.au_intensity) else None for r in records]
        references = [r.rationale for r in records] if "rouge" in spec.metrics else None
        metrics["rationale"] = rationale_metrics(parsed, truth, references)
    if judge is not None:
        rows = [(r, p) for r, p in zip(records, parsed, strict=True) if r.rationale]
        if rows:
            from emoreason.evaluation.judge import judge_overlap

            metrics["judge"] = judge_overlap(judge, [p.think or "" for _, p in rows], [p.emotion for _, p in rows],
                                             [r.rationale for r, _ in rows], [r.emotion for r, _ in rows])
    return metrics


def evaluate(spec: BenchmarkSpec, backend, out_dir: str | Path, root: str | None = None, fold: int | None = None,
             limit: int | None = None, batch_size: int = 8, progress: bool = True, judge: dict | None = None) -> dict:
    """Evaluate one fold (or the benchmark's split) and write metrics.json, summary.md and plots."""
    from emoreason.evaluation.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(spec.dataset_format, root or spec.root, split=spec.split, fold=fold,
                           **spec.dataset_options)
    problems = [str(p) for p in records.problems]
    records = list(records)[:limit] if limit else list(records)
    predictions = predict_all(records, backend, out, batch_size, progress)
    metrics = score(spec, records, predictions, judge)
    metrics.update(fold=fold, backend=getattr(backend, "name", type(backend).__name__), load_problems=problems)
    write_report(metrics, out)
    return metrics


def evaluate_folds(spec: BenchmarkSpec, backend, out_dir: str | Path, root: str | None = None,
                   limit: int | None = None, batch_size: int = 8, progress: bool = True,
                   judge: dict | None = None) -> dict:
    """Every fold of a multi-fold protocol, then mean ± std of the headline metrics."""
    from emoreason.evaluation.report import write_fold_summary

    folds = spec.folds or [None]
    per_fold = {}
    for fold in folds:
        sub = Path(out_dir) / (f"fold{fold}" if fold is not None else ".")
        per_fold[fold] = evaluate(spec, backend, sub, root, fold, limit, batch_size, progress, judge)
    if len(folds) == 1:
        return per_fold[folds[0]]
    summary = {"benchmark": spec.name, "folds": {str(k): v for k, v in per_fold.items()}}
    for key in ("war", "uar", "macro_f1"):
        values = [m["recognition"][key] for m in per_fold.values() if "recognition" in m]
        if values:
            summary[key] = fold_summary(values)
    write_fold_summary(summary, Path(out_dir))
    return summary
