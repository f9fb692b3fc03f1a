"""Run a benchmark: load records by the benchmark's protocol, predict (cached per sample, so an interrupted
run resumes and a re-run re-scores without re-generating), parse, score, report.

The cache (``predictions.jsonl`` beside ``cache.json``) answers only for what it was made with: the model's
identity, the benchmark protocol and fold, the frame policy and the prompt. A run with anything else refuses
(``CacheMismatchError``, naming what differs), or with ``on_mismatch="restart"`` moves the old predictions
aside and starts a new cache. Predictions of different models are never mixed.

Cross-validation benchmarks are scored one model per fold (``fold_models``); each fold lives in
``OUT/fold<k>/`` and ``OUT/metrics.json`` + ``summary.md`` gather the folds present, with mean ± std once every
fold of the protocol is there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from emoreason.datasets import RecordSet, load_records
from emoreason.evaluation.benchmarks import BenchmarkSpec, short_hash
from emoreason.evaluation.identity import model_key, prompt_hash
from emoreason.evaluation.metrics import au_f1, au_ground_truth, ccc, recognition_metrics, rmse
from emoreason.evaluation.rationale import rationale_metrics
from emoreason.knowledge import dataset_label_set
from emoreason.reasoning import parse_response

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.jsonl"
CACHE_KEY = "cache.json"
RUN_OUTPUTS = ("metrics.json", "summary.md", "confusion_matrix.png", "per_class_recall.png", "per_au_f1.png")


class CacheMismatchError(RuntimeError):
    """A run directory holds predictions made under a different model, protocol, frame policy or prompt."""


class FoldProtocolError(ValueError):
    """A cross-validation benchmark asked to score one model on folds it was (or may have been) trained on."""


def prompt_labels(spec: BenchmarkSpec) -> list[str] | None:
    return list(dataset_label_set(spec.label_set)) if spec.prompt_labels and spec.label_set else None


def prompt_focus(spec: BenchmarkSpec) -> str | None:
    """Frame-level AU benchmarks ask about the window's centre frame."""
    return "centre" if spec.windows is not None else None


# --- the fold protocol ----------------------------------------------------------------------------------------

def fold_models(spec: BenchmarkSpec, model: str, fold: int | None = None, zero_shot: bool = False) -> dict:
    """{fold: model} for a run: ``model`` is a directory, a template with ``{fold}`` (``runs/sft/dfew_fold{fold}``)
    or a YAML/JSON file mapping folds to models. On a cross-validation benchmark one model for several folds is
    refused: fold k's training set holds the other folds' test samples, so the mean would be scored mostly on
    training data. ``zero_shot`` allows it for a model trained on none of the benchmark's data."""
    if not spec.folds:
        return {None: model}
    folds = [fold] if fold is not None else list(spec.folds)
    unknown = [k for k in folds if k not in spec.folds]
    if unknown:
        raise FoldProtocolError(f"{spec.name} has folds {spec.folds}; fold {unknown[0]} is not one of them")
    path = Path(model)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        mapping = yaml.safe_load(path.read_text())
        mapping = mapping.get("folds", mapping) if isinstance(mapping, dict) else mapping
        if not isinstance(mapping, dict):
            raise FoldProtocolError(f"{path}: expected a mapping fold → model, e.g. {{1: runs/sft/fold1, …}}")
        by_fold = {int(k): str(v) for k, v in mapping.items()}
        missing = [k for k in folds if k not in by_fold]
        if missing:
            raise FoldProtocolError(f"{path} names no model for fold(s) {missing} of {spec.name}")
        return {k: by_fold[k] for k in folds}
    if "{fold}" in model:
        return {k: model.format(fold=k) for k in folds}
    if len(folds) == 1 or zero_shot:
        return dict.fromkeys(folds, model)
    raise FoldProtocolError(
        f"{spec.name} is a {len(spec.folds)}-fold cross-validation protocol: fold k's training set holds the test "
        f"samples of the other folds, so one model scored on every fold is mostly scored on data it was trained "
        f"on (the mean ± std would be meaningless). Give one model per fold — --model 'runs/sft/{spec.name}_fold"
        f"{{fold}}' (a template) or --model folds.yaml (fold: model) — or score one fold with --fold K. A model "
        f"trained on none of {spec.name}'s data may be scored on every fold with --zero-shot.")


# --- records and the prediction cache -------------------------------------------------------------------------

def benchmark_records(spec: BenchmarkSpec, root: str | None = None, fold: int | None = None,
                      media_root: str | None = None) -> RecordSet:
    """The benchmark's samples for ``fold`` (its split; frame-level windows for the AU benchmarks)."""
    options = spec.adapter_options()
    if media_root:
        options["media_root"] = media_root
    return load_records(spec.dataset_format, root or spec.root, split=spec.split, fold=fold, **options)


def cache_key(spec: BenchmarkSpec, backend, fold: int | None) -> dict:
    return {"model": model_key(backend.identity), "protocol": spec.protocol(), "fold": fold,
            "frame_policy": backend.frame_policy, "prompt": _prompt_hash(spec, backend)}


def _prompt_hash(spec: BenchmarkSpec, backend) -> str:
    """The prompt the backend actually sends (its labels, style and focus)."""
    return prompt_hash(getattr(backend, "labels", prompt_labels(spec)), getattr(backend, "style", spec.style),
                       getattr(backend, "focus", prompt_focus(spec)))


def _differences(old: dict, new: dict) -> list[str]:
    names = {"model": "model", "protocol": "benchmark protocol", "fold": "fold", "frame_policy": "frame policy",
             "prompt": "prompt"}
    return [f"{names.get(k, k)}: {json.dumps(old.get(k), sort_keys=True, default=str)[:200]} → "
            f"{json.dumps(new.get(k), sort_keys=True, default=str)[:200]}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def open_cache(out: Path, key: dict, on_mismatch: str = "refuse") -> None:
    """Make ``out`` a cache for ``key``: new, the same key (resume), or a mismatch (refuse, or move aside)."""
    key_path, predictions = out / CACHE_KEY, out / PREDICTIONS
    if predictions.is_file() and predictions.stat().st_size:
        old = json.loads(key_path.read_text()) if key_path.is_file() else None
        if old == key:
            return
        what = (["no cache.json: predictions of unknown origin (an older emoreason?)"] if old is None
                else _differences(old, key))
        if on_mismatch != "restart":
            raise CacheMismatchError(
                f"{out} holds predictions made under a different setup, so they cannot be reused:\n  "
                + "\n  ".join(what) + "\nUse another --out, or --overwrite to move them aside and start over.")
        stale = out / f"stale-{short_hash(old) if old else 'unknown'}"
        stale.mkdir(exist_ok=True)
        for name in (PREDICTIONS, CACHE_KEY, *RUN_OUTPUTS):
            if (out / name).exists():
                os.replace(out / name, stale / name)
        log.warning("%s held predictions of another setup (%s); moved to %s", out, "; ".join(what), stale)
    key_path.write_text(json.dumps(key, indent=2, sort_keys=True, default=str) + "\n")


def _cached(path: Path) -> dict[str, dict]:
    cache: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a kill: ignored, that sample is predicted again
                continue
            if row.get("text") is not None or (row.get("error") or "").startswith("media"):
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


# --- scoring --------------------------------------------------------------------------------------------------

def score(spec: BenchmarkSpec, records, predictions: dict[str, dict], judge: dict | None = None) -> dict:
    """Every metric group of the benchmark; a group with nothing to score against is None (not measured).
    ``judge`` (endpoint settings) adds EMER-style LLM-judged overlap."""
    parsed = [parse_response(predictions.get(r.id, {}).get("text") or "") for r in records]
    errors = sum(1 for r in records if predictions.get(r.id, {}).get("text") is None)
    metrics: dict = {"benchmark": spec.name, "n": len(records), "generation_errors": errors}
    if "recognition" in spec.metrics:
        labelled = [(r, p) for r, p in zip(records, parsed, strict=True) if r.emotion]
        labels = list(dataset_label_set(spec.label_set)) if spec.label_set else None
        metrics["recognition"] = recognition_metrics([r.emotion for r, _ in labelled],
                                                     [p.emotion for _, p in labelled], labels)
    truths = [au_ground_truth(r, spec.au_set) for r in records]
    if "au" in spec.metrics and spec.au_set:
        rows = [(t, p) for t, p in zip(truths, parsed, strict=True) if t is not None]
        metrics["au"] = au_f1([t.present for t, _ in rows], [p.aus for _, p in rows], spec.au_set,
                              known=[t.known for t, _ in rows]) if rows else None
    if "va" in spec.metrics:
        metrics["va"] = _va_metrics(records, parsed)
    if "rationale" in spec.metrics or "rouge" in spec.metrics:
        references = [r.rationale for r in records] if "rouge" in spec.metrics else None
        metrics["rationale"] = rationale_metrics(parsed, truths, references)
    if judge is not None:
        rows = [(r, p) for r, p in zip(records, parsed, strict=True) if r.rationale]
        if rows:
            from emoreason.evaluation.judge import judge_overlap

            metrics["judge"] = judge_overlap(judge, [p.think or "" for _, p in rows], [p.emotion for _, p in rows],
                                             [r.rationale for r, _ in rows], [r.emotion for r, _ in rows])
    return metrics


def _va_metrics(records, parsed) -> dict | None:
    """CCC/RMSE; a response without numbers is scored at its answer's circumplex anchor, an unparsed one at 0."""
    from emoreason.knowledge import va_anchor

    rows = [(r, p) for r, p in zip(records, parsed, strict=True) if r.valence is not None]
    if not rows:
        return None

    def predicted(p):
        if p.valence is not None and p.arousal is not None:
            return p.valence, p.arousal
        return va_anchor(p.emotion) if p.emotion else (0.0, 0.0)

    pv = [predicted(p) for _, p in rows]
    return {"valence_ccc": ccc([r.valence for r, _ in rows], [x[0] for x in pv]),
            "arousal_ccc": ccc([r.arousal for r, _ in rows], [x[1] for x in pv]),
            "valence_rmse": rmse([r.valence for r, _ in rows], [x[0] for x in pv]),
            "arousal_rmse": rmse([r.arousal for r, _ in rows], [x[1] for x in pv]), "n": len(rows)}


# --- runs -----------------------------------------------------------------------------------------------------

def protocol_summary(spec: BenchmarkSpec, backend, fold: int | None, zero_shot: bool = False) -> dict:
    """What ``summary.md`` opens with and ``eval compare`` checks."""
    from emoreason.evaluation.identity import describe_model

    return {**spec.protocol(), "protocol_hash": spec.protocol_hash(), "fold": fold, "zero_shot": zero_shot,
            "frame_policy": backend.frame_policy, "prompt_hash": _prompt_hash(spec, backend),
            "model": backend.identity, "model_description": describe_model(backend.identity)}


def evaluate(spec: BenchmarkSpec, backend, out_dir: str | Path, root: str | None = None, fold: int | None = None,
             limit: int | None = None, batch_size: int = 8, progress: bool = True, judge: dict | None = None,
             on_mismatch: str = "refuse", media_root: str | None = None, zero_shot: bool = False) -> dict:
    """Evaluate one fold (or the benchmark's split) and write metrics.json, summary.md and plots."""
    from emoreason.evaluation.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = benchmark_records(spec, root, fold, media_root)
    problems = [str(p) for p in records.problems]
    records = list(records)[:limit] if limit else list(records)
    open_cache(out, cache_key(spec, backend, fold), on_mismatch)
    predictions = predict_all(records, backend, out, batch_size, progress)
    metrics = score(spec, records, predictions, judge)
    protocol = {**protocol_summary(spec, backend, fold, zero_shot), "limit": limit}
    metrics.update(fold=fold, backend=getattr(backend, "name", type(backend).__name__), load_problems=problems,
                   protocol=protocol)
    write_report(metrics, out)
    return metrics


def evaluate_folds(spec: BenchmarkSpec, backend_for: Callable[[int | None], object], out_dir: str | Path,
                   folds: list[int | None], root: str | None = None, limit: int | None = None, batch_size: int = 8,
                   progress: bool = True, judge: dict | None = None, on_mismatch: str = "refuse",
                   media_root: str | None = None, zero_shot: bool = False) -> dict:
    """Each of ``folds`` with its own model (``backend_for(fold)``) into ``OUT/fold<k>/``, then the summary over
    every fold present in ``OUT`` (mean ± std once the protocol's folds are all there)."""
    from emoreason.evaluation.report import write_fold_summary

    if not spec.folds:
        return evaluate(spec, backend_for(None), out_dir, root, None, limit, batch_size, progress, judge,
                        on_mismatch, media_root, zero_shot)
    for fold in folds:
        evaluate(spec, backend_for(fold), Path(out_dir) / f"fold{fold}", root, fold, limit, batch_size, progress,
                 judge, on_mismatch, media_root, zero_shot)
    return write_fold_summary(spec, Path(out_dir))
