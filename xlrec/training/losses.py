"""Full-softmax cross-entropy over the whole catalogue, chunked so logits never materialise whole.

For (M, D) hidden states and a (V, D) output matrix the logits are M x V; at ML-20M
scale (M ~ 1e5 per batch, V ~ 27k) that is gigabytes. Rows are processed in chunks
under activation checkpointing: each chunk's logits exist only while its loss and
gradient are computed. PyTorch has no fused linear+cross-entropy op, hence this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.t()
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def full_softmax_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                    max_logits: int = 1 << 26) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, in row chunks.

    `max_logits` bounds the logits alive at once (default 64M elements: 256 MB in fp32).
    """
    m = hidden.shape[0]
    if m == 0:
        return hidden.sum() * 0.0
    rows = max(1, max_logits // weight.shape[0])
    if m <= rows:
        return _chunk_loss(hidden, weight, targets) / m
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, m, rows):
        total = total + checkpoint(_chunk_loss, hidden[i:i + rows], weight, targets[i:i + rows],
                                   use_reentrant=False)
    return total / m
