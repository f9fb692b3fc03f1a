"""`emoreason serve` against real vLLM when things go wrong: a stop signal during start-up, the launcher killed
outright, vLLM crashing while serving, an architecture vLLM does not know. Each test starts its own server
(through the `emoreason serve` command, as a user would) and checks vLLM's *process group* — every process
vLLM started — not process names. The port-in-use and configuration refusals need no vLLM and live in
tests/test_serving_launcher.py."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from vllm_support import VLLM_MARKS, children, start_serve, wait_until

from emoreason.serving import process as proc
from emoreason.serving.process import group_members

pytestmark = VLLM_MARKS
GRACE = 10.0  # --stop-grace of these servers


def _vllm_group(launcher) -> int:
    """The process group of the vLLM server the launcher spawned (its leader is the launcher's child)."""
    assert wait_until(lambda: children(launcher.pid) or launcher.poll() is not None, 120), "vLLM never spawned"
    assert launcher.poll() is None, "the launcher exited before spawning vLLM"
    return children(launcher.pid)[0]


def _engine_spawned(pgid: int) -> bool:
    """vLLM has started its engine core: the group holds more than its leader and the reaper."""
    return len(group_members(pgid)) >= 3


def _output(tmp_path) -> str:
    return (tmp_path / "serve.out").read_text(errors="replace")


def _stop(launcher, pgid: int | None = None) -> None:
    if launcher.poll() is None:
        launcher.kill()
        launcher.wait()
    if pgid is not None:
        proc.signal_group(pgid, signal.SIGKILL)


def test_sigterm_during_startup_stops_the_whole_group(tmp_path, tiny_model_dirs):
    launcher, port = start_serve(tmp_path, tiny_model_dirs["qwen2_5_vl"], "--stop-grace", str(GRACE))
    pgid = None
    try:
        pgid = _vllm_group(launcher)
        assert wait_until(lambda: _engine_spawned(pgid), 300), group_members(pgid)
        with pytest.raises(OSError):  # still loading: not serving yet
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=GRACE + 30) == 128 + signal.SIGTERM, _output(tmp_path)[-3000:]
        assert group_members(pgid) == [], "vLLM processes outlived `emoreason serve`"
        assert "SIGTERM: stopping vLLM" in _output(tmp_path)
    finally:
        _stop(launcher, pgid)


def test_sigkill_of_the_launcher_leaves_no_vllm_behind(tmp_path, tiny_model_dirs):
    launcher, _ = start_serve(tmp_path, tiny_model_dirs["qwen2_5_vl"], "--stop-grace", str(GRACE))
    pgid = None
    try:
        pgid = _vllm_group(launcher)
        assert wait_until(lambda: _engine_spawned(pgid), 300), group_members(pgid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        start = time.monotonic()
        assert wait_until(lambda: not group_members(pgid), GRACE + 15, 0.2), group_members(pgid)
        print(f"group gone {time.monotonic() - start:.1f} s after the launcher's SIGKILL")
    finally:
        _stop(launcher, pgid)


def test_vllm_crash_while_serving_exits_nonzero_with_the_log_tail(tmp_path, tiny_model_dirs):
    launcher, port = start_serve(tmp_path, tiny_model_dirs["qwen2_5_vl"], "--stop-grace", str(GRACE))
    pgid = None
    try:
        pgid = _vllm_group(launcher)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return launcher.poll() is not None

        assert wait_until(healthy, 600, 1.0) and launcher.poll() is None, _output(tmp_path)[-3000:]
        # the engine dies as under the OOM killer: SIGKILL to the biggest process of the group but the leader
        members = [p for p in group_members(pgid) if p != pgid]
        biggest = max(members, key=lambda p: int(Path(f"/proc/{p}/statm").read_text().split()[1]))
        os.kill(biggest, signal.SIGKILL)
        code = launcher.wait(timeout=120)
        out = _output(tmp_path)
        assert code not in (0, None) and code < 128, out[-3000:]
        assert f"last lines of {tmp_path / 'vllm.log'}" in out and "while serving" in out
        assert "EngineDeadError" in out or "exited unexpectedly" in out  # the cause, from vLLM's log
        assert wait_until(lambda: not group_members(pgid), 10), group_members(pgid)
    finally:
        _stop(launcher, pgid)


def test_unknown_architecture_is_named_before_loading(tmp_path, tiny_model_dirs):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["qwen2_5_vl"], model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["EmotionTransformerForConditionalGeneration"]
    (model / "config.json").write_text(json.dumps(config))
    launcher, _ = start_serve(tmp_path, model)
    try:
        code = launcher.wait(timeout=300)
        out = _output(tmp_path)
        assert code == 1, out[-3000:]
        assert "does not know the architecture EmotionTransformerForConditionalGeneration" in out, out[-3000:]
    finally:
        _stop(launcher)

