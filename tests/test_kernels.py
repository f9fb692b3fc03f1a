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
