"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Transformer blocks (pre-LN by default, post-LN with `norm_first: false`) with learned
absolute positions (the latest item is always position L-1, as in the original's left
padding), PyTorch SDPA for attention (flash / memory-efficient kernels on GPU), and a
key-padding mask so real items never attend to padding. The feed-forward width
(`ffn_mult`), an output bias (`output_bias`) and a prediction head (`output_head`) are
settings, so the original SASRec layout (width d, no bias) and the paper's (width 4d,
biased output, post-LN, one block: its Table 4 parameter counts) are one config apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xlrec.rec_models.base import SequentialRecommender, backbone_checks
from xlrec.settings import ModelSettings, check, setting


@dataclass
class SASRecSettings(ModelSettings):
    """The transformer's size and block layout; configs/paper/ holds the layouts whose parameter
    counts are the paper's Table 4 rows."""

    embedding_dim: int = setting(64, "embedding / hidden size D")
    num_heads: int = setting(2, "attention / mLSTM heads")
    num_blocks: int = setting(1, "number of blocks (layers)")
    dropout: float = setting(0.2, "dropout probability")
    # off = the paper's untied layout (its Table 6 counts)
    tied_output: bool = setting(
        False, "score items with the input item embedding (the original papers' weight tying), not a separate layer"
    )
    ffn_mult: int | None = setting(
        None, "feed-forward width as a multiple of embedding_dim (unset: SASRec's original 1, BERT4Rec's 4)"
    )
    output_bias: bool = setting(False, "a per-item bias in the output layer")
    # false is nn.TransformerEncoderLayer's default
    norm_first: bool = setting(True, "pre-LN blocks and a final norm (false: post-LN blocks, no final norm)")
    output_head: bool = setting(False, "a dense layer and activation before the output layer (BERT4Rec's head)")

    # they shape nothing else, so setting them for another model is a mistake worth an error
    exclusive: ClassVar[tuple[str, ...]] = ("tied_output", "ffn_mult", "output_bias", "norm_first", "output_head")

    def validate(self) -> None:
        backbone_checks(self.embedding_dim, self.num_blocks, self.dropout, self.num_heads)
        check([(self.ffn_mult is None or self.ffn_mult > 0, f"ffn_mult must be positive, got {self.ffn_mult}")])


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.explicit = False  # SDPA's arithmetic in plain operators (a stacked copy: use_vmap_kernels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if self.explicit:
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            weights = F.dropout(scores.masked_fill(~mask, float("-inf")).softmax(dim=-1), p)
            y = weights @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class TransformerBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, dropout: float, ffn_mult: int = 1, activation=nn.ReLU, norm_first: bool = True
    ):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), activation(), nn.Dropout(dropout), nn.Linear(ffn_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x), mask))
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


def attention_mask(ids: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) boolean mask: True = may attend. Pads attend to themselves (no NaN rows)."""
    L = ids.shape[1]
    keys = (ids != 0)[:, None, None, :]
    eye = torch.eye(L, dtype=torch.bool, device=ids.device)
    if causal:
        keys = keys & torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()
    return keys | eye


class SASRec(SequentialRecommender):
    name = "sasrec"
    settings_class: ClassVar[type[ModelSettings]] = SASRecSettings
    causal_attention = True
    graph_capturable = True
    search_space = {
        "num_heads": {"categorical": [1, 2, 4]},
        "head_dim": {"categorical": [16, 32, 64]},  # embedding_dim = num_heads x head_dim
        "num_blocks": {"int": [1, 3]},
        "dropout": {"float": [0.1, 0.6]},
    }
    #: feed-forward width / embedding_dim when the settings leave `ffn_mult` unset
    default_ffn_mult = 1
    #: input ids past the items (BERT4Rec's [MASK])
    vocab_extra = 0
    activation: type[nn.Module] = nn.ReLU

    def __init__(self, num_items: int, settings: SASRecSettings, max_len: int, kernel: str = "native"):
        super().__init__(num_items, settings, max_len)
        s, dim, activation = settings, settings.embedding_dim, self.activation
        ffn_mult = s.ffn_mult or self.default_ffn_mult
        self.item_embedding = nn.Embedding(num_items + 1 + self.vocab_extra, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(s.dropout)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(dim, s.num_heads, s.dropout, ffn_mult, activation, s.norm_first)
                for _ in range(s.num_blocks)
            ]
        )
        # post-LN blocks end in a norm already
        self.final_norm = nn.LayerNorm(dim) if s.norm_first else nn.Identity()
        self.head = nn.Sequential(nn.Linear(dim, dim), activation()) if s.output_head else nn.Identity()
        self.tied_output = s.tied_output
        if not self.tied_output:
            self.output = nn.Linear(dim, num_items + 1, bias=False)
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1)) if s.output_bias else None
        # Small embedding init (BERT-style); N(0, 1) would swamp the position embedding.
        for emb in (self.item_embedding, self.position_embedding):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @property
    def output_weight(self) -> torch.Tensor:
        if self.tied_output:  # rows 0..N of the input embedding ([MASK] is never a target)
            return self.item_embedding.weight[: self.num_items + 1]
        return self.output.weight

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.output_weight.t() if self.tied_output else self.output(hidden)
        return logits if self.output_bias is None else logits + self.output_bias

    def output_operands(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.output_bias is None:
            return hidden, self.output_weight
        # the bias as one more input feature fixed at 1: the fused loss needs a single matrix
        ones = torch.ones_like(hidden[:, :1])
        return (
            torch.cat([hidden, ones], dim=1),
            torch.cat([self.output_weight, self.output_bias[:, None].to(self.output_weight.dtype)], dim=1),
        )

    def use_vmap_kernels(self) -> None:
        # vmap's rule for SDPA's fused CUDA kernels fails in their backward (torch 2.11 on an H100:
        # "LSE is not correctly aligned"); the same attention in plain operators batches. On a CPU
        # SDPA batches (by a slower fallback) and stays, so a stacked seed trains its own arithmetic
        if self.item_embedding.weight.device.type != "cuda":
            return
        for module in self.modules():
            if isinstance(module, SelfAttention):
                module.explicit = True

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        pos = torch.arange(self.max_len - L, self.max_len, device=ids.device)
        x = self.item_embedding(ids) + self.position_embedding(pos)
        x = self.dropout(x) * (ids != 0).unsqueeze(-1)
        mask = attention_mask(ids, self.causal_attention)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.final_norm(x))
