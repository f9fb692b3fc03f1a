"""Summaries of a loaded dataset: counts per split/fold and label, AU coverage, and every problem."""

from __future__ import annotations

from collections import Counter

from emoreason.datasets.base import RecordSet


def summarize(records: RecordSet) -> dict:
    by_split = Counter(f"{r.split or '-'}" + (f"/fold{r.fold}" if r.fold is not None else "") for r in records)
    labels = Counter(r.emotion or ("+".join(r.emotions) if r.emotions else "(none)") for r in records)
    au_coverage = Counter(a for r in records for a in r.aus)
    problems = Counter(p.kind for p in records.problems)
    return {
        "records": len(records),
        "splits": dict(sorted(by_split.items())),
        "labels": dict(labels.most_common()),
        "au_coverage": {f"AU{a}": n for a, n in sorted(au_coverage.items())},
        "with_valence_arousal": sum(r.valence is not None for r in records),
        "with_rationale": sum(bool(r.rationale) for r in records),
        "media_layouts": dict(Counter(r.media.get("layout") or r.media["type"] for r in records).most_common()),
        "problem_counts": dict(problems),
        "problems": [str(p) for p in records.problems],
    }


def render(summary: dict, name: str) -> str:
    lines = [f"{name}: {summary['records']} records"]
    lines.append("  splits: " + ", ".join(f"{k}={v}" for k, v in summary["splits"].items()))
    lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in summary["labels"].items()))
    if summary["au_coverage"]:
        lines.append("  AU coverage (records with AU): " + ", ".join(f"{k}={v}" for k, v in
                                                                     summary["au_coverage"].items()))
    lines.append(f"  with valence/arousal: {summary['with_valence_arousal']}, with rationale: "
                 f"{summary['with_rationale']}")
    lines.append("  media layouts: " + ", ".join(f"{k}={v}" for k, v in summary["media_layouts"].items()))
    if summary["problems"]:
        lines.append(f"  problems ({len(summary['problems'])}): " + ", ".join(
            f"{k}={v}" for k, v in summary["problem_counts"].items()))
        lines.extend(f"    - {p}" for p in summary["problems"])
    else:
        lines.append("  problems: none")
    return "\n".join(lines)
