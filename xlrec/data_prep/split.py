"""Leave-last-two-out split over the flat per-user sequences.

For a user with n interactions at flat positions [s, s+n): train = [s, s+n-2),
validation target at s+n-2 (input: the train prefix), test target at s+n-1 (input:
train + validation item). Users with fewer than `cold_threshold` interactions are the
cold-start group: excluded from the main metrics and evaluated on their last item
(input: everything before it). Positions index into the one flat item array, so a
model's input is always "the items before the target", with no copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlrec.data_prep.preprocess import Sequences


@dataclass
class EvalSet:
    """Evaluation cases: user index, flat position of the target (its input is [start, pos))."""

    users: np.ndarray  # int64 [M]
    target_pos: np.ndarray  # int64 [M]

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    starts: np.ndarray  # int64 [U] flat start of each user
    train_end: np.ndarray  # int64 [U] exclusive end of each user's training part
    val: EvalSet
    test: EvalSet
    cold_test: EvalSet

    @property
    def num_train_interactions(self) -> int:
        return int((self.train_end - self.starts).sum())


def leave_two_out(seqs: Sequences, cold_threshold: int = 5) -> Split:
    starts = seqs.offsets[:-1]
    n = seqs.lengths
    train_end = starts + np.maximum(n - 2, 0)
    warm = np.nonzero(n >= cold_threshold)[0]
    cold = np.nonzero((n < cold_threshold) & (n >= 2))[0]
    return Split(
        starts=starts,
        train_end=train_end,
        val=EvalSet(warm, starts[warm] + n[warm] - 2),
        test=EvalSet(warm, starts[warm] + n[warm] - 1),
        cold_test=EvalSet(cold, starts[cold] + n[cold] - 1),
    )


def training_positions(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(user index, flat position) of every training interaction."""
    lens = split.train_end - split.starts
    pos = np.repeat(split.starts, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
    return np.repeat(np.arange(len(lens)), lens), pos


def item_popularity(seqs: Sequences, split: Split) -> np.ndarray:
    """Training interaction count per item id (index 0 = padding, count 0)."""
    _, pos = training_positions(split)
    return np.bincount(seqs.items[pos], minlength=seqs.num_items + 1)
