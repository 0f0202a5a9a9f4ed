"""Where a model looks along a history (the paper's RQ10), as numbers per position.

For the next-item prediction of each history (the last position of what the model encodes):
SASRec/BERT4Rec's attention weight on every earlier position, per block (mean over heads), and
xLSTM's input- and forget-gate activations at every position, per block (mean over heads).
Positions are counted back from the last one (distance 0 = the latest input; for BERT4Rec that is
the [MASK] it predicts from). The means run over the histories that have a real item there, so
short histories do not drag the far positions towards zero.

Read off forward hooks on the layers that compute them (the models' own forward is unchanged):
SDPA never materialises attention weights, so they are recomputed from the block's query and key
projections for the last query only; xlstm's mLSTM layer exposes its gate pre-activations as
`igate_preact`/`fgate_preact` linear layers, soft-capped as the layer itself does.
RNNs expose neither, and give an empty table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from xlrec.rec_models.base import SequentialRecommender
from xlrec.rec_models.sasrec import SelfAttention

COLUMNS = ["signal", "block", "distance", "value", "histories"]
GATE_SOFT_CAP = 15.0  # xlstm_large's gate_soft_cap default, which the models here keep


def _soft_cap(x: torch.Tensor) -> torch.Tensor:
    return GATE_SOFT_CAP * torch.tanh(x / GATE_SOFT_CAP)


def _attention_of_last_query(module: SelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L) weights of the last position's attention over all positions, mean over heads."""
    B, L, D = x.shape
    heads = module.heads
    q, k, _ = module.qkv(x).view(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    scores = q[:, :, -1:] @ k.transpose(-1, -2) / math.sqrt(D // heads)  # (B, H, 1, L)
    scores = scores.masked_fill(~mask[:, :, -1:, :], float("-inf"))
    return F.softmax(scores.float(), dim=-1).mean(dim=1)[:, 0]


def position_profile(model: SequentialRecommender, history: torch.Tensor) -> pd.DataFrame:
    """The table for (B, L) left-padded histories on the model's device, encoded as for scoring."""
    captured: dict[tuple[str, int], list[torch.Tensor]] = {}
    hooks = []

    def keep(signal: str, block: int, values: torch.Tensor) -> None:
        captured.setdefault((signal, block), []).append(values.detach().float())

    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    for block, layer in enumerate(attention):

        def pre(mod: SelfAttention, args: tuple, block: int = block) -> None:
            keep("attention", block, _attention_of_last_query(mod, *args))

        hooks.append(layer.register_forward_pre_hook(pre))
    gates: list[tuple[str, nn.Module, Callable[[torch.Tensor], torch.Tensor]]] = []
    for name, module in model.named_modules():
        if name.endswith("igate_preact"):
            gates.append(("input_gate", module, _soft_cap))
        elif name.endswith("fgate_preact"):
            gates.append(("forget_gate", module, lambda x: torch.sigmoid(_soft_cap(x))))
    blocks: dict[str, int] = {}
    for signal, module, transform in gates:
        block = blocks[signal] = blocks.get(signal, -1) + 1

        def post(mod, args, out, signal=signal, block=block, transform=transform):
            keep(signal, block, transform(out.float()).mean(dim=-1))  # (B, L') mean over heads

        hooks.append(module.register_forward_hook(post))
    ids = model.scoring_ids(history)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.encode(ids)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    real = (ids != 0).cpu().numpy()[:, ::-1]  # by distance from the last position
    rows = []
    for (signal, block), parts in sorted(captured.items()):
        values = torch.cat(parts).cpu().numpy()[:, -ids.shape[1] :][:, ::-1]  # xLSTM pads to its chunk
        counts = real.sum(axis=0)
        sums = np.where(real, values, 0.0).sum(axis=0)
        for distance in np.flatnonzero(counts):
            rows.append((signal, block, int(distance), float(sums[distance] / counts[distance]), int(counts[distance])))
    return pd.DataFrame(rows, columns=COLUMNS)
