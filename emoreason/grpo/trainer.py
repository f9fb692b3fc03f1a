"""``VideoGRPOTrainer``: TRL's GRPOTrainer (which takes images, not video: trl#5373, #4144) with video.

Rollouts and the policy/reference log-prob forwards receive real video inputs — ``pixel_values_videos``,
``video_grid_thw`` and, for Qwen2.5-VL, ``second_per_grid_ts`` — so the model keeps its temporal position
encoding; frames-as-images would lose it. For Qwen2.5-Omni each video's audio track goes with it
(``input_features``, ``feature_attention_mask``, ``video_second_per_grid``, ``use_audio_in_video``), into HF
generation and every log-prob forward alike, and as an audio part beside the frames into vLLM rollouts. It overrides only the narrowest hooks of TRL's GRPOTrainer:

* ``_tokenize_prompts`` — each row's frames (frame policy) and prompt go through the processor; the video
  tensors become generation inputs, and per-sample media for the log-prob forwards;
* ``_get_per_token_logps_and_entropies`` — the forward with each chunk's media (and ``mm_token_type_ids``);
* ``compute_loss`` / ``_generate_and_score_completions`` — only carry the batch's media to those forwards;
* ``_generate_single_turn`` — only for vLLM: rollouts on a vLLM server that receives the same frames, TRL's
  sampling options and the policy's weights every step (``emoreason.grpo.rollouts``; TRL's own vLLM path sends
  images only and syncs weights over NCCL). HF generation stays TRL's, with vision tokens suppressed.

Everything else is TRL's, unchanged: the repeat sampler, generation config, rewards, advantages (incl.
``scale_rewards`` and ``multi_objective_aggregation``), when old log-probs are needed (``steps_per_generation``,
``num_iterations``, vLLM importance sampling), the importance-sampling ratio, the loss, and logging
(``num_tokens``, completion lengths, ``log_completions``). ``tests/test_grpo.py`` pins the hook signatures and
checks the results against TRL's own GRPOTrainer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from trl import GRPOTrainer

from emoreason.audio import audio_window_s
from emoreason.audio.modalities import model_modalities
from emoreason.grpo.rollouts import VLLMServerRollouts, served_weights
from emoreason.inference import encode_batch
from emoreason.training.data import load_row_heard, load_row_media, row_media, with_media
from emoreason.training.optim import ModuleLearningRates
from emoreason.training.save import lora_layers, policy_weights
from emoreason.video import FramePolicy, LoadedFrames

log = logging.getLogger(__name__)

# Per-sample multimodal tensors: rows of pixel values follow the grid (t·h·w patches per video/image).
_GRIDS = (("pixel_values_videos", "video_grid_thw"), ("pixel_values", "image_grid_thw"))
# Qwen2.5-Omni: one entry per video of each (its audio track: log-mel features and their mask; its time per grid)
_PER_VIDEO = ("second_per_grid_ts", "video_second_per_grid", "input_features", "feature_attention_mask")
_MEDIA_KEYS = ("pixel_values_videos", "video_grid_thw", *_PER_VIDEO, "pixel_values", "image_grid_thw",
               "use_audio_in_video")
AUDIO_IN_VIDEO = "use_audio_in_video"


def split_media(batch: dict, kinds: list[str | None]) -> list[dict[str, torch.Tensor]]:
    """The batch's video/image (and, for Omni, audio) tensors cut into one dict per sample; ``kinds[i]`` is
    "video", "image" or None (the processor received the samples' videos and images in sample order, and one audio
    track per video when ``use_audio_in_video``)."""
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
            if kind != "video":
                continue
            for key in _PER_VIDEO:
                if key in batch:
                    rows[owner][key] = torch.as_tensor(batch[key][j:j + 1])
            if batch.get(AUDIO_IN_VIDEO):
                rows[owner][AUDIO_IN_VIDEO] = torch.tensor(True)
    return rows


def join_media(rows: list[dict[str, torch.Tensor]], device) -> dict:
    out: dict = {}
    keys = {k for r in rows for k in r}
    for key in keys - {AUDIO_IN_VIDEO}:
        parts = [r[key] for r in rows if key in r]
        out[key] = torch.cat(parts).to(device)
    if any(AUDIO_IN_VIDEO in r for r in rows):  # a flag for the whole forward (every video carries its track)
        out[AUDIO_IN_VIDEO] = True
    return out


# media placeholders a completion must never hold: Qwen2.5-VL / Qwen3-VL, and Qwen2.5-Omni's vision and audio
_MEDIA_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                 "<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>", "<|vision_bos|>", "<|vision_eos|>", "<|audio_bos|>",
                 "<|audio_eos|>")


def _same_sample(a: dict, b: dict) -> bool:
    return a.get("id") == b.get("id") and a.get("media_path") == b.get("media_path") and a["prompt"] == b["prompt"]


class VideoGRPOTrainer(ModuleLearningRates, GRPOTrainer):
    """GRPO with video inputs. Dataset rows: ``prompt`` (chat messages with a ``{"type": "video"}`` or image part),
    ``media_type`` ("video" | "image" | None), ``media_path``, plus the ground-truth columns rewards read."""

    def __init__(self, *args, frame_policy: FramePolicy | None = None, vllm_sync_dir: str | None = None,
                 modalities: str | None = None, **kwargs):
        unsupported = [k for k in ("tools", "rollout_func", "environment_factory") if kwargs.get(k)]
        if unsupported:
            raise ValueError(f"VideoGRPOTrainer does not support {', '.join(unsupported)}: its video "
                             "prompts are rendered and generated by its own hooks, which have no tool-calling turns")
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
        # what an audio model is shown (emoreason.audio.modalities): ``audio`` hides the face behind blank frames
        self.modalities = model_modalities(self.processing_class, modalities)
        self._rows: list[dict] | None = None  # the batch being generated, for _tokenize_prompts
        self._media_rows: list[dict[str, torch.Tensor]] | None = None  # its per-sample media, for the forwards
        # the batch's conversations, frames and (None for a video-only model) audio, as the policy encoded them
        self._rollout_inputs: tuple[list[list[dict]], list[LoadedFrames | None], list | None] | None = None
        # a sampled <|video_pad|> in a completion would break the next forward (tokens vs. features); TRL
        # suppresses only the image token
        suppress = sorted(set(self.generation_kwargs.get("suppress_tokens") or []) | set(self._vision_token_ids()))
        self.generation_kwargs["suppress_tokens"] = suppress
        self.generation_config.suppress_tokens = suppress
        self.vllm_rollouts: VLLMServerRollouts | None = None
        if wants_vllm:
            self._init_vllm_rollouts(config, vllm_sync_dir)

    def _init_vllm_rollouts(self, config, sync_dir: str | None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            raise ValueError("QLoRA with vLLM rollouts is not supported: the server needs 16-bit weights, and "
                             "merging the adapter into the quantized base each step would re-quantize it. Train "
                             "with use_peft (a 16-bit base) for vLLM rollouts, or QLoRA with HF rollouts "
                             "(use_vllm: false)")
        list(lora_layers(model))  # refuse adapter kinds the sync cannot merge before the first step
        # TRL's GRPOTrainer.__init__ checks this only when it builds its own vLLM backend, which ours skips
        if self.loss_type == "vespo" and self.vllm_importance_sampling_correction and \
                self.vllm_importance_sampling_mode not in ("token_truncate", "token_mask"):
            raise ValueError("VESPO loss requires `vllm_importance_sampling_mode` to be either 'token_truncate' or "
                             f"'token_mask'. Got: {self.vllm_importance_sampling_mode}.")
        self.use_vllm = True  # TRL then computes old log-probs and applies its importance-sampling correction
        base_url = config.vllm_server_base_url or f"http://{config.vllm_server_host}:{config.vllm_server_port}"
        self.vllm_rollouts = VLLMServerRollouts(base_url, sync_dir or Path(config.output_dir) / "vllm-sync",
                                                timeout_s=config.vllm_server_timeout)
        if self.accelerator.is_main_process:
            self.vllm_rollouts.check()
        self._last_synced_step = -1
        self._rollout_calls = 0

    # --- media into the prompts ------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        self._rows = inputs
        try:
            output = super()._generate_and_score_completions(inputs)
            output["media"] = self._media_rows  # travels with the batch through TRL's shuffle/split
            return output
        finally:
            self._rows = self._media_rows = self._rollout_inputs = None

    def _tokenize_prompts(self, prompts: list):
        """Prompt ids with each row's frames expanded into vision tokens, and the video tensors for generation."""
        rows = self._rows
        if rows is None or len(rows) != len(prompts):
            raise RuntimeError("VideoGRPOTrainer._tokenize_prompts runs inside _generate_and_score_completions")
        conversations, media, audio, cache = [], [], [], {}
        with_audio = self.modalities != "video"
        window = audio_window_s(self.processing_class) if with_audio else None
        for row, prompt in zip(rows, prompts, strict=True):
            kind, path = row_media(row)
            conversations.append(with_media(prompt, kind, path))
            if kind is not None and path not in cache:  # the G copies of a prompt share one decode
                frames = load_row_media(row, self.frame_policy)
                cache[path] = load_row_heard(row, frames, window, self.modalities) if with_audio else (frames, None)
            frames, track = cache[path] if kind is not None else (None, None)
            media.append(frames)
            audio.append(track)
        encoded = encode_batch(self.processing_class, conversations, media, add_generation_prompt=True,
                               padding_side="left", template_kwargs=self.chat_template_kwargs,
                               audio=audio if with_audio else None)
        mask = encoded["attention_mask"].bool()
        prompt_ids = [ids[m].tolist() for ids, m in zip(encoded["input_ids"], mask, strict=True)]
        kinds = [None if m is None else ("image" if m.kind == "image" else "video") for m in media]
        self._media_rows = [{k: v.to(self.accelerator.device) for k, v in r.items()}
                            for r in split_media(encoded, kinds)]
        self._rollout_inputs = (conversations, media, audio if with_audio else None)
        fields = {k: encoded[k] for k in _MEDIA_KEYS if k in encoded}
        if AUDIO_IN_VIDEO in fields:  # TRL hands every field to generate as a tensor
            fields[AUDIO_IN_VIDEO] = torch.tensor(True)
        if "mm_token_type_ids" in encoded:  # unpadded per prompt, as TRL pads it with the ids
            fields["mm_token_type_ids"] = [t[m].tolist() for t, m in zip(encoded["mm_token_type_ids"], mask,
                                                                          strict=True)]
        return prompt_ids, None, fields

    # --- log-prob forward with video -------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._media_rows = inputs.get("media")
        try:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        finally:
            self._media_rows = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, mm_token_type_ids=None,
                                           **_image_kwargs):
        """TRL's chunked log-prob forward, with each chunk's video/image tensors and token types."""
        batch_size = batch_size or input_ids.size(0)
        rows = self._media_rows
        with_types = "mm_token_type_ids" in getattr(self.processing_class, "model_input_names", ())
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            model_inputs = {"input_ids": input_ids[start:end], "attention_mask": attention_mask[start:end]}
            if rows is not None:
                model_inputs.update(join_media(rows[start:end], input_ids.device))
            if mm_token_type_ids is not None:
                model_inputs["mm_token_type_ids"] = mm_token_type_ids[start:end]
            elif with_types:  # M-RoPE needs them over the whole sequence; completions hold no vision tokens
                model_inputs["mm_token_type_ids"] = torch.tensor(
                    self.processing_class.create_mm_token_type_ids(input_ids[start:end].tolist()),
                    device=input_ids.device)
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

    # --- rollouts on a vLLM server -----------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.vllm_rollouts is None:  # TRL's HF generation, with the video tensors in multimodal_fields
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        self._sync_vllm_weights()
        conversations, media, audio = self._rollout_inputs
        rows = self._rows
        # TRL's RepeatSampler places a prompt's G copies next to each other: one request with n = run length
        groups, heard, labels, expected, start_row = [], [], [], [], 0
        while start_row < len(rows):
            end = start_row + 1
            while end < len(rows) and _same_sample(rows[end], rows[start_row]):
                end += 1
            groups.append((conversations[start_row], media[start_row], end - start_row))
            heard.append(audio[start_row] if audio is not None else None)
            labels.append(f"sample {rows[start_row].get('id', start_row)}")
            expected.append(prompt_ids[start_row])
            start_row = end
        self._rollout_calls += 1
        seed = self.args.seed * 1_000_003 + self._rollout_calls * 7919 + self.accelerator.process_index * 104_729
        start = time.perf_counter()
        results = self.vllm_rollouts.generate(
            groups, max_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            seed=seed % 2**31, suppress_tokens=self._vision_token_ids(), labels=labels, expected_prompts=expected,
            sampling=self._vllm_sampling(), audio=heard if audio is not None else None,
            audio_window_s=audio_window_s(self.processing_class) if audio is not None else None)
        self._metrics[self._mode]["rollouts/generation_s"].append(time.perf_counter() - start)
        completions = [c for group in results for c in group]
        return [c.token_ids for c in completions], [c.logprobs for c in completions]

    def _vllm_sampling(self) -> dict:
        """The sampling options TRL's own vLLM path passes to ``SamplingParams`` (beyond temperature and top_p),
        so a recipe samples the same way on either rollout backend: top_k, min_p, repetition_penalty, the
        structured-output regex and ``generation_kwargs`` (vLLM's names, as TRL documents for ``use_vllm``); and
        the chat template's variables, so the server renders the prompt the policy scores."""
        sampling = {"top_k": self.top_k, "min_p": 0.0 if self.min_p is None else self.min_p,
                    "repetition_penalty": self.repetition_penalty, **(self.args.generation_kwargs or {})}
        if self.chat_template_kwargs:  # the server renders the prompt: the same template variables
            sampling["chat_template_kwargs"] = self.chat_template_kwargs
        if self.args.vllm_structured_outputs_regex is not None:
            sampling["structured_outputs"] = {"regex": self.args.vllm_structured_outputs_regex}
        return sampling

    @property
    def _mode(self) -> str:
        return "train" if self.model.training else "eval"

    def _sync_vllm_weights(self) -> None:
        """Push the policy to the server once per optimizer step. Every rank takes part (the weights are gathered
        under ZeRO-3 / FSDP); LoRA is merged into the gathered copy, so no rank's base weights change."""
        if self.state.global_step == self._last_synced_step:
            return
        start = time.perf_counter()
        weights = policy_weights(self)
        if self.accelerator.is_main_process:  # under the served checkpoint's names (Omni: thinker.*)
            self.vllm_rollouts.load_weights(served_weights(self.accelerator.unwrap_model(self.model), weights))
        self.accelerator.wait_for_everyone()
        self._last_synced_step = self.state.global_step
        self._metrics[self._mode]["rollouts/weight_sync_s"].append(time.perf_counter() - start)

    def _vision_token_ids(self) -> list[int]:
        tokenizer = self.processing_class.tokenizer
        ids = [tokenizer.convert_tokens_to_ids(t) for t in _MEDIA_TOKENS]
        return sorted({i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id})
