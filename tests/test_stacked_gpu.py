"""Stacked seeds on a GPU: skipped on the CPU machines that run CI, run on a lent GPU host with
`python3 tests/test_stacked_gpu.py` (which has no pytest)."""

from __future__ import annotations

import pytest
import torch

from xlrec.rec_models.mlstm_vmap import mlstm_chunkwise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_mlstm_op_batches_seeds_of_the_triton_kernels_as_each_seed_alone():
    """The op's vmap rule over mlstm_kernels' Triton chunkwise kernels (the ones xLSTM trains with on
    a GPU) gives each seed the hidden states and input gradients of the package's own Function."""
    from mlstm_kernels.torch import get_mlstm_kernel

    reference = get_mlstm_kernel("chunkwise--triton_limit_chunk")
    g = torch.Generator(device="cuda").manual_seed(7)
    K, B, NH, S, D = 3, 4, 2, 128, 32
    shapes = [(K, B, NH, S, D)] * 3 + [(K, B, NH, S)] * 2
    inputs = [(0.5 * torch.randn(s, generator=g, device="cuda")).requires_grad_() for s in shapes]
    h = torch.func.vmap(lambda q, k, v, i, f: mlstm_chunkwise(q, k, v, i, f, 64, 1e-6, "triton_limit_chunk")[0])(
        *inputs
    )
    weights = torch.randn(h.shape, generator=g, device="cuda")
    (h * weights).sum().backward()
    for seed in range(K):
        own = [x[seed].detach().clone().requires_grad_() for x in inputs]
        h_own = reference(*own, chunk_size=64, eps=1e-6)
        # TF32 products in the kernels: the folded batch may tile differently (2.7e-4 seen on an H100)
        torch.testing.assert_close(h[seed], h_own, atol=1e-3, rtol=1e-3)
        (h_own * weights[seed]).sum().backward()
        for stacked, alone in zip(inputs, own):
            torch.testing.assert_close(stacked.grad[seed], alone.grad, atol=1e-3, rtol=1e-3)


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("passed", name)
