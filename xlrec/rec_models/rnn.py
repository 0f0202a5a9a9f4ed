"""Recurrent baselines: GRU4Rec (Hidasi et al., 2016) and a plain LSTM.

Embedding -> dropout -> a `num_blocks`-layer GRU/LSTM (cuDNN on GPU) -> untied output.
Inputs are right-aligned before the recurrence so leading pads never touch the state
(see `right_align`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xlrec.rec_models.base import SequentialRecommender, backbone_checks, right_align, undo_right_align
from xlrec.settings import ModelSettings, setting


@dataclass
class RNNSettings(ModelSettings):
    """GRU4Rec's and the LSTM's settings: hidden size, layers and dropout (no attention heads)."""

    embedding_dim: int = setting(64, "embedding / hidden size D")
    num_blocks: int = setting(1, "number of blocks (layers)")
    dropout: float = setting(0.2, "dropout probability")

    def validate(self) -> None:
        backbone_checks(self.embedding_dim, self.num_blocks, self.dropout)


class _RNNRec(SequentialRecommender):
    settings_class = RNNSettings
    graph_capturable = True  # cuDNN's RNN kernels capture (GRU4Rec checked on an H100)
    # Dynamo fails on cuDNN's RNN under autocast ("Unexpected floating ScalarType in
    # at::autocast::prioritize"), and the RNN is already one cuDNN kernel per layer: the family
    # trains eagerly when `compile` is asked for (docs/results/speed.md "The encoder through torch.compile").
    compilable = False
    stackable = False  # torch's fused RNN has no vmap batching rule (torch 2.13)
    search_space = {
        "embedding_dim": {"categorical": [32, 64, 128, 256]},
        "num_blocks": {"int": [1, 2]},
        "dropout": {"float": [0.1, 0.6]},
    }
    cell: type[nn.Module] = nn.GRU

    def __init__(self, num_items: int, settings: RNNSettings, max_len: int, kernel: str = "native"):
        super().__init__(num_items, settings, max_len)
        self.item_embedding = nn.Embedding(num_items + 1, settings.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(settings.dropout)
        dim, layers = settings.embedding_dim, settings.num_blocks
        self.rnn = self.cell(
            dim, dim, num_layers=layers, batch_first=True, dropout=settings.dropout if layers > 1 else 0.0
        )
        self.output = nn.Linear(settings.embedding_dim, num_items + 1, bias=False)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        aligned, back = right_align(ids)
        h, _ = self.rnn(self.dropout(self.item_embedding(aligned)))
        return undo_right_align(self.dropout(h), back)


class GRU4Rec(_RNNRec):
    name = "gru4rec"
    cell = nn.GRU


class LSTMRec(_RNNRec):
    name = "lstm"
    cell = nn.LSTM
