"""Recurrent baselines: GRU4Rec (Hidasi et al., 2016) and a plain LSTM.

Embedding -> dropout -> a `num_blocks`-layer GRU/LSTM (cuDNN on GPU) -> untied output.
Inputs are right-aligned before the recurrence so leading pads never touch the state
(see `right_align`).
"""

from __future__ import annotations

import torch
from torch import nn

from xlrec.config import TrainConfig
from xlrec.rec_models.base import SequentialRecommender, right_align, undo_right_align


class _RNNRec(SequentialRecommender):
    graph_capturable = True  # cuDNN's RNN kernels capture (GRU4Rec checked on an H100)
    cell: type[nn.Module] = nn.GRU

    def __init__(self, num_items: int, cfg: TrainConfig, kernel: str = "native"):
        super().__init__(num_items, cfg)
        self.item_embedding = nn.Embedding(num_items + 1, cfg.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = self.cell(cfg.embedding_dim, cfg.embedding_dim, num_layers=cfg.num_blocks, batch_first=True,
                             dropout=cfg.dropout if cfg.num_blocks > 1 else 0.0)
        self.output = nn.Linear(cfg.embedding_dim, num_items + 1, bias=False)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        aligned, back = right_align(ids)
        h, _ = self.rnn(self.dropout(self.item_embedding(aligned)))
        return undo_right_align(self.dropout(h), back)


class GRU4Rec(_RNNRec):
    family = "gru4rec"
    cell = nn.GRU


class LSTMRec(_RNNRec):
    family = "lstm"
    cell = nn.LSTM
