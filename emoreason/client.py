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

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EndpointConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # None: the first model the server lists
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key itself)
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5


def media_url(path: str | Path, inline: bool = False) -> str:
    """``file://`` URL for a local file (vLLM reads it under --allowed-local-media-path), or a base64 data URL
    when ``inline`` (files outside the server's media dir); http(s)/data URLs pass through."""
    text = str(path)
    if text.startswith(("http://", "https://", "data:", "file://")):
        return text
    resolved = Path(text).resolve()
    if not inline:
        return resolved.as_uri()
    mime = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(resolved.read_bytes()).decode()}"


class ChatClient:
    def __init__(self, config: EndpointConfig):
        from openai import AsyncOpenAI

        self.config = config
        self._client = AsyncOpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env, "EMPTY"),
                                   timeout=config.timeout_s, max_retries=0)
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
                                      choices=choices)
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
