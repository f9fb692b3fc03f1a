"""Per-run reports: metrics.json, a Markdown summary, PNG plots; and side-by-side comparison of runs."""

from __future__ import annotations

import json
from pathlib import Path


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def write_report(metrics: dict, out: Path) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    lines = [f"# {metrics['benchmark']}" + (f" (fold {metrics['fold']})" if metrics.get("fold") else ""), "",
             f"backend: `{metrics.get('backend')}` — {metrics['n']} samples, "
             f"{metrics['generation_errors']} generation errors", ""]
    rec = metrics.get("recognition")
    if rec:
        lines += ["## Recognition", "", "| WAR | UAR | macro F1 | weighted F1 | unparseable |", "|---|---|---|---|---|",
                  f"| {_pct(rec['war'])} | {_pct(rec['uar'])} | {_pct(rec['macro_f1'])} | {_pct(rec['weighted_f1'])} | "
                  f"{rec['unparseable']} |", "", "| class | recall | F1 | support |", "|---|---|---|---|"]
        lines += [f"| {c} | {_pct(rec['per_class_recall'][c])} | {_pct(rec['per_class_f1'][c])} | {rec['support'][c]} |"
                  for c in rec["labels"]]
        lines.append("")
    if metrics.get("au"):
        au = metrics["au"]
        lines += ["## AU detection", "", f"mean F1 {_pct(au['mean_f1'])}", "", "| AU | F1 |", "|---|---|"]
        lines += [f"| AU{a} | {_pct(f)} |" for a, f in au["per_au_f1"].items()] + [""]
    if metrics.get("va"):
        va = metrics["va"]
        lines += ["## Valence / arousal", "", "| | CCC | RMSE |", "|---|---|---|",
                  f"| valence | {va['valence_ccc']:.3f} | {va['valence_rmse']:.3f} |",
                  f"| arousal | {va['arousal_ccc']:.3f} | {va['arousal_rmse']:.3f} |", ""]
    if metrics.get("rationale"):
        r = metrics["rationale"]
        lines += ["## Rationale quality", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in r.items()] + [""]
    if metrics.get("judge"):
        j = metrics["judge"]
        lines += ["## LLM judge (EMER-style overlap)", "", f"clue overlap {_pct(j['clue_overlap'])}, label overlap "
                  f"{_pct(j['label_overlap'])} over {j['judged']} samples ({j['judge_failures']} unjudged)", ""]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plots(metrics, out)


def _plots(metrics: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = metrics.get("recognition")
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
        ax.set_title(f"{metrics['benchmark']}: confusion (WAR {_pct(rec['war'])}, UAR {_pct(rec['uar'])})")
        fig.tight_layout()
        fig.savefig(out / "confusion_matrix.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(labels), 3.5))
        ax.bar(labels, [rec["per_class_recall"][c] for c in labels], color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("recall")
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(out / "per_class_recall.png", dpi=110)
        plt.close(fig)
    if metrics.get("au"):
        per = metrics["au"]["per_au_f1"]
        fig, ax = plt.subplots(figsize=(1 + 0.5 * len(per), 3.5))
        ax.bar([f"AU{a}" for a in per], list(per.values()), color="tab:green")
        ax.set_ylim(0, 1)
        ax.set_ylabel("F1")
        fig.tight_layout()
        fig.savefig(out / "per_au_f1.png", dpi=110)
        plt.close(fig)


def write_fold_summary(summary: dict, out: Path) -> None:
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = [f"# {summary['benchmark']} — {len(summary['folds'])} folds", "", "| metric | mean | std |", "|---|---|---|"]
    for key in ("war", "uar", "macro_f1"):
        if key in summary:
            lines.append(f"| {key.upper()} | {_pct(summary[key]['mean'])} | {_pct(summary[key]['std'])} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _headline(metrics: dict) -> dict[str, float | None]:
    rec = metrics.get("recognition", {})
    rat = metrics.get("rationale", {})
    out = {"WAR": rec.get("war", metrics.get("war", {}).get("mean") if isinstance(metrics.get("war"), dict) else None),
           "UAR": rec.get("uar", metrics.get("uar", {}).get("mean") if isinstance(metrics.get("uar"), dict) else None),
           "macro F1": rec.get("macro_f1"), "AU-F1 (detection)": metrics.get("au", {}).get("mean_f1"),
           "format valid": rat.get("format_valid"), "AU grounding F1": rat.get("au_f1"),
           "hallucination rate": rat.get("hallucination_rate"), "answer supported by AUs":
           rat.get("answer_supported_by_aus")}
    return out


def compare(run_dirs: list[str]) -> str:
    """Markdown table of headline metrics, one column per run."""
    runs = []
    for d in run_dirs:
        path = Path(d) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (not an `emoreason eval` run directory)")
        runs.append((Path(d).name, _headline(json.loads(path.read_text()))))
    keys = list(runs[0][1])
    lines = ["| metric | " + " | ".join(name for name, _ in runs) + " |", "|---|" + "---|" * len(runs)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_pct(m[key]) for _, m in runs) + " |")
    return "\n".join(lines)
