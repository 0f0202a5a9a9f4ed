"""The MLflow pyfunc entry point of a logged xlrec model: request parsing, scoring, errors.

Scoring goes through the loaded model's `Recommender` (xlrec.training.recommender), the path
that `xlrec recommend` and evaluation use too, so all of them give the same items in the same
order with the same scores; this module only turns requests into histories and errors into
MLflow's INVALID_PARAMETER_VALUE.
`_load_pyfunc(data_path)` is what `mlflow models serve` / `mlflow.pyfunc.load_model` call for
a model logged by xlrec (loader_module="xlrec.platform.registry.serving"): it rebuilds the model from
config.yaml + model.safetensors (xlrec.platform.registry.model_format), nothing is unpickled.
Input: rows with a column "history" (raw item ids, strings or integers, oldest first), an
optional "k" (default 10) and an optional "exclude_seen" (default: the model's own rule);
output: one row per input with the top-k raw item ids, titles and scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xlrec.errors import XlrecError

if TYPE_CHECKING:
    from xlrec.device import Runtime
    from xlrec.training.recommender import Recommender

DEFAULT_K = 10


def recommender(files, rt: Runtime | None = None) -> Recommender:
    """The `Recommender` of a loaded model (anything with .model, .config, .item_ids, .titles:
    models.LoadedModel or model_format.ModelFiles); without `rt`, on the CPU as loaded."""
    from xlrec.device import select_runtime
    from xlrec.training.recommender import Recommender

    return Recommender(
        files.model,
        rt or select_runtime("cpu", "native", amp=False),
        files.config.max_len,
        files.config.exclude_seen,
        files.item_ids,
        files.titles,
        files.config.dataset,
    )


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
        inputs=Schema(
            [
                ColSpec(Array(AnyType()), "history"),
                ColSpec(DataType.long, "k", required=False),
                ColSpec(DataType.boolean, "exclude_seen", required=False),
            ]
        ),
        outputs=Schema(
            [
                ColSpec(Array(DataType.string), "item_ids"),
                ColSpec(Array(DataType.string), "titles"),
                ColSpec(Array(DataType.double), "scores"),
            ]
        ),
    )


def input_example(seqs, k: int = 5) -> list[dict]:
    """One request row, logged with the model so the MLflow UI shows how to call it: the last
    three items of the first user's history (ids of this model's own catalogue)."""
    start, end = int(seqs.offsets[0]), int(seqs.offsets[1])
    return [{"history": [str(seqs.item_ids[i]) for i in seqs.items[max(start, end - 3) : end]], "k": k}]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _raw_history(value: Any) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise XlrecError(
            f'\'history\' must be a non-empty list of raw item ids, oldest first (e.g. ["50", "172", '
            f'"133"]), got {str(value)[:80]!r}.'
        )
    raw = []
    for x in value:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (str, int, np.integer)):
            raise XlrecError(
                f"'history' items must be raw item ids as strings or integers, got {x!r} ({type(x).__name__})."
            )
        raw.append(str(x).strip())
    return raw


def _k(value: Any) -> int:
    if _missing(value):
        return DEFAULT_K
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(float(value))
        or float(value) != int(value)
    ):
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
        self.recommender = recommender(files)

    def _rows(self, model_input: Any) -> list[dict]:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            return model_input.to_dict("records")
        if isinstance(model_input, dict):
            history = model_input.get("history")
            if (
                isinstance(history, (list, np.ndarray))
                and len(history)
                and not isinstance(history[0], (list, np.ndarray))
            ):
                return [model_input]  # one history as a flat list
            return pd.DataFrame(model_input).to_dict("records")
        if isinstance(model_input, list):
            if all(isinstance(r, dict) for r in model_input):
                return model_input
            return [{"history": model_input}]
        raise XlrecError(
            f"Input must be rows with a 'history' column (a DataFrame, a dict or a list of dicts), got "
            f"{type(model_input).__name__}."
        )

    def predict(self, model_input: Any, params: dict | None = None):
        """Top-k rows; a bad request raises MlflowException(INVALID_PARAMETER_VALUE), which the
        scoring server answers with HTTP 400 and the message (no traceback)."""
        import pandas as pd
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        rec = self.recommender
        out: dict[str, list[list]] = {"item_ids": [], "titles": [], "scores": []}
        try:
            rows = self._rows(model_input)
        except XlrecError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        for n, row in enumerate(rows):
            try:
                history = rec.history_indices(_raw_history(row.get("history")))
                ranked = rec.recommend(
                    history, _k(row.get("k")), _exclude_seen(row.get("exclude_seen"), rec.exclude_seen), flag="k"
                )
            except XlrecError as exc:
                where = f"Row {n}: " if len(rows) > 1 else ""
                raise MlflowException(where + str(exc), error_code=INVALID_PARAMETER_VALUE) from None
            out["item_ids"].append(ranked.item_ids)
            out["titles"].append(ranked.titles)
            out["scores"].append(ranked.scores)
        return pd.DataFrame(out)


def _load_pyfunc(data_path: str) -> XlrecPyfunc:
    """MLflow's loader_module hook: `data_path` is the model's data/xlrec folder."""
    from xlrec.platform.registry import model_format

    data = Path(data_path)
    return XlrecPyfunc(model_format.load_model_dir(data, f"model data at {data}"))
