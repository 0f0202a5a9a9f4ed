"""NextItNet (Yuan, Karatzoglou, Arapakis, Jose & He, "A Simple Convolutional Generative Network for
Next Item Recommendation", WSDM 2019, arXiv:1808.05163) as an xlrec model plugin.

Follows the paper: item embedding -> a stack of residual blocks of dilated causal 1-D convolutions
(no pooling, no position embedding) -> a score for every item at every position, trained as a
generative model with a full softmax over the items at all positions of a sequence (xlrec trains
causal models on every position of a window with a full-softmax cross-entropy, so that matches).
Each residual block is the paper's Figure 3(b) layout: layer norm -> ReLU -> dilated conv ->
layer norm -> ReLU -> dilated conv, plus the identity (the authors' released code,
github.com/fajieyuan/WSDM2019-nextitnet ops.py, puts layer norm and ReLU after each conv instead).
A block's second convolution uses twice its first one's dilation, as in that code, so
`dilations: [1, 4]` gives convolutions of dilation 1, 2, 4, 8, the paper's doubling pattern, and
`num_blocks` stacks that group. A convolution is causal: its input is left-padded by
(kernel_size - 1) x dilation zeros, so the output at position t reads items at positions <= t only.

Differs from the paper: the output is xlrec's untied full-softmax layer (a bias-free linear map to
ids 0..N) after a final layer norm and ReLU (the authors' code applies ReLU and a biased 1x1
convolution); dropout (on the embedding and on each block's residual branch, 0 = none) is not in
the authors' code; and left padding (id 0) is inert: pads embed to zero and every convolution's
input and every block's output are multiplied by the non-pad mask, so a history's states do not
depend on how much padding precedes it (the paper does not discuss padding). Weights of the
embedding and the convolutions are drawn from N(0, 0.02) truncated, conv biases 0, as in the
authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xlrec.rec_models import SequentialRecommender, backbone_checks
from xlrec.settings import ModelSettings, check, setting


@dataclass
class NextItNetSettings(ModelSettings):
    """The width, the dilation pattern of one block group and how often the group is stacked."""

    embedding_dim: int = setting(64, "embedding / hidden size D")
    num_blocks: int = setting(
        2, "number of blocks (layers); NextItNet: how often the group of residual blocks in `dilations` is stacked"
    )
    dropout: float = setting(0.2, "dropout probability")
    kernel_size: int = setting(3, "NextItNet: width of each dilated causal convolution")
    dilations: list[int] = setting(
        help="NextItNet: one residual block per entry d (its two convolutions dilated d and 2d) in a block group; "
        "[1, 4] gives dilations 1, 2, 4, 8",
        factory=lambda: [1, 4],
    )

    # only NextItNet has them: setting them for another model is refused, not ignored
    exclusive: ClassVar[tuple[str, ...]] = ("kernel_size", "dilations")

    def validate(self) -> None:
        backbone_checks(self.embedding_dim, self.num_blocks, self.dropout)
        check(
            [
                (self.kernel_size >= 2, f"kernel_size must be at least 2, got {self.kernel_size}"),
                (len(self.dilations) > 0, "dilations must name at least one dilation, got []"),
                (all(d > 0 for d in self.dilations), f"dilations must all be positive, got {self.dilations}"),
            ]
        )


class CausalConv1d(nn.Module):
    """A dilated 1-D convolution over (B, L, D) that reads positions <= t only (left zero padding)."""

    def __init__(self, dim: int, kernel_size: int, dilation: int):
        super().__init__()
        self.left = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)
        nn.init.trunc_normal_(self.conv.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x.transpose(1, 2), (self.left, 0))).transpose(1, 2)


class ResidualBlock(nn.Module):
    """The paper's Figure 3(b) block: x + conv_2d(ReLU(LN(conv_d(ReLU(LN(x)))))), pads kept at zero."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.conv1 = CausalConv1d(dim, kernel_size, dilation)
        self.norm2 = nn.LayerNorm(dim)
        self.conv2 = CausalConv1d(dim, kernel_size, 2 * dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # LN(0) is LN's bias, not 0: mask each conv's input so pads read as the conv's own zero padding
        h = self.conv1(F.relu(self.norm1(x)) * keep)
        h = self.conv2(F.relu(self.norm2(h)) * keep)
        return (x + self.drop(h)) * keep


class NextItNet(SequentialRecommender):
    name: ClassVar[str] = "nextitnet"
    settings_class: ClassVar[type[ModelSettings]] = NextItNetSettings
    defaults_file: ClassVar[str | None] = "defaults.yaml"
    # what `xlrec tune` searches (with the learning rate, searched for every model)
    search_space: ClassVar[dict | None] = {
        "embedding_dim": {"categorical": [32, 64, 128]},
        "num_blocks": {"int": [1, 3]},
        "dilations": {"categorical": [[1, 2], [1, 4], [1, 2, 4]]},
        "dropout": {"float": [0.1, 0.5]},
    }

    def __init__(self, num_items: int, settings: NextItNetSettings, max_len: int, kernel: str = "native"):
        super().__init__(num_items, settings, max_len)
        s, dim = settings, settings.embedding_dim
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02, a=-0.04, b=0.04)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.dropout = nn.Dropout(s.dropout)
        self.blocks = nn.ModuleList(
            [ResidualBlock(dim, s.kernel_size, d, s.dropout) for _ in range(s.num_blocks) for d in s.dilations]
        )
        self.final_norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, num_items + 1, bias=False)

    @property
    def receptive_field(self) -> int:
        """How many items (the latest included) the state at one position can read."""
        return 1 + sum(block.conv1.left + block.conv2.left for block in self.blocks)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids (0 = padding, latest item last) -> (B, L, D) hidden states;
        output at t sees items <= t."""
        keep = (ids != 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)
        x = self.dropout(self.item_embedding(ids)) * keep
        for block in self.blocks:
            x = block(x, keep)
        return F.relu(self.final_norm(x)) * keep
