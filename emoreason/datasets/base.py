"""Adapter registry, the RecordSet/Problem types, and helpers shared by adapters."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from emoreason.records import SampleRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    kind: str  # missing_media | unknown_label | malformed_row | duplicate_id | missing_file | unreadable
    where: str  # file[:line]
    reason: str
    sample_id: str | None = None

    def __str__(self) -> str:
        sid = f" [{self.sample_id}]" if self.sample_id else ""
        return f"{self.kind}: {self.where}{sid}: {self.reason}"


class RecordSet(list):
    """A list of SampleRecord with the problems met while loading."""

    def __init__(self, records: Iterable[SampleRecord] = (), problems: Iterable[Problem] = ()):
        super().__init__(records)
        self.problems: list[Problem] = list(problems)


class Collector:
    """What an adapter fills: records, problems; checks media and duplicate ids on the way."""

    def __init__(self, dataset: str, check_media: bool = True):
        self.dataset, self.check_media = dataset, check_media
        self.records: list[SampleRecord] = []
        self.problems: list[Problem] = []
        self._ids: set[str] = set()

    def problem(self, kind: str, where: str | Path, reason: str, sample_id: str | None = None) -> None:
        self.problems.append(Problem(kind, str(where), reason, sample_id))

    def add(self, record: SampleRecord, where: str | Path) -> None:
        if record.id in self._ids:
            self.problem("duplicate_id", where, "id seen before; later row ignored", record.id)
            return
        if self.check_media:
            paths = record.media["path"] if isinstance(record.media["path"], list) else [record.media["path"]]
            missing = [p for p in paths if not Path(p).exists()]
            if missing:
                self.problem("missing_media", where, f"media not found: {missing[0]}", record.id)
                return
            if record.media["type"] == "frames" and Path(paths[0]).is_dir() and not any(Path(paths[0]).iterdir()):
                self.problem("missing_media", where, f"frame folder is empty: {paths[0]}", record.id)
                return
        self._ids.add(record.id)
        self.records.append(record)

    def result(self) -> RecordSet:
        return RecordSet(self.records, self.problems)


AdapterFn = Callable[..., None]  # fn(collector, root: Path, split, fold, **options)
FORMATS: dict[str, AdapterFn] = {}


def adapter(name: str) -> Callable[[AdapterFn], AdapterFn]:
    def wrap(fn: AdapterFn) -> AdapterFn:
        FORMATS[name] = fn
        return fn
    return wrap


def load_records(format: str, root: str | Path, split: str | None = None, fold: int | None = None,
                 check_media: bool = True, **options) -> RecordSet:
    """Read a benchmark as distributed into sample records (see ``FORMATS`` for the names)."""
    from emoreason.datasets import adapters  # noqa: F401  (registers the adapters)

    if format not in FORMATS:
        raise KeyError(f"unknown dataset format {format!r}; known: {', '.join(sorted(FORMATS))}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    collector = Collector(format, check_media=check_media)
    FORMATS[format](collector, root, split=split, fold=fold, **options)
    result = collector.result()
    if result.problems:
        log.warning("%s: %d records, %d problems (first: %s)", format, len(result), len(result.problems),
                    result.problems[0])
    return result


def read_table(path: Path, collector: Collector, delimiter: str | None = None,
               header: bool = True) -> Iterator[tuple[int, dict[str, str] | list[str]]]:
    """Rows of a csv/txt file with 1-based line numbers; a missing file becomes a problem, not a crash."""
    if not path.is_file():
        collector.problem("missing_file", path, "annotation file not found")
        return
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        text = handle.read()
    lines = text.splitlines()
    if delimiter is None:
        sample = "\n".join(lines[:5])
        delimiter = "," if "," in sample else "\t" if "\t" in sample else " "
    if delimiter == " ":
        rows = [line.split() for line in lines]
    else:
        rows = list(csv.reader(lines, delimiter=delimiter, skipinitialspace=True))
    if header and rows:
        names = [c.strip() for c in rows[0]]
        for number, row in enumerate(rows[1:], start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(names):
                collector.problem("malformed_row", f"{path}:{number}",
                                  f"expected {len(names)} columns, found {len(row)}")
                continue
            yield number, {n: c.strip() for n, c in zip(names, row, strict=True)}
    else:
        for number, row in enumerate(rows, start=1):
            if row and any(c.strip() for c in row):
                yield number, [c.strip() for c in row]
