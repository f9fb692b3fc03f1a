"""Where predictions come from: a local transformers model (batched generation) or any OpenAI-compatible
endpoint (concurrent, retrying). Each returns, per record, (text, error) — one failing sample never fails
the batch."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from emoreason.reasoning import build_messages, to_openai_messages
from emoreason.records import SampleRecord
from emoreason.video import FramePolicy, MediaError, load_frames, write_video

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
    """An OpenAI-compatible server (vLLM's is the reference). Frame folders are encoded to mp4 first."""

    def __init__(self, endpoint: dict, frames: dict, labels: list[str] | None, style: str,
                 max_new_tokens: int = 512, batch_size: int = 32, inline_media: bool = False):
        from emoreason.client import EndpointConfig

        self.config = EndpointConfig(**endpoint)
        self.frames, self.labels, self.style = frames, labels, style
        self.max_new_tokens, self.batch_size, self.inline = max_new_tokens, batch_size, inline_media
        self._tmp = tempfile.TemporaryDirectory(prefix="emoreason-eval-media-")
        self.name = f"endpoint:{self.config.base_url}"

    def _url(self, record: SampleRecord) -> str:
        from emoreason.client import media_url

        path = Path(str(record.media["path"]))
        if record.media["type"] == "frames":  # servers take files: encode the sampled frames as a clip
            loaded = load_frames(path, FramePolicy(**{k: v for k, v in self.frames.items()
                                                      if k in FramePolicy.__dataclass_fields__}))
            target = Path(self._tmp.name) / f"{record.id}.mp4"
            frames = loaded.frames[:, : loaded.frames.shape[1] // 2 * 2, : loaded.frames.shape[2] // 2 * 2]
            path = write_video(frames, target, fps=max(1.0, loaded.sampled_fps))
        return media_url(path, inline=self.inline)

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
