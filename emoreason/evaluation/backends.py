"""Where predictions come from: a local transformers model (batched generation) or any OpenAI-compatible
endpoint (concurrent, retrying). Each returns, per record, (text, error) — one failing sample never fails
the batch — and says who it is (``identity``) and which frames it shows (``frame_policy``), which the
prediction cache keys on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from pathlib import Path

from emoreason.audio.modalities import audio_source, model_modalities, with_modalities
from emoreason.reasoning import build_messages, to_openai_messages
from emoreason.records import SampleRecord
from emoreason.video import FramePolicy, LoadedFrames, MediaError, inline_media, load_media

log = logging.getLogger(__name__)


class EndpointSetupError(RuntimeError):
    """The server cannot answer the way evaluation needs (it refuses the frames' per-request timing)."""


def _media_type(record: SampleRecord) -> str:
    return "image" if record.media["type"] == "image" else "video"


def _policy(frames: dict, base: FramePolicy | None = None) -> FramePolicy:
    return (base or FramePolicy()).updated(frames)


def hearing(frames: LoadedFrames, audio, modalities: str, sample_id: str = "?", source: str | None = None,
            audio_layout: str | None = None) -> dict | None:
    """What one sample was heard with, for the run's audio counts (``emoreason.evaluation.runner.audio_counts``):
    ``track`` (its own, ``source`` the file it was read from — the clip's original video where its frames are face
    crops, ``fitted`` with the reason when its length was fitted to the video, ``kept_s`` when the feature
    extractor's window cut it, ``audio_layout`` the layout of the original video it came from — what the run's
    count of original-video audio compares, so cached rows survive a data move) or ``silence`` (no track, or a
    frame folder with no source of audio: silence of the clip's duration, as ``emoreason.inference.encode_batch``
    fills it; ``looked_in`` the other file named for its audio, which had no track; the run warns once, with the count and the first samples: ``emoreason.evaluation.runner.evaluate``);
    None when it was not heard (the ``video`` ablation, or an image)."""
    if modalities == "video" or frames.kind == "image":
        return None
    if audio is None:
        log.debug("sample %s: no audio track in %s: the model hears silence", sample_id, source or frames.path)
        # an original clip found but without a track: the row names it (a crop folder alone: nothing to name)
        return {"heard": "silence", "looked_in": source} if source and source != str(frames.path) else \
            {"heard": "silence"}
    out: dict = {"heard": "track", "source": audio.path}
    if audio_layout and source and audio.path == source and source != str(frames.path):
        out["audio_layout"] = audio_layout
    if "mismatch" in audio.meta:
        out["fitted"] = audio.meta["mismatch"]
    if "truncated_to_s" in audio.meta:
        out["kept_s"] = audio.meta["truncated_to_s"]
    return out


class LocalBackend:
    """A model directory run with transformers on this machine."""

    def __init__(self, model_dir: str, frames: dict, labels: list[str] | None, style: str, batch_size: int = 8,
                 max_new_tokens: int = 512, focus: str | None = None, modalities: str | None = None,
                 task: str = "cot"):
        from emoreason.audio import audio_window_s, takes_audio
        from emoreason.models import frame_policy_for, load_model_and_processor, saved_frame_policy

        self.model_dir = model_dir
        self.model, self.processor = load_model_and_processor(model_dir)
        self.modalities = model_modalities(self.processor, modalities)
        self.hears = takes_audio(self.processor)
        self.audio_window_s = audio_window_s(self.processor)
        frames = {**saved_frame_policy(model_dir), **frames}  # the model's training policy unless told otherwise
        self.policy = _policy(frames, frame_policy_for(self.processor))
        self.labels, self.style, self.focus, self.task = labels, style, focus, task
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.name = f"local:{model_dir}"
        self._identity: dict | None = None
        self.heard: dict[str, dict | None] = {}  # sample id → what it was heard with (hearing), for the run's counts

    @property
    def identity(self) -> dict:
        if self._identity is None:
            from emoreason.evaluation.identity import local_identity

            self._identity = local_identity(self.model_dir)
        return self._identity

    @property
    def frame_policy(self) -> dict:
        policy = asdict(self.policy)
        if self.modalities != "video":  # what the model hears is part of what it is shown (the cache keys on it)
            policy["modalities"] = self.modalities
        return policy

    def inputs(self, records: list[SampleRecord]):
        """(ready indices, conversations, frames, audio, {index: error}) for a batch under the modalities."""
        ready, conversations, media, audio, errors = [], [], [], [], {}
        for i, record in enumerate(records):
            try:
                frames, track = with_modalities(load_media(record.media, self.policy), self.modalities,
                                                self.audio_window_s, audio_source(record.media))
            except MediaError as exc:
                errors[i] = f"media: {exc}"
                continue
            ready.append(i)
            media.append(frames)
            audio.append(track)
            self.heard[record.id] = hearing(frames, track, self.modalities, record.id, audio_source(record.media),
                                            record.media.get("audio_layout"))
            conversations.append(build_messages(str(record.media["path"]), _media_type(record), self.labels,
                                                self.style, focus=self.focus, task=self.task))
        return ready, conversations, media, audio, errors

    def predict(self, records: list[SampleRecord]) -> list[tuple[str | None, str | None]]:
        from emoreason.inference import generate

        results: list[tuple[str | None, str | None]] = [(None, None)] * len(records)
        ready, conversations, media, audio, errors = self.inputs(records)
        for i, error in errors.items():
            results[i] = (None, error)
        if ready:
            # video: a video-only encoding; else each video is heard (silence where it has no track)
            texts = generate(self.model, self.processor, conversations, media, max_new_tokens=self.max_new_tokens,
                             audio=None if self.modalities == "video" else audio)
            for i, text in zip(ready, texts, strict=True):
                results[i] = (text, None)
        return results


class EndpointBackend:
    """An OpenAI-compatible server (vLLM's is the reference).

    Every sample's frames are decoded here under the benchmark's frame policy — the frames local evaluation
    uses — and sent inline, losslessly, with their timing (``emoreason.video.inline_media``): frame folders,
    image lists and windows around annotated frames have no single file a server could open. With
    ``media_dir`` (the server's ``--media-dir``), whole video files under it go as ``file://`` URLs instead and
    the server samples their frames with its own settings (faster; the report says so)."""

    def __init__(self, endpoint: dict, frames: dict, labels: list[str] | None, style: str,
                 max_new_tokens: int = 512, batch_size: int = 32, media_dir: str | None = None,
                 focus: str | None = None, modalities: str | None = None, task: str = "cot"):
        from emoreason.client import EndpointConfig

        self.asked_modalities = modalities
        self._modalities: str | None = None
        self._hears: bool | None = None  # the served model takes audio (None: its weights are not readable here)
        self.audio_window_s: float | None = None  # its feature extractor's window, where readable
        self.heard: dict[str, dict | None] = {}  # sample id → what it was heard with (hearing), as LocalBackend
        self.latency_s: dict[str, float] = {}  # sample id → its request's latency (retries included)
        self.config = EndpointConfig(**endpoint)
        self._frames = dict(frames)
        self._policy: FramePolicy | None = None
        self.labels, self.style, self.focus, self.task = labels, style, focus, task
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.media_dir = Path(media_dir).resolve() if media_dir else None
        self.name = f"endpoint:{self.config.base_url}"
        self._identity: dict | None = None

    @property
    def identity(self) -> dict:
        if self._identity is None:
            from emoreason.evaluation.identity import endpoint_identity

            self._identity = endpoint_identity(self.config.base_url, self.config.model, self.config.key())
            self.config.model = self._identity["served_model"]
        return self._identity

    @property
    def policy(self) -> FramePolicy:
        """The frames local evaluation of the served model uses: when the server reports a weights path this
        machine can read, its processor's vision factor and pixel bounds and the policy saved at training, then
        the benchmark's frames (as :class:`LocalBackend`); else the defaults, then the benchmark's frames."""
        if self._policy is None:
            root = Path(str(self.identity.get("root") or ""))
            if self.identity.get("root") and (root / "config.json").is_file():
                from emoreason.models import model_frame_policy

                self._policy = model_frame_policy(root, self._frames)
            else:
                log.warning("%s serves %s from a path this machine cannot read: frames are sized with the default "
                            "vision factor %d and pixel bounds unless the benchmark's frames say otherwise "
                            "(frames.factor=32 for Qwen3-VL)", self.config.base_url, self.config.model,
                            FramePolicy().factor)
                self._policy = _policy(self._frames)
        return self._policy

    @property
    def modalities(self) -> str:
        """As :func:`model_modalities` locally, for the served model (its weights read where the server says)."""
        if self._modalities is None:
            from emoreason.client import ModalitiesError, served_modalities
            from emoreason.serving.server import takes_audio

            root = Path(str(self.identity.get("root") or ""))
            readable = bool(self.identity.get("root")) and (root / "config.json").is_file()
            self._hears = takes_audio(root) if readable else None
            try:
                self._modalities = served_modalities(self.asked_modalities, self._hears, self.config.base_url)
            except ModalitiesError as exc:
                raise EndpointSetupError(str(exc)) from exc
            if self._hears:
                from emoreason.serving.server import served_audio_window_s

                self.audio_window_s = served_audio_window_s(root)
        return self._modalities

    @property
    def hears(self) -> bool:
        """The served model takes audio (the run then records what each sample heard, as locally)."""
        return self.modalities != "video" or bool(self._hears)

    @property
    def frame_policy(self) -> dict:
        policy = asdict(self.policy)
        if self.modalities != "video":  # as LocalBackend: what the model hears is part of what it is shown
            policy["modalities"] = self.modalities
        if self.media_dir is not None:
            policy["videos_under"] = f"{self.media_dir}: sampled by the server"
        return policy

    def _served_by_file(self, record: SampleRecord) -> bool:
        if self.media_dir is None or record.media["type"] != "video" or record.media.get("frame_indices"):
            return False
        return Path(str(record.media["path"])).resolve().is_relative_to(self.media_dir)

    def request(self, record: SampleRecord) -> tuple[list[dict], dict]:
        """(OpenAI messages, extra request parameters) for one sample; MediaError when it cannot be decoded."""
        from emoreason.client import media_url, with_heard_audio

        messages = build_messages(None, _media_type(record), self.labels, self.style, focus=self.focus, task=self.task)
        if self._served_by_file(record) and self.modalities == "video":
            self.heard[record.id] = None
            return to_openai_messages(messages, media_url(record.media["path"])), {}
        # the frames and audio local evaluation shows (with_modalities); an audio-only sample's blank frames inline
        frames, audio = with_modalities(load_media(record.media, self.policy), self.modalities,
                                        self.audio_window_s, audio_source(record.media))
        self.heard[record.id] = hearing(frames, audio, self.modalities, record.id, audio_source(record.media),
                                         record.media.get("audio_layout"))
        own_track = not record.media.get("audio_path")  # else the frames go inline, the other file's track beside
        if self._served_by_file(record) and self.modalities == "audio+video" and own_track:
            url, extra = media_url(record.media["path"]), {}
        else:
            url, media_kwargs = inline_media(frames)
            extra = {"media_io_kwargs": media_kwargs} if media_kwargs else {}
        messages = to_openai_messages(messages, url)
        if self.modalities == "video":
            return messages, extra
        messages, heard = with_heard_audio(messages, frames, audio, self.audio_window_s)  # silence without a track
        return messages, {**extra, **heard}

    def predict(self, records: list[SampleRecord]) -> list[tuple[str | None, str | None]]:
        from emoreason.client import ChatClient

        self.modalities  # noqa: B018  (resolves the served model name and what it is shown once, before the batch)
        requests, index = [], []
        results: list[tuple[str | None, str | None]] = [(None, None)] * len(records)
        for i, record in enumerate(records):
            try:
                requests.append(self.request(record))
            except MediaError as exc:
                results[i] = (None, f"media: {exc}")
                continue
            index.append(i)

        async def _go():
            client = ChatClient(self.config)
            try:
                return await asyncio.gather(*(
                    client.chat(messages, temperature=0.0, max_tokens=self.max_new_tokens,
                                **({"extra_body": extra} if extra else {}))
                    for messages, extra in requests))
            finally:
                await client.close()

        for i, result in zip(index, asyncio.run(_go()) if requests else [], strict=True):
            if result.error and "trust-request-mm-kwargs" in result.error:
                raise EndpointSetupError(
                    f"{self.config.base_url} refuses per-request media_io_kwargs, which carry the inlined frames' "
                    f"indices and fps (without them vLLM re-samples the frames and assumes 1 fps). Start the server "
                    f"for trusted clients with `emoreason serve … -- --trust-request-mm-kwargs` (vLLM's flag), or "
                    f"pass --media-dir to send video files by path. Server said: {result.error[:300]}")
            results[i] = (result.text, result.error)
            self.latency_s[records[i].id] = result.latency_s
        return results
