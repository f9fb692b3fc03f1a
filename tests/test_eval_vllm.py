"""`emoreason eval --endpoint` against real vLLM (CPU build in .venv-vllm) on a frame-folder benchmark: DFEW's
frame folders have no file a server could open, so their decoded frames go inline (lossless PNG frames with
their timing) and vLLM answers every sample; the report names the served model. A server that refuses the
frames' timing is a clear error, not a run of silently re-sampled frames."""

from __future__ import annotations

import json
import subprocess
import sys

from vllm_support import VLLM_MARKS, VLLM_PYTHON, free_port

from emoreason.serving.server import ServeConfig, VLLMServer

from dataset_fixtures import FIXTURES

pytestmark = VLLM_MARKS


def test_eval_endpoint_on_frame_folders(tmp_path, tiny_model_dirs):
    FIXTURES["dfew"](tmp_path / "dfew")
    media = tmp_path / "served-media"  # nothing is read from here: the frames travel inline
    media.mkdir()
    # per-request media kwargs carry the frames' indices and fps: a server for trusted clients allows them
    cfg = ServeConfig(model=str(tiny_model_dirs["qwen2_5_vl"]), media_dir=str(media), port=free_port(),
                      max_model_len=2048, python=str(VLLM_PYTHON), startup_timeout_s=600,
                      extra_args=["--trust-request-mm-kwargs"])
    with VLLMServer(cfg, log_path=tmp_path / "vllm.log"):
        result = subprocess.run(
            [sys.executable, "-m", "emoreason", "eval", "--benchmark", "dfew", "--endpoint", cfg.base_url,
             "--fold", "2", "--root", str(tmp_path / "dfew"), "--out", str(tmp_path / "eval"), "max_new_tokens=16",
             "frames.min_pixels=3136", "frames.max_pixels=12544"],
            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "eval" / "fold2" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["error"] is None and isinstance(r["text"], str) for r in rows), rows
    metrics = json.loads((tmp_path / "eval" / "fold2" / "metrics.json").read_text())
    assert metrics["generation_errors"] == 0 and metrics["recognition"]["n"] == 2
    assert metrics["protocol"]["model"]["served_model"] == cfg.name
    assert metrics["protocol"]["model"]["root"] == str(tiny_model_dirs["qwen2_5_vl"])


def test_a_server_refusing_frame_timing_is_a_clear_error(tmp_path, tiny_model_dirs):
    FIXTURES["dfew"](tmp_path / "dfew")
    cfg = ServeConfig(model=str(tiny_model_dirs["qwen2_5_vl"]), media_dir=str(tmp_path), port=free_port(),
                      max_model_len=2048, python=str(VLLM_PYTHON), startup_timeout_s=600)
    with VLLMServer(cfg, log_path=tmp_path / "vllm.log"):
        result = subprocess.run(
            [sys.executable, "-m", "emoreason", "eval", "--benchmark", "dfew", "--endpoint", cfg.base_url,
             "--fold", "2", "--root", str(tmp_path / "dfew"), "--out", str(tmp_path / "eval"), "max_new_tokens=4"],
            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "--trust-request-mm-kwargs" in result.stderr, result.stderr[-2000:]
