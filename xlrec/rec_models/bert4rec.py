"""BERT4Rec (Sun et al., 2019): bidirectional transformer trained by masked-item prediction.

Training masks each item of a window with probability `mask_prob` (at least one per
window) and predicts the masked items; a share `mask_last_share` of the windows masks only
its last item instead (the original's samples that mimic the next-item task). Inference
appends a [MASK] after the history and scores that position. The [MASK] token is id N+1
of the input vocabulary only; outputs score items 0..N like every other model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from xlrec.rec_models.sasrec import SASRec, SASRecSettings
from xlrec.settings import check, setting


@dataclass
class BERT4RecSettings(SASRecSettings):
    """SASRec's settings plus the masking of the training windows."""

    mask_prob: float = setting(0.2, "BERT4Rec: masking probability")
    # the samples BERT4Rec adds "to better match the sequential recommendation task" (Sun et al. 2019, 3.6)
    mask_last_share: float = setting(0.0, "BERT4Rec: share of training windows that mask only their last item")

    def validate(self) -> None:
        super().validate()
        check(
            [
                (0.0 < self.mask_prob < 1.0, f"mask_prob must be in (0, 1), got {self.mask_prob}"),
                (0.0 <= self.mask_last_share <= 1.0, f"mask_last_share must be in [0, 1], got {self.mask_last_share}"),
            ]
        )


class BERT4Rec(SASRec):
    name = "bert4rec"
    settings_class = BERT4RecSettings
    causal = False
    search_space = {**SASRec.search_space, "mask_prob": {"float": [0.1, 0.5]}}
    causal_attention = False
    graph_capturable = True  # graphed: masks from the default CUDA generator, every position a row
    default_ffn_mult = 4
    vocab_extra = 1  # the [MASK] token
    activation = nn.GELU

    def __init__(self, num_items: int, settings: BERT4RecSettings, max_len: int, kernel: str = "native"):
        super().__init__(num_items, settings, max_len)
        self.mask_token = num_items + 1
        self.mask_prob = settings.mask_prob
        self.mask_last_share = settings.mask_last_share

    @property
    def passes_per_epoch(self) -> int:
        """ceil(1/mask_prob) visits of each window per epoch (fresh masks each time): an epoch
        trains about as many targets as there are training interactions, like the causal models'."""
        return math.ceil(1.0 / self.mask_prob)

    def scoring_ids(self, history: torch.Tensor) -> torch.Tensor:
        # Drop the oldest item and append [MASK] so the window keeps length L.
        mask_col = torch.full_like(history[:, :1], self.mask_token)
        return torch.cat([history[:, 1:], mask_col], dim=1)

    def training_pairs(
        self,
        window: torch.Tensor,
        num_targets: int,
        generator: torch.Generator | None = None,
        fixed_shape: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`window` is (B, L) items; mask a random subset of its last `num_targets` items
        (1: the last item only, the prefix scheme). The masks are built without boolean
        indexing (no host sync). `fixed_shape` (the CUDA-graphed step) returns every position,
        with target -1 where nothing is masked, which the loss ignores; otherwise only the
        masked positions (fewer output-layer rows: the eager and CPU path)."""
        real = window != 0
        if num_targets == 1:
            masked = torch.zeros_like(real)
            masked[:, -1] = True
        else:
            draw = torch.rand(window.shape, device=window.device, generator=generator)
            masked = (draw < self.mask_prob) & real
            masked[:, : window.shape[1] - num_targets] = False
            if self.mask_last_share > 0:  # these windows mask their last item only
                draw_last = torch.rand(window.shape[:1], device=window.device, generator=generator)
                masked &= (draw_last >= self.mask_last_share).unsqueeze(1)
            masked[:, -1] |= ~masked.any(dim=1)  # every window trains at least its last item
        ids = torch.where(masked, torch.full_like(window, self.mask_token), window)
        hidden = self.training_encode(ids)
        if fixed_shape:  # an all-padding row (a graphed batch's filler) masks its last id: no target
            targets = torch.where(masked & real, window, torch.full_like(window, -1))
            return hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        return hidden[masked], window[masked]
