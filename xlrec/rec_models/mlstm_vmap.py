"""mlstm_kernels' chunkwise mLSTM as a torch custom op with a vmap rule, so that seeds stacked by
`torch.func.vmap` (xlrec.training.stacked) run xLSTM on its Triton kernels.

Why by hand: mlstm_kernels 2.0.6 wraps each kernel's forward and backward in an old-style
`torch.autograd.Function` (forward takes ctx), which torch.func cannot transform. Its forward and
backward functions are plain, though, and a batch of seeds is just a larger batch to them: the op's
vmap rule folds the seed dimension into the batch, calls the kernels once, and unfolds. The op's
autograd calls the package's own backward (states recomputed in the backward, as its Function does).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

#: the kernel families this op wraps: mlstm_kernels' chunkwise kernel names in xlrec.device
FAMILIES = ("triton_limit_chunk", "native")


@functools.cache
def _kernels(family: str) -> tuple[Callable, Callable]:
    """(forward, backward) of one chunkwise family, called with the same keywords."""
    if family == "triton_limit_chunk":
        from mlstm_kernels.torch.chunkwise.triton_limit_chunk.bw import mlstm_chunkwise_bw
        from mlstm_kernels.torch.chunkwise.triton_limit_chunk.fw import mlstm_chunkwise_fw

        def forward(chunk_size: int, eps: float, **kw):
            return mlstm_chunkwise_fw(CHUNK_SIZE=chunk_size, EPS=eps, **kw)

    elif family == "native":  # the CPU's kernels: the same op checked where no GPU is
        from mlstm_kernels.torch.chunkwise.native.bw import mlstm_chunkwise_bw
        from mlstm_kernels.torch.chunkwise.native.fw import mlstm_chunkwise_fw

        def forward(chunk_size: int, eps: float, **kw):
            return mlstm_chunkwise_fw(chunk_size=chunk_size, eps=eps, **kw)

    else:
        raise ValueError(f"no chunkwise mLSTM family {family!r} (one of {', '.join(FAMILIES)})")

    def backward(chunk_size: int, eps: float, **kw):
        return mlstm_chunkwise_bw(CHUNK_SIZE=chunk_size, EPS=eps, **kw)

    return forward, backward


@torch.library.custom_op("xlrec::mlstm_chunkwise", mutates_args=())
def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    chunk_size: int,
    eps: float,
    family: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states (B, NH, S, DHV) of q, k (B, NH, S, DHQK), v, and gate preactivations i, f
    (B, NH, S), from zero initial states; with the normaliser and max states the backward needs."""
    forward, _ = _kernels(family)
    h, n, m, _, _ = forward(
        chunk_size,
        eps,
        matQ=q.contiguous(),
        matK=k.contiguous(),
        matV=v.contiguous(),
        vecI=i.contiguous(),
        vecF=f.contiguous(),
        qk_scale=q.shape[-1] ** -0.5,
        return_last_states=False,
        return_all_states=False,
    )
    return h, n, m


@mlstm_chunkwise.register_fake
def _(q, k, v, i, f, chunk_size, eps, family):
    B, NH, S, _ = q.shape
    return (
        q.new_empty(B, NH, S, v.shape[-1]),
        i.new_empty(B, NH, S, dtype=torch.float32),
        i.new_empty(B, NH, S, dtype=torch.float32),
    )


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, i, f, chunk_size, eps, family = inputs
    _, n, m = output
    ctx.save_for_backward(q, k, v, i, f, n, m)
    ctx.chunk_size, ctx.eps, ctx.family = chunk_size, eps, family


def _backward(ctx, dh, _dn, _dm):
    q, k, v, i, f, n, m = ctx.saved_tensors
    _, backward = _kernels(ctx.family)
    dq, dk, dv, di, df, *_ = backward(
        ctx.chunk_size,
        ctx.eps,
        matQ=q.contiguous(),
        matK=k.contiguous(),
        matV=v.contiguous(),
        vecI=i.contiguous(),
        vecF=f.contiguous(),
        vecN_out=n,
        vecM_out=m,
        matDeltaH=dh.contiguous(),
        qk_scale=q.shape[-1] ** -0.5,
    )
    return dq, dk, dv, di, df, None, None, None


mlstm_chunkwise.register_autograd(_backward, setup_context=_setup_context)


@mlstm_chunkwise.register_vmap
def _(info, in_dims, q, k, v, i, f, chunk_size, eps, family):
    def fold(x: torch.Tensor, dim: int | None) -> torch.Tensor:
        x = x.movedim(dim, 0) if dim is not None else x.expand(info.batch_size, *x.shape)
        return x.reshape(-1, *x.shape[2:])

    folded = [fold(x, d) for x, d in zip((q, k, v, i, f), in_dims[:5])]
    outs = mlstm_chunkwise(*folded, chunk_size, eps, family)
    return tuple(o.reshape(info.batch_size, -1, *o.shape[1:]) for o in outs), (0, 0, 0)


def train_fn(family: str, chunk_size: int, eps: float, autocast_dtype: torch.dtype, *, q, k, v, i, f, **_states):
    """An mLSTM backend's training function through the op: (hidden states, no last states), as
    xlrec.rec_models.xlstm's parallel form returns (training starts from zero states). Under CUDA
    autocast the inputs are cast to the kernel's dtype, as the package's Function does."""
    if q.is_cuda and torch.is_autocast_enabled("cuda"):
        q, k, v, i, f = (x.to(autocast_dtype) for x in (q, k, v, i, f))
        with torch.autocast("cuda", enabled=False):
            return mlstm_chunkwise(q, k, v, i, f, chunk_size, eps, family)[0], None
    return mlstm_chunkwise(q, k, v, i, f, chunk_size, eps, family)[0], None


def route_through_op(backbone: nn.Module, family: str) -> int:
    """Make every chunkwise mLSTM layer of `backbone` train through the op (in place); the number of
    layers changed. For a copy that vmap runs (the stacked step's template), not a seed's own model."""
    from mlstm_kernels.torch.backend_module import mLSTMBackend

    changed = 0
    for module in backbone.modules():
        if isinstance(module, mLSTMBackend):
            c = module.config
            module._train_fn = functools.partial(
                train_fn, family, c.chunk_size, c.eps, getattr(torch, c.autocast_kernel_dtype)
            )
            changed += 1
    return changed
