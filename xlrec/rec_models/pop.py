"""Most-popular baseline (also the cold-start fallback): scores = training counts."""

from __future__ import annotations

import numpy as np
import torch

from xlrec.config import TrainConfig
from xlrec.rec_models.base import SequentialRecommender


class PopRec(SequentialRecommender):
    family = "pop"
    trainable = False

    def __init__(self, num_items: int, cfg: TrainConfig, kernel: str = "native",
                 popularity: np.ndarray | None = None):
        super().__init__(num_items, cfg)
        counts = torch.zeros(num_items + 1) if popularity is None else torch.as_tensor(popularity, dtype=torch.float32)
        self.register_buffer("counts", counts)

    def set_popularity(self, popularity: np.ndarray) -> None:
        self.counts.copy_(torch.as_tensor(popularity, dtype=torch.float32))

    def next_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(history.shape[0], -1).clone()
