"""The evaluation protocols over the flat per-user sequences (the `split` setting).

leave_last_two: for a user with n interactions at flat positions [s, s+n): train = [s, s+n-2),
validation target at s+n-2 (input: the train prefix), test target at s+n-1 (input: train +
validation item). Users with fewer than `cold_threshold` interactions are the cold-start group:
excluded from the main metrics and evaluated on their last item (input: everything before it).

temporal: two global cutoffs at quantiles of all timestamps, t_val < t_test. Interactions before
t_val are training; those in [t_val, t_test) the validation window, those from t_test on the test
window. A window's targets are each user's first interaction in it, or all of them
(`temporal_targets`); a target's input is everything of its user before it, so a test target sees
the validation window and no model trains on anything at or after t_val. Warm users have at
least cold_threshold - 2 training interactions (the training history a warm user has under
leave_last_two); a test target of a user with fewer but at least one earlier interaction is a
cold-start case; a user with no earlier interaction has no input and is not evaluated. The seen
rule (exclude_seen) is the same in both: the target's input items are excluded from its ranking.

Ties in timestamps: each user's interactions are ordered by time, then by the row order of the
source file (TIE_BREAK), under both protocols; a cutoff puts interactions of equal time on one side.
Positions index into the one flat item array, so a model's input is always "the items before the
target", with no copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlrec.data_prep.preprocess import Sequences
from xlrec.errors import DataError

TIE_BREAK = "file_order"  # equal timestamps keep the source file's row order (xlrec.data_prep.preprocess)


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
    # temporal: the resolved cutoffs (timestamps) of the validation and test windows
    cutoffs: tuple[int, int] | None = None

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


def make_split(seqs: Sequences, cfg) -> Split:
    """The split a run's settings name (`cfg`: a TrainConfig; its split, temporal_* and
    cold_start_threshold)."""
    if cfg.split == "temporal":
        return temporal(
            seqs, cfg.temporal_val_quantile, cfg.temporal_test_quantile, cfg.temporal_targets, cfg.cold_start_threshold
        )
    return leave_two_out(seqs, cfg.cold_start_threshold)


def temporal_cutoffs(seqs: Sequences, val_quantile: float, test_quantile: float) -> tuple[int, int]:
    """(t_val, t_test): the timestamps at the two quantiles of all interactions' times (the lower
    of two neighbouring times, so a cutoff is a time some interaction has)."""
    if not seqs.timed:
        raise DataError(
            "The temporal split needs the interactions' times, and this dataset has none (a synthetic dataset, "
            "or a file without a time column: its line order stands in for time). Pass --split leave_last_two, "
            "or give the file a time column (--columns user=COL,item=COL,time=COL)."
        )
    ts = seqs.timestamps
    t_val, t_test = (int(np.quantile(ts, q, method="lower")) for q in (val_quantile, test_quantile))
    return t_val, t_test


def temporal(
    seqs: Sequences, val_quantile: float, test_quantile: float, targets: str = "first", cold_threshold: int = 5
) -> Split:
    """The temporal split (module doc); `targets` is "first" or "all"."""
    t_val, t_test = temporal_cutoffs(seqs, val_quantile, test_quantile)
    starts, n = seqs.offsets[:-1], seqs.lengths
    user_of = np.repeat(np.arange(len(n)), n)
    ts = seqs.timestamps
    before_val = np.bincount(user_of, weights=ts < t_val, minlength=len(n)).astype(np.int64)
    before_test = np.bincount(user_of, weights=ts < t_test, minlength=len(n)).astype(np.int64)
    train_end = starts + before_val
    warm = before_val >= max(cold_threshold - 2, 1)

    def window(lo: np.ndarray, hi: np.ndarray, users: np.ndarray) -> EvalSet:
        """Cases at positions [lo, hi) of each of `users` (only the first with targets=first),
        each with at least one earlier interaction of its user."""
        lo, hi = lo[users], hi[users]
        if targets == "first":
            hi = np.minimum(hi, lo + 1)
        counts = np.maximum(hi - lo, 0)
        offsets = np.repeat(np.cumsum(counts) - counts, counts)
        pos = np.repeat(lo, counts) + np.arange(counts.sum()) - offsets
        user = np.repeat(users, counts)
        has_input = pos > starts[user]
        return EvalSet(user[has_input].astype(np.int64), pos[has_input].astype(np.int64))

    everyone = np.arange(len(n))
    test_lo, test_hi = starts + before_test, starts + n
    return Split(
        starts=starts,
        train_end=train_end,
        val=window(train_end, starts + before_test, everyone[warm]),
        test=window(test_lo, test_hi, everyone[warm]),
        cold_test=window(test_lo, test_hi, everyone[~warm]),
        cutoffs=(t_val, t_test),
    )


def shuffled_training_items(items: np.ndarray, split: Split, seed: int) -> np.ndarray:
    """A copy of the flat items with each user's training part in a random order (seeded by `seed`):
    the input of training under shuffle_train_sequences; evaluation reads the original order."""
    users, pos = training_positions(split)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(pos)), users))  # random order within each user's training part
    out = items.copy()
    out[pos] = items[pos[order]]
    return out


def training_positions(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(user index, flat position) of every training interaction."""
    lens = split.train_end - split.starts
    pos = np.repeat(split.starts, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
    return np.repeat(np.arange(len(lens)), lens), pos


def item_popularity(seqs: Sequences, split: Split) -> np.ndarray:
    """Training interaction count per item id (index 0 = padding, count 0)."""
    _, pos = training_positions(split)
    return np.bincount(seqs.items[pos], minlength=seqs.num_items + 1)
