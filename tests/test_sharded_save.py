"""Saving under sharded training: with FSDP2 (and DeepSpeed ZeRO-3 where it is installed) over 2 CPU processes
(gloo), every rank takes part in gathering, rank 0 writes, LoRA is merged into the gathered weights, and `final/`
loads in a fresh process equal to what the shards held. The launch configs are recipes/accelerate_configs/
fsdp2.yaml and zero3.yaml themselves, on 2 processes without mixed precision."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from recipe_support import ROOT, recipe_yaml
from safetensors.torch import load_file

BACKENDS = [
    # two processes training full and LoRA: minutes on 2 cores, so in CI's `make test-slow`
    pytest.param("fsdp2", id="fsdp2", marks=pytest.mark.slow),
    # DeepSpeed runs ZeRO-3 on CPU (DS_ACCELERATOR=cpu, gloo) but is not a dependency: `pip install deepspeed`
    pytest.param("zero3", id="zero3", marks=[pytest.mark.slow, pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")]),
]


@pytest.fixture(scope="module", params=BACKENDS)
def sharded_run(request, tmp_path_factory, tiny_model_dirs, grpo_data):
    backend = request.param
    root = tmp_path_factory.mktemp(backend)
    launch = yaml.safe_load((ROOT / f"recipes/accelerate_configs/{backend}.yaml").read_text())
    launch.update(num_processes=2, mixed_precision="no")
    (root / "launch.yaml").write_text(yaml.safe_dump(launch))
    recipe = recipe_yaml(root / "r.yaml", {
        "model_name_or_path": str(tiny_model_dirs["qwen2_5_vl"]), "dataset_name": str(grpo_data),
        "output_dir": str(root / "unused"), "max_steps": 1, "per_device_train_batch_size": 1,
        "learning_rate": 0.01, "freeze_vision": False})
    paths = [str(ROOT / "tests/helpers"), str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=os.pathsep.join(filter(None, paths)))
    run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(root / "launch.yaml"), str(ROOT / "tests/helpers/sharded_save_check.py"), str(recipe),
                          str(root / "out")], env=env, timeout=1800, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    return backend, root / "out"


def _ranks(backend, run_dir):
    ranks = [json.loads((run_dir / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["world"] == 2 and r["step"] == 1 for r in ranks)
    if backend == "fsdp2":
        assert all(r["fsdp_version"] == 2 and r["sharded"] == r["params"] for r in ranks)  # every parameter split
    else:  # ZeRO-3 partitions the large matrices and keeps those under stage3_param_persistence_threshold whole
        assert all(r["zero_stage"] == 3 and r["sharded"] > 0 for r in ranks)
    assert ranks[0]["gathered"] > 0 and ranks[1]["gathered"] == 0  # gathered onto rank 0, written there
    return ranks


def _initial(tiny_model_dirs):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"]).state_dict()


def _final(run_dir):
    from transformers import AutoModelForImageTextToText

    from emoreason.models import saved_frame_policy

    assert saved_frame_policy(run_dir / "final")["max_frames"] == 4
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    return AutoModelForImageTextToText.from_pretrained(run_dir / "final").state_dict()


def test_full_save_equals_the_gathered_weights(sharded_run, tiny_model_dirs):
    backend, out = sharded_run
    _ranks(backend, out / "full")
    gathered = load_file(str(out / "full" / "gathered.safetensors"))
    final = _final(out / "full")
    initial = _initial(tiny_model_dirs)
    assert set(gathered) == set(final) == set(initial)
    for name, tensor in gathered.items():
        assert torch.equal(final[name], tensor), name
    assert any(not torch.equal(gathered[n], initial[n]) for n in initial)  # the step moved them


def test_lora_save_is_the_gathered_adapter_merged(sharded_run, tiny_model_dirs):
    """final/ equals peft's own merge of the gathered base and adapter weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from emoreason.training import LM_LORA_TARGETS

    backend, out = sharded_run
    _ranks(backend, out / "lora")
    gathered = load_file(str(out / "lora" / "gathered.safetensors"))
    assert any(".lora_B." in k and v.abs().sum() > 0 for k, v in gathered.items())  # the adapter trained
    reference = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"]), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LM_LORA_TARGETS, task_type="CAUSAL_LM"))
    missing, unexpected = reference.load_state_dict(gathered, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)  # lm_head: tied
    expected = reference.merge_and_unload().state_dict()
    final = _final(out / "lora")
    assert set(final) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    base = _initial(tiny_model_dirs)
    q = next(k for k in base if k.endswith("language_model.layers.0.self_attn.q_proj.weight"))
    assert not torch.allclose(final[q], base[q])  # the merged adapter is in the saved weights
