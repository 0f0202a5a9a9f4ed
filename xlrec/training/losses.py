"""Full-softmax cross-entropy over the whole catalogue, fused with the output layer.

For (M, D) hidden states and a (V, D) output matrix the logits are M x V; at ML-20M
scale (M ~ 2e5 per batch, V ~ 27k) that is gigabytes. PyTorch has no fused
linear + cross-entropy op, hence this one (the trick of Liger-Kernel's fused linear
cross-entropy, in plain torch): rows are processed in chunks, and because the loss is
the last op of the graph its gradient is computed in the forward pass, chunk by chunk,
while the chunk's logits are still in memory. Each chunk's logits are made once and
freed at once; nothing is recomputed in backward (activation checkpointing would make
them twice), and backward only scales the stored gradients by the incoming scalar.
"""

from __future__ import annotations

import torch

DEFAULT_MAX_LOGITS = 1 << 26  # logits alive at once on a GPU: 64M elements, 256 MB in fp32
# On a CPU, chunks of ~1M logits (4 MB) stay in the caches through the softmax passes and the two
# gradient products; smaller chunks lose to the products' overhead (docs/results/speed.md "The CPU
# training step").
CPU_MAX_LOGITS = 1 << 20
# On a GPU a chunk has at least this many rows: every chunk reads the whole output matrix and adds
# to its fp32 gradient, so a million-item catalogue in chunks of 64 rows (2**26 logits) spends a
# step moving that matrix (docs/results/speed.md "A million items").
GPU_MIN_CHUNK_ROWS = 1024


def chunk_logits(device_type: str, items: int) -> int:
    """The logits alive at once by default: DEFAULT_MAX_LOGITS, at least GPU_MIN_CHUNK_ROWS rows, on a
    GPU; CPU_MAX_LOGITS on a CPU."""
    if device_type == "cpu":
        return CPU_MAX_LOGITS
    return max(DEFAULT_MAX_LOGITS, GPU_MIN_CHUNK_ROWS * items)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """mean over rows with target >= 0 of CE(hidden_i @ weight.T, target_i); gradients made
    in forward, unscaled, and scaled by 1/count in backward (see module doc)."""

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, max_logits: int, use_triton: bool
    ) -> torch.Tensor:
        m = hidden.shape[0]
        rows = max(1, max_logits // weight.shape[0])
        # rows with a negative target are ignored; the count stays on the device (no sync)
        count = (targets >= 0).sum().clamp_min(1)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        want_grad = grad_h is not None or grad_w is not None
        if use_triton:  # imported here: CPU-only installs have no triton
            from xlrec.training.ce_triton import ce_rows_and_grad_
        # Every chunk's logits go to one buffer: a fresh block per chunk, allocated while the previous
        # chunk's gradient is alive, lands outside the CPU's caches (docs/results/speed.md "The CPU
        # training step").
        buffer = torch.empty((min(rows, m), weight.shape[0]), dtype=hidden.dtype, device=hidden.device)
        for i in range(0, m, rows):
            h, t = hidden[i : i + rows], targets[i : i + rows]
            g: torch.Tensor | None
            product = torch.mm(h, weight.t(), out=buffer[: h.shape[0]])
            if use_triton:  # one kernel: row losses, and the gradient written over the logits
                g = product
                total += ce_rows_and_grad_(g, t).sum()
            else:
                logits = product.float()  # (r, V), fp32 for the softmax
                total += _torch_ce_rows_and_grad_(logits, t, want_grad)
                g = logits.to(h.dtype) if want_grad else None
                del logits
            if g is None:  # forward only: no gradient to accumulate
                continue
            if grad_h is not None:
                grad_h[i : i + rows] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).float()
        inv = 1.0 / count.float()
        ctx.save_for_backward(grad_h, grad_w, inv)
        ctx.weight_dtype = weight.dtype
        return total * inv

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w, inv = ctx.saved_tensors
        scale = grad_out * inv  # d(mean)/d(sum) times the incoming gradient
        gh = grad_h * scale.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * scale).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None


def _torch_ce_rows_and_grad_(logits: torch.Tensor, targets: torch.Tensor, want_grad: bool) -> torch.Tensor:
    """Summed row losses of fp32 `logits` (rows with target < 0 count 0); with `want_grad`
    overwrites them with softmax - onehot, zero for ignored rows (the reference for the
    Triton kernel in ce_triton.py). One exp pass over the logits: the shifted exponentials
    give both the row sums the loss needs and, scaled in place, the softmax (on a CPU this
    is half the time of logsumexp followed by a second exp)."""
    valid = targets >= 0
    safe = targets.clamp_min(0)
    picked = logits.gather(1, safe[:, None]).squeeze(1)
    if not want_grad:
        return ((torch.logsumexp(logits, dim=1) - picked) * valid).sum()
    top = logits.amax(dim=1, keepdim=True)
    probs = logits.sub_(top).exp_()
    total = probs.sum(dim=1)
    loss = ((total.log() + top.squeeze(1) - picked) * valid).sum()
    probs.mul_((valid / total)[:, None])
    probs[torch.arange(targets.shape[0], device=targets.device), safe] -= valid.to(probs.dtype)
    return loss


def full_softmax_ce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    max_logits: int | None = None,
    kernel: str = "native",
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, never holding all logits.

    Rows whose target is negative are ignored (they count neither in the sum nor the mean).

    Under autocast the matrix products run in the autocast dtype (bf16 on GPU) and the
    softmax in fp32, as autocast would do for `F.cross_entropy(hidden @ weight.T)`.
    `max_logits` bounds the logits alive at once (default: `chunk_logits`). `kernel` is the runtime's kernel choice
    (xlrec.device): "triton" runs the softmax/gradient as one Triton kernel per chunk.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    device_type = hidden.device.type
    if max_logits is None:
        max_logits = chunk_logits(device_type, weight.shape[0])
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight_c = hidden.to(dtype), weight.to(dtype)
    else:
        weight_c = weight.to(hidden.dtype)
    with torch.autocast(device_type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden, weight_c, targets, max_logits, kernel == "triton")
