"""Video collator for TRL's SFTTrainer (which has none: trl#5373).

Each row (from ``emoreason synth-cot``): ``prompt`` + ``completion`` messages, ``media_type`` and a ``video`` /
``image`` path. Frames come from ``emoreason.video`` under the recipe's frame policy and go to the family's
processor as real video tensors (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``), so the
model keeps its temporal position encoding. Labels cover assistant tokens only. Sequences are never truncated:
rows longer than ``max_length`` are removed before training (``emoreason.training.data.check_rows``, counted in
the run summary), and a batch that still holds one is an error naming it, so vision tokens are never cut.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from emoreason.inference import encode_batch
from emoreason.training.data import SampleMediaError, load_row_media, row_media, with_media
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
    def __init__(self, processor, policy: FramePolicy, max_length: int | None = None):
        self.processor, self.policy, self.max_length = processor, policy, max_length

    def _load(self, example: dict) -> tuple[list[dict], LoadedFrames | None]:
        kind, path = row_media(example)
        messages = with_media(list(example["prompt"]) + list(example["completion"]), kind, path)
        return messages, load_row_media(example, self.policy)

    def _encode(self, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None]):
        return encode_batch(self.processor, conversations, media, add_generation_prompt=False, padding_side="right")

    def row_length(self, example: dict) -> int:
        """Tokens of the row as training sees it (vision tokens included); SampleMediaError if its media fails."""
        messages, frames = self._load(example)
        return int(self._encode([messages], [frames])["attention_mask"].sum())

    def __call__(self, examples: list[dict]) -> dict:
        loaded = [self._load(e) for e in examples]
        batch = self._encode([m for m, _ in loaded], [f for _, f in loaded])
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
