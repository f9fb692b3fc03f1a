"""Async client for OpenAI-compatible chat endpoints (vLLM's server is the reference).

Bounded concurrency, a timeout per request, retries with exponential backoff, and per-item errors instead
of a crashed batch. Used by the CoT teacher, evaluation's endpoint backend and ``emoreason predict``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ClientError(RuntimeError):
    """A request that failed after all retries; ``reason`` says why."""

    def __init__(self, reason: str, attempts: int):
        self.reason, self.attempts = reason, attempts
        super().__init__(f"{reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")


@dataclass
class ChatResult:
    text: str | None
    latency_s: float
    attempts: int
    error: str | None = None
    choices: list[str] = field(default_factory=list)
    response: Any = None  # the server's full reply (vLLM extras such as token_ids live in its choices)

    @property
    def ok(self) -> bool:
        return self.error is None


DEFAULT_MAX_INLINE_MB = 32.0
URL_PREFIXES = ("http://", "https://", "data:", "file://")


@dataclass
class EndpointConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # None: the first model the server lists
    api_key: str | None = None  # None: read from the environment variable below
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key itself)
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    # Inline media cap: files sent inside the request (outside the server's media dir, and frame folders) may
    # be at most this large (MiB, before base64). Larger ones fail with a clear error before any request is
    # sent; put them under the server's --media-dir, where they go by path. The server has its own cap
    # (`emoreason serve --max-media-mb`, 64 by default).
    max_inline_mb: float = DEFAULT_MAX_INLINE_MB

    def key(self) -> str:
        return self.api_key or os.environ.get(self.api_key_env) or "EMPTY"


def media_kind(source: str | Path) -> str:
    """"image" for an image file (by extension), else "video" (video files, frame folders, URLs)."""
    from emoreason.video import IMAGE_EXTENSIONS

    text = str(source)
    if text.startswith("data:"):
        return "image" if text.startswith("data:image/") else "video"
    return "image" if Path(text.split("?", 1)[0]).suffix.lower() in IMAGE_EXTENSIONS else "video"


def media_url(path: str | Path, inline: bool = False, max_inline_mb: float | None = None) -> str:
    """``file://`` URL for a local file or frame folder (vLLM reads it under --allowed-local-media-path; an
    `emoreason serve` server reads folders), or a base64 data URL when ``inline`` (media outside the server's
    media dir; a frame folder goes packed as a zip of its image files, which the server unpacks and reads like
    a local folder). http(s)/data/file URLs pass through. Inline media over ``max_inline_mb`` raises
    MediaTooLargeError naming the file and the cap."""
    from emoreason.video.packing import FRAME_ARCHIVE_MIME, MediaTooLargeError, pack_frame_folder

    text = str(path)
    if text.startswith(URL_PREFIXES):
        return text
    resolved = Path(text).resolve()
    cap = None if max_inline_mb is None else int(max_inline_mb * 2**20)
    if not inline:
        return resolved.as_uri()
    if resolved.is_dir():
        data, mime = pack_frame_folder(resolved, cap), FRAME_ARCHIVE_MIME
    else:
        size = resolved.stat().st_size
        if cap is not None and size > cap:
            raise MediaTooLargeError(resolved, f"{size / 2**20:.1f} MiB is over the {max_inline_mb:g} MiB inline cap")
        data = resolved.read_bytes()
        mime = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- audio beside the video (Qwen2.5-Omni) -------------------------------------------------------------------
# the audio part is the video's own track, interleaved with its frames as local runs interleave it;
# `emoreason serve` accepts this one per-request switch without --trust-request-mm-kwargs
AUDIO_IN_VIDEO = {"mm_processor_kwargs": {"use_audio_in_video": True}}


class ModalitiesError(ValueError):
    """Audio asked of a served model that takes none, or an unknown modalities value."""


def served_modalities(asked: str | None, hears: bool | None, server: str) -> str:
    """What a served model is shown, as :func:`emoreason.audio.modalities.model_modalities` decides it
    locally: ``asked``, or all the model takes (audio+video for one that hears). ``hears`` None: the server's
    weights are not readable here, so only what is asked is sent (video by default)."""
    from emoreason.audio.modalities import resolve_modalities

    if asked is None and hears is None:
        log.warning("%s: cannot tell whether the served model hears audio (its weights path is not readable "
                    "here); sending video only: pass --modalities audio+video to send the audio", server)
    try:
        return resolve_modalities(asked, hears, f"the model served at {server} takes no audio (not an audio-visual "
                                                "model such as Qwen2.5-Omni); use --modalities video")
    except ValueError as exc:
        raise ModalitiesError(str(exc)) from exc


def wav_data_url(waveform, sample_rate: int) -> str:
    """A mono float32 WAV (IEEE float, lossless) as a data URL: the exact samples emoreason's reader gave."""
    import struct

    import numpy as np

    data = np.ascontiguousarray(waveform, dtype="<f4").tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, sample_rate, sample_rate * 4, 4, 32)
              + b"data" + struct.pack("<I", len(data)))
    return "data:audio/wav;base64," + base64.b64encode(header + data).decode()


def with_audio(messages: list[dict], audio) -> list[dict]:
    """OpenAI messages with ``audio`` (a :class:`emoreason.audio.LoadedAudio`) as an ``audio_url`` part right after
    the video part; send them with :data:`AUDIO_IN_VIDEO`."""
    part = {"type": "audio_url", "audio_url": {"url": wav_data_url(audio.waveform, audio.sample_rate)}}
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(p.get("type") == "video_url" for p in content):
            at = next(i for i, p in enumerate(content) if p.get("type") == "video_url") + 1
            message = {**message, "content": [*content[:at], part, *content[at:]]}
        out.append(message)
    return out


def with_heard_audio(messages: list[dict], frames, audio, max_s: float | None = None) -> tuple[list[dict], dict]:
    """(messages, extra request parameters) for an audio model shown ``frames`` (the sample's video part already in
    ``messages``) with ``audio``: what it hears by the local rule (:func:`emoreason.audio.heard_track`: the track,
    silence of the clip's duration for a clip without one, cut to ``max_s``) as an ``audio_url`` part, and
    :data:`AUDIO_IN_VIDEO`; the messages unchanged and no parameters for an image or no media. Shared by
    ``eval/predict --endpoint`` and GRPO's vLLM rollouts, so both send what the local model hears."""
    from emoreason.audio import heard_track

    track = heard_track(frames, audio, max_s)
    if track is None:
        return messages, {}
    return with_audio(messages, track), dict(AUDIO_IN_VIDEO)


class ChatClient:
    def __init__(self, config: EndpointConfig):
        from openai import AsyncOpenAI

        self.config = config
        self._client = AsyncOpenAI(base_url=config.base_url, api_key=config.key(), timeout=config.timeout_s,
                                   max_retries=0)
        self._semaphore = asyncio.Semaphore(max(1, config.concurrency))
        self._model = config.model

    async def model(self) -> str:
        if self._model is None:
            models = await self._client.models.list()
            self._model = models.data[0].id
        return self._model

    async def chat(self, messages: list[dict], **params) -> ChatResult:
        """One chat completion; never raises for server/network faults (the error is in the result)."""
        start = time.perf_counter()
        last = "unknown error"
        attempts = 0
        async with self._semaphore:
            for attempt in range(self.config.retries + 1):
                attempts = attempt + 1
                try:
                    model = await self.model()
                    response = await asyncio.wait_for(
                        self._client.chat.completions.create(model=model, messages=messages, **params),
                        timeout=self.config.timeout_s)
                    choices = [c.message.content or "" for c in response.choices]
                    return ChatResult(choices[0] if choices else "", time.perf_counter() - start, attempts,
                                      choices=choices, response=response)
                except TimeoutError:
                    last = f"timeout after {self.config.timeout_s:g} s"
                except Exception as exc:  # openai.APIError and transport errors
                    status = getattr(exc, "status_code", None)
                    last = f"{type(exc).__name__}" + (f" {status}" if status else "") + f": {exc}"[:300]
                    if status is not None and 400 <= status < 500 and status not in (408, 429):
                        break  # a client error will not heal with retries
                if attempt < self.config.retries:
                    await asyncio.sleep(self.config.backoff_s * 2 ** attempt)
        log.debug("chat request failed: %s", last)
        return ChatResult(None, time.perf_counter() - start, attempts, error=last)

    async def chat_many(self, batch: Sequence[list[dict]], **params) -> list[ChatResult]:
        return list(await asyncio.gather(*(self.chat(m, **params) for m in batch)))

    async def close(self) -> None:
        await self._client.close()


def run_chat_batch(config: EndpointConfig, batch: Sequence[list[dict]], **params) -> list[ChatResult]:
    """Synchronous wrapper: send a batch with bounded concurrency, return results in order."""

    async def _go() -> list[ChatResult]:
        client = ChatClient(config)
        try:
            return await client.chat_many(batch, **params)
        finally:
            await client.close()

    return asyncio.run(_go())


@dataclass
class Prediction:
    """A structured result for one video or image."""

    source: str
    emotion: str | None = None
    aus: list[int] = field(default_factory=list)
    negated_aus: list[int] = field(default_factory=list)
    rationale: str | None = None
    format_ok: bool = False
    valence: float | None = None  # from the JSON variant's answer (--response-format json)
    arousal: float | None = None
    text: str | None = None
    latency_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def prediction_from_text(source: str, text: str, latency_s: float = 0.0) -> Prediction:
    """A structured prediction from a reply, read with the project's parser (tag or JSON answer)."""
    from emoreason.reasoning import parse_response

    parsed = parse_response(text)
    return Prediction(source, parsed.emotion, parsed.aus, parsed.negated_aus, parsed.think, parsed.format_ok,
                      parsed.valence, parsed.arousal, text, latency_s)


def _media_url_for(source: str, media_dir: str | Path | None, max_inline_mb: float | None) -> str:
    if source.startswith(URL_PREFIXES):
        return source
    path = Path(source)
    if not path.exists():
        from emoreason.video import MissingMediaError

        raise MissingMediaError(source, "no such file")
    inline = media_dir is None or not _is_under(path, Path(media_dir))
    return media_url(path, inline=inline, max_inline_mb=max_inline_mb)


async def predict_one(client: ChatClient, source: str | Path, media_type: str | None = None,
                      labels: Sequence[str] | None = None, style: str = "tags", media_dir: str | Path | None = None,
                      max_tokens: int = 512) -> Prediction:
    """Send one video, frame folder or image with the project's prompt; parse the answer with its parser.

    Local files and frame folders under ``media_dir`` go as ``file://`` URLs (the server reads them); others are
    sent inline (within ``client.config.max_inline_mb``); http(s)/data URLs pass through.
    ``media_type`` None: "image" for image files, else "video". ``style="json"`` asks for the JSON variant and
    enforces it with the server's guided decoding. Faults come back in ``error``."""
    from emoreason.reasoning import build_messages, json_response_format, to_openai_messages
    from emoreason.video import MediaError

    text_source = str(source)
    try:
        url = _media_url_for(text_source, media_dir, client.config.max_inline_mb)
    except MediaError as exc:
        hint = (" (put it under the server's --media-dir to send it by path, or raise the client's "
                "max_inline_mb / `predict --max-inline-mb`)" if "inline cap" in exc.reason else "")
        return Prediction(text_source, error=f"{text_source}: {exc.reason}{hint}")
    except OSError as exc:
        return Prediction(text_source, error=f"{text_source}: {exc}")
    kind = media_type or media_kind(text_source)
    messages = to_openai_messages(build_messages(None, kind, labels, style), url)
    params: dict = {"temperature": 0.0, "max_tokens": max_tokens}
    if style == "json":  # room for the JSON answer after the reasoning
        params["response_format"] = json_response_format(labels, think_max_tokens=max(8, max_tokens - 96))
    result = await client.chat(messages, **params)
    if not result.ok:
        return Prediction(text_source, latency_s=result.latency_s, error=result.error)
    return prediction_from_text(text_source, result.text, result.latency_s)


def predict_many(config: EndpointConfig, sources: Sequence[str | Path], media_type: str | None = None,
                 labels: Sequence[str] | None = None, style: str = "tags", media_dir: str | Path | None = None,
                 max_tokens: int = 512) -> list[Prediction]:
    """Predict for many inputs concurrently (bounded by ``config.concurrency``); results in input order."""

    async def _go() -> list[Prediction]:
        client = ChatClient(config)
        try:
            return list(await asyncio.gather(*(predict_one(client, s, media_type, labels, style, media_dir,
                                                           max_tokens) for s in sources)))
        finally:
            await client.close()

    return asyncio.run(_go())
