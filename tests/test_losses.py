"""The fused output-layer cross-entropy equals the plain one, in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xlrec.training.losses import CPU_MAX_LOGITS, DEFAULT_MAX_LOGITS, GPU_MIN_CHUNK_ROWS, chunk_logits, full_softmax_ce


def _case(m=37, d=8, v=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, v, (m,), generator=g)
    return hidden, weight, targets


@pytest.mark.parametrize("max_logits", [1, 23 * 5, 23 * 37, 1 << 20])  # 1 row per chunk .. one chunk
def test_fused_ce_matches_cross_entropy(max_logits):
    hidden, weight, targets = _case()
    ref = F.cross_entropy(hidden @ weight.t(), targets)
    gh_ref, gw_ref = torch.autograd.grad(ref * 3.0, (hidden, weight))
    got = full_softmax_ce(hidden, weight, targets, max_logits=max_logits)
    gh, gw = torch.autograd.grad(got * 3.0, (hidden, weight))  # a non-unit upstream gradient
    # fp32 softmax inside: agreement to fp32 precision
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gh, gh_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)


def test_fused_ce_ignores_negative_targets():
    hidden, weight, targets = _case()
    targets[::3] = -1
    ref = F.cross_entropy(hidden @ weight.t(), targets, ignore_index=-1)
    gh_ref, gw_ref = torch.autograd.grad(ref, (hidden, weight))
    got = full_softmax_ce(hidden, weight, targets, max_logits=23 * 4)
    gh, gw = torch.autograd.grad(got, (hidden, weight))
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gh, gh_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(gh[::3]) == 0


def test_fused_ce_without_grad_and_empty():
    hidden, weight, targets = _case()
    with torch.no_grad():
        val = full_softmax_ce(hidden, weight, targets, max_logits=50)
    assert val.item() == pytest.approx(F.cross_entropy(hidden @ weight.t(), targets).item(), rel=1e-6)
    empty = full_softmax_ce(hidden[:0], weight, targets[:0])
    assert empty.item() == 0.0
    empty.backward()  # an empty batch still backpropagates: no error, and nothing reaches the weights
    assert weight.grad is None


def test_a_large_catalogue_is_chunked_by_rows_not_by_a_logits_bound_on_a_gpu():
    # 2**26 logits are 64 rows of a 1M-item catalogue: every chunk would read the whole output matrix
    assert chunk_logits("cuda", 3_417) == DEFAULT_MAX_LOGITS  # ML-1M: 19,640 rows a chunk, as before
    assert chunk_logits("cuda", 26_745) == DEFAULT_MAX_LOGITS  # ML-20M: 2,509 rows
    assert chunk_logits("cuda", 1_000_001) // 1_000_001 == GPU_MIN_CHUNK_ROWS
    assert chunk_logits("cpu", 1_000_001) == CPU_MAX_LOGITS  # the CPU's cache-sized chunks stay
    # and the run's memory estimate counts the larger chunk (xlrec.training.footprint)
    from xlrec.config import resolve_config
    from xlrec.training.footprint import parts

    cfg = resolve_config("sasrec", "synthetic", overrides={"device": "cuda", "synthetic_items": 1_000_000})
    (loss,) = [p for p in parts(cfg, (100, 1_000_000, 10_000)) if p.what == "the loss's logits"]
    assert loss.bytes >= GPU_MIN_CHUNK_ROWS * 1_000_001 * 4


def test_fused_ce_only_weight_needs_grad():
    hidden, weight, targets = _case()
    hidden = hidden.detach()
    (ref_gw,) = torch.autograd.grad(F.cross_entropy(hidden @ weight.t(), targets), (weight,))
    (gw,) = torch.autograd.grad(full_softmax_ce(hidden, weight, targets, max_logits=40), (weight,))
    torch.testing.assert_close(gw, ref_gw, rtol=1e-5, atol=1e-6)


TRITON_CHECK = r"""
import torch, torch.nn.functional as F
from xlrec.training.ce_triton import ce_rows_and_grad_
from xlrec.training.losses import full_softmax_ce
g = torch.Generator().manual_seed(1)
for rows, items in [(5, 7), (9, 300), (3, 5000)]:  # one block, several blocks, a partial last block
    x = torch.randn(rows, items, generator=g) * 4
    t = torch.randint(0, items, (rows,), generator=g)
    t[0] = -1  # an ignored row
    ref_loss = F.cross_entropy(x, t, reduction="none", ignore_index=-1)
    ref_grad = (torch.softmax(x, 1) - F.one_hot(t.clamp_min(0), items)) * (t >= 0)[:, None]
    buf = x.clone()
    loss = ce_rows_and_grad_(buf, t)
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-5), (loss, ref_loss)
    assert torch.allclose(buf, ref_grad, rtol=1e-5, atol=1e-6)
h = torch.randn(40, 8, generator=g, requires_grad=True)
w = torch.randn(30, 8, generator=g, requires_grad=True)
t = torch.randint(0, 30, (40,), generator=g)
t[::7] = -1
a = full_softmax_ce(h, w, t, max_logits=30 * 7, kernel="triton")
ga = torch.autograd.grad(a, (h, w))
b = full_softmax_ce(h, w, t, max_logits=30 * 7, kernel="native")
gb = torch.autograd.grad(b, (h, w))
assert torch.allclose(a, b, rtol=1e-6), (a, b)
assert all(torch.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(ga, gb))
# targets as the prefix scheme passes them: a strided column of the window batch
window = torch.randint(1, 30, (40, 6), generator=g)
t = window[:, 1:][:, -1]
assert not t.is_contiguous()
a = full_softmax_ce(h, w, t, kernel="triton")
b = full_softmax_ce(h, w, t.contiguous(), kernel="native")
assert torch.allclose(a, b, rtol=1e-6), (a, b)
print("ok")
"""


def test_triton_ce_kernel_matches_torch_in_interpreter():
    """The GPU kernel's arithmetic, run on CPU by Triton's interpreter (CI has no GPU)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")  # a test dependency (pyproject [test]); the GPU host has it too
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
