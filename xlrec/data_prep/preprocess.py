"""Interactions -> chronological per-user sequences with contiguous ids.

Steps, each driven by `PrepConfig`: optional minimum rating (implicit feedback keeps
every rating otherwise), optional k-core filtering iterated to a fixed point,
chronological order per user with the original row order as tie-break, and a
contiguous remap 1..N with 0 reserved for padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xlrec.data_prep.readers import Interactions
from xlrec.errors import DataError
from xlrec.settings import PrepConfig


@dataclass
class Sequences:
    """Per-user chronological item sequences in CSR form (flat items + offsets).

    items[offsets[u]:offsets[u+1]] is user u's sequence (ids 1..num_items, 0 = padding).
    """

    items: np.ndarray  # int64 [num_interactions]
    offsets: np.ndarray  # int64 [num_users + 1]
    timestamps: np.ndarray  # int64 [num_interactions]
    user_ids: np.ndarray  # raw user id of each contiguous user index (0-based)
    item_ids: np.ndarray  # raw item id of each contiguous item id; index 0 is padding
    titles: list[str]  # title of each contiguous item id; index 0 is "<pad>"
    # "Genre|Genre" of each contiguous item id ("" unknown; index 0 is padding); empty: no genres read
    genres: list[str] = field(default_factory=list)
    # "gender|age group|occupation" of each user index ("" unknown); empty: no demographics read
    groups: list[str] = field(default_factory=list)
    timed: bool = True  # the timestamps are the source's times (not line order standing in for them)

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def kcore(user: np.ndarray, item: np.ndarray, min_user: int, min_item: int, iterate: bool) -> np.ndarray:
    """Boolean mask of interactions kept by (iterated) user/item count thresholds."""
    keep = np.ones(len(user), dtype=bool)
    _, u_inv = np.unique(user, return_inverse=True)
    _, i_inv = np.unique(item, return_inverse=True)
    while True:
        changed = False
        if min_item > 0:
            counts = np.bincount(i_inv[keep], minlength=i_inv.max() + 1)
            drop = keep & (counts[i_inv] < min_item)
            if drop.any():
                keep &= ~drop
                changed = True
        if min_user > 0:
            counts = np.bincount(u_inv[keep], minlength=u_inv.max() + 1)
            drop = keep & (counts[u_inv] < min_user)
            if drop.any():
                keep &= ~drop
                changed = True
        if not changed or not iterate:
            return keep


def build_sequences(raw: Interactions, prep: PrepConfig, source: str = "dataset") -> Sequences:
    keep = np.ones(len(raw), dtype=bool)
    if prep.min_rating is not None:
        keep &= raw.rating >= prep.min_rating
    if prep.user_fraction < 1.0:
        keep &= np.isin(raw.user, _share(raw.user, prep.user_fraction))
    if prep.item_fraction < 1.0:
        keep &= np.isin(raw.item, _share(raw.item, prep.item_fraction))
    user, item, ts = raw.user[keep], raw.item[keep], raw.timestamp[keep]
    row = np.nonzero(keep)[0]
    if prep.min_user_interactions > 0 or prep.min_item_interactions > 0:
        k = kcore(user, item, prep.min_user_interactions, prep.min_item_interactions, prep.kcore_iterate)
        user, item, ts, row = user[k], item[k], ts[k], row[k]
    if len(user) == 0:
        raise DataError(
            f"No interactions of {source} are left after preprocessing (min_rating={prep.min_rating}, "
            f"k-core users>={prep.min_user_interactions}, items>={prep.min_item_interactions}). Loosen the filters."
        )
    user_ids, u_idx = np.unique(user, return_inverse=True)
    item_ids, i_idx = np.unique(item, return_inverse=True)
    order = np.lexsort((row, ts, u_idx))  # user, then time, then original row order
    items = (i_idx[order] + 1).astype(np.int64)
    counts = np.bincount(u_idx, minlength=len(user_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    titles = ["<pad>"] + [str(raw.titles.get(_py(i), f"Item {i}")) for i in item_ids]
    genres = [""] + [str(raw.genres.get(_py(i), "")) for i in item_ids] if raw.genres else []
    groups = [str(raw.groups.get(_py(u), "")) for u in user_ids] if raw.groups else []
    item_ids_padded = np.empty(len(item_ids) + 1, dtype=item_ids.dtype)
    item_ids_padded[1:] = item_ids
    item_ids_padded[0] = 0 if item_ids.dtype != object else ""
    return Sequences(
        items=items,
        offsets=offsets,
        timestamps=ts[order].astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids_padded,
        titles=titles,
        genres=genres,
        groups=groups,
        timed=raw.timed,
    )


def _share(ids: np.ndarray, fraction: float) -> np.ndarray:
    """The first ceil(fraction x N) of one fixed random order of the sorted ids (users or items)."""
    ids = np.unique(ids)
    order = np.random.default_rng(0).permutation(len(ids))
    return ids[order[: max(1, int(np.ceil(fraction * len(ids))))]]


def _py(value):
    return value.item() if hasattr(value, "item") else value
