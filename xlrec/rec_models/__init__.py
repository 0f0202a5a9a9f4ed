"""Models chosen by name: a registry of `SequentialRecommender` classes."""

from __future__ import annotations

from xlrec.config import TrainConfig
from xlrec.errors import ConfigError
from xlrec.rec_models.base import SequentialRecommender, parameter_breakdown, parameter_table
from xlrec.rec_models.bert4rec import BERT4Rec
from xlrec.rec_models.pop import PopRec
from xlrec.rec_models.rnn import GRU4Rec, LSTMRec
from xlrec.rec_models.sasrec import SASRec
from xlrec.rec_models.xlstm import XLSTMRec, XLSTMSRec

MODELS: dict[str, type[SequentialRecommender]] = {
    "xlstm": XLSTMRec,
    "xlstm-s": XLSTMSRec,
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "gru4rec": GRU4Rec,
    "lstm": LSTMRec,
    "pop": PopRec,
}


def build_model(name: str, num_items: int, cfg: TrainConfig, kernel: str = "native") -> SequentialRecommender:
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}. Choose one of: {', '.join(MODELS)}.")
    cls = MODELS[name]
    if cls is SASRec:
        return cls(num_items, cfg)
    return cls(num_items, cfg, kernel=kernel)


__all__ = ["MODELS", "build_model", "SequentialRecommender", "parameter_breakdown", "parameter_table"]
