"""Next-item recommendation from a loaded model, and the MLflow pyfunc entry point.

`top_items` is the one code path behind both `xlrec recommend --items` and the served model,
so the two give the same items in the same order with the same scores.
`_load_pyfunc(data_path)` is what `mlflow models serve` / `mlflow.pyfunc.load_model` call for
a model logged by xlrec (loader_module="xlrec.platform.serving"): it rebuilds the model from
config.yaml + model.safetensors (xlrec.platform.model_format), nothing is unpickled.
Input: rows with a column "history" (raw item ids, strings or integers, oldest first), an
optional "k" (default 10) and an optional "exclude_seen" (default: the model's own rule);
output: one row per input with the top-k raw item ids, titles and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xlrec.errors import XlrecError

DEFAULT_K = 10


@dataclass
class Recommendation:
    indices: list[int]  # contiguous item indices (never the padding index 0)
    scores: list[float]


@dataclass
class Ranked:
    item_ids: list[str]  # raw item ids, best first
    titles: list[str]
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


def history_indices(raw_items: Sequence[str], item_ids: list[str], dataset: str) -> np.ndarray:
    """Raw item ids (oldest first) as the model's contiguous indices; unknown ids are refused."""
    index = {raw: i for i, raw in enumerate(item_ids) if i > 0}
    unknown = [x for x in raw_items if x not in index]
    if unknown:
        raise XlrecError(f"Item id(s) {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} are not in "
                         f"{dataset}'s catalogue of this model. Use the dataset's raw item ids, e.g. "
                         f"{', '.join(item_ids[1:4])}.")
    return np.array([index[x] for x in raw_items], dtype=np.int64)


def check_k(k: int, num_items: int, history: np.ndarray, exclude_seen: bool, flag: str = "--k") -> None:
    """`k` must fit what can be recommended; `flag` names it as the caller wrote it (--k, k)."""
    if k < 1:
        raise XlrecError(f"{flag} must be at least 1 (how many items to recommend), got {k}.")
    limit = max_k(num_items, history, exclude_seen)
    if k > limit:
        seen = f", of which this history's {num_items - limit} are excluded as seen" if exclude_seen else ""
        raise XlrecError(f"{flag} {k} is more than the {limit} items this model can recommend here (its catalogue "
                         f"has {num_items} items{seen}). Pass {flag} between 1 and {limit}.")


def top_items(loaded, history: np.ndarray, k: int, exclude_seen: bool, rt=None, flag: str = "--k") -> Ranked:
    """The top-k items after `history` (indices) for a loaded model (anything with .model, .config,
    .item_ids, .titles: models.LoadedModel or model_format.ModelFiles), as raw ids with titles."""
    check_k(k, len(loaded.item_ids) - 1, history, exclude_seen, flag)
    rec = recommend(loaded.model, history, k, loaded.config.max_len, exclude_seen, rt)
    return Ranked(item_ids=[loaded.item_ids[i] for i in rec.indices], titles=[loaded.titles[i] for i in rec.indices],
                  scores=rec.scores)


# --- the pyfunc -----------------------------------------------------------------------------------


def signature():
    """The pyfunc signature: what `predict` really takes and returns.

    `history` items are typed Any, not string: MLflow's schema enforcement refuses integers for
    Array(string) ("Can not safely convert int64"), and MovieLens ids are naturally posted as
    numbers. `XlrecPyfunc.predict` checks each item itself (a string or an integer)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType, Array

    return ModelSignature(
        inputs=Schema([ColSpec(Array(AnyType()), "history"), ColSpec(DataType.long, "k", required=False),
                       ColSpec(DataType.boolean, "exclude_seen", required=False)]),
        outputs=Schema([ColSpec(Array(DataType.string), "item_ids"), ColSpec(Array(DataType.string), "titles"),
                        ColSpec(Array(DataType.double), "scores")]),
    )


def input_example(seqs, k: int = 5) -> list[dict]:
    """One request row, logged with the model so the MLflow UI shows how to call it: the last
    three items of the first user's history (ids of this model's own catalogue)."""
    start, end = int(seqs.offsets[0]), int(seqs.offsets[1])
    return [{"history": [str(seqs.item_ids[i]) for i in seqs.items[max(start, end - 3):end]], "k": k}]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _raw_history(value: Any) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise XlrecError(f"'history' must be a non-empty list of raw item ids, oldest first (e.g. [\"50\", \"172\", "
                         f"\"133\"]), got {str(value)[:80]!r}.")
    raw = []
    for x in value:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (str, int, np.integer)):
            raise XlrecError(f"'history' items must be raw item ids as strings or integers, got {x!r} "
                             f"({type(x).__name__}).")
        raw.append(str(x).strip())
    return raw


def _k(value: Any) -> int:
    if _missing(value):
        return DEFAULT_K
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(float(value)) or float(value) != int(value):
        raise XlrecError(f"'k' must be an integer (how many items to recommend), got {value!r}.")
    return int(value)


def _exclude_seen(value: Any, default: bool) -> bool:
    if _missing(value):
        return default
    if not isinstance(value, (bool, np.bool_)):
        raise XlrecError(f"'exclude_seen' must be true or false, got {value!r}.")
    return bool(value)


class XlrecPyfunc:
    """What `_load_pyfunc` returns: a loaded model with `predict`."""

    def __init__(self, files):
        self.files = files

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
        raise XlrecError(f"Input must be rows with a 'history' column (a DataFrame, a dict or a list of dicts), got "
                         f"{type(model_input).__name__}.")

    def predict(self, model_input: Any, params: dict | None = None):
        """Top-k rows; a bad request raises MlflowException(INVALID_PARAMETER_VALUE), which the
        scoring server answers with HTTP 400 and the message (no traceback)."""
        import pandas as pd
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        files, out = self.files, {"item_ids": [], "titles": [], "scores": []}
        try:
            rows = self._rows(model_input)
        except XlrecError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        for n, row in enumerate(rows):
            try:
                history = history_indices(_raw_history(row.get("history")), files.item_ids, files.config.dataset)
                ranked = top_items(files, history, _k(row.get("k")),
                                   _exclude_seen(row.get("exclude_seen"), files.config.exclude_seen), flag="k")
            except XlrecError as exc:
                where = f"Row {n}: " if len(rows) > 1 else ""
                raise MlflowException(where + str(exc), error_code=INVALID_PARAMETER_VALUE) from None
            out["item_ids"].append(ranked.item_ids)
            out["titles"].append(ranked.titles)
            out["scores"].append(ranked.scores)
        return pd.DataFrame(out)


def _load_pyfunc(data_path: str) -> XlrecPyfunc:
    """MLflow's loader_module hook: `data_path` is the model's data/xlrec folder."""
    from xlrec.platform import model_format

    data = Path(data_path)
    return XlrecPyfunc(model_format.load_model_dir(data, f"model data at {data}"))
