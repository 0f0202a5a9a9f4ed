"""Where a model looks along a history (training.position_profile, the report's RQ10 section)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlrec.config import resolve_config
from xlrec.rec_models import build_model
from xlrec.training.position_profile import COLUMNS, position_profile

L, ITEMS = 12, 30


def _model(name: str, blocks: int = 2):
    cfg = resolve_config(
        name,
        "synthetic",
        overrides={"max_len": L, "embedding_dim": 32, "num_heads": 2, "num_blocks": blocks, "device": "cpu"},
    )
    torch.manual_seed(0)
    return build_model(name, ITEMS, cfg)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_attention_of_the_prediction_is_a_distribution_over_the_real_positions(name):
    net = _model(name)
    full = torch.randint(1, ITEMS + 1, (5, L))
    table = position_profile(net, full)
    assert list(table.columns) == COLUMNS and set(table["signal"]) == {"attention"}
    for _, g in table.groupby("block"):  # every history has every position: the means sum to one
        assert sorted(g["distance"]) == list(range(L))
        assert g["value"].sum() == pytest.approx(1.0, abs=1e-5)
        assert (g["histories"] == 5).all()
    short = torch.zeros(1, L, dtype=torch.long)
    short[0, -3:] = torch.tensor([4, 9, 2])
    table = position_profile(net, short)
    # BERT4Rec scores from [history minus its oldest slot, MASK]: the mask and the 3 items are real
    real = 3 if name == "sasrec" else 4
    for _, g in table.groupby("block"):
        assert sorted(g["distance"]) == list(range(real))  # padding is never attended to, nor reported
        assert g["value"].sum() == pytest.approx(1.0, abs=1e-5)


def test_xlstm_gates_per_block_and_position_and_the_model_left_as_it_was():
    net = _model("xlstm", blocks=3).train()
    history = torch.randint(1, ITEMS + 1, (4, L))
    history[0, :8] = 0  # a short history counts only where it has items
    table = position_profile(net, history)
    assert net.training
    assert set(table["signal"]) == {"input_gate", "forget_gate"}
    for _, g in table.groupby("signal"):
        assert sorted(g["block"].unique()) == [0, 1, 2]
        assert sorted(g.loc[g["block"] == 0, "distance"]) == list(range(L))
        assert dict(zip(g.loc[g["block"] == 0, "distance"], g.loc[g["block"] == 0, "histories"])) == {
            d: (4 if d < 4 else 3) for d in range(L)
        }
    forget = table.loc[table["signal"] == "forget_gate", "value"].to_numpy()
    assert np.all((forget > 0) & (forget < 1))
    assert np.isfinite(table["value"]).all()


def test_recurrent_models_expose_neither_and_give_an_empty_table():
    table = position_profile(_model("gru4rec"), torch.randint(1, ITEMS + 1, (2, L)))
    assert table.empty and list(table.columns) == COLUMNS
