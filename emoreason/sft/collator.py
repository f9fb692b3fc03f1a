"""Video collator for TRL's SFTTrainer (which has none: trl#5373).

Each row (from ``emoreason synth-cot``): ``prompt`` + ``completion`` messages, ``media_type`` and a ``video`` /
``image`` path. Frames come from ``emoreason.video`` under the recipe's frame policy and go to the family's
processor as real video tensors (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``), so the
model keeps its temporal position encoding. For a processor that takes audio (Qwen2.5-Omni) each video's audio
track goes with it (``input_features``, ``feature_attention_mask``, ``video_second_per_grid``, interleaved with the
video tokens: ``use_audio_in_video``), and the audio tokens count towards ``max_length``. Labels cover assistant tokens only. Sequences are never truncated:
rows longer than ``max_length`` are removed before training (``emoreason.training.data.check_rows``, counted in
the run summary), and a batch that still holds one is an error naming it, so vision tokens are never cut.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from emoreason.audio import LoadedAudio, audio_window_s
from emoreason.audio.modalities import model_modalities
from emoreason.inference import encode_batch
from emoreason.training.data import (
    RowLength,
    SampleMediaError,
    audio_notes,
    load_row_heard,
    load_row_media,
    row_media,
    with_media,
)
from emoreason.video import FramePolicy, LoadedFrames

log = logging.getLogger(__name__)
IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "OverlongSampleError", "SampleMediaError", "VideoSFTCollator", "assistant_labels"]


class OverlongSampleError(RuntimeError):
    """A row longer than ``max_length`` (it would have to be cut, vision tokens included)."""


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels equal to ``input_ids`` on assistant turns (content and the closing ``<|im_end|>``), else −100.

    Works on the rendered ChatML of the Qwen families: a turn starts at ``<|im_start|>assistant\\n``."""
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        i = 0
        while i < len(ids):
            if ids[i] == im_start and ids[i + 1:i + 1 + len(header)] == header:
                start = i + 1 + len(header)
                end = start
                while end < len(ids) and ids[end] != im_end:
                    end += 1
                stop = min(end + 1, len(ids))
                labels[row, start:stop] = input_ids[row, start:stop]
                i = stop
            else:
                i += 1
    return labels


class VideoSFTCollator:
    """``modalities`` (an audio model's): ``audio+video`` (its default), ``audio`` — the face hidden behind blank
    frames, as ``emoreason eval --modalities audio`` shows it — or ``video`` (no audio); audio of a model that
    hears none is a ValueError (``emoreason.audio.modalities.model_modalities``)."""

    def __init__(self, processor, policy: FramePolicy, max_length: int | None = None, modalities: str | None = None):
        self.processor, self.policy, self.max_length = processor, policy, max_length
        self.modalities = model_modalities(processor, modalities)
        self.audio = self.modalities != "video"
        self.audio_window_s = audio_window_s(processor) if self.audio else None

    def _load(self, example: dict) -> tuple[list[dict], LoadedFrames | None, LoadedAudio | None]:
        kind, path = row_media(example)
        messages = with_media(list(example["prompt"]) + list(example["completion"]), kind, path)
        frames = load_row_media(example, self.policy)
        if not self.audio:
            return messages, frames, None
        return messages, *load_row_heard(example, frames, self.audio_window_s, self.modalities)

    def _encode(self, loaded: Sequence[tuple[list[dict], LoadedFrames | None, LoadedAudio | None]]):
        return encode_batch(self.processor, [m for m, _, _ in loaded], [f for _, f, _ in loaded],
                            add_generation_prompt=False, padding_side="right",
                            audio=[a for _, _, a in loaded] if self.audio else None)

    def row_length(self, example: dict) -> RowLength:
        """Tokens of the row as training sees it (vision and audio tokens included), with what the row check
        counts about its audio (``audio_notes``); SampleMediaError if its media fails."""
        loaded = self._load(example)
        notes = audio_notes(loaded[1], loaded[2]) if self.audio else ()
        return RowLength(int(self._encode([loaded])["attention_mask"].sum()), notes)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self._encode([self._load(e) for e in examples])
        if self.max_length is not None:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            over = [f"{examples[i].get('id', i)} ({n} tokens)" for i, n in enumerate(lengths) if n > self.max_length]
            if over:  # check_rows removes these before training; reaching here means the rows were not checked
                raise OverlongSampleError(f"longer than max_length={self.max_length}: {', '.join(over)}; raise "
                                          "max_length or lower the frame budget (fps, max_pixels)")
        out = dict(batch)
        out["labels"] = assistant_labels(batch["input_ids"], self.processor.tokenizer)
        out["labels"][batch["attention_mask"] == 0] = IGNORE_INDEX
        return out
