"""Training rows: loading a split, finding each row's media, and checking every row before training.

Rows that cannot train — media that does not load, or a sequence longer than ``max_length`` once its vision
tokens are counted — are found *before* training, from the tokenized rows themselves, and removed from the
dataset; the run summary counts them per reason and names them. So no batch is ever short or empty, and nothing
is dropped uncounted. The check is split over the ranks (row i goes to rank i mod world) and over each rank's
dataloader workers, then gathered, so every rank removes the same rows and the counts cover the whole dataset.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.audio import LoadedAudio
from emoreason.audio.io import frames_on_clip_or_own
from emoreason.audio.modalities import with_modalities
from emoreason.video import FramePolicy, LoadedFrames, MediaError, load_frames

log = logging.getLogger(__name__)

OVERLONG, MEDIA_ERROR = "overlong", "media_error"
_IDS_KEPT_IN_SUMMARY = 200


class SampleMediaError(RuntimeError):
    """A row whose media cannot be loaded; names the sample and the file."""


def load_dataset_split(path: str, split: str, limit: int | None = None, config: str | None = None):
    """A split of a ``save_to_disk`` directory or a JSONL file (rows with a ``split`` column are filtered), or a
    dataset by name through ``datasets.load_dataset`` when no such path exists."""
    import datasets

    source = Path(path)
    if source.is_dir():
        data = datasets.load_from_disk(str(source))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise KeyError(f"{source} has no split {split!r} (has {', '.join(data)})")
            data = data[split]
    elif source.is_file():
        data = datasets.load_dataset("json", data_files=str(source), split="train")
        if "split" in data.column_names:
            data = data.filter(lambda row: row["split"] == split)
    else:
        try:
            data = datasets.load_dataset(path, config, split=split)
        except Exception as exc:
            raise FileNotFoundError(f"dataset {path} not found (no such directory or file, and loading it by name "
                                    f"failed: {type(exc).__name__}: {exc}); build it with `emoreason synth-cot`"
                                    ) from exc
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    return data


def row_media(example: dict) -> tuple[str | None, str | None]:
    """(kind, path) of a row's media: ``media_type`` + ``video``/``image`` (CoT rows) or ``media_path`` (GRPO)."""
    kind = example.get("media_type") or ("video" if example.get("video") else "image" if example.get("image")
                                         else None)
    path = example.get("media_path") or (example.get(kind) if kind else None)
    return (kind, path) if kind in ("video", "image") and path else (None, None)


def with_media(messages: list[dict], kind: str | None, path: str | None) -> list[dict]:
    """A copy of the messages with the media path set in their video/image parts."""
    messages = copy.deepcopy(list(messages))
    if kind and path:
        for message in messages:
            if isinstance(message.get("content"), list):
                for part in message["content"]:
                    if part.get("type") == kind:
                        part[kind] = path
    return messages


def load_row_media(example: dict, policy: FramePolicy) -> LoadedFrames | None:
    """The row's frames under the policy; SampleMediaError naming the sample and file when they do not load. A row
    heard with another file's track (``audio_path``: a face-crop clip's original video) is timed on that clip
    whatever the modalities, as evaluation's ``load_media`` times it (on the frames' own rate, with a warning, when
    that clip cannot be read)."""
    kind, path = row_media(example)
    if kind is None:
        return None
    try:
        frames = load_frames(path, policy)
    except MediaError as exc:
        raise SampleMediaError(f"sample {example.get('id', '?')}: {exc}") from exc
    return frames_on_clip_or_own(frames, example.get("audio_path"), example.get("id", "?"))


def load_row_heard(example: dict, frames: LoadedFrames | None, max_s: float | None = None,
                   modalities: str = "audio+video") -> tuple[LoadedFrames | None, LoadedAudio | None]:
    """The row's (frames, audio) as an audio model is shown them under ``modalities`` — evaluation's own switch
    (``emoreason.audio.modalities.with_modalities``): ``audio+video`` — the audio aligned with the sampled frames
    (None for a row without video or a clip without a track: it trains hearing silence); ``audio`` — the frames
    blanked (the face hidden), the track heard; ``video`` — no audio. The track is the row's ``audio_path`` where
    the CoT pipeline wrote one (a face-crop clip's original video), else the video's own. A length mismatch is
    fitted to the video with a warning naming the sample, audio past ``max_s`` (the model's window,
    ``audio_window_s``) is cut with a warning; a corrupt audio stream, or ``audio`` for a row with no track, is a
    SampleMediaError naming the sample and file."""
    if frames is None:
        if modalities == "audio":
            raise SampleMediaError(f"sample {example.get('id', '?')}: no video to hear (modalities: audio)")
        return None, None
    try:
        frames, audio = with_modalities(frames, modalities, max_s, example.get("audio_path"))
    except MediaError as exc:
        raise SampleMediaError(f"sample {example.get('id', '?')}: {exc}") from exc
    if audio is not None and "mismatch" in audio.meta:
        log.warning("sample %s: %s; fitted to the video", example.get("id", "?"), audio.meta["mismatch"])
    return frames, audio


def audio_notes(frames: LoadedFrames | None, audio: LoadedAudio | None) -> tuple[str, ...]:
    """What the row check counts about a row's audio for an audio model: ``audio_silence`` (a video without a
    track, which hears silence), ``audio_fitted`` (its length fitted to the video), ``audio_truncated`` (cut to the
    feature extractor's window)."""
    if frames is None or frames.kind == "image":
        return ()
    if audio is None:
        return ("audio_silence",)
    return tuple(note for note, key in (("audio_fitted", "mismatch"), ("audio_truncated", "truncated_to_s"))
                 if key in audio.meta)


class RowLength(int):
    """A row's token count, carrying what the row check should count about it (``audio_notes``)."""

    notes: tuple[str, ...] = ()

    def __new__(cls, value: int, notes: tuple[str, ...] = ()):
        length = super().__new__(cls, value)
        length.notes = tuple(notes)
        return length

    def __reduce__(self):  # through dataloader workers and the ranks' gather
        return RowLength, (int(self), self.notes)


@dataclass
class RowCheck:
    """Which rows train, and which were removed for what reason (sample ids)."""

    rows: int
    kept: list[int]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    max_tokens: int = 0
    measured_here: int = 0  # rows this process measured (its share; 0 when read from the cache)
    workers_here: int = 0  # dataloader workers that measured them (0: the main process)
    notes: dict[str, list[str]] = field(default_factory=dict)  # kept rows counted by note (RowLength.notes)

    def summary(self) -> dict:
        out = {"rows": self.rows, "kept": len(self.kept), "max_tokens": self.max_tokens,
               "dropped": {reason: len(ids) for reason, ids in sorted(self.dropped.items())},
               "dropped_ids": {reason: ids[:_IDS_KEPT_IN_SUMMARY] for reason, ids in sorted(self.dropped.items())}}
        if self.notes:
            out["notes"] = {note: len(ids) for note, ids in sorted(self.notes.items())}
            out["noted_ids"] = {note: ids[:_IDS_KEPT_IN_SUMMARY] for note, ids in sorted(self.notes.items())}
        return out


def _one(item):
    return item


class _Measured:
    """One rank's share of the rows, measured by the dataloader workers."""

    def __init__(self, dataset, indices: list[int], measure: Callable[[dict], int]):
        self.dataset, self.indices, self.measure = dataset, indices, measure

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, str, int | None, str | None, int]:
        from torch.utils.data import get_worker_info

        index = self.indices[i]
        example = self.dataset[index]
        worker = get_worker_info()
        worker_id = -1 if worker is None else worker.id
        try:
            return index, str(example.get("id", index)), self.measure(example), None, worker_id
        except SampleMediaError as exc:
            return index, str(example.get("id", index)), None, str(exc), worker_id


def check_rows(dataset, measure: Callable[[dict], int], max_length: int | None, *, workers: int = 0,
               cache_dir: str | Path | None = None, cache_key: str = "", what: str = "train") -> RowCheck:
    """Measure every row (``measure`` returns its token count or raises SampleMediaError) across ranks and
    dataloader workers; rows with media errors or more than ``max_length`` tokens are dropped. With
    ``cache_dir``, the result is kept in ``cache_dir/row_check_<what>.json`` under a key of the dataset's
    fingerprint and ``cache_key`` (a resumed run does not measure again)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader

    state = PartialState()
    key = hashlib.sha256(json.dumps([getattr(dataset, "_fingerprint", None), len(dataset), max_length, cache_key])
                         .encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"row_check_{what}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return RowCheck(stored["rows"], stored["kept"], stored["dropped"], stored["max_tokens"],
                            notes=stored.get("notes", {}))
    start = time.perf_counter()
    indices = list(range(state.process_index, len(dataset), state.num_processes))
    loader = DataLoader(_Measured(dataset, indices, measure), batch_size=None, num_workers=workers,
                        collate_fn=_one)
    local = list(loader)
    used_workers = {item[-1] for item in local} - {-1}
    results = sorted(gather_object(local) if state.num_processes > 1 else local)
    kept, dropped, notes, longest = [], {}, {}, 0
    for index, sample_id, length, problem, _ in results:
        if problem is not None:
            dropped.setdefault(MEDIA_ERROR, []).append(sample_id)
            log.warning("dropping %s: %s", sample_id, problem)
            continue
        longest = max(longest, length)
        if max_length is not None and length > max_length:
            dropped.setdefault(OVERLONG, []).append(sample_id)
            continue
        kept.append(index)
        for note in getattr(length, "notes", ()):
            notes.setdefault(note, []).append(sample_id)
    check = RowCheck(len(dataset), kept, dropped, longest, measured_here=len(local),
                     workers_here=len(used_workers), notes=notes)
    if len({r[0] for r in results}) != len(dataset):
        raise RuntimeError(f"checked {len(results)} of {len(dataset)} {what} rows: some were lost in gathering")
    if dropped and state.is_main_process:
        log.warning("%s rows: %d of %d kept; dropped %s", what, len(kept), len(dataset),
                    ", ".join(f"{len(v)} {k}" for k, v in sorted(dropped.items())))
    log.info("checked %d %s rows in %.1fs (%d ranks, %d workers each)", len(dataset), what,
             time.perf_counter() - start, state.num_processes, workers)
    if cache is not None and state.is_main_process:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "rows": check.rows, "kept": check.kept, "dropped": check.dropped,
                                     "max_tokens": check.max_tokens, "notes": check.notes}))
    return check
