"""Models chosen by name: each name maps to its model class and its settings class."""

from __future__ import annotations

from typing import NamedTuple

from xlrec.config import ModelSettings, TrainConfig
from xlrec.errors import ConfigError
from xlrec.rec_models.base import SequentialRecommender, parameter_breakdown, parameter_table
from xlrec.rec_models.bert4rec import BERT4Rec, BERT4RecSettings
from xlrec.rec_models.pop import PopRec, PopSettings
from xlrec.rec_models.rnn import GRU4Rec, LSTMRec, RNNSettings
from xlrec.rec_models.sasrec import SASRec, SASRecSettings
from xlrec.rec_models.xlstm import XLSTMRec, XLSTMSettings, XLSTMSRec, XLSTMSSettings


class Family(NamedTuple):
    model: type[SequentialRecommender]
    settings: type[ModelSettings]


MODELS: dict[str, Family] = {
    "xlstm": Family(XLSTMRec, XLSTMSettings),
    "xlstm-s": Family(XLSTMSRec, XLSTMSSettings),
    "sasrec": Family(SASRec, SASRecSettings),
    "bert4rec": Family(BERT4Rec, BERT4RecSettings),
    "gru4rec": Family(GRU4Rec, RNNSettings),
    "lstm": Family(LSTMRec, RNNSettings),
    "pop": Family(PopRec, PopSettings),
}


def build_model(name: str, num_items: int, cfg: TrainConfig, kernel: str = "native") -> SequentialRecommender:
    """Model `name` for `num_items` items, built from the run config's family settings (`cfg.arch`)."""
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}. Choose one of: {', '.join(MODELS)}.")
    family = MODELS[name]
    if not isinstance(cfg.arch, family.settings):  # a programming error: configs come from xlrec.config
        raise TypeError(f"model {name!r} is built from {family.settings.__name__}, not {type(cfg.arch).__name__}")
    return family.model(num_items, cfg.arch, cfg.max_len, kernel=kernel)


__all__ = [
    "MODELS",
    "BERT4RecSettings",
    "Family",
    "PopSettings",
    "RNNSettings",
    "SASRecSettings",
    "SequentialRecommender",
    "XLSTMSSettings",
    "XLSTMSettings",
    "build_model",
    "parameter_breakdown",
    "parameter_table",
]
