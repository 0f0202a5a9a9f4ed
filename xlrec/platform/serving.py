"""Next-item recommendation from a loaded model, and the MLflow pyfunc entry point.

`_load_pyfunc(data_path)` is what `mlflow models serve` / `mlflow.pyfunc.load_model` call for
a model logged by xlrec (loader_module="xlrec.platform.serving"): it rebuilds the model from
config.yaml + model.safetensors (xlrec.platform.model_format), nothing is unpickled.
Input: rows with a column "history" (raw item ids as strings, oldest first) and an optional
"k"; output: one row per input with the top-k raw item ids, titles and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlrec.errors import XlrecError

DEFAULT_K = 10


@dataclass
class Recommendation:
    indices: list[int]  # contiguous item indices (never the padding index 0)
    scores: list[float]


def max_k(num_items: int, history: np.ndarray, exclude_seen: bool) -> int:
    """How many items can be recommended: the catalogue minus what is excluded."""
    return num_items - (len(np.unique(history)) if exclude_seen else 0)


def recommend(model, history: np.ndarray, k: int, max_len: int, exclude_seen: bool, rt=None) -> Recommendation:
    """Top-k next items after `history` (contiguous indices, oldest first)."""
    import torch

    from xlrec.training.batches import gather_windows

    device = rt.device if rt is not None else torch.device("cpu")
    limit = max_k(model.num_items, history, exclude_seen)
    if not 1 <= k <= limit:
        raise XlrecError(f"k must be between 1 and {limit} (the model's {model.num_items} items"
                         f"{' minus the ' + str(model.num_items - limit) + ' in the history' if exclude_seen else ''}"
                         f"), got {k}.")
    items = torch.as_tensor(np.asarray(history, dtype=np.int64), device=device)
    window = gather_windows(items, torch.tensor([len(history) - 1], device=device),
                            torch.tensor([0], device=device), max_len)
    autocast = rt.autocast() if rt is not None else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        scores = model.next_item_scores(window).float()[0]
    scores[0] = float("-inf")  # the padding index is no item
    if exclude_seen:
        scores[items] = float("-inf")
    top = torch.topk(scores, k)
    return Recommendation(indices=top.indices.tolist(), scores=top.values.tolist())


def signature():
    """The pyfunc signature: what `predict` really takes and returns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(Array(DataType.string), "history"), ColSpec(DataType.long, "k", required=False)]),
        outputs=Schema([ColSpec(Array(DataType.string), "item_ids"), ColSpec(Array(DataType.string), "titles"),
                        ColSpec(Array(DataType.double), "scores")]),
    )


class XlrecPyfunc:
    """What `_load_pyfunc` returns: a loaded model with `predict`."""

    def __init__(self, files):
        self.files = files
        self.index = {raw: i for i, raw in enumerate(files.item_ids) if i > 0}

    def _rows(self, model_input: Any) -> list[dict]:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            return model_input.to_dict("records")
        if isinstance(model_input, dict):
            history = model_input.get("history")
            if isinstance(history, (list, np.ndarray)) and len(history) and not isinstance(history[0], (list, np.ndarray)):
                return [model_input]  # one history as a flat list
            return pd.DataFrame(model_input).to_dict("records")
        if isinstance(model_input, list):
            if all(isinstance(r, dict) for r in model_input):
                return model_input
            return [{"history": model_input}]
        raise XlrecError(f"Input must be a DataFrame, a dict or a list with a 'history' column, got "
                         f"{type(model_input).__name__}.")

    def predict(self, model_input: Any, params: dict | None = None):
        import pandas as pd

        out = {"item_ids": [], "titles": [], "scores": []}
        default_k = int((params or {}).get("k", DEFAULT_K))
        for row in self._rows(model_input):
            raw = [str(x) for x in (row.get("history") if row.get("history") is not None else [])]
            unknown = [x for x in raw if x not in self.index]
            if not raw or unknown:
                raise XlrecError(f"Each 'history' must list at least one known raw item id; unknown: {unknown[:10]}.")
            k = row.get("k")
            k = default_k if k is None or (isinstance(k, float) and np.isnan(k)) else int(k)
            cfg = self.files.config
            rec = recommend(self.files.model, np.array([self.index[x] for x in raw], dtype=np.int64), k,
                            cfg.max_len, cfg.exclude_seen)
            out["item_ids"].append([self.files.item_ids[i] for i in rec.indices])
            out["titles"].append([self.files.titles[i] for i in rec.indices])
            out["scores"].append(rec.scores)
        return pd.DataFrame(out)


def _load_pyfunc(data_path: str) -> XlrecPyfunc:
    """MLflow's loader_module hook: `data_path` is the model's data/xlrec folder."""
    from xlrec.platform import model_format

    data = Path(data_path)
    return XlrecPyfunc(model_format.load_model_dir(data, f"model data at {data}"))
