"""``VideoGRPOTrainer``: TRL's GRPOTrainer (which takes images, not video: trl#5373, #4144) with video.

Rollouts and the policy/reference log-prob forwards receive real video inputs — ``pixel_values_videos``,
``video_grid_thw`` and, for Qwen2.5-VL, ``second_per_grid_ts`` — so the model keeps its temporal position
encoding; frames-as-images would lose it. Everything else is TRL's: the repeat sampler that places G copies
of each prompt in a batch, reward calling (``_calculate_rewards``), the GRPO/DAPO loss (``_compute_loss``),
generation config, logging.

Coupling to TRL internals, pinned to trl 1.16 (``tests/test_grpo.py`` fails loudly if they change):
``_generate_and_score_completions`` (replaced: rollouts with video, rewards, group-normalised advantages),
``_get_per_token_logps_and_entropies`` (replaced: slices per-sample video tensors per chunk), ``_compute_loss``
(wrapped: hands the batch's video tensors to the log-prob forward), ``_calculate_rewards`` and ``_metrics``
(used as they are), and ``use_vllm``, which TRL's loss reads to apply the importance-sampling ratio.

Rollouts: HF ``generate`` (default; CPU or GPU), or a vLLM server (``use_vllm: true, vllm_mode: server``) that
receives the same frames and the policy's weights every step (``emoreason.grpo.rollouts``). TRL's own vLLM
backend is switched off: it sends images only and syncs weights over NCCL.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from emoreason.grpo.rollouts import VLLMServerRollouts, merged_weights
from emoreason.inference import encode_batch
from emoreason.sft.optim import ModuleLearningRates
from emoreason.video import FramePolicy, LoadedFrames, MediaError, load_frames

log = logging.getLogger(__name__)

# Per-sample multimodal tensors: rows of pixel values follow the grid (t·h·w patches per video/image).
_GRIDS = (("pixel_values_videos", "video_grid_thw"), ("pixel_values", "image_grid_thw"))


def split_media(batch: dict, kinds: list[str | None]) -> list[dict[str, torch.Tensor]]:
    """The batch's video/image tensors cut into one dict per sample; ``kinds[i]`` is "video", "image" or None
    (the processor received the samples' videos and images in sample order)."""
    rows: list[dict[str, torch.Tensor]] = [{} for _ in kinds]
    for (pixels_key, grid_key), kind in zip(_GRIDS, ("video", "image"), strict=True):
        if grid_key not in batch:
            continue
        owners = [i for i, k in enumerate(kinds) if k == kind]
        grids = batch[grid_key]
        chunks = torch.split(batch[pixels_key], grids.prod(-1).tolist())
        for j, (owner, grid, chunk) in enumerate(zip(owners, grids, chunks, strict=True)):
            rows[owner][pixels_key] = chunk
            rows[owner][grid_key] = grid.unsqueeze(0)
            if kind == "video" and "second_per_grid_ts" in batch:
                rows[owner]["second_per_grid_ts"] = batch["second_per_grid_ts"][j:j + 1]
    return rows


def join_media(rows: list[dict[str, torch.Tensor]], device) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    keys = {k for r in rows for k in r}
    for key in keys:
        parts = [r[key] for r in rows if key in r]
        out[key] = torch.cat(parts).to(device)
    return out


def _same_sample(a: dict, b: dict) -> bool:
    return a.get("id") == b.get("id") and a.get("media_path") == b.get("media_path") and a["prompt"] == b["prompt"]


class VideoGRPOTrainer(ModuleLearningRates, GRPOTrainer):
    """GRPO with video inputs. Dataset rows: ``prompt`` (chat messages with a ``{"type": "video"}`` or image part),
    ``media_type`` ("video" | "image" | None), ``media_path``, plus the ground-truth columns rewards read."""

    def __init__(self, *args, frame_policy: FramePolicy | None = None, vllm_sync_dir: str | None = None, **kwargs):
        config = kwargs.get("args") if "args" in kwargs else (args[2] if len(args) > 2 else None)
        wants_vllm = bool(getattr(config, "use_vllm", False))
        if wants_vllm:
            if config.vllm_mode != "server":
                raise ValueError("video GRPO rollouts through vLLM run in server mode (vllm_mode: server, with "
                                 "`emoreason serve --weight-sync`); colocate would need vLLM inside the trainer's "
                                 "environment, which TRL 1.16 pins to vllm<=0.31")
            config.use_vllm = False  # keep TRL from building its own (image-only, NCCL-synced) vLLM backend
        try:
            super().__init__(*args, **kwargs)
        finally:
            if wants_vllm:
                config.use_vllm = True
        self.frame_policy = frame_policy or FramePolicy()
        self._media_rows: list[dict[str, torch.Tensor]] | None = None
        self.vllm_rollouts: VLLMServerRollouts | None = None
        if wants_vllm:
            self._init_vllm_rollouts(config, vllm_sync_dir)

    def _init_vllm_rollouts(self, config, sync_dir: str | None) -> None:
        state = self.accelerator.state
        zero3 = state.deepspeed_plugin is not None and state.deepspeed_plugin.zero_stage == 3
        if zero3 or self.is_fsdp_enabled:
            raise ValueError("vLLM server rollouts write the full weights from the main process: use the ddp or "
                             "zero2 accelerate config (ZeRO-3/FSDP shard them)")
        self.use_vllm = True  # TRL's _compute_loss then applies inputs["importance_sampling_ratio"]
        base_url = config.vllm_server_base_url or f"http://{config.vllm_server_host}:{config.vllm_server_port}"
        self.vllm_rollouts = VLLMServerRollouts(base_url, sync_dir or Path(config.output_dir) / "vllm-sync",
                                                timeout_s=config.vllm_server_timeout)
        if self.accelerator.is_main_process:
            self.vllm_rollouts.check()
        self._last_synced_step = -1
        self._rollout_calls = 0

    # --- rollouts --------------------------------------------------------------------------------------
    def _load_media(self, inputs: list[dict]) -> tuple[list[list[dict]], list[LoadedFrames | None]]:
        conversations, media, cache = [], [], {}
        for row in inputs:
            kind, path = row.get("media_type"), row.get("media_path")
            messages = copy.deepcopy(row["prompt"])
            if kind and path:
                for message in messages:
                    if isinstance(message.get("content"), list):
                        for part in message["content"]:
                            if part.get("type") == kind:
                                part[kind] = path
                if path not in cache:  # the G copies of a prompt share one decode
                    try:
                        cache[path] = load_frames(path, self.frame_policy)
                    except MediaError as exc:
                        raise MediaError(exc.path, f"sample {row.get('id', '?')}: {exc.reason}") from exc
                media.append(cache[path])
            else:
                media.append(None)
            conversations.append(messages)
        return conversations, media

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        processor = self.processing_class
        prompts = [row["prompt"] for row in inputs]
        conversations, media = self._load_media(inputs)
        encoded = encode_batch(processor, conversations, media, add_generation_prompt=True, padding_side="left")
        encoded = encoded.to(device)
        kinds = [None if m is None else ("image" if m.kind == "image" else "video") for m in media]
        media_rows = split_media(encoded, kinds)
        prompt_ids, prompt_mask = encoded["input_ids"], encoded["attention_mask"]

        if self.vllm_rollouts is not None:
            completion_ids, completion_mask, truncated, sampling_logps = self._vllm_generate(
                inputs, conversations, media, encoded, mode)
        else:
            completion_ids, completion_mask, truncated = self._hf_generate(encoded)
            sampling_logps = None
        if self.mask_truncated_completions:
            completion_mask = completion_mask * (~truncated).unsqueeze(1).int()
        completion_ids_list = [ids[m.bool()].tolist() for ids, m in zip(completion_ids, completion_mask, strict=True)]
        texts = processor.batch_decode(completion_ids, skip_special_tokens=True)
        completions = [[{"role": "assistant", "content": t}] for t in texts]

        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mm_token_type_ids = None  # which tokens are image/video placeholders (M-RoPE needs it for the full sequence)
        if "mm_token_type_ids" in encoded:
            mm_token_type_ids = torch.cat([encoded["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        old_logps = ref_logps = None
        with torch.no_grad():
            self._media_rows = media_rows
            try:
                correct_sampling = sampling_logps is not None and self.vllm_importance_sampling_correction
                needs_old = correct_sampling or self.num_iterations > 1 or self.args.steps_per_generation > \
                    self.args.gradient_accumulation_steps
                if needs_old:
                    old_logps, _, _ = self._get_per_token_logps_and_entropies(
                        self.model, input_ids, attention_mask, logits_to_keep, batch_size,
                        mm_token_type_ids=mm_token_type_ids)
                if self.beta != 0.0:
                    if self.ref_model is not None:
                        ref_logps, _, _ = self._get_per_token_logps_and_entropies(
                            self.ref_model, input_ids, attention_mask, logits_to_keep, batch_size,
                            mm_token_type_ids=mm_token_type_ids)
                    else:  # PEFT: the reference is the base model with adapters off
                        with self.accelerator.unwrap_model(self.model).disable_adapter():
                            ref_logps, _, _ = self._get_per_token_logps_and_entropies(
                                self.model, input_ids, attention_mask, logits_to_keep, batch_size,
                                mm_token_type_ids=mm_token_type_ids)
            finally:
                self._media_rows = None

        rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        advantages, rewards, is_std_zero = self._advantages(rewards_per_func, mode)
        process_slice = slice(self.accelerator.process_index * len(prompts),
                              (self.accelerator.process_index + 1) * len(prompts))
        self._log_step(mode, rewards_per_func, rewards, is_std_zero, completion_mask, truncated)
        out = {
            "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": advantages[process_slice],
            "num_items_in_batch": self.accelerator.gather(completion_mask.sum()).sum(),
            "media": media_rows,
        }
        if mm_token_type_ids is not None:
            out["mm_token_type_ids"] = mm_token_type_ids
        if old_logps is not None:
            out["old_per_token_logps"] = old_logps
        if sampling_logps is not None and self.vllm_importance_sampling_correction:
            out["importance_sampling_ratio"] = self._importance_ratio(old_logps, sampling_logps, completion_mask,
                                                                      mode)
        if ref_logps is not None:
            out["ref_per_token_logps"] = ref_logps
        return out

    def _hf_generate(self, encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Completion ids, mask (through the first EOS) and truncation flags from HF generate."""
        device = self.accelerator.device
        prompt_len = encoded["input_ids"].size(1)
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as unwrapped, torch.no_grad():
            # a sampled <|video_pad|> in a completion would break the next forward (tokens vs. features)
            generated = unwrapped.generate(**encoded, generation_config=self.generation_config,
                                           suppress_tokens=self._vision_token_ids())
        completion_ids = generated[:, prompt_len:]
        eos_ids = torch.tensor(sorted(self._eos_ids()), device=device)
        is_eos = torch.isin(completion_ids, eos_ids)
        first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1),
                                torch.full((is_eos.size(0),), is_eos.size(1), device=device))
        positions = torch.arange(completion_ids.size(1), device=device).expand_as(completion_ids)
        completion_mask = (positions <= first_eos.unsqueeze(1)).int()
        return completion_ids, completion_mask, ~is_eos.any(1)

    def _vllm_generate(self, inputs, conversations, media, encoded, mode):
        """Rollouts on the vLLM server: weights synced first, one request with n copies per prompt group."""
        device = self.accelerator.device
        metrics = self._metrics[mode]
        if self.state.global_step != self._last_synced_step:
            start = time.perf_counter()
            if self.accelerator.is_main_process:
                with merged_weights(self.accelerator.unwrap_model(self.model)) as weights:
                    self.vllm_rollouts.load_weights(weights)
            self.accelerator.wait_for_everyone()
            self._last_synced_step = self.state.global_step
            metrics["rollouts/weight_sync_s"].append(time.perf_counter() - start)
        # TRL's RepeatSampler places a prompt's G copies next to each other: one request with n = run length
        groups, labels, expected, start_row = [], [], [], 0
        while start_row < len(inputs):
            end = start_row + 1
            while end < len(inputs) and _same_sample(inputs[end], inputs[start_row]):
                end += 1
            groups.append((conversations[start_row], media[start_row], end - start_row))
            labels.append(f"sample {inputs[start_row].get('id', start_row)}")
            mask = encoded["attention_mask"][start_row].bool()
            expected.append(encoded["input_ids"][start_row][mask].tolist())
            start_row = end
        self._rollout_calls += 1
        seed = (self.args.seed * 1_000_003 + self._rollout_calls * 7919 + self.accelerator.process_index * 104_729)
        start = time.perf_counter()
        results = self.vllm_rollouts.generate(
            groups, max_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            seed=seed % 2**31, suppress_tokens=self._vision_token_ids(), labels=labels, expected_prompts=expected)
        metrics["rollouts/generation_s"].append(time.perf_counter() - start)
        completions = [c for group in results for c in group]
        width = max(1, max(len(c.token_ids) for c in completions))
        pad = self.processing_class.tokenizer.pad_token_id
        completion_ids = torch.full((len(completions), width), pad if pad is not None else 0, dtype=torch.long)
        completion_mask = torch.zeros((len(completions), width), dtype=torch.int)
        sampling_logps = torch.zeros((len(completions), width), dtype=torch.float32)
        for row, completion in enumerate(completions):
            n = len(completion.token_ids)
            completion_ids[row, :n] = torch.tensor(completion.token_ids, dtype=torch.long)
            completion_mask[row, :n] = 1
            sampling_logps[row, :n] = torch.tensor(completion.logprobs, dtype=torch.float32)
        truncated = torch.tensor([c.truncated for c in completions], dtype=torch.bool)
        return completion_ids.to(device), completion_mask.to(device), truncated.to(device), sampling_logps.to(device)

    def _importance_ratio(self, old_logps, sampling_logps, completion_mask, mode) -> torch.Tensor:
        """Truncated/masked importance sampling between the policy and the vLLM sampler, as TRL computes it
        for its own vLLM rollouts (``vllm_importance_sampling_mode``, ``..._clip_min/max``)."""
        diff = torch.nan_to_num((old_logps - sampling_logps) * completion_mask, nan=0.0)
        level = self.vllm_importance_sampling_mode
        if level.startswith("sequence"):
            diff = diff.sum(-1, keepdim=True)
        ratio = torch.exp(diff)
        low, high = self.vllm_importance_sampling_clip_min, self.vllm_importance_sampling_clip_max
        if level.endswith("truncate"):
            ratio = torch.clamp(ratio, min=low, max=high)
        else:
            out_of_range = torch.zeros_like(ratio, dtype=torch.bool)
            if low is not None:
                out_of_range |= ratio < low
            if high is not None:
                out_of_range |= ratio > high
            ratio = ratio.masked_fill(out_of_range, 0.0)
        metrics = self._metrics[mode]
        tokens = completion_mask.bool()
        gap = (old_logps - sampling_logps).abs()[tokens & ~torch.isnan(sampling_logps)]
        metrics["sampling/sampling_logp_difference/mean"].append(
            self.accelerator.gather(gap.mean() if gap.numel() else torch.zeros((), device=gap.device)).mean().item())
        metrics["sampling/importance_sampling_ratio/mean"].append(
            self.accelerator.gather(ratio.float().mean()).mean().item())
        return ratio

    def _vision_token_ids(self) -> list[int]:
        tokenizer = self.processing_class.tokenizer
        ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                             "<|vision_end|>", "<|vision_pad|>")]
        return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]

    def _eos_ids(self) -> set[int]:
        config = self.generation_config
        eos = config.eos_token_id if config is not None else None
        ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        return ids or {self.processing_class.tokenizer.eos_token_id}

    def _advantages(self, rewards_per_func: torch.Tensor, mode: str):
        """Group-relative advantages, as TRL computes them (sum of weighted rewards, then normalise)."""
        from trl.trainer.utils import nanstd

        g = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[unscorable] = torch.nan
        grouped = rewards.view(-1, g)
        mean = torch.nanmean(grouped, dim=1).repeat_interleave(g)
        if self.scale_rewards == "batch":
            std = nanstd(rewards).expand_as(rewards)
        else:
            std = nanstd(grouped, dim=1).repeat_interleave(g) if g > 1 else torch.zeros_like(rewards)
        advantages = rewards - mean
        if self.scale_rewards != "none":
            advantages = advantages / (std + 1e-4)
        return torch.nan_to_num(advantages, nan=0.0), rewards, torch.isclose(std, torch.zeros_like(std))

    def _log_step(self, mode, rewards_per_func, rewards, is_std_zero, completion_mask, truncated) -> None:
        from trl.trainer.utils import nanstd

        metrics = self._metrics[mode]
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(rewards_per_func[:, i]).item())
            metrics[f"rewards/{name}/std"].append(nanstd(rewards_per_func[:, i]).item())
        metrics["reward"].append(torch.nanmean(rewards).item())
        metrics["reward_std"].append(nanstd(rewards).item())
        metrics["frac_reward_zero_std"].append(is_std_zero.float().mean().item())
        lengths = self.accelerator.gather(completion_mask.sum(1).float())
        metrics["completions/mean_length"].append(lengths.mean().item())
        metrics["completions/clipped_ratio"].append(self.accelerator.gather(truncated.float()).mean().item())

    # --- log-prob forward with video -------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._media_rows = inputs.get("media")
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._media_rows = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, mm_token_type_ids=None,
                                           **_image_kwargs):
        batch_size = batch_size or input_ids.size(0)
        rows = self._media_rows
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            model_inputs = {"input_ids": input_ids[start:end], "attention_mask": attention_mask[start:end]}
            if rows is not None:
                model_inputs.update(join_media(rows[start:end], input_ids.device))
            if mm_token_type_ids is not None:
                model_inputs["mm_token_type_ids"] = mm_token_type_ids[start:end]
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            labels = model_inputs["input_ids"].masked_fill(model_inputs["attention_mask"] == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux
