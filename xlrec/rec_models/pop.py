"""Most-popular baseline (also the cold-start fallback): scores = training counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xlrec.config import ModelSettings
from xlrec.rec_models.base import SequentialRecommender


@dataclass
class PopSettings(ModelSettings):
    """Popularity has no settings of its own."""


class PopRec(SequentialRecommender):
    family = "pop"
    trainable = False

    def __init__(
        self,
        num_items: int,
        settings: ModelSettings | None = None,
        max_len: int = 0,
        kernel: str = "native",
        popularity: np.ndarray | None = None,
    ):
        # settings and max_len are optional: the cold-start fallback builds one from the counts alone
        super().__init__(num_items, settings or PopSettings(), max_len)
        counts = torch.zeros(num_items + 1) if popularity is None else torch.as_tensor(popularity, dtype=torch.float32)
        self.counts: torch.Tensor
        self.register_buffer("counts", counts)

    def set_popularity(self, popularity: np.ndarray) -> None:
        self.counts.copy_(torch.as_tensor(popularity, dtype=torch.float32))

    def next_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(history.shape[0], -1).clone()
