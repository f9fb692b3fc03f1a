"""The serving launcher without vLLM: refusals before anything loads (busy port, remote weight sync, no chat
template, bad engine settings), the process-group lifecycle on stand-in server processes that ignore SIGTERM,
media packing between client and server, the client's inline cap, the JSON answer schema, and the batch exit
codes of predict / eval / synth-cot."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from PIL import Image
from vllm_support import ROOT, VLLM_MARKS, VLLM_PYTHON, cli_env, emoreason_cli, wait_until

from emoreason.cli import main
from emoreason.client import EndpointConfig, predict_many
from emoreason.commands.exit_codes import ALL_FAILED, OK, SOME_FAILED
from emoreason.serving import process as proc
from emoreason.serving.server import ServeConfig, ServeError, command, environment, validate
from emoreason.video import FramePolicy, load_frames
from emoreason.video.packing import MediaTooLargeError, load_frames_from_bytes, pack_frame_folder

from openai_stub import StubServer, echo_draft, user_text


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    return root


def _cfg(model, media, **kw) -> ServeConfig:
    return ServeConfig(model=str(model), media_dir=str(media), **kw)


# --- refusals before anything loads ------------------------------------------------------------------------
def test_port_in_use_is_named_within_five_seconds(tiny_model_dirs, media):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = time.monotonic()
        result = subprocess.run(emoreason_cli("serve", "--model", str(tiny_model_dirs["qwen2_5_vl"]), "--media-dir",
                                              str(media), "--port", str(port)),
                                capture_output=True, text=True, env=cli_env(), timeout=60)
        elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert elapsed < 5, elapsed


def test_weight_sync_binds_loopback_unless_explicitly_allowed_with_a_key(tiny_model_dirs, media):
    model = tiny_model_dirs["qwen2_5_vl"]
    validate(_cfg(model, media, weight_sync=True))  # loopback: fine without a key
    with pytest.raises(ServeError, match="binds to loopback only.*--allow-remote-weight-sync and --api-key"):
        validate(_cfg(model, media, weight_sync=True, host="0.0.0.0"))
    with pytest.raises(ServeError, match="needs --api-key"):
        validate(_cfg(model, media, weight_sync=True, host="0.0.0.0", allow_remote_weight_sync=True))
    validate(_cfg(model, media, weight_sync=True, host="0.0.0.0", allow_remote_weight_sync=True, api_key="k"))


def test_cli_refuses_remote_weight_sync(tiny_model_dirs, media):
    result = subprocess.run(emoreason_cli("serve", "--model", str(tiny_model_dirs["qwen2_5_vl"]), "--media-dir",
                                          str(media), "--host", "0.0.0.0", "--weight-sync", "--port", "1"),
                            capture_output=True, text=True, env=cli_env(), timeout=60)
    assert result.returncode == 1 and "loopback only" in result.stderr, result.stderr


def test_api_key_goes_to_vllm_by_environment_not_command_line(tiny_model_dirs, media):
    # python given: the command is built without a vLLM venv (CI runs this before it builds one)
    cfg = _cfg(tiny_model_dirs["qwen2_5_vl"], media, api_key="s3cret", tensor_parallel_size=2, max_num_seqs=8,
               dtype="bfloat16", quantization="fp8", enable_prefix_caching=False, frames={"fps": 1.0},
               python=sys.executable)
    args = command(cfg)
    assert "s3cret" not in " ".join(args)
    env = environment(cfg)
    assert env["VLLM_API_KEY"] == "s3cret" and env["EMOREASON_GUARD_ROUTES"] == "1"
    assert "VLLM_API_KEY" not in environment(_cfg(tiny_model_dirs["qwen2_5_vl"], media))
    flags = dict(zip(args, args[1:], strict=False))
    assert flags["--tensor-parallel-size"] == "2" and flags["--max-num-seqs"] == "8"
    assert flags["--dtype"] == "bfloat16" and flags["--quantization"] == "fp8"
    assert "--no-enable-prefix-caching" in args
    video = json.loads(flags["--media-io-kwargs"])["video"]
    assert video["video_backend"] == "emoreason" and video["frame_policy"]["fps"] == 1.0
    assert video["frame_policy"]["factor"] == 28 and video["max_bytes"] == 64 * 2**20


def test_an_audio_visual_model_may_send_its_audio_per_prompt(tiny_model_dirs, tiny_omni_dir, media):
    def limits(model) -> dict:
        args = command(_cfg(model, media, python=sys.executable))
        return json.loads(dict(zip(args, args[1:], strict=False))["--limit-mm-per-prompt"])

    assert limits(tiny_omni_dir) == {"video": 1, "image": 1, "audio": 1}
    assert limits(tiny_model_dirs["qwen2_5_vl"]) == {"video": 1, "image": 1}


def test_the_server_decodes_no_more_audio_than_the_model_hears(tiny_model_dirs, tiny_omni_dir, media, monkeypatch):
    """vLLM decodes up to 600 s of an audio part by default; the served Omni model hears its feature extractor's
    window (30 s for the tiny model), so the launcher caps decoding there (an operator's own setting stands)."""
    monkeypatch.delenv("VLLM_MAX_AUDIO_DECODE_DURATION_S", raising=False)
    assert environment(_cfg(tiny_omni_dir, media))["VLLM_MAX_AUDIO_DECODE_DURATION_S"] == "30"
    assert "VLLM_MAX_AUDIO_DECODE_DURATION_S" not in environment(_cfg(tiny_model_dirs["qwen2_5_vl"], media))
    monkeypatch.setenv("VLLM_MAX_AUDIO_DECODE_DURATION_S", "90")
    assert environment(_cfg(tiny_omni_dir, media))["VLLM_MAX_AUDIO_DECODE_DURATION_S"] == "90"


def test_audio_asked_of_a_served_model_that_hears_none_is_a_clear_error():
    from emoreason.client import ModalitiesError, served_modalities

    with pytest.raises(ModalitiesError, match="takes no audio .*--modalities video"):
        served_modalities("audio+video", False, "http://127.0.0.1:1/v1")
    assert served_modalities(None, True, "x") == "audio+video" and served_modalities(None, False, "x") == "video"
    assert served_modalities(None, None, "x") == "video"  # weights not readable here: only what is asked
    assert served_modalities("audio", None, "x") == "audio"


@pytest.mark.parametrize(("settings", "message"), [
    ({"tensor_parallel_size": 3}, "must divide the model's 2 attention heads"),
    ({"tensor_parallel_size": 0}, "--tensor-parallel-size must be a positive integer"),
    ({"max_num_seqs": 0}, "--max-num-seqs must be a positive integer"),
    ({"max_model_len": 10**6}, "longer than the model's context"),
    ({"dtype": "fp7"}, "--dtype 'fp7' is not one of"),
    ({"quantization": " "}, "--quantization needs a method name"),
    ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization must be in"),
    ({"frames": {"fsp": 2}}, "unknown frame policy key"),
    ({"port": 70000}, "not a TCP port"),
    ({"extra_args": ["--api-key", "k"]}, "not to vLLM after --"),
])
def test_engine_settings_are_checked_before_loading(tiny_model_dirs, media, settings, message):
    with pytest.raises(ServeError, match=message):
        validate(_cfg(tiny_model_dirs["qwen2_5_vl"], media, **settings))


def test_model_without_chat_template_is_a_clear_error(tiny_model_dirs, media, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["qwen2_5_vl"], model)
    (model / "chat_template.jinja").unlink()
    for name in ("tokenizer_config.json", "processor_config.json"):
        config = json.loads((model / name).read_text())
        config.pop("chat_template", None)
        (model / name).write_text(json.dumps(config))
    with pytest.raises(ServeError, match="has no chat template"):
        validate(_cfg(model, media))
    validate(_cfg(model, media, extra_args=["--chat-template", "t.jinja"]))


# --- lifecycle on stand-in servers ---------------------------------------------------------------------------
STUBBORN_SERVER = textwrap.dedent("""
    import signal, subprocess, sys, time
    from emoreason.serving.vllm_entry import arm_lifecycle
    arm_lifecycle()  # what vLLM's process runs first under `emoreason serve`
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a server (and a child) that ignore SIGTERM: the worst case
    time.sleep(600)
""")


def _spawn_stubborn(tmp_path, grace: float):
    return proc.spawn_group([sys.executable, "-c", STUBBORN_SERVER], cli_env(), tmp_path / "server.log", grace)


def test_stop_group_kills_processes_that_ignore_sigterm(tmp_path):
    process, death_fd = _spawn_stubborn(tmp_path, grace=30)
    try:
        assert wait_until(lambda: len(proc.group_members(process.pid)) == 3, 30), proc.group_members(process.pid)
        start = time.monotonic()
        proc.stop_group(process.pid, process, grace=1.0)
        assert proc.group_members(process.pid) == [] and process.returncode == -signal.SIGKILL
        assert 1.0 <= time.monotonic() - start < 10
    finally:
        proc.signal_group(process.pid, signal.SIGKILL)
        import os

        os.close(death_fd)


LAUNCHER = textwrap.dedent("""
    import sys, time
    from emoreason.serving import process as proc
    server, death_fd = proc.spawn_group([sys.executable, "-c", sys.argv[1]], dict(__import__("os").environ),
                                        sys.argv[2], grace=2.0)
    print(server.pid, flush=True)
    time.sleep(600)
""")


def test_launcher_killed_outright_leaves_no_process_behind(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, STUBBORN_SERVER, str(tmp_path / "s.log")],
                                stdout=subprocess.PIPE, text=True, env=cli_env())
    pgid = int(launcher.stdout.readline())
    try:
        assert wait_until(lambda: len(proc.group_members(pgid)) == 3, 30), proc.group_members(pgid)
        launcher.kill()  # SIGKILL: no handler, no cleanup in the launcher
        launcher.wait()
        start = time.monotonic()
        assert wait_until(lambda: not proc.group_members(pgid), 15, 0.1), proc.group_members(pgid)
        assert time.monotonic() - start < 2.0 + 5  # the grace period, then SIGKILL from the reaper
        assert "the launcher is gone" in (tmp_path / "s.log").read_text()
    finally:
        proc.signal_group(pgid, signal.SIGKILL)


def test_signal_guard_records_and_restores():
    previous = signal.getsignal(signal.SIGHUP)
    with proc.SignalGuard() as guard:
        signal.raise_signal(signal.SIGHUP)
        assert guard.caught and guard.exit_code == 128 + signal.SIGHUP
    assert signal.getsignal(signal.SIGHUP) is previous


def test_group_rss_sums_the_group():
    import os

    assert proc.group_rss_bytes(os.getpgrp()) >= proc.group_rss_bytes(-1) == 0


# --- media between client and server --------------------------------------------------------------------------
def _folder(tmp_path, n=12, size=(64, 48)):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img_{i:04d}.jpg")
    return folder


def test_packed_frame_folder_loads_exactly_like_the_folder(tmp_path):
    folder = _folder(tmp_path)
    policy = FramePolicy(fps=8.0, max_frames=6, min_pixels=3136, max_pixels=12544)
    local, served = load_frames(folder, policy), load_frames_from_bytes(pack_frame_folder(folder), policy)
    assert np.array_equal(local.frames, served.frames) and local.indices == served.indices
    assert local.video_metadata() == served.video_metadata() and served.kind == "frames"


def test_video_bytes_load_exactly_like_the_file(demo_clip):
    policy = FramePolicy(fps=4.0, max_frames=6, min_pixels=3136, max_pixels=12544)
    local, served = load_frames(demo_clip, policy), load_frames_from_bytes(demo_clip.read_bytes(), policy)
    assert np.array_equal(local.frames, served.frames)
    assert local.video_metadata() == served.video_metadata()


def test_packed_media_is_capped_and_cannot_escape(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(MediaTooLargeError, match="inline cap"):
        pack_frame_folder(folder, max_bytes=1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape.png", (folder / "img_0000.jpg").read_bytes())
        archive.writestr("a/b.png", (folder / "img_0001.jpg").read_bytes())
    loaded = load_frames_from_bytes(buffer.getvalue(), FramePolicy(min_frames=2), max_bytes=2**20)
    assert len(set(loaded.indices)) == 2  # both frames read, from inside the unpack folder
    assert not (tmp_path.parent / "escape.png").exists() and not (tmp_path / "escape.png").exists()
    with zipfile.ZipFile(buffer, "a") as archive:  # a bomb: 3 MiB of zeros compress to almost nothing
        archive.writestr("big.png", bytes(3 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
    assert len(buffer.getvalue()) < 2**20
    with pytest.raises(MediaTooLargeError, match="unpacks to"):
        load_frames_from_bytes(buffer.getvalue(), FramePolicy(), max_bytes=2**20)
    with pytest.raises(MediaTooLargeError, match="media cap"):
        load_frames_from_bytes(bytes(2 * 2**20), FramePolicy(), max_bytes=2**20)


def test_client_inline_cap_is_a_clear_error_before_any_request(demo_clip, tmp_path):
    with StubServer(lambda messages: ("ok", "<answer>happiness</answer>")) as server:
        config = EndpointConfig(base_url=server.base_url, max_inline_mb=0.001, retries=0)
        capped, folder = predict_many(config, [demo_clip, _folder(tmp_path)])
        assert server.requests == 0
    assert "inline cap" in capped.error and str(demo_clip) in capped.error and "--media-dir" in capped.error
    assert "inline cap" in folder.error


def test_json_answer_schema_matches_the_json_variant():
    from emoreason.knowledge import ACTION_UNITS
    from emoreason.reasoning import (
        ANSWER_OPEN,
        AUObservation,
        ResponseContent,
        answer_json_schema,
        format_response,
        json_response_format,
    )

    text = format_response(ResponseContent("happiness", [AUObservation(6, "C"), AUObservation(12, "D")], "i.", "c.",
                                           valence=0.7, arousal=0.4), "json")
    answer = json.loads(text.split(ANSWER_OPEN, 1)[1].rsplit("<", 1)[0])
    schema = answer_json_schema(["happiness", "sadness"])
    assert set(answer) <= set(schema["properties"]) and set(schema["required"]) <= set(answer)
    assert answer["emotion"] in schema["properties"]["emotion"]["enum"]
    assert set(answer["aus"]) <= set(ACTION_UNITS) == set(schema["properties"]["aus"]["items"]["enum"])
    tag = json_response_format(["happiness"], think_max_tokens=50)
    think, answer_tag = tag["format"]["elements"]
    assert text.startswith(think["begin"]) and think["content"]["max_tokens"] == 50
    assert answer_tag["begin"] == ANSWER_OPEN and text.endswith(answer_tag["end"])


# --- exit codes ----------------------------------------------------------------------------------------------
def test_predict_exit_codes(tiny_model_dirs, demo_clip, tmp_path, capsys):
    model = str(tiny_model_dirs["qwen2_5_vl"])
    missing = str(tmp_path / "missing.mp4")
    base = ["predict", "--model", model, "--max-tokens", "2"]
    assert main([*base, str(demo_clip)]) == OK
    assert main([*base, str(demo_clip), missing]) == SOME_FAILED
    assert main([*base, missing, str(tmp_path / "also-missing.mp4")]) == ALL_FAILED
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["error"] is None for r in rows] == [True, True, False, False, False]
    assert "0  every item succeeded" in subprocess.run(emoreason_cli("predict", "--help"), env=cli_env(),
                                                                  capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    from emoreason.synth import SynthConfig, build_dataset

    root = tmp_path_factory.mktemp("exitsynth")
    build_dataset(SynthConfig(out=str(root), clips=12, frames=8, size=64, identities=4, seed=1, difficulty="easy"),
                  workers=1, progress=False)
    return root


def _first_record(root):
    from emoreason.datasets import load_records

    return load_records("synthfacs", root)[0]


@pytest.mark.parametrize("code", [OK, ALL_FAILED, SOME_FAILED])
def test_eval_exit_codes(small_synth, tmp_path, code):
    answered = itertools.count()

    def behaviour(messages):
        failing = code == ALL_FAILED or (code == SOME_FAILED and next(answered) == 0)  # one sample fails
        return ("error", 400) if failing else ("ok", "<think>AU6 and AU12.</think><answer>happiness</answer>")

    with StubServer(behaviour) as server:
        result = main(["eval", "--benchmark", "synthfacs", "--endpoint", server.base_url, "--out",
                       str(tmp_path / "e"), "--root", str(small_synth), "split=null"])
    assert result == code


@pytest.mark.parametrize("code", [OK, ALL_FAILED, SOME_FAILED])
def test_synth_cot_exit_codes(small_synth, tmp_path, code):
    args = ["synth-cot", f"dataset_root={small_synth}", f"output_dir={tmp_path / 'c'}"]
    if code == OK:  # the template composer alone
        assert main(args) == OK
        return
    label = _first_record(small_synth).emotion

    def behaviour(messages):
        failing = code == ALL_FAILED or f"\nLabel: {label}\n" in user_text(messages)
        return ("error", 400) if failing else echo_draft(messages)

    with StubServer(behaviour) as server:
        assert main([*args, f"teacher.base_url={server.base_url}", "teacher.retries=0"]) == code


def test_exit_code_help_is_documented():
    for command_name in ("eval", "synth-cot"):
        out = subprocess.run(emoreason_cli(command_name, "--help"), env=cli_env(), capture_output=True, text=True,
                             cwd=ROOT).stdout
        assert "3  every item failed" in out and "4  some items failed" in out, command_name
    assert "128 + signal" in subprocess.run(emoreason_cli("serve", "--help"), env=cli_env(), capture_output=True,
                                            text=True).stdout


def test_synth_cot_exit_code_counts_records_not_rows(small_synth, tmp_path):
    """With several row types per clip (`tasks`), a record whose rationale failed is still a failed item, though
    its other rows (AU list, label) passed: rows carry ids like `clip:au_perception`."""
    label = _first_record(small_synth).emotion

    def behaviour(messages):
        return ("error", 400) if f"\nLabel: {label}\n" in user_text(messages) else echo_draft(messages)

    args = ["synth-cot", f"dataset_root={small_synth}", f"output_dir={tmp_path / 'c'}",
            "tasks=[cot,au_perception,emotion]"]
    with StubServer(behaviour) as server:
        assert main([*args, f"teacher.base_url={server.base_url}", "teacher.retries=0"]) == SOME_FAILED


def test_omni_worker_patch_fails_loudly_when_vllm_changes(monkeypatch):
    """vllm_worker replaces vLLM's Qwen2.5-Omni M-RoPE positions; a vLLM whose layout moved (no such module, no such
    method) must stop the worker with a message, not serve the model silently one position off. A launcher
    process without vLLM still imports it for the extension's name."""
    import importlib.machinery
    import types

    import emoreason.serving.vllm_worker as worker

    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    importlib.reload(worker)  # no vLLM here (the launcher's venv): nothing to patch, no error
    assert worker.EXTENSION.endswith("EmoreasonWorkerExtension")

    fake = types.ModuleType("vllm")
    fake.__path__, fake.__spec__ = [], importlib.machinery.ModuleSpec("vllm", None, is_package=True)
    models = types.ModuleType("vllm.model_executor.models")
    omni = types.ModuleType("vllm.model_executor.models.qwen2_5_omni_thinker")
    omni.Qwen2_5OmniThinkerForConditionalGeneration = type("Renamed", (), {"mrope_positions": lambda self: None})
    for name, module in (("vllm", fake), ("vllm.model_executor", types.ModuleType("vllm.model_executor")),
                         ("vllm.model_executor.models", models), (omni.__name__, omni)):
        monkeypatch.setitem(sys.modules, name, module)
    models.qwen2_5_omni_thinker = omni
    sys.modules["vllm.model_executor"].models = models
    with pytest.raises(RuntimeError, match="get_mrope_input_positions"):
        importlib.reload(worker)
    monkeypatch.delitem(sys.modules, omni.__name__)
    del models.qwen2_5_omni_thinker
    with pytest.raises(RuntimeError, match="qwen2_5_omni_thinker"):
        importlib.reload(worker)
    monkeypatch.undo()
    importlib.reload(worker)


_SWITCH_PROBE = """
import sys
from emoreason.serving import vllm_entry
from vllm.entrypoints.generate.base import protocol
before = protocol.validate_request_mm_kwargs
vllm_entry.hear_audio_if_served(["--model", sys.argv[1]])
print("patched" if protocol.validate_request_mm_kwargs is not before else "untouched")
"""


@pytest.mark.parametrize("model_type, expected", [("qwen2_5_vl", "untouched"), ("qwen2_5_omni", "patched")])
@pytest.mark.slow
@pytest.mark.vllm
@VLLM_MARKS[2]
def test_the_untrusted_audio_switch_is_open_only_for_a_model_that_hears(tmp_path, model_type, expected):
    """vLLM acts on use_audio_in_video by decoding the video file's whole audio track: a server whose model hears
    no audio must not accept the switch from untrusted clients (nor take the Omni patches)."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": ["X"]}))
    out = subprocess.run([str(VLLM_PYTHON), "-c", _SWITCH_PROBE, str(tmp_path)], capture_output=True, text=True,
                         env=cli_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected


def test_a_rewritten_file_gets_a_new_audio_visual_cache_key(tmp_path):
    """With a uuid set vLLM no longer hashes the video, so the key of a ``file://`` video or track holds the file's
    size and modification time: a clip replaced in place (eval's by-file path) is not answered from stale items."""
    import os
    from urllib.request import pathname2url

    from emoreason.serving.vllm_entry import _keyed_with_track

    clip, track = tmp_path / "clip.mp4", tmp_path / "clip.wav"
    clip.write_bytes(b"first clip")
    track.write_bytes(b"first track")
    video_url, track_url = f"file://{pathname2url(str(clip))}", f"file://{pathname2url(str(track))}"
    first = _keyed_with_track(None, video_url, track_url)
    assert _keyed_with_track(None, video_url, track_url) == first  # an unchanged file keeps its key
    clip.write_bytes(b"other clip")  # same size: the modification time tells them apart
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 1_000_000))
    second = _keyed_with_track(None, video_url, track_url)
    assert second != first
    track.write_bytes(b"a longer track")
    assert _keyed_with_track(None, video_url, track_url) != second
    data_video, data_track = "data:video/jpeg;base64,AAAA", "data:audio/wav;base64,BBBB"
    assert _keyed_with_track("u", data_video, data_track) == _keyed_with_track("u", data_video, data_track)
    assert _keyed_with_track("u", data_video, data_track) != _keyed_with_track("v", data_video, data_track)
