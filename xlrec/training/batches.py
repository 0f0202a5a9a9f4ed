"""Training samples as index arithmetic on one flat item tensor (no per-sample Python).

The whole dataset lives on the device as one flat tensor of item ids (users' sequences
back to back). A sample is identified by the flat position of its last element and
its user's start; a batch is gathered with one vectorised index operation, positions
before the user's start read as padding (0).

Modes:
- window (default): each user's training part is cut into non-overlapping windows of
  L targets, right-aligned to the latest item, so every training interaction (after a
  user's first) is a target exactly once per epoch.
- prefix (the paper's scheme): one sample per target, its padded prefix of length L,
  loss at the last position only.

`TrainWindows` is what the trainer trains on: the flat tensor, the split and the sampling
settings, handing out each epoch's shuffled samples and gathering their windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xlrec.data_prep.split import Split


def _ranges(first: np.ndarray, last: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the values last[i], last[i]-step, ... >= first[i]; with the row index."""
    counts = np.where(last >= first, (last - first) // step + 1, 0)
    row = np.repeat(np.arange(len(first)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return last[row] - k * step, row


def sample_ends(split: Split, max_len: int, mode: str, causal: bool, stride: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(flat end position, user start) of every training sample of one epoch.

    Window mode starts a window every `stride` targets (default max_len); the last
    `stride` positions of a window are its targets, the rest is context.
    """
    starts, last = split.starts, split.train_end - 1
    # Causal models need one item of context before a target; BERT4Rec's windows cover every item.
    first = starts + 1 if causal else starts
    step = 1 if mode == "prefix" else (stride or max_len)
    ends, row = _ranges(first, last, step)
    return ends.astype(np.int64), starts[row].astype(np.int64)


def num_targets(split: Split, causal: bool) -> int:
    n = split.train_end - split.starts
    return int(np.maximum(n - 1, 0).sum()) if causal else int(n.sum())


def gather_windows(items: torch.Tensor, ends: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) ids at flat positions ends-width+1 .. ends; positions < start become 0."""
    offs = torch.arange(width - 1, -1, -1, device=items.device)
    pos = ends.unsqueeze(1) - offs
    valid = pos >= starts.unsqueeze(1)
    return torch.where(valid, items[pos.clamp_min(0)], torch.zeros((), dtype=items.dtype, device=items.device))


@dataclass
class TrainWindows:
    """The training part of a split as samples over the flat item tensor on the training device."""

    items: torch.Tensor  # every user's items back to back
    split: Split
    max_len: int
    mode: str  # "window" | "prefix"
    stride: int  # window mode: targets per window

    @property
    def targets_per_sample(self) -> int:
        return 1 if self.mode == "prefix" else self.stride

    def width(self, causal: bool) -> int:
        """Causal models read L inputs and their L next items; masked-item models one L window."""
        return self.max_len + 1 if causal else self.max_len

    def epoch(self, causal: bool, passes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat ends, user starts) of one epoch's samples on the device, each window `passes`
        times, in an order drawn from `generator` (a CPU generator)."""
        ends, starts = sample_ends(self.split, self.max_len, self.mode, causal, self.stride)
        ends, starts = np.tile(ends, passes), np.tile(starts, passes)
        dev = self.items.device
        order = torch.randperm(len(ends), generator=generator).to(dev)
        return torch.as_tensor(ends, device=dev)[order], torch.as_tensor(starts, device=dev)[order]

    def gather(self, ends: torch.Tensor, starts: torch.Tensor, causal: bool) -> torch.Tensor:
        return gather_windows(self.items, ends, starts, self.width(causal))
