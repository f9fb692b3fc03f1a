"""Per-run reports a paper can quote: metrics.json, a Markdown summary that opens with the protocol, PNG plots;
the per-fold summary of a cross-validation protocol; and side-by-side comparison of runs scored under one
protocol.

Unmeasured metrics are ``null`` in metrics.json and "–" in the Markdown, never 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from emoreason.evaluation.benchmarks import FoldProtocolError
from emoreason.evaluation.identity import describe_model, model_key
from emoreason.evaluation.metrics import fold_summary, mean_of


class ProtocolMismatchError(ValueError):
    """Runs scored under different protocols compared without ``allow_protocol_mismatch``."""


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _mean_std(summary: dict | None) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    return f"{_pct(summary['mean'])} ± {_pct(summary['std'])}"


def _dump(metrics: dict, path: Path) -> None:
    """Strict JSON (a NaN would make the file unreadable to other tools), written whole or not at all: fold runs
    into one OUT read each other's metrics.json."""
    from emoreason.evaluation.runner import write_atomic

    write_atomic(path, json.dumps(metrics, indent=2, default=str, allow_nan=False) + "\n")


def _bar_heights(values) -> list[float]:
    """Bar heights; an unmeasured value (None) is NaN — no bar — never a bar at 0."""
    return [math.nan if v is None else v for v in values]


def _policy_text(policy: dict) -> str:
    """The policy as the loader applies it: min_frames / max_frames as ``FramePolicy.frame_bounds`` (max_frames
    caps min_frames; neither with a fixed nframes), the recorded values otherwise."""
    from emoreason.video import FramePolicy

    shown = dict(policy)
    if shown.get("nframes") is not None:  # a fixed count: the bounds are not applied
        shown["min_frames"] = shown["max_frames"] = None
    elif shown.get("min_frames") is not None and shown.get("max_frames") is not None:
        shown["min_frames"], shown["max_frames"] = FramePolicy().updated(policy).frame_bounds()
    keys = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels", "factor",
            "videos_under")
    return ", ".join(f"{k}={shown[k]}" for k in keys if shown.get(k) is not None)


def protocol_line(protocol: dict | None, folds_present: list | None = None) -> str:
    """Benchmark, folds, split, classes, frame-level windows, frame policy, prompt hash, model identity."""
    if not protocol:
        return "**Protocol:** unknown (a run from an older emoreason: not comparable)"
    parts = [f"benchmark `{protocol['benchmark']}` (protocol {protocol.get('protocol_hash')})"]
    folds = protocol.get("folds")
    if folds and folds_present is not None:
        parts.append(f"{len(folds_present)} of {len(folds)} folds scored ({', '.join(map(str, folds_present))}; "
                     "one model per fold"
                     + (", zero-shot: one model trained on none of them" if protocol.get("zero_shot") else "") + ")")
    elif folds:
        parts.append(f"fold {protocol.get('fold')} of {len(folds)}" +
                     (" (zero-shot model)" if protocol.get("zero_shot") else " (this fold's model)"))
    parts.append(f"split {protocol.get('split')}")
    classes = protocol.get("classes")
    if classes:
        parts.append(f"{len(classes)} classes ({', '.join(classes)})"
                     + ("" if protocol.get("prompt_labels", True) else ", open vocabulary prompt"))
    if protocol.get("au_set"):
        parts.append(f"AU set {', '.join(map(str, protocol['au_set']))}")
    windows = protocol.get("windows")
    if windows:
        parts.append(f"frame-level: windows of {windows['frames']} frames, {windows['step']} source frame(s) apart, "
                     f"centred on every {'' if windows['stride'] == 1 else _ordinal(windows['stride']) + ' '}"
                     f"annotated frame (stride {windows['stride']}; target = AUs at the centre frame)")
    if protocol.get("limit"):
        parts.append(f"first {protocol['limit']} samples only")
    if protocol.get("frame_policy"):
        parts.append(f"frame policy {_policy_text(protocol['frame_policy'])}")
    parts.append(f"prompt {protocol.get('prompt_hash')}")
    if protocol.get("model_description"):
        parts.append(f"model {protocol['model_description']}")
    if protocol.get("audio"):
        parts.append(_audio_text(protocol["audio"]))
    return "**Protocol:** " + " · ".join(parts)


def _audio_text(audio: dict) -> str:
    """What the samples of an audio model's run heard (``emoreason.evaluation.runner.audio_counts``)."""
    return (f"audio {audio['modalities']}: {audio['heard_track']} of {audio['samples']} samples heard their track "
            f"({_from_original(audio)}{audio['fitted_to_video']} fitted to the video's length, "
            f"{audio['truncated']} cut to the feature extractor's window), {audio['no_track_heard_silence']} had no "
            f"track and heard silence, "
            f"{audio['not_heard']} heard nothing")


def _from_original(audio: dict) -> str:
    count = audio.get("from_original_video")  # absent from runs before it was counted
    return f"{count} from the clip's original video, " if count else ""


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def write_report(metrics: dict, out: Path) -> None:
    _dump(metrics, out / "metrics.json")
    title = f"# {metrics['benchmark']}" + (f" (fold {metrics['fold']})" if metrics.get("fold") is not None else "")
    lines = [title, "", protocol_line(metrics.get("protocol")), "",
             f"backend: `{metrics.get('backend')}` — {metrics['n']} samples, "
             f"{metrics['generation_errors']} generation errors, {len(metrics.get('load_problems') or [])} "
             f"dataset problems (listed in metrics.json)", ""]
    lines += _recognition_section(metrics.get("recognition"), "recognition" in metrics)
    if "au" in metrics:
        au = metrics["au"]
        lines += ["## AU detection (frame-level F1)" if (metrics.get("protocol") or {}).get("windows")
                  else "## AU detection (F1)", ""]
        if au is None:
            lines += ["– (no sample has AU ground truth)", ""]
        else:
            lines += [f"mean F1 {_pct(au['mean_f1'])} over {au['aus_measured']} of {au['aus']} AUs, {au['n']} samples",
                      "", "| AU | F1 | positives |", "|---|---|---|"]
            lines += [f"| AU{a} | {_pct(f)} | {au['support'].get(a, au['support'].get(str(a), '–'))} |"
                      for a, f in au["per_au_f1"].items()] + [""]
    if "va" in metrics:
        va = metrics["va"]
        lines += ["## Valence / arousal", ""]
        lines += ["– (no sample has valence/arousal ground truth)", ""] if va is None else [
            "| | CCC | RMSE |", "|---|---|---|",
            f"| valence | {_num(va['valence_ccc'])} | {_num(va['valence_rmse'])} |",
            f"| arousal | {_num(va['arousal_ccc'])} | {_num(va['arousal_rmse'])} |", ""]
    if metrics.get("rationale"):
        r = metrics["rationale"]
        lines += ["## Rationale quality", "", "AU grounding and hallucination are scored on samples with AU ground "
                  f"truth ({r.get('au_grounded_samples', 0)} of {r['n']}); – = not measured.", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_num(v) if v is None or isinstance(v, float) else v} |" for k, v in r.items()] + [""]
    if metrics.get("judge"):
        j = metrics["judge"]
        lines += ["## LLM judge (EMER-style overlap)", "", f"clue overlap {_pct(j['clue_overlap'])}, label overlap "
                  f"{_pct(j['label_overlap'])} over {j['judged']} samples ({j['judge_failures']} unjudged)", ""]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plots(metrics.get("recognition"), (metrics.get("au") or {}).get("per_au_f1"), metrics["benchmark"], out)


def _recognition_section(rec: dict | None, asked: bool) -> list[str]:
    if not asked:
        return []
    if rec is None:
        return ["## Recognition", "", "– (no sample has an emotion label)", ""]
    lines = ["## Recognition", ""]
    if rec.get("unlabelled"):
        lines += [f"scored on {rec['n']} of {rec['n'] + rec['unlabelled']} samples ({rec['unlabelled']} without an "
                  "emotion label)", ""]
    lines += ["| WAR | UAR | macro F1 | weighted F1 | unparseable |", "|---|---|---|---|---|",
             f"| {_pct(rec['war'])} | {_pct(rec['uar'])} | {_pct(rec['macro_f1'])} | {_pct(rec['weighted_f1'])} | "
             f"{rec['unparseable']} |", "", "| class | recall | F1 | support |", "|---|---|---|---|"]
    lines += [f"| {c} | {_pct(rec['per_class_recall'][c])} | {_pct(rec['per_class_f1'][c])} | {rec['support'][c]} |"
              for c in rec["labels"]]
    return [*lines, "", "![confusion matrix](confusion_matrix.png)", ""]


def _plots(rec: dict | None, per_au: dict | None, benchmark: str, out: Path, subtitle: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rec:
        labels, matrix = rec["labels"], rec["confusion_matrix"]
        fig, ax = plt.subplots(figsize=(1 + 0.7 * len(labels), 1 + 0.6 * len(labels)))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{benchmark}: confusion{subtitle} (WAR {_pct(rec.get('war'))}, UAR {_pct(rec.get('uar'))})")
        fig.tight_layout()
        fig.savefig(out / "confusion_matrix.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(labels), 3.5))
        ax.bar(labels, _bar_heights(rec["per_class_recall"][c] for c in labels), color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("recall")
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(out / "per_class_recall.png", dpi=110)
        plt.close(fig)
    if per_au:
        fig, ax = plt.subplots(figsize=(1 + 0.5 * len(per_au), 3.5))
        ax.bar([f"AU{a}" for a in per_au], _bar_heights(per_au.values()), color="tab:green")
        ax.set_ylim(0, 1)
        ax.set_ylabel("F1")
        fig.tight_layout()
        fig.savefig(out / "per_au_f1.png", dpi=110)
        plt.close(fig)


# --- cross-validation summary ---------------------------------------------------------------------------------

FOLD_METRICS = {  # headline metrics gathered per fold: label → path in a fold's metrics.json
    "WAR": ("recognition", "war"), "UAR": ("recognition", "uar"), "macro F1": ("recognition", "macro_f1"),
    "weighted F1": ("recognition", "weighted_f1"), "AU mean F1": ("au", "mean_f1"),
    "valence CCC": ("va", "valence_ccc"), "arousal CCC": ("va", "arousal_ccc"),
    "format valid": ("rationale", "format_valid"), "AU grounding F1": ("rationale", "au_f1"),
    "hallucination rate": ("rationale", "hallucination_rate"),
    "answer supported by AUs": ("rationale", "answer_supported_by_aus"),
}


def _get(metrics: dict, path: tuple[str, str]) -> float | None:
    group = metrics.get(path[0])
    return group.get(path[1]) if isinstance(group, dict) else None


def fold_runs(spec, out: Path) -> dict[int, dict]:
    """{fold: its metrics.json} for the folds of ``spec`` scored in ``out``."""
    runs = {}
    for fold in spec.folds:
        path = out / f"fold{fold}" / "metrics.json"
        if path.is_file():
            runs[fold] = json.loads(path.read_text())
    return runs


# what every fold of one cross-validation summary must share (besides the benchmark protocol itself)
FOLD_INVARIANTS = ("protocol_hash", "prompt_hash", "frame_policy", "limit", "zero_shot")


def check_fold_models(spec, models: dict[int, tuple[dict, bool]]) -> None:
    """One model per fold: two folds scored with the same model (weights fingerprint, or endpoint + served model
    + weights; a copied directory is the same model) are refused unless both were declared zero-shot."""
    folds_of: dict[str, list[int]] = {}
    for fold, (identity, zero_shot) in sorted(models.items()):
        if identity and not zero_shot:
            folds_of.setdefault(json.dumps(model_key(identity), sort_keys=True), []).append(fold)
    for folds in folds_of.values():
        if len(folds) > 1:
            raise FoldProtocolError(
                f"{spec.name}: folds {', '.join(map(str, folds))} were scored with the same model "
                f"({describe_model(models[folds[0]][0])}): fold k's "
                f"training set holds the test samples of the other folds, so that mean ± std would be scored "
                f"mostly on training data. Score each fold with the model trained on it, or --zero-shot (on every "
                f"fold) for a model trained on none of {spec.name}'s data.")


def write_fold_summary(spec, out: Path) -> dict:
    """OUT/metrics.json and summary.md over the folds scored so far in OUT/fold<k>/: each fold's figures, and
    mean ± std over folds once every fold of the protocol is there (a partial mean is not the protocol). Folds
    scored under different protocols, prompts, frame policies, sample limits or zero-shot declarations, or two
    folds scored with one model, are refused: their mean would not be the protocol's."""
    runs = fold_runs(spec, out)
    if not runs:
        raise FileNotFoundError(f"no fold results in {out} (expected fold<k>/metrics.json)")
    protocols = {k: m.get("protocol") or {} for k, m in runs.items()}
    for field in FOLD_INVARIANTS:
        values = {k: json.dumps(p.get(field), sort_keys=True, default=str) for k, p in protocols.items()}
        if len(set(values.values())) > 1:
            detail = ", ".join(f"fold {k}: {v}" for k, v in sorted(values.items()))
            raise ProtocolMismatchError(f"{out}: the folds were scored with different {field} ({detail}); re-run "
                                        f"the odd fold(s) into this directory with --overwrite")
    if spec.protocol_hash() not in {p.get("protocol_hash") for p in protocols.values()}:
        raise ProtocolMismatchError(f"{out}: the folds were scored under another protocol than {spec.name}'s "
                                    f"({next(iter(protocols.values())).get('protocol_hash')} ≠ "
                                    f"{spec.protocol_hash()}); re-run them into this directory with --overwrite")
    check_fold_models(spec, {k: (p.get("model") or {}, bool(p.get("zero_shot"))) for k, p in protocols.items()})
    present = sorted(runs)
    complete = present == sorted(spec.folds)
    first = runs[present[0]]["protocol"]
    # per-fold counts (audio) stay in each fold's metrics.json
    protocol = {k: v for k, v in first.items() if k not in ("fold", "model", "model_description", "audio")}
    per_fold = {str(k): {**{label: _get(m, path) for label, path in FOLD_METRICS.items()}, "n": m["n"],
                         "generation_errors": m["generation_errors"], "model": m["protocol"].get("model_description")}
                for k, m in runs.items()}
    measured = [label for label in FOLD_METRICS if any(per_fold[str(k)][label] is not None for k in present)]
    summary: dict = {"benchmark": spec.name, "protocol": protocol, "folds_expected": spec.folds,
                     "folds_present": present, "complete": complete, "per_fold": per_fold,
                     "mean_std": {label: fold_summary([per_fold[str(k)][label] for k in present])
                                  for label in measured} if complete else None}
    recs = {k: m["recognition"] for k, m in runs.items() if m.get("recognition")} if complete else {}
    if recs:
        classes = [c for c in (protocol.get("classes") or sorted({c for r in recs.values() for c in r["labels"]}))
                   if any(c in r["labels"] for r in recs.values())]
        summary["per_class_recall"] = {c: fold_summary([r["per_class_recall"].get(c) for r in recs.values()])
                                       for c in classes}
        total = [[0] * len(classes) for _ in classes]
        for r in recs.values():
            index = {c: i for i, c in enumerate(r["labels"])}
            for i, a in enumerate(classes):
                for j, b in enumerate(classes):
                    if a in index and b in index:
                        total[i][j] += r["confusion_matrix"][index[a]][index[b]]
        summary["confusion_matrix"] = {"labels": classes, "matrix": total, "note": "summed over the folds present"}
    aus = {k: m["au"] for k, m in runs.items() if m.get("au")} if complete else {}
    if aus:
        names = list(next(iter(aus.values()))["per_au_f1"])
        summary["per_au_f1"] = {a: fold_summary([r["per_au_f1"].get(a) for r in aus.values()]) for a in names}
    _dump(summary, out / "metrics.json")
    _write_fold_markdown(summary, out)
    return summary


def _write_fold_markdown(summary: dict, out: Path) -> None:
    present, expected = summary["folds_present"], summary["folds_expected"]
    lines = [f"# {summary['benchmark']} — {len(expected)}-fold cross-validation", "",
             protocol_line(summary["protocol"], present), ""]
    if not summary["complete"]:
        lines += [f"**Partial:** folds {', '.join(map(str, present))} of {', '.join(map(str, expected))} scored. "
                  "No mean is reported until every fold is (a mean over some folds is not the protocol).", ""]
    labels = [label for label in FOLD_METRICS
              if any(summary["per_fold"][str(k)][label] is not None for k in present)]
    if summary["complete"]:
        lines += ["## Mean ± std over folds", "", "| metric | mean ± std | folds measured |", "|---|---|---|"]
        lines += [f"| {label} | {_mean_std(summary['mean_std'][label])} | {summary['mean_std'][label]['folds']} |"
                  for label in labels] + [""]
    lines += ["## Per fold", "", "| fold | " + " | ".join(labels) + " | samples | model |",
              "|---|" + "---|" * (len(labels) + 2)]
    for k in present:
        row = summary["per_fold"][str(k)]
        lines.append(f"| {k} | " + " | ".join(_pct(row[label]) for label in labels)
                     + f" | {row['n']} | {row['model']} |")
    lines.append("")
    if not summary["complete"]:  # no pooled tables or plots either: they would mix a partial protocol
        for stale in ("confusion_matrix.png", "per_class_recall.png", "per_au_f1.png"):
            (out / stale).unlink(missing_ok=True)
    if summary.get("per_class_recall"):
        lines += ["## Per-class recall (mean ± std over folds)", "", "| class | recall |", "|---|---|"]
        lines += [f"| {c} | {_mean_std(v)} |" for c, v in summary["per_class_recall"].items()]
        lines += ["", "![confusion matrix, summed over folds](confusion_matrix.png)", ""]
    if summary.get("per_au_f1"):
        lines += ["## Per-AU F1 (mean ± std over folds)", "", "| AU | F1 |", "|---|---|"]
        lines += [f"| AU{a} | {_mean_std(v)} |" for a, v in summary["per_au_f1"].items()] + [""]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    cm = summary.get("confusion_matrix")
    if cm:
        labels_cm, matrix = cm["labels"], cm["matrix"]
        recall = {c: (row[i] / sum(row) if sum(row) else None) for i, (c, row) in enumerate(zip(labels_cm, matrix,
                                                                                                 strict=True))}
        rec = {"labels": labels_cm, "confusion_matrix": matrix, "per_class_recall": recall,
               "war": sum(matrix[i][i] for i in range(len(matrix))) / max(1, sum(map(sum, matrix))),
               "uar": mean_of(recall.values())}
        per_au = {a: v["mean"] for a, v in (summary.get("per_au_f1") or {}).items()}
        _plots(rec, per_au, summary["benchmark"], out, subtitle=f", folds {','.join(map(str, present))} pooled")


# --- comparing runs -------------------------------------------------------------------------------------------

def _headline(metrics: dict) -> dict[str, float | None]:
    if "per_fold" in metrics:  # a cross-validation summary: the means (None while folds are missing)
        means = metrics.get("mean_std") or {}
        return {label: (means.get(label) or {}).get("mean") for label in FOLD_METRICS}
    return {label: _get(metrics, path) for label, path in FOLD_METRICS.items()}


def _comparable(metrics: dict) -> dict | None:
    """The parts of a run's protocol that must agree for two runs' numbers to be compared."""
    protocol = metrics.get("protocol")
    if not protocol:
        return None
    keys = ("protocol_hash", "prompt_hash", "frame_policy", "fold", "limit")
    out = {k: protocol.get(k) for k in keys}
    out["folds_present"] = metrics.get("folds_present")
    return out


def compare(run_dirs: list[str], allow_protocol_mismatch: bool = False) -> str:
    """Markdown table of headline metrics, one column per run. Runs scored under different protocols (benchmark
    spec, fold, prompt, frame policy, sample limit) are refused unless ``allow_protocol_mismatch``."""
    runs = []
    for d in run_dirs:
        path = Path(d) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (not an `emoreason eval` run directory)")
        metrics = json.loads(path.read_text())
        runs.append((Path(d).name, metrics, _comparable(metrics)))
    reference = runs[0][2]
    differing = [(name, c) for name, _, c in runs[1:] if c != reference or c is None]
    notes = []
    if differing or reference is None:
        detail = "; ".join(
            f"{name}: " + (", ".join(f"{k} {reference.get(k) if reference else None!r} vs {c.get(k)!r}"
                                     for k in (c or {}) if reference is None or reference.get(k) != c.get(k))
                           if c else "no protocol recorded")
            for name, c in (differing or [(runs[0][0], None)]))
        if not allow_protocol_mismatch:
            raise ProtocolMismatchError(f"these runs were scored under different protocols, so their numbers are "
                                        f"not comparable ({detail}). Pass --allow-protocol-mismatch to compare "
                                        f"anyway.")
        notes.append(f"> ⚠ protocols differ ({detail}): the numbers are not comparable.")
    heads = [(name, _headline(m)) for name, m, _ in runs]
    keys = [k for k in heads[0][1] if any(h[k] is not None for _, h in heads)]
    lines = ["| metric | " + " | ".join(name for name, _ in heads) + " |", "|---|" + "---|" * len(heads)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_pct(h[key]) for _, h in heads) + " |")
    return "\n".join([*notes, *lines])
