"""Where predictions come from: a local transformers model (batched generation) or any OpenAI-compatible
endpoint (concurrent, retrying). Each returns, per record, (text, error) — one failing sample never fails
the batch."""

from __future__ import annotations

import logging
from pathlib import Path

from emoreason.reasoning import build_messages, to_openai_messages
from emoreason.records import SampleRecord
from emoreason.video import MediaError, load_frames

log = logging.getLogger(__name__)


def _media_type(record: SampleRecord) -> str:
    return "image" if record.media["type"] == "image" else "video"


class LocalBackend:
    """A model directory run with transformers on this machine."""

    def __init__(self, model_dir: str, frames: dict, labels: list[str] | None, style: str, batch_size: int = 8,
                 max_new_tokens: int = 512):
        from emoreason.models import load_model_and_processor, model_frame_policy

        self.model, self.processor = load_model_and_processor(model_dir)
        self.policy = model_frame_policy(model_dir, frames, self.processor)  # the training policy unless told otherwise
        self.labels, self.style = labels, style
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.name = f"local:{model_dir}"

    def predict(self, records: list[SampleRecord]) -> list[tuple[str | None, str | None]]:
        from emoreason.inference import generate

        results: list[tuple[str | None, str | None]] = [(None, None)] * len(records)
        ready, conversations, media = [], [], []
        for i, record in enumerate(records):
            try:
                media.append(load_frames(record.media["path"], self.policy))
            except MediaError as exc:
                results[i] = (None, f"media: {exc}")
                continue
            ready.append(i)
            conversations.append(build_messages(str(record.media["path"]), _media_type(record), self.labels,
                                                self.style))
        if ready:
            texts = generate(self.model, self.processor, conversations, media, max_new_tokens=self.max_new_tokens)
            for i, text in zip(ready, texts, strict=True):
                results[i] = (text, None)
        return results


class EndpointBackend:
    """An OpenAI-compatible server (vLLM's is the reference). Videos and frame folders go by path (under the
    server's media dir) or inline (folders packed); an `emoreason serve` server samples both like a local run."""

    def __init__(self, endpoint: dict, frames: dict, labels: list[str] | None, style: str,
                 max_new_tokens: int = 512, batch_size: int = 32, inline_media: bool = False):
        from emoreason.client import EndpointConfig

        self.config = EndpointConfig(**endpoint)
        self.frames, self.labels, self.style = frames, labels, style
        self.max_new_tokens, self.batch_size, self.inline = max_new_tokens, batch_size, inline_media
        self.name = f"endpoint:{self.config.base_url}"
        if frames:  # the server samples frames itself; it cannot be told per request (untrusted clients)
            overrides = " ".join(f"{k}={v}" for k, v in frames.items())
            log.info("the server samples frames with its own policy; for this benchmark's (%s) serve with "
                     "`emoreason serve --frames %s`", overrides, overrides)

    def _url(self, record: SampleRecord) -> str:
        from emoreason.client import media_url

        return media_url(Path(str(record.media["path"])), inline=self.inline, max_inline_mb=self.config.max_inline_mb)

    def predict(self, records: list[SampleRecord]) -> list[tuple[str | None, str | None]]:
        from emoreason.client import run_chat_batch

        batch, index, results = [], [], [(None, None)] * len(records)
        for i, record in enumerate(records):
            try:
                url = self._url(record)
            except MediaError as exc:
                results[i] = (None, f"media: {exc}")
                continue
            messages = build_messages(None, _media_type(record), self.labels, self.style)
            batch.append(to_openai_messages(messages, url))
            index.append(i)
        for i, result in zip(index, run_chat_batch(self.config, batch, temperature=0.0,
                                                   max_tokens=self.max_new_tokens), strict=True):
            results[i] = (result.text, result.error)
        return results
