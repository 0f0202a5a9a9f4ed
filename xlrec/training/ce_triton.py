"""Triton kernel for the softmax cross-entropy of one chunk of logits, gradient in place.

Why by hand: PyTorch composes this from ~8 elementwise/reduction kernels that each read
or write the whole (rows x items) logits block in fp32 (cast, logsumexp's passes,
subtract, exp, scale, cast back); at ML-10M scale that traffic is most of an epoch. This
kernel reads the bf16 logits twice (online max/sum, then the gradient) and writes the
gradient once over them, a tenth of the memory traffic. Selected for `--kernel triton`
(CUDA); the CPU path stays in plain torch (losses.py). Tested on CPU through Triton's
interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_NEG: tl.constexpr = tl.constexpr(-1.0e30)  # finite "minus infinity": masked lanes must not make inf - inf = nan


@triton.jit
def _ce_rows_grad_kernel(logits_ptr, stride_row, targets_ptr, loss_ptr, n_cols: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    base = logits_ptr + row.to(tl.int64) * stride_row
    cols0 = tl.arange(0, BLOCK)
    # pass 1: per-lane running max and sum of exp (online softmax)
    m_vec = tl.full([BLOCK], _NEG, tl.float32)
    s_vec = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + cols0
        x = tl.load(base + cols, mask=cols < n_cols, other=_NEG).to(tl.float32)
        m_new = tl.maximum(m_vec, x)
        s_vec = s_vec * tl.exp(m_vec - m_new) + tl.exp(x - m_new)
        m_vec = m_new
    m = tl.max(m_vec, 0)
    lse = m + tl.log(tl.sum(s_vec * tl.exp(m_vec - m), 0))
    t = tl.load(targets_ptr + row)
    valid = t >= 0  # a negative target: an ignored row (loss 0, gradient 0)
    x_t = tl.load(base + tl.maximum(t, 0)).to(tl.float32)
    scale = tl.where(valid, 1.0, 0.0)
    tl.store(loss_ptr + row, (lse - x_t) * scale)
    # pass 2: d loss / d logits = softmax - onehot, written over the logits
    for start in range(0, n_cols, BLOCK):
        cols = start + cols0
        mask = cols < n_cols
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.exp(x - lse) * scale
        g = tl.where(cols == t, g - scale, g)
        tl.store(base + cols, g.to(logits_ptr.dtype.element_ty), mask=mask)


def ce_rows_and_grad_(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy (fp32) of `logits` (rows, items); overwrites `logits` with
    `softmax - onehot(targets)` in its own dtype. Rows with a negative target get loss 0
    and gradient 0."""
    rows, n_cols = logits.shape
    assert logits.stride(1) == 1, "rows must be contiguous"
    targets = targets.contiguous()  # the kernel reads target i at offset i (the prefix scheme passes a strided column)
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows:
        block = min(4096, triton.next_power_of_2(n_cols))
        _ce_rows_grad_kernel[(rows,)](
            logits, logits.stride(0), targets, loss, n_cols, BLOCK=block, num_warps=8 if block >= 2048 else 4
        )
    return loss
