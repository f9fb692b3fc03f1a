"""What the real-vLLM tests share: the CPU vLLM venv, the marks that skip without it, a free port, a model whose
output shows any difference in what it sees, and helpers to run `emoreason serve` and watch its process group.

Every server is started through the project's one launcher (`emoreason.serving.server.VLLMServer`, or the
`emoreason serve` command), never by hand."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# `make test-vllm` sets EMOREASON_REQUIRE_VLLM=1: there a missing vLLM venv fails the tests instead of skipping them
VLLM_REQUIRED = os.environ.get("EMOREASON_REQUIRE_VLLM") == "1"
VLLM_MARKS = [pytest.mark.slow, pytest.mark.vllm,
              pytest.mark.skipif(not VLLM_PYTHON.is_file() and not VLLM_REQUIRED,
                                 reason="no .venv-vllm: run `make test-vllm`")]
# vLLM arguments for tests: no torch.compile warm-up (about 2 minutes on 2 cores); behaviour is the same
FAST_START = ["--enforce-eager"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sensitive_model(base: Path, out: Path, policy=None) -> Path:
    """The tiny model re-initialised with weights of scale 1/sqrt(fan_in): its greedy output changes with every
    pixel and position it is given (the default init answers the same whatever it sees), so equal outputs mean
    equal inputs. ``policy`` (a FramePolicy) is saved with it, as training saves its frame policy."""
    import torch

    from emoreason.models import load_model_and_processor, save_frame_policy

    model, processor = load_model_and_processor(base, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0, parameter.shape[-1] ** -0.5, generator=generator)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if policy is not None:
        save_frame_policy(out, policy)
    return out


def emoreason_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emoreason", *args]


def cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def start_serve(tmp_path: Path, model: Path, *extra: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """`emoreason serve` as a user runs it (its output in tmp_path/serve.out, vLLM's log in tmp_path/vllm.log)."""
    port = port or free_port()
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    out = open(tmp_path / "serve.out", "wb")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(emoreason_cli("serve", "--model", str(model), "--media-dir", str(media), "--port",
                                             str(port), "--python", str(VLLM_PYTHON), "--log-file",
                                             str(tmp_path / "vllm.log"), "--max-model-len", "2048", *extra,
                                             "--", *FAST_START),
                               stdout=out, stderr=subprocess.STDOUT, env=cli_env())
    out.close()
    return process, port


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def sampling_gap(trainer) -> float:
    """The last rollout's mean gap between the server's sampling log-probs and the policy's own (TRL's metric)."""
    return trainer._metrics["train"]["sampling/sampling_logp_difference/mean"][-1]


def stale_and_synced_gaps(trainer, batch: list[dict]) -> tuple[float, float]:
    """:func:`sampling_gap` of rollouts on ``batch`` with the server left on the weights it has (no sync), then
    after the policy is pushed to it, as every step does."""
    trainer._last_synced_step = trainer.state.global_step  # no sync for this step's rollouts
    trainer._generate_and_score_completions(batch)
    stale = sampling_gap(trainer)
    trainer._last_synced_step = -1
    trainer._generate_and_score_completions(batch)
    return stale, sampling_gap(trainer)
