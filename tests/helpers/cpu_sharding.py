"""Let accelerate run its FSDP2 and DeepSpeed paths on CPU processes (gloo), for the multi-process save tests.

accelerate enables FSDP and DeepSpeed only on accelerator devices: on a machine without one, a launched process
with ``use_cpu`` becomes plain MULTI_CPU DDP, and without it, not distributed at all. FSDP2 itself
(``fully_shard``, DTensor, ``get_model_state_dict``) and DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``)
run on CPU tensors over gloo, so the test processes tell accelerate to treat the CPU as the device
(``ACCELERATE_TORCH_DEVICE=cpu``, a gloo process group under the multi-device type); accelerate's own FSDP2 /
ZeRO-3 preparation, gathering and saving then run unchanged.
"""

from __future__ import annotations

import os

import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType


def enable() -> None:
    if torch.cuda.is_available() or os.environ.get("LOCAL_RANK") is None:
        return
    os.environ["ACCELERATE_TORCH_DEVICE"] = "cpu"
    original = PartialState._prepare_backend

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        if cpu:
            return original(self, cpu, sagemaker_dp, backend)
        return "gloo", DistributedType.MULTI_GPU

    PartialState._prepare_backend = prepare_backend
