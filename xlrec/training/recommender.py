"""The one inference path: next-item scores, seen-item masking and top-k for a trained model.

Evaluation (validation, test and cold-start cases), `xlrec evaluate`, `xlrec recommend` and
the served model's `predict` all score through `Recommender.scores`, so a model ranks the same
way everywhere: the last `max_len` items of a history (gather_windows over a flat item tensor),
one forward pass, the padding id never recommended, and with the seen rule (`exclude_seen`)
every item of the history out of the ranking. The item map (raw ids, titles) turns requests
in a dataset's own ids into indices and answers back; evaluation works on indices only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from xlrec.device import Runtime
from xlrec.errors import XlrecError
from xlrec.rec_models.base import SequentialRecommender
from xlrec.training.batches import gather_windows


@dataclass
class Ranked:
    item_ids: list[str]  # raw item ids, best first
    titles: list[str]
    scores: list[float]


@dataclass
class Recommender:
    model: SequentialRecommender
    runtime: Runtime
    max_len: int
    exclude_seen: bool  # the model's own seen rule (a request may override it)
    item_ids: Sequence[str] = field(default=(), repr=False)  # raw id per index (index 0 = padding)
    titles: Sequence[str] = field(default=(), repr=False)
    dataset: str = ""

    @torch.no_grad()
    def scores(
        self,
        items: torch.Tensor,
        ends: torch.Tensor,
        starts: torch.Tensor,
        exclude_seen: bool,
        keep: torch.Tensor | None = None,
        users: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, N+1) float scores of the next item after each history items[starts[b] .. ends[b]]
        (flat positions, inclusive) of `users` (when known: evaluation). The padding id scores -inf,
        and with `exclude_seen` so does every item of the history, except `keep[b]` (an evaluation
        target stays rankable)."""
        was_training = self.model.training
        self.model.eval()
        try:
            window = gather_windows(items, ends, starts, self.max_len)
            with self.runtime.autocast():
                scores = self.model.case_scores(window, users)
        finally:
            if was_training:
                self.model.train()
        scores = scores.float()
        rows = torch.arange(len(ends), device=items.device)
        kept = scores[rows, keep] if keep is not None else None
        scores[:, 0] = float("-inf")
        if exclude_seen:
            lens = ends + 1 - starts
            flat_rows = torch.repeat_interleave(rows, lens)
            seen_pos = torch.repeat_interleave(starts - torch.cumsum(lens, 0) + lens, lens) + torch.arange(
                int(lens.sum()), device=items.device
            )
            scores[flat_rows, items[seen_pos]] = float("-inf")
            if kept is not None:
                scores[rows, keep] = kept
        return scores

    # --- histories in raw item ids (recommend, the served model) ---------------------------------
    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {raw: i for i, raw in enumerate(self.item_ids) if i > 0}

    def history_indices(self, raw_items: Sequence[str]) -> np.ndarray:
        """Raw item ids (oldest first) as the model's contiguous indices; unknown ids are refused."""
        index = self._index  # built once: a request of thousands of rows looks ids up thousands of times
        unknown = [x for x in raw_items if x not in index]
        if unknown:
            raise XlrecError(
                f"Item id(s) {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} are not "
                f"in {self.dataset}'s catalogue of this model. Use the dataset's raw item ids, e.g. "
                f"{', '.join(self.item_ids[1:4])}."
            )
        return np.array([index[x] for x in raw_items], dtype=np.int64)

    def check_k(self, k: int, history: np.ndarray, exclude_seen: bool, flag: str = "--k") -> None:
        """`k` must fit what can be recommended: the catalogue minus the excluded history;
        `flag` names it as the caller wrote it (--k, k)."""
        if k < 1:
            raise XlrecError(f"{flag} must be at least 1 (how many items to recommend), got {k}.")
        limit = self.num_items - (len(np.unique(history)) if exclude_seen else 0)
        if k > limit:
            seen = f", of which this history's {self.num_items - limit} are excluded as seen" if exclude_seen else ""
            raise XlrecError(
                f"{flag} {k} is more than the {limit} items this model can recommend here (its "
                f"catalogue has {self.num_items} items{seen}). Pass {flag} between 1 and {limit}."
            )

    def recommend(self, history: np.ndarray, k: int, exclude_seen: bool | None = None, flag: str = "--k") -> Ranked:
        """The top-k items after `history` (indices, oldest first) as raw ids with titles and scores;
        `exclude_seen` None applies the model's own rule."""
        exclude = self.exclude_seen if exclude_seen is None else exclude_seen
        self.check_k(k, history, exclude, flag)
        return self.recommend_many([history], [k], [exclude])[0]

    def recommend_many(
        self, histories: Sequence[np.ndarray], ks: Sequence[int], excludes: Sequence[bool], batch: int = 512
    ) -> list[Ranked]:
        """`recommend` for many histories (their k checked already), scored `batch` at a time in one
        forward pass each: a request's time grows with its rows, not with their square."""
        out: list[Ranked | None] = [None] * len(histories)
        dev = self.runtime.device
        for exclude in (False, True):  # the seen rule is one flag per forward pass
            rows = [i for i, e in enumerate(excludes) if e == exclude]
            for at in range(0, len(rows), batch):
                chunk = rows[at : at + batch]
                lens = np.array([len(histories[i]) for i in chunk], dtype=np.int64)
                flat = np.concatenate([np.asarray(histories[i], dtype=np.int64) for i in chunk])
                starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
                items = torch.as_tensor(flat, device=dev)
                scores = self.scores(
                    items, torch.as_tensor(starts + lens - 1, device=dev), torch.as_tensor(starts, device=dev), exclude
                )
                top = torch.topk(scores, max(ks[i] for i in chunk), dim=1)
                values, indices = top.values.cpu().tolist(), top.indices.cpu().tolist()
                for row, i in enumerate(chunk):
                    k = ks[i]
                    picked = indices[row][:k]
                    out[i] = Ranked(
                        item_ids=[self.item_ids[j] for j in picked],
                        titles=[self.titles[j] for j in picked],
                        scores=values[row][:k],
                    )
        return [r for r in out if r is not None]
