"""One attention call for all vision windows.

Qwen2.5-VL's vision tower attends within windows (and within frames in its full-attention blocks). With SDPA,
transformers loops over the windows — thousands of small kernel launches per step, which makes plain HF video
training CPU-bound (4,132 SDPA calls per step on the 3B shape; see ../shared/anchors). transformers hands the
windows' ``cu_seqlens`` to attention implementations whose name contains "flash"; this one is registered under
such a name and runs them all at once: ``torch.nn.attention.varlen.varlen_attn`` on CUDA (measured on an H100:
64 windows of 64 tokens in 0.18 ms vs 62 ms as a loop), a single block-diagonal-masked SDPA elsewhere. It is set
on the vision sub-config only; the language model keeps its own implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VISION_ATTENTION = "emoreason_flash_varlen"  # "flash" in the name routes cu_seqlens to it


def _block_diagonal_mask(cu_seqlens: torch.Tensor, length: int) -> torch.Tensor:
    ids = torch.bucketize(torch.arange(length, device=cu_seqlens.device), cu_seqlens[1:], right=True)
    return ids[:, None] == ids[None, :]


def varlen_vision_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None = None, scaling: float | None = None,
                            dropout: float = 0.0, cu_seq_lens_q: torch.Tensor | None = None,
                            cu_seq_lens_k: torch.Tensor | None = None, max_length_q: int | None = None,
                            max_length_k: int | None = None, is_causal: bool = False, **kwargs):
    """Inputs (1, heads, tokens, head_dim) as transformers passes them; returns ((1, tokens, heads, head_dim), None)."""
    if cu_seq_lens_q is None:  # no window boundaries given: plain attention over the whole sequence
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                             scale=scaling, is_causal=is_causal)
        return out.transpose(1, 2).contiguous(), None
    cu_k = cu_seq_lens_k if cu_seq_lens_k is not None else cu_seq_lens_q
    if query.is_cuda and dropout == 0.0 and query.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention.varlen import varlen_attn

        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, head_dim)
        lengths_q = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
        lengths_k = cu_k[1:] - cu_k[:-1]
        out = varlen_attn(q, k, v, cu_seq_lens_q.to(torch.int32), cu_k.to(torch.int32),
                          int(max_length_q or lengths_q.max()), int(max_length_k or lengths_k.max()), scale=scaling)
        return out.unsqueeze(0), None
    mask = _block_diagonal_mask(cu_seq_lens_q, query.shape[2])
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(VISION_ATTENTION, varlen_vision_attention)


def enable_varlen_vision_attention(model) -> bool:
    """Switch the vision tower of a Qwen-VL model to the one-call attention; False if the model has none."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "vision_config", None) is None:
        return False
    _register()
    text_impl = getattr(config.get_text_config(), "_attn_implementation", None) or "sdpa"
    model.set_attn_implementation({"vision_config": VISION_ATTENTION, "text_config": text_impl})
    return config.vision_config._attn_implementation == VISION_ATTENTION
