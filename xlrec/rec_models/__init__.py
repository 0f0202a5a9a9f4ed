"""The recommenders, built by name through the model registry (xlrec.catalog.models).

`build_model` is the one place a model is constructed: built-in or a plugin's, from the run
config's family settings (`cfg.arch`). A plugin's model is checked against the interface once,
on a two-row batch, before any data or training work depends on it.
"""

from __future__ import annotations

import torch

from xlrec.catalog import models
from xlrec.rec_models.base import SequentialRecommender, backbone_checks, parameter_breakdown, parameter_table
from xlrec.settings import TrainConfig


def build_model(name: str, num_items: int, cfg: TrainConfig, kernel: str = "native") -> SequentialRecommender:
    """Model `name` for `num_items` items, built from the run config's family settings (`cfg.arch`)."""
    entry = models.get(name)
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, SequentialRecommender)):
        raise entry.error(
            "is not a sequential recommender",
            "subclass xlrec.rec_models.SequentialRecommender (its encode maps (B, L) item ids to (B, L, D) states)",
        )
    if not isinstance(cfg.arch, cls.settings_class):  # a programming error: configs come from xlrec.config
        raise TypeError(f"model {name!r} is built from {cls.settings_class.__name__}, not {type(cfg.arch).__name__}")
    try:
        model = cls(num_items, cfg.arch, cfg.max_len, kernel=kernel)
    except Exception as exc:
        if entry.builtin:
            raise
        raise entry.error(
            f"could not be built ({type(exc).__name__}: {exc})",
            "its __init__ must accept (num_items, settings, max_len, kernel='native')",
        ) from None
    if not entry.builtin and not any(p.is_meta for p in model.parameters()):  # a meta build has no numbers
        check_interface(entry, model, num_items)
    return model


def check_interface(entry: models.ModelEntry, model: SequentialRecommender, num_items: int) -> None:
    """A plugin's encode and scores on a two-row batch (one full, one left-padded history), on
    CPU in eval mode: the shapes every shared step relies on, and no NaN."""
    length = min(model.max_len, 4)
    ids = torch.randint(1, num_items + 1, (2, length))
    ids[1, : length // 2] = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            hidden = model.encode(ids)
            expected = f"(2, {length}, D)"
            if not (isinstance(hidden, torch.Tensor) and hidden.dim() == 3 and hidden.shape[:2] == (2, length)):
                got = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__
                raise entry.error(
                    f"returns {got} from encode for a (2, {length}) batch of item ids, not {expected}",
                    "return one hidden state per input position: (batch, length, dim)",
                )
            scores = model.next_item_scores(ids)
            if tuple(scores.shape) != (2, num_items + 1):
                raise entry.error(
                    f"scores {tuple(scores.shape)} for 2 histories and {num_items} items, not (2, {num_items + 1})",
                    "score every item id 0..num_items (column 0 is padding) in its output layer",
                )
            if not torch.isfinite(scores).all():
                raise entry.error("scores NaN or infinity for a fresh model", "check its initialisation")
    except models.PluginError:
        raise
    except Exception as exc:
        raise entry.error(
            f"fails on a (2, {length}) batch of item ids ({type(exc).__name__}: {exc})",
            "make encode accept left-padded (batch, length) int64 ids, 0 = padding",
        ) from None
    finally:
        model.train(was_training)


__all__ = [
    "SequentialRecommender",
    "backbone_checks",
    "build_model",
    "check_interface",
    "parameter_breakdown",
    "parameter_table",
]
