"""The one-call vision attention: same outputs as transformers' per-window loop, far fewer attention calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from emoreason.kernels import VISION_ATTENTION, enable_varlen_vision_attention
from emoreason.models import load_model_and_processor


class CountSDPA(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("family", "patch"), [("qwen2_5_vl", 14), ("qwen3_vl", 16)])
def test_varlen_vision_attention_matches_the_window_loop(family, patch, tiny_model_dirs):
    model, _ = load_model_and_processor(tiny_model_dirs[family], device="cpu")
    torch.manual_seed(0)
    grid = torch.tensor([[4, 16, 16], [2, 8, 12]])  # two videos of different sizes
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * patch * patch)
    visual = model.model.visual

    def run():
        counter = CountSDPA()
        with torch.no_grad(), counter:
            out = visual(pixels, grid_thw=grid)
        out = getattr(out, "pooler_output", out)
        return (out if torch.is_tensor(out) else out[0]), counter.calls

    reference, loop_calls = run()
    assert enable_varlen_vision_attention(model)
    assert model.config.vision_config._attn_implementation == VISION_ATTENTION
    assert model.config.text_config._attn_implementation == "sdpa"
    fused, fused_calls = run()
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-4)
    assert fused_calls == model.config.vision_config.depth  # one call per vision block
    assert loop_calls > fused_calls


# --- CUDA: torch's varlen_attn kernel against the reference attention (run where a GPU exists) -----------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen_attn runs on CUDA only")


def _per_window_reference(q, k, v, cu_seqlens, scale):
    """The reference: one float32 SDPA per window, as transformers' vision attention loops."""
    bounds = cu_seqlens.tolist()
    parts = [F.scaled_dot_product_attention(q[:, :, s:e].float(), k[:, :, s:e].float(), v[:, :, s:e].float(),
                                            scale=scale) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    return torch.cat(parts, dim=2).transpose(1, 2)  # (1, tokens, heads, head_dim)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 80])  # the tiny model's and Qwen2.5-VL's vision head sizes
def test_varlen_kernel_on_cuda_matches_the_reference_attention(dtype, head_dim, monkeypatch):
    import torch.nn.attention.varlen as varlen

    from emoreason.kernels import varlen_vision_attention

    calls = []
    kernel = varlen.varlen_attn
    monkeypatch.setattr(varlen, "varlen_attn", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    torch.manual_seed(0)
    lengths = [64] * 8 + [16, 100, 1, 37, 256]  # equal windows, ragged windows, a single token
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    q, k, v = (torch.randn(1, 16, sum(lengths), head_dim, device="cuda", dtype=dtype) for _ in range(3))
    scale = head_dim ** -0.5
    out, _ = varlen_vision_attention(None, q, k, v, scaling=scale, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                     max_length_q=max(lengths), max_length_k=max(lengths))
    assert calls == [1]  # one kernel call for every window
    assert out.shape == (1, sum(lengths), 16, head_dim) and out.dtype == dtype
    torch.testing.assert_close(out.float(), _per_window_reference(q, k, v, cu, scale), atol=2e-2, rtol=2e-2)


@cuda
@pytest.mark.parametrize(("family", "patch"), [("qwen2_5_vl", 14), ("qwen3_vl", 16)])
def test_vision_tower_on_cuda_matches_its_window_loop(family, patch, tiny_model_dirs):
    """The whole vision tower in bf16 on CUDA: the one-call kernel against the model's own per-window SDPA."""
    model, _ = load_model_and_processor(tiny_model_dirs[family], dtype=torch.bfloat16, device="cuda")
    torch.manual_seed(0)
    grid = torch.tensor([[4, 16, 16], [2, 8, 12]], device="cuda")
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * patch * patch, device="cuda", dtype=torch.bfloat16)

    def run():
        with torch.no_grad():
            out = model.model.visual(pixels, grid_thw=grid)
        out = getattr(out, "pooler_output", out)
        return (out if torch.is_tensor(out) else out[0]).float()

    reference = run()
    assert enable_varlen_vision_attention(model)
    torch.testing.assert_close(run(), reference, atol=3e-2, rtol=3e-2)
