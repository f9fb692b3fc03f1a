"""emoreason demo: its output folder is claimed by its settings, and the whole pipeline runs at small settings."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from emoreason.commands import demo


def _args(out, **changes) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", "--out", str(out), *[a for k, v in changes.items()
                                                          for a in (f"--{k.replace('_', '-')}", str(v))]])


def test_a_folder_is_resumed_only_by_the_same_settings(tmp_path):
    out = tmp_path / "demo"
    demo._claim(out, _args(out))
    record = json.loads((out / "demo.json").read_text())
    assert record["clips"] == 800 and record["vision_patch"] == 28 and record["frames"]["max_frames"] == 2
    demo._claim(out, _args(out))  # the same settings: resumed
    with pytest.raises(SystemExit, match="other settings"):
        demo._claim(out, _args(out, clips=200))


def test_an_earlier_demos_outputs_are_refused_not_reused(tmp_path):
    out = tmp_path / "demo"
    (out / "sft" / "final").mkdir(parents=True)  # what the previous demo left: its SFT model would be skipped to
    (out / "sft" / "final" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="earlier demo"):
        demo._claim(out, _args(out))
    assert not (out / "demo.json").exists()


@pytest.mark.slow
def test_the_demo_runs_every_stage_and_ends_with_the_chance_table(tmp_path):
    """Small settings (80 clips, fractions of an epoch, one GRPO step; no vLLM): every stage runs and the run ends
    with the recognition table of the four models against chance."""
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "emoreason", "demo", "--out", str(out), "--clips", "80", "--warmup-epochs", "1",
               "--sft-epochs", "0.3", "--cot-epochs", "0.3", "--grpo-steps", "1", "--cot-eval-clips", "2",
               "--vllm-python", str(tmp_path / "no-vllm")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    closing = result.stdout.split("recognition on the held-out test identities")[-1]
    for name in ("untrained", "sft (short answers)", "sft + CoT", "grpo"):
        assert f"| {name} |" in closing
    assert "chance: 12.5 %" in closing
    for stage in ("warmup/final", "sft/final", "sft_cot/final", "grpo/final"):
        assert (out / stage / "config.json").is_file()
    assert json.loads((out / "eval" / "sft-emotion" / "metrics.json").read_text())["recognition"]["n"] > 0
    # a rerun resumes: every finished stage is reused (the CoT rows are rewritten identically, the warm-up kept)
    again = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "vision warm-up already done" in again.stderr
