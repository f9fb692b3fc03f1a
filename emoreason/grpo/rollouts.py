"""GRPO rollouts on a vLLM server, with video, and the policy's weights pushed to it every step.

TRL's vLLM path sends images only (trl#5373) and its server mode syncs weights over NCCL, which needs GPUs on
both sides and vLLM inside the trainer's environment (TRL 1.16 pins vllm<=0.31). This path needs neither: the
server is vLLM's own OpenAI-compatible server (``emoreason serve --weight-sync``, any vLLM with the RL/dev
endpoints, CPU or GPU, its own environment), and

* **inputs** are exactly the training frames: each sample's decoded frames go as a lossless PNG frame
  sequence (vLLM's ``video/jpeg`` frame-list data URL, decoded by PIL whatever the format) with their source
  indices, fps and frame count in per-request ``media_io_kwargs``, so vLLM builds the same video grid and
  temporal positions as the policy forward. Prompt token ids are compared with the trainer's, and a mismatch
  is an error naming the sample (the policy would score tokens the sampler never saw). An audio model
  (Qwen2.5-Omni) gets each video's audio beside it, by the rule ``eval --endpoint`` uses
  (:func:`emoreason.client.with_heard_audio`: the track the policy hears, silence of the clip's duration for a
  clip without one), so its prompt holds the same audio tokens;
* **weights** go through the filesystem: the main process writes the policy (LoRA merged in) as one
  safetensors file in ``sync_dir``, under the names of the checkpoint the server loaded (:func:`served_weights`;
  Qwen2.5-Omni's composite ``thinker.*``; the first sync checks them against the served checkpoint's,
  :func:`check_served_names`), and asks the server to reload it in place (``/pause`` →
  ``/collective_rpc reload_weights`` → cache resets → ``/resume``). ``sync_dir`` must be readable by the
  server at the same path (same machine or a shared filesystem; ``/dev/shm`` is fastest);
* **completions** come back as token ids (``return_token_ids``) with the sampling log-probs
  (``--logprobs-mode processed_logprobs``) for TRL's importance-sampling correction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from emoreason.audio import LoadedAudio
from emoreason.client import ChatClient, EndpointConfig, with_heard_audio
from emoreason.models.omni import composite_name, is_omni
from emoreason.reasoning import to_openai_messages
from emoreason.training.save import checkpoint_weights
from emoreason.video import LoadedFrames
from emoreason.video.inline import inline_media as media_payload  # shared with eval --endpoint

log = logging.getLogger(__name__)


class RolloutError(RuntimeError):
    """The vLLM server could not produce a rollout or take the new weights."""


@dataclass
class Completion:
    token_ids: list[int]
    logprobs: list[float]  # sampling log-prob of each token (NaN where the server gave none)
    truncated: bool  # stopped by the length budget, not by EOS


def rollout_messages(conversation: list[dict], loaded: LoadedFrames | None, audio: LoadedAudio | None = None,
                     hears: bool = False, audio_window_s: float | None = None) -> tuple[list[dict], dict]:
    """The trainer's chat messages in OpenAI format with the frames inlined, and the request's extra parameters
    (media kwargs; for a model that ``hears``, the audio the policy's forward hears, by the rule ``eval --endpoint``
    sends it with: :func:`emoreason.client.with_heard_audio`)."""
    if loaded is None:
        return to_openai_messages(conversation), {}
    url, media_kwargs = media_payload(loaded)
    messages = to_openai_messages(conversation, url)
    extra = {"media_io_kwargs": media_kwargs} if media_kwargs else {}
    if not hears:
        return messages, extra
    messages, heard = with_heard_audio(messages, loaded, audio, audio_window_s)
    return messages, {**extra, **heard}


def served_weights(model, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` (``model``'s state-dict names, :func:`checkpoint_weights`) under the names of the checkpoint the
    server loaded: transformers' own reverse of the renaming it loaded the model with (what ``save_pretrained``
    writes; e.g. Qwen2.5-Omni's ``model.language_model.*`` → ``thinker.model.*``), and for Qwen2.5-Omni the released
    composite layout's ``thinker.`` prefix (``emoreason.models.omni``: vLLM serves only that layout, and maps
    ``thinker.model.*`` / ``thinker.visual.*`` / ``thinker.audio_tower.*`` onto its modules). Tensors are not
    copied."""
    from transformers.core_model_loading import revert_weight_conversion

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    named = revert_weight_conversion(base, weights)
    if is_omni(base.config):
        named = {composite_name(name): tensor for name, tensor in named.items()}
    return named


@contextmanager
def merged_weights(model) -> Iterator[dict[str, torch.Tensor]]:
    """A single-process model's weights under the served checkpoint's names (:func:`served_weights`), LoRA
    adapters merged in out of place (the model is not modified). Tied weights (embeddings = LM head) appear under
    both names: vLLM's in-place reload sets each separately. Under a launcher,
    ``emoreason.training.save.policy_weights`` gathers them first."""
    yield served_weights(model, checkpoint_weights(model, model.state_dict()))


def checkpoint_weight_names(checkpoint: str | Path) -> set[str] | None:
    """The weight names stored in ``checkpoint`` (a local directory or a hub id in the local cache): the
    ``model.safetensors.index.json`` weight map, else the ``*.safetensors`` headers. None when it cannot be read
    here (e.g. the server runs elsewhere)."""
    from safetensors import safe_open

    folder = Path(checkpoint)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(checkpoint), local_files_only=True,
                                            allow_patterns=["*.safetensors", "*.json"]))
        except Exception:  # noqa: BLE001 - not a hub id, or not cached here: the check cannot run
            return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    for file in files:
        with safe_open(str(file), "pt") as handle:
            names.update(handle.keys())
    return names


_NOT_SERVED = ("talker.", "token2wav.")  # vLLM 0.32 qwen2_5_omni_thinker.py hf_to_vllm_mapper: dropped


def check_served_names(sent: Iterable[str], expected: set[str], checkpoint: str | Path) -> None:
    """Raise RolloutError when the names a weight sync sends differ from those of the checkpoint the server loaded.
    vLLM's in-place reload only logs the weights it did not load, so a mismatch would leave those parameters at
    their initial values and make every rollout off-policy. A tied LM head (``*lm_head.weight``, absent from a
    checkpoint with tied embeddings) may be sent beside the embeddings. A released Qwen2.5-Omni checkpoint's speech
    parts (``talker.*``, ``token2wav.*``) are not served (vLLM's thinker maps them to nothing) and not compared."""
    sent = set(sent)
    missing = sorted(name for name in expected - sent if not name.startswith(_NOT_SERVED))
    extra = sorted(name for name in sent - expected if not name.endswith("lm_head.weight"))
    if missing or extra:
        def show(names: list[str]) -> str:
            return ", ".join(names[:8]) + (f" … (+{len(names) - 8})" if len(names) > 8 else "")

        raise RolloutError(
            f"the weight sync's names do not match the served checkpoint {checkpoint}: "
            + "; ".join(part for part in (
                f"{len(missing)} not sent (they would stay stale on the server): {show(missing)}" if missing else "",
                f"{len(extra)} not in the checkpoint (the server would not load them): {show(extra)}"
                if extra else "") if part)
            + ". Serve the checkpoint the policy was loaded from (same model family and layout).")


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


class VLLMServerRollouts:
    """Samples completions for (conversation, frames) groups on a vLLM server and pushes weights to it."""

    def __init__(self, base_url: str, sync_dir: str | Path, timeout_s: float = 600.0, concurrency: int = 16,
                 model: str | None = None, served_checkpoint: str | Path | None = None):
        base = base_url.rstrip("/").removesuffix("/v1")
        self.root, self.sync_dir, self.timeout_s = base, Path(sync_dir).resolve(), timeout_s
        self.endpoint = EndpointConfig(base_url=f"{base}/v1", model=model, concurrency=concurrency,
                                       timeout_s=timeout_s, retries=2)
        self.prompts_checked = self.prompt_mismatches = 0
        # the checkpoint the server loaded (``check`` reads it from the server); the first sync checks its names
        self.served_checkpoint, self._names_checked = served_checkpoint, False

    # --- control endpoints -------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        """The API key (OPENAI_API_KEY), which `emoreason serve --api-key` requires on the dev endpoints too."""
        key = self.endpoint.key()
        return {"Authorization": f"Bearer {key}"} if key != "EMPTY" else {}

    def _post(self, path: str, body: dict | None = None) -> str:
        request = urllib.request.Request(f"{self.root}{path}", data=json.dumps(body or {}).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **self._auth()})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            hint = (" (start the server with `emoreason serve --weight-sync`, which enables vLLM's RL/dev "
                    "endpoints)" if exc.code == 404 else "")
            raise RolloutError(f"vLLM server {self.root}{path}: HTTP {exc.code} {detail}{hint}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RolloutError(f"vLLM server {self.root}{path}: {exc}") from exc

    def check(self) -> None:
        """Fail early with a clear message when the server is down or lacks the weight-reload endpoints."""
        try:
            with urllib.request.urlopen(f"{self.root}/health", timeout=10):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise RolloutError(f"no vLLM server at {self.root} ({exc}); start one with `emoreason serve "
                               "--model MODEL --media-dir DIR --weight-sync`") from exc
        try:
            request = urllib.request.Request(f"{self.root}/server_info?config_format=json", headers=self._auth())
            with urllib.request.urlopen(request, timeout=120) as response:
                info = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise RolloutError(f"vLLM server {self.root} refused the API key (HTTP 401): set OPENAI_API_KEY "
                                   "to the server's --api-key") from exc
            raise RolloutError(f"vLLM server {self.root} has no dev endpoints (/server_info, HTTP {exc.code}); "
                               "restart it with `emoreason serve --weight-sync` (sets VLLM_SERVER_DEV_MODE=1)") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RolloutError(f"vLLM server {self.root} has no dev endpoints (/server_info); restart it with "
                               "`emoreason serve --weight-sync` (sets VLLM_SERVER_DEV_MODE=1)") from exc
        config = info.get("vllm_config")
        model_config = config.get("model_config", {}) if isinstance(config, dict) else {}
        mode = model_config.get("logprobs_mode")
        self.served_checkpoint = self.served_checkpoint or model_config.get("model")
        if mode not in (None, "processed_logprobs"):
            log.warning("vLLM runs with --logprobs-mode %s: the importance-sampling correction is biased; "
                        "`emoreason serve --weight-sync` sets processed_logprobs", mode)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> Path:
        """Write ``weights`` (checkpoint names) and make the server reload them in place. The first call checks
        the names against the served checkpoint's (:func:`check_served_names`)."""
        from safetensors.torch import save_file

        if not self._names_checked:
            self.check_names(weights)

        self.sync_dir.mkdir(parents=True, exist_ok=True)
        target, partial = self.sync_dir / "model.safetensors", self.sync_dir / "model.safetensors.partial"
        seen, tensors = set(), {}
        for name, tensor in weights.items():
            tensor = tensor.detach().to("cpu").contiguous()
            tensors[name] = tensor.clone() if tensor.data_ptr() in seen else tensor  # safetensors refuses aliases
            seen.add(tensor.data_ptr())
        save_file(tensors, str(partial))
        os.replace(partial, target)  # the server never sees a half-written file
        self._post("/pause?mode=wait")
        try:
            self._post("/collective_rpc", {"method": "reload_weights",
                                           "kwargs": {"weights_path": str(self.sync_dir)}})
            # cached prefixes and vision-encoder outputs were computed with the old weights
            for path in ("/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache"):
                self._post(path)
        finally:
            self._post("/resume")
        return target

    def check_names(self, weights: Iterable[str]) -> None:
        """Raise RolloutError when ``weights``' names differ from the served checkpoint's; a warning (and no
        check) when that checkpoint cannot be read on this machine."""
        expected = checkpoint_weight_names(self.served_checkpoint) if self.served_checkpoint else None
        if expected is None:
            log.warning("cannot read the served checkpoint %r here: the weight sync's names are not checked "
                        "(the server logs 'Following weights were not loaded' on a mismatch)",
                        self.served_checkpoint)
        else:
            check_served_names(weights, expected, self.served_checkpoint)
        self._names_checked = True

    # --- sampling ----------------------------------------------------------------------------------------
    def generate(self, groups: Sequence[tuple[list[dict], LoadedFrames | None, int]], *, max_tokens: int,
                 temperature: float, top_p: float, seed: int, suppress_tokens: Sequence[int] = (),
                 labels: Sequence[str] = (), expected_prompts: Sequence[list[int] | None] | None = None,
                 sampling: dict | None = None, audio: Sequence[LoadedAudio | None] | None = None,
                 audio_window_s: float | None = None) -> list[list[Completion]]:
        """For each (conversation, frames, n) group, n sampled completions; raises RolloutError naming the
        group's label when the server fails after retries. ``sampling``: more of vLLM's sampling parameters
        (``top_k``, ``min_p``, ``repetition_penalty``, ``structured_outputs`` …), sent as they are. ``audio`` (one
        entry per group, None where a clip has no track) for an audio model: each video is sent with what the
        policy hears (its track or silence of its duration, cut to ``audio_window_s``); None sends video only."""
        requests = []
        for i, (conversation, loaded, n) in enumerate(groups):
            messages, media_extra = rollout_messages(conversation, loaded, audio[i] if audio is not None else None,
                                                     hears=audio is not None, audio_window_s=audio_window_s)
            extra = {**(sampling or {}), **media_extra, "return_token_ids": True, "skip_special_tokens": False}
            params = {"n": n, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                      "seed": seed + i, "logprobs": True, "extra_body": extra}
            if suppress_tokens:  # a sampled vision placeholder would break the policy forward
                params["logit_bias"] = {str(t): -100 for t in suppress_tokens}
            requests.append((messages, params))

        async def _go():
            client = ChatClient(self.endpoint)
            try:
                return await asyncio.gather(*(client.chat(m, **p) for m, p in requests))
            finally:
                await client.close()

        results = asyncio.run(_go())
        out = []
        for i, result in enumerate(results):
            label = labels[i] if i < len(labels) else f"group {i}"
            if not result.ok:
                raise RolloutError(f"vLLM rollout for {label} failed: {result.error}")
            choices = result.response.choices
            if expected_prompts is not None and expected_prompts[i] is not None:
                served = (result.response.model_extra or {}).get("prompt_token_ids")
                if served is not None:
                    self.prompts_checked += 1
                if served is not None and list(served) != list(expected_prompts[i]):
                    self.prompt_mismatches += 1
                    raise RolloutError(f"vLLM saw different prompt tokens for {label} than the policy "
                                       f"({len(served)} vs {len(expected_prompts[i])} tokens, first difference at "
                                       f"{_first_difference(served, expected_prompts[i])}): the server's model, "
                                       "processor or chat template does not match the trainer's")
            out.append([self._completion(choice, label) for choice in choices])
        return out

    @staticmethod
    def _completion(choice, label: str) -> Completion:
        ids = (choice.model_extra or {}).get("token_ids")
        if ids is None:
            raise RolloutError(f"vLLM returned no token ids for {label}: the server needs vLLM with "
                               "`return_token_ids` (>= 0.10.2)")
        entries = (choice.logprobs.content or []) if choice.logprobs is not None else []
        logprobs = [float(e.logprob) for e in entries][:len(ids)]
        logprobs += [float("nan")] * (len(ids) - len(logprobs))
        return Completion(list(ids), logprobs, choice.finish_reason == "length")
