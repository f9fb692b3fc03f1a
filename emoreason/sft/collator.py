"""Video collator for TRL's SFTTrainer (which has none: trl#5373).

Each row (from ``emoreason synth-cot``): ``prompt`` + ``completion`` messages, ``media_type`` and a ``video`` /
``image`` path. Frames come from ``emoreason.video`` under the recipe's frame policy and go to the family's
processor as real video tensors (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``), so the
model keeps its temporal position encoding. Labels cover assistant tokens only. Sequences are never truncated:
an overlong row is dropped (and counted) or raises, so vision tokens are never cut.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

from emoreason.inference import encode_batch
from emoreason.video import FramePolicy, LoadedFrames, MediaError, load_frames

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


class SampleMediaError(RuntimeError):
    """A row whose media cannot be loaded; names the sample and the file."""


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


def _with_media(messages: list[dict], kind: str, path: str | None) -> list[dict]:
    messages = copy.deepcopy(messages)
    for message in messages:
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == kind and path is not None:
                    part[kind] = path
    return messages


class VideoSFTCollator:
    def __init__(self, processor, policy: FramePolicy, max_length: int | None = None, overlong: str = "drop"):
        if overlong not in ("drop", "error"):
            raise ValueError("overlong must be 'drop' or 'error'")
        self.processor, self.policy = processor, policy
        self.max_length, self.overlong = max_length, overlong
        self.dropped = 0

    def _load(self, example: dict) -> tuple[list[dict], LoadedFrames | None]:
        kind = example.get("media_type") or ("video" if example.get("video") else "image" if example.get("image")
                                             else None)
        path = example.get(kind) if kind else None
        messages = _with_media(list(example["prompt"]) + list(example["completion"]), kind or "", path)
        if kind is None or path is None:
            return messages, None
        try:
            return messages, load_frames(path, self.policy)
        except MediaError as exc:
            raise SampleMediaError(f"sample {example.get('id', '?')}: {exc}") from exc

    def _encode(self, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None]):
        return encode_batch(self.processor, conversations, media, add_generation_prompt=False, padding_side="right")

    def __call__(self, examples: list[dict]) -> dict:
        loaded = [self._load(e) for e in examples]
        batch = self._encode([m for m, _ in loaded], [f for _, f in loaded])
        if self.max_length is not None:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            over = [i for i, n in enumerate(lengths) if n > self.max_length]
            if over:
                names = ", ".join(f"{examples[i].get('id', i)} ({lengths[i]} tokens)" for i in over)
                if self.overlong == "error" or len(over) == len(examples):
                    raise OverlongSampleError(f"longer than max_length={self.max_length}: {names}; raise "
                                              "max_length or lower the frame budget (fps, max_pixels)")
                self.dropped += len(over)
                log.warning("dropped %d overlong sample(s) (%s); %d dropped so far", len(over), names, self.dropped)
                keep = [i for i in range(len(examples)) if i not in over]
                batch = self._encode([loaded[i][0] for i in keep], [loaded[i][1] for i in keep])
        out = dict(batch)
        out["labels"] = assistant_labels(batch["input_ids"], self.processor.tokenizer)
        out["labels"][batch["attention_mask"] == 0] = IGNORE_INDEX
        return out
