"""xLSTM recommenders.

`xlstm`: the project's item embedding (padding_idx 0) -> the mLSTM block stack of
`xlstm.xlstm_large` (xLSTMLarge's backbone, as the paper used) -> an untied output
layer. With the paper's settings the parameter count equals its Table 6 exactly.
Left padding is exactly inert: pads embed to zero and the mLSTM q/k/v have no biases,
so padded positions add nothing to the matrix memory. The chunkwise kernels need the
length to be a multiple of the chunk size, so inputs are left-padded up to one.

`xlstm-s`: the classic `xLSTMBlockStack` with sLSTM blocks at `slstm_at`. sLSTM is
not invariant to left padding (its recurrent biases move the state), so inputs are
right-aligned before the (causal) stack and outputs moved back; trailing pads cannot
affect earlier positions, so results do not depend on the padding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xlrec.device import mlstm_chunk_size, mlstm_kernel, mlstm_kernel_names, mlstm_parallel_form
from xlrec.rec_models.base import SequentialRecommender, backbone_checks, right_align, undo_right_align
from xlrec.rec_models.mlstm_vmap import route_through_op
from xlrec.settings import ModelSettings, check, setting


@dataclass
class XLSTMSettings(ModelSettings):
    """The mLSTM stack's size (the paper's Table 3 columns) and dropout on the item embedding."""

    embedding_dim: int = setting(64, "embedding / hidden size D")
    num_heads: int = setting(2, "attention / mLSTM heads")
    num_blocks: int = setting(1, "number of blocks (layers)")
    dropout: float = setting(0.2, "dropout probability")

    def validate(self) -> None:
        backbone_checks(self.embedding_dim, self.num_blocks, self.dropout, self.num_heads)


@dataclass
class XLSTMSSettings(XLSTMSettings):
    """xlstm-s: the same, plus the blocks that are sLSTM (indices past num_blocks are ignored)."""

    slstm_at: list[int] = setting(help="xlstm-s: the blocks that are sLSTM (indices)", factory=lambda: [0])

    def validate(self) -> None:
        super().validate()
        check([(all(b >= 0 for b in self.slstm_at), f"slstm_at must list block indices >= 0, got {self.slstm_at}")])


class XLSTMRec(SequentialRecommender):
    name = "xlstm"
    settings_class = XLSTMSettings
    graph_capturable = True
    search_space = {
        "num_heads": {"categorical": [1, 2, 4]},
        "head_dim": {"categorical": [16, 32, 64]},  # embedding_dim = num_heads x head_dim
        "num_blocks": {"int": [1, 3]},
        "dropout": {"float": [0.1, 0.6]},
    }

    def __init__(
        self,
        num_items: int,
        settings: XLSTMSettings,
        max_len: int,
        kernel: str = "native",
        chunk_size: int | None = None,
    ):
        super().__init__(num_items, settings, max_len)
        from xlstm.xlstm_large.model import xLSTMLargeBlockStack, xLSTMLargeConfig

        kernel = self.kernel = mlstm_kernel(kernel, settings.embedding_dim, settings.num_heads)
        self.chunk_size = chunk_size or mlstm_chunk_size(kernel, max_len)
        self.item_embedding = nn.Embedding(num_items + 1, settings.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(settings.dropout)
        config = xLSTMLargeConfig(
            embedding_dim=settings.embedding_dim,
            num_heads=settings.num_heads,
            num_blocks=settings.num_blocks,
            vocab_size=num_items + 1,
            mode="train",
            chunk_size=self.chunk_size,
            return_last_states=True,  # required by the chunkwise kernels in xlstm 2.0.6
            **mlstm_kernel_names(kernel),
        )
        self.backbone = xLSTMLargeBlockStack(config)
        two_pass_head_norms(self.backbone)
        self.parallel_form = mlstm_parallel_form(kernel, self.chunk_size, max_len)
        if self.parallel_form:
            run_parallel_form(self.backbone)
        self.output = nn.Linear(settings.embedding_dim, num_items + 1, bias=False)

    def use_vmap_kernels(self) -> None:
        # mlstm_kernels' Triton Functions cannot run under vmap; the same kernels through our op can
        if self.kernel == "triton":
            route_through_op(self.backbone, "triton_limit_chunk")

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        pad = (-L) % self.chunk_size
        if pad:
            ids = F.pad(ids, (pad, 0))  # left padding is exactly inert (see module docstring)
        x = self.dropout(self.item_embedding(ids))
        h, _ = self.backbone(x)
        return h[:, pad:]


def two_pass_head_norms(backbone: nn.Module) -> None:
    """Give the mLSTM layers' per-head LayerNorms the two-pass variance, in place.

    xlstm's norm centres its input and then calls `x.var`, which centres it again; on a CPU
    torch's `var` over a 32-wide last axis is several times the time of the mean of the squared
    centred values the norm already holds (docs/results/speed.md "The CPU training step"). Same
    statistic, same parameters and state dict; written here because xlstm 2.0.6 has no option for it."""
    from xlstm.xlstm_large.components import MultiHeadLayerNorm

    for module in backbone.modules():
        if type(module) is MultiHeadLayerNorm:
            module.__class__ = _two_pass_norm_class()


def run_parallel_form(backbone: nn.Module) -> None:
    """Make every mLSTM layer of `backbone` run mlstm_kernels' parallel native kernel (see
    xlrec.device.mlstm_parallel_form). xlstm 2.0.6 cannot be configured to: its layer unpacks
    (hidden, last states) from the kernel, and its backend refuses a parallel kernel that returns
    states, so the layer's training function (used for evaluation too, in mode "train") is replaced
    by one that returns no states; the stack keeps None for them, which nothing here reads."""
    from mlstm_kernels.torch import get_mlstm_kernel
    from mlstm_kernels.torch.backend_module import mLSTMBackend

    kernel = get_mlstm_kernel("parallel--native_autograd")
    for module in backbone.modules():
        if isinstance(module, mLSTMBackend):
            module._train_fn = functools.partial(_parallel_without_states, kernel, eps=module.config.eps)


def _parallel_without_states(kernel, *, q, k, v, i, f, eps: float, **_states) -> tuple[torch.Tensor, None]:
    """The parallel kernel as the chunkwise one is called (initial states are None in training)."""
    return kernel(q=q, k=k, v=v, i=i, f=f, eps=eps), None


@functools.cache
def _two_pass_norm_class() -> type[nn.Module]:
    from xlstm.xlstm_large.components import MultiHeadLayerNorm

    class TwoPassMultiHeadLayerNorm(MultiHeadLayerNorm):
        def _layer_normalize(self, x: torch.Tensor) -> torch.Tensor:
            in_dtype = x.dtype
            if self.force_float32_reductions:
                x = x.float()
            centred = x - x.mean(dim=-1, keepdim=True)
            y = centred * torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + self.eps)
            return y.to(in_dtype)

    return TwoPassMultiHeadLayerNorm


class XLSTMSRec(SequentialRecommender):
    name = "xlstm-s"
    settings_class = XLSTMSSettings
    search_space = XLSTMRec.search_space
    compilable = False  # its sLSTM CUDA kernels were not checked under torch.compile
    stackable = False  # nor under vmap

    def __init__(self, num_items: int, settings: XLSTMSSettings, max_len: int, kernel: str = "native"):
        super().__init__(num_items, settings, max_len)
        from xlstm import (
            FeedForwardConfig,
            mLSTMBlockConfig,
            mLSTMLayerConfig,
            sLSTMBlockConfig,
            sLSTMLayerConfig,
            xLSTMBlockStack,
            xLSTMBlockStackConfig,
        )

        slstm_at = [i for i in settings.slstm_at if i < settings.num_blocks]
        stack_cfg = xLSTMBlockStackConfig(
            mlstm_block=mLSTMBlockConfig(
                mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=settings.num_heads)
            ),
            slstm_block=sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(
                    backend="cuda" if kernel == "triton" else "vanilla",
                    num_heads=settings.num_heads,
                    conv1d_kernel_size=4,
                    bias_init="powerlaw_blockdependent",
                ),
                feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu"),
            ),
            context_length=max_len,
            num_blocks=settings.num_blocks,
            embedding_dim=settings.embedding_dim,
            slstm_at=slstm_at,
            dropout=settings.dropout,
        )
        self.item_embedding = nn.Embedding(num_items + 1, settings.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(settings.dropout)
        self.backbone = xLSTMBlockStack(stack_cfg)
        self.output = nn.Linear(settings.embedding_dim, num_items + 1, bias=False)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        aligned, back = right_align(ids)
        h = self.backbone(self.dropout(self.item_embedding(aligned)))
        return undo_right_align(h, back)
