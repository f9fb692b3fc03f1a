"""Local transformers inference: chat messages + media → model inputs → generated text.

``encode_batch`` is the one place messages and sampled frames become model inputs for generation; the
SFT collator and GRPO trainer build on the same processor call so every stage tokenises alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emoreason.video import LoadedFrames


def _media_kind(messages: list[dict]) -> str | None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") in ("video", "image"):
                    return part["type"]
    return None


def encode_batch(processor, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None],
                 add_generation_prompt: bool = True, padding_side: str = "left", template_kwargs: dict | None = None):
    """Render each conversation with the chat template (``template_kwargs``: its extra variables, e.g. TRL's
    ``chat_template_kwargs``) and encode it with its frames."""
    texts, videos, images, metadata = [], [], [], []
    for messages, loaded in zip(conversations, media, strict=True):
        texts.append(processor.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt,
                                                   **(template_kwargs or {})))
        kind = _media_kind(messages)
        if kind is None:
            continue
        if loaded is None:
            raise ValueError("a conversation has a video/image part but no media was given for it")
        if kind == "image" or loaded.kind == "image":
            images.append(np.array(loaded.frames[0]))  # a writable copy for torch.from_numpy
        else:
            videos.append(np.array(loaded.frames))
            metadata.append(loaded.video_metadata())
    kwargs: dict = {"text": texts, "return_tensors": "pt", "padding": True}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = videos
        kwargs["video_metadata"] = metadata
        kwargs["do_sample_frames"] = False
    tokenizer = processor.tokenizer
    previous, tokenizer.padding_side = tokenizer.padding_side, padding_side
    try:
        return processor(**kwargs)
    finally:
        tokenizer.padding_side = previous


@torch.no_grad()
def generate(model, processor, conversations: Sequence[list[dict]], media: Sequence[LoadedFrames | None],
             max_new_tokens: int = 128, do_sample: bool = False, temperature: float = 1.0,
             top_p: float = 1.0, seed: int | None = None) -> list[str]:
    """Batched generation; returns the decoded new text of each conversation (special tokens removed)."""
    inputs = encode_batch(processor, conversations, media).to(model.device)
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)
