"""Most-popular baseline (also the cold-start fallback): scores = training counts; and two more cold-start
fallbacks: the genre profile (items ranked by how well their genres match the few items a user has
seen) and demographic neighbours (the items most watched by users of the same gender, age group and
occupation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xlrec.rec_models.base import SequentialRecommender
from xlrec.settings import ModelSettings


@dataclass
class PopSettings(ModelSettings):
    """Popularity has no settings of its own."""


class PopRec(SequentialRecommender):
    name = "pop"
    settings_class = PopSettings
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


class GenreProfileRec(PopRec):
    """Cold-start fallback from item genres (no training): a history's genre profile is the mean of
    its items' genre indicators; an item scores the overlap of its genres with that profile, and
    popularity orders items that overlap equally (so an empty profile is the popularity ranking)."""

    name = "genre"

    def __init__(self, num_items: int, genres: list[str], popularity: np.ndarray):
        super().__init__(num_items, popularity=popularity)
        names = sorted({g for text in genres for g in text.split("|") if g})
        index = {g: j for j, g in enumerate(names)}
        onehot = torch.zeros(num_items + 1, max(1, len(names)))
        for i, text in enumerate(genres[: num_items + 1]):
            for g in filter(None, text.split("|")):
                onehot[i, index[g]] = 1.0
        self.onehot: torch.Tensor
        self.register_buffer("onehot", onehot)

    def next_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        seen = self.onehot[history] * (history != 0).unsqueeze(-1)  # (B, L, G), padding counts nothing
        profile = seen.sum(1) / (history != 0).sum(1, keepdim=True).clamp_min(1)
        tie_break = self.counts / self.counts.max().clamp_min(1.0) * 1e-3  # below one genre's overlap step
        return profile @ self.onehot.T + tie_break


class DemographicRec(PopRec):
    """Cold-start fallback from user demographics (no training): an item scores its training
    interactions among users of the user's group (`gender|age group|occupation`), overall popularity
    ordering the rest; a user of no known group gets the popularity ranking."""

    name = "demographic"

    def __init__(self, num_items: int, groups: list[str], item_users: np.ndarray, items: np.ndarray, popularity):
        """`item_users`/`items`: the user index and item of every training interaction."""
        super().__init__(num_items, popularity=popularity)
        names = sorted(set(groups) - {""})
        index = {g: j for j, g in enumerate(names)}
        user_group = np.array([index.get(g, len(names)) for g in groups], dtype=np.int64)  # last row: no group
        counts = np.zeros((len(names) + 1, num_items + 1), dtype=np.float32)
        np.add.at(counts, (user_group[item_users], items), 1.0)
        counts[-1] = 0.0
        self.user_group: torch.Tensor
        self.group_counts: torch.Tensor
        self.register_buffer("user_group", torch.as_tensor(user_group))
        self.register_buffer("group_counts", torch.as_tensor(counts))

    def case_scores(self, history: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        if users is None:  # no user to look up: the popularity ranking
            return self.next_item_scores(history)
        tie_break = self.counts / self.counts.max().clamp_min(1.0) * 1e-3  # below one interaction
        return self.group_counts[self.user_group[users]] + tie_break
