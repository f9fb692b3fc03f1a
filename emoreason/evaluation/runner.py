"""Run a benchmark: load records by the benchmark's protocol, predict (cached per sample, so an interrupted
run resumes and a re-run re-scores without re-generating), parse, score, report.

The cache (``predictions.jsonl`` beside ``cache.json``) answers only for what it was made with: the model's
identity, the benchmark protocol and fold, the frame policy and the prompt, and per sample the media it was shown
(``media_signature``: layout, frame rate, window). A run with anything else refuses
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
from emoreason.evaluation.benchmarks import BenchmarkSpec, FoldProtocolError, short_hash
from emoreason.evaluation.identity import model_key, prompt_hash
from emoreason.evaluation.metrics import au_f1, au_ground_truth, ccc, recognition_metrics, rmse
from emoreason.evaluation.rationale import rationale_metrics
from emoreason.knowledge import dataset_label_set, prediction_in_label_set
from emoreason.reasoning import parse_response
from emoreason.records import media_identity

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.jsonl"
CACHE_KEY = "cache.json"
RUN_OUTPUTS = ("metrics.json", "summary.md", "confusion_matrix.png", "per_class_recall.png", "per_au_f1.png")


class CacheMismatchError(RuntimeError):
    """A run directory holds predictions made under a different model, protocol, frame policy or prompt."""


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
        shared = sorted({k for k in folds for j in folds if j != k and by_fold[j] == by_fold[k]})
        if shared and not zero_shot:
            raise FoldProtocolError(f"{path} names the same model for folds {', '.join(map(str, shared))} of "
                                    f"{spec.name}: {_ONE_MODEL_PER_FOLD.format(name=spec.name)}")
        return {k: by_fold[k] for k in folds}
    if "{fold}" in model:
        return {k: model.format(fold=k) for k in folds}
    if len(folds) == 1 or zero_shot:
        return dict.fromkeys(folds, model)
    raise FoldProtocolError(f"{spec.name} is a {len(spec.folds)}-fold cross-validation protocol: "
                            + _ONE_MODEL_PER_FOLD.format(name=spec.name) + " Or score one fold with --fold K.")


_ONE_MODEL_PER_FOLD = (
    "fold k's training set holds the test samples of the other folds, so one model scored on every fold is mostly "
    "scored on data it was trained on (the mean ± std would be meaningless). Give one model per fold — --model "
    "'runs/sft/{name}_fold{{fold}}' (a template) or --model folds.yaml (fold: model). A model trained on none of "
    "{name}'s data may be scored on every fold with --zero-shot.")


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
    """The prompt the backend actually sends (its labels, style, focus and task)."""
    return prompt_hash(getattr(backend, "labels", prompt_labels(spec)), getattr(backend, "style", spec.style),
                       getattr(backend, "focus", prompt_focus(spec)), getattr(backend, "task", spec.task))


def _differences(old: dict, new: dict) -> list[str]:
    names = {"model": "model", "protocol": "benchmark protocol", "fold": "fold", "frame_policy": "frame policy",
             "prompt": "prompt"}
    return [f"{names.get(k, k)}: {json.dumps(old.get(k), sort_keys=True, default=str)[:200]} → "
            f"{json.dumps(new.get(k), sort_keys=True, default=str)[:200]}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def media_signature(record) -> dict:
    """What of a sample's media decides the frames the model is shown (``emoreason.records.media_identity``: its
    layout, frame rate, window, and the original clip its frames are timed on — every model, hearing or not, sees
    them on that clip's time base) — and not where the copy sits (moving the data keeps its cache)."""
    return media_identity(record.media)


def _media_differences(path: Path, records) -> list[str]:
    cached = _cached(path)
    changed = [(r, cached[r.id].get("media")) for r in records
               if r.id in cached and cached[r.id].get("media") != media_signature(r)]
    if not changed:
        return []
    first, old = changed[0]
    return [f"media of {len(changed)} cached sample(s), e.g. {first.id}: {json.dumps(old, sort_keys=True)} → "
            f"{json.dumps(media_signature(first), sort_keys=True)}"]


def open_cache(out: Path, key: dict, on_mismatch: str = "refuse", records=()) -> None:
    """Make ``out`` a cache for ``key`` and ``records``: new, the same setup (resume), or a mismatch — another
    key, or cached answers for these sample ids made on other media — refused, or moved aside."""
    key_path, predictions = out / CACHE_KEY, out / PREDICTIONS
    if predictions.is_file() and predictions.stat().st_size:
        try:
            old = json.loads(key_path.read_text()) if key_path.is_file() else None
        except ValueError:  # cut by a kill mid-write (before writes were atomic) or edited by hand
            old, what = None, [f"{key_path} is unreadable: the predictions' origin is unknown"]
        else:
            what = ["no cache.json: predictions of unknown origin (an older emoreason?)"]
        if old is not None:
            what = _differences(old, key) if old != key else _media_differences(predictions, records)
        if not what:
            return
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
    write_atomic(key_path, json.dumps(key, indent=2, sort_keys=True, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a kill or a concurrent reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
                row = {"id": record.id, "text": text, "error": error, "media": media_signature(record)}
                if getattr(backend, "hears", False):  # what an audio model's backend let the sample hear
                    row["audio"] = backend.heard.get(record.id)
                handle.write(json.dumps(row) + "\n")
                if text is not None or (error or "").startswith("media"):
                    cache[record.id] = row
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(chunk))
    return cache


def audio_counts(records, predictions: dict[str, dict], modalities: str) -> dict:
    """How many of the run's samples heard their own track (of them: read from the clip's original video beside
    its face crops or frame folders — the record's ``media["audio_path"]``, fitted to the video's length, cut to the
    feature extractor's window), had no track and heard silence of the clip's duration, or heard nothing (the
    ``video`` ablation, images, samples whose media failed, or cached before these counts were kept)."""
    heard = [(predictions.get(r.id) or {}).get("audio") for r in records]
    tracks = [(r, h) for r, h in zip(records, heard, strict=True) if h and h.get("heard") == "track"]
    silences = sum(1 for h in heard if h and h.get("heard") == "silence")
    return {"modalities": modalities, "samples": len(records), "heard_track": len(tracks),
            "from_original_video": sum(1 for r, h in tracks if _from_original(r, h)),
            "fitted_to_video": sum(1 for _, h in tracks if "fitted" in h),
            "truncated": sum(1 for _, h in tracks if "kept_s" in h), "no_track_heard_silence": silences,
            "not_heard": len(records) - len(tracks) - silences}


def _from_original(record, heard: dict) -> bool:
    """The row heard the record's original clip: by its layout (which survives a data move), or — rows cached
    before rows named it — by its file."""
    if heard.get("audio_layout"):
        return heard["audio_layout"] == record.media.get("audio_layout")
    return bool(record.media.get("audio_path")) and heard.get("source") == str(record.media["audio_path"])


def _warn_silent(records, predictions: dict[str, dict], shown: int = 5) -> None:
    """One warning per run for the samples that heard silence (no track, no original clip found): their count
    and the first few ids; each prediction row's ``audio`` names its own."""
    silent = [r.id for r in records if ((predictions.get(r.id) or {}).get("audio") or {}).get("heard") == "silence"]
    if silent:
        log.warning("%d of %d samples had no audio track (nor an original clip named for their audio) and heard "
                    "silence: %s%s", len(silent), len(records), ", ".join(silent[:shown]),
                    f" and {len(silent) - shown} more" if len(silent) > shown else "")


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
        predicted = [prediction_in_label_set(spec.label_set, p.emotion) if spec.label_set else p.emotion
                     for _, p in labelled]  # a "calm" answer is neutral on a benchmark without calm
        metrics["recognition"] = recognition_metrics([r.emotion for r, _ in labelled], predicted, labels)
        if metrics["recognition"] is not None:  # samples without a label are left out, and counted
            metrics["recognition"]["unlabelled"] = len(records) - len(labelled)
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
    open_cache(out, cache_key(spec, backend, fold), on_mismatch, records)
    predictions = predict_all(records, backend, out, batch_size, progress)
    metrics = score(spec, records, predictions, judge)
    protocol = {**protocol_summary(spec, backend, fold, zero_shot), "limit": limit}
    if getattr(backend, "hears", False):  # a model that takes audio: what the samples heard, counted
        protocol["audio"] = audio_counts(records, predictions, backend.modalities)
    _warn_silent(records, predictions)
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
    from emoreason.evaluation.report import check_fold_models, fold_runs, write_fold_summary

    if not spec.folds:
        return evaluate(spec, backend_for(None), out_dir, root, None, limit, batch_size, progress, judge,
                        on_mismatch, media_root, zero_shot)
    for fold in folds:
        backend = backend_for(fold)
        # before any generation: this fold's model must not be one already scored on another fold of OUT
        scored = {k: ((m.get("protocol") or {}).get("model") or {}, bool((m.get("protocol") or {}).get("zero_shot")))
                  for k, m in fold_runs(spec, Path(out_dir)).items() if k != fold}
        check_fold_models(spec, {**scored, fold: (backend.identity, zero_shot)})
        evaluate(spec, backend, Path(out_dir) / f"fold{fold}", root, fold, limit, batch_size, progress,
                 judge, on_mismatch, media_root, zero_shot)
    return write_fold_summary(spec, Path(out_dir))
