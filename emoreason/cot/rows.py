"""Choosing training rows from ``synth-cot`` output: by task (``cot`` | ``au_perception`` | ``emotion``, for a
curriculum) and whether prototype rows — label-only clips whose rationale reasons from the label's expected
FACS cues, not from observed AUs — take part. Recipes decide: SFT leaves prototype rows out unless asked
(``prototype_rows: true``); GRPO keeps them (AU rewards give None there, the emotion reward still applies)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

log = logging.getLogger(__name__)


def select_rows(data, tasks: Sequence[str] | None = None, prototype_rows: bool = True, what: str = "training"):
    """The rows of an HF ``Dataset`` whose ``task`` is in ``tasks`` (None: all) and, unless ``prototype_rows``,
    whose ``au_source`` is not ``prototype``. Logs what was left out and why; data without those columns (older
    datasets) passes unchanged."""
    columns = set(data.column_names)
    wanted = set(tasks) if tasks is not None else None
    by_task = wanted is not None and "task" in columns
    by_source = not prototype_rows and "au_source" in columns
    if not (by_task or by_source):
        return data
    task_col = data["task"] if by_task else [None] * len(data)
    source_col = data["au_source"] if by_source else [None] * len(data)
    keep, dropped = [], Counter()
    for i, (task, source) in enumerate(zip(task_col, source_col, strict=True)):
        if by_task and task not in wanted:
            dropped[f"task:{task}"] += 1
        elif by_source and source == "prototype":
            dropped["prototype_row"] += 1
        else:
            keep.append(i)
    if dropped:
        log.info("%s rows: kept %d of %d; left out %s", what, len(keep), len(data), dict(dropped))
    return data.select(keep) if len(keep) < len(data) else data
