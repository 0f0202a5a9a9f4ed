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
# the most rows one request may hold: a request answers in one call, and a client with more rows
# splits them (5,000 rows were scored in seconds; far more would hold the server for minutes)
MAX_ROWS = 10_000


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

    Every input is typed Any (history too: Array(Any) would answer a string history with MLflow's
    "Failed to convert column history to type 'Array(Any)'"). MLflow's schema enforcement would refuse integers for
    Array(string) ("Can not safely convert int64"), though MovieLens ids are naturally posted as
    numbers, and it would coerce `k: 2.5` to 2 and `exclude_seen: "no"` to a boolean before the
    model saw them. `XlrecPyfunc.predict` checks every value itself, strictly, and says what is
    wrong in one line."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType, Array

    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(AnyType(), "history", required=False),
                ColSpec(AnyType(), "k", required=False),
                ColSpec(AnyType(), "exclude_seen", required=False),
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


def _k(value: Any, upcast: bool) -> int:
    """A JSON integer. `upcast`: the column was made float by rows that leave k out (pandas holds
    a missing integer as NaN), so an integral float there was an integer in the request."""
    if _missing(value):
        return DEFAULT_K
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    upcast_whole = upcast and isinstance(value, (float, np.floating)) and float(value).is_integer()
    if not (whole or upcast_whole):
        raise XlrecError(f"'k' must be a JSON integer (how many items to recommend), got {value!r}.")
    return int(value)


def _exclude_seen(value: Any, default: bool) -> bool:
    if _missing(value):
        return default
    if not isinstance(value, (bool, np.bool_)):
        raise XlrecError(f"'exclude_seen' must be a JSON true or false, got {value!r}.")
    return bool(value)


def request_error(message: str) -> Exception:
    """An HTTP 400 answer whose message stays the one line written here.

    MLflow's scoring server rewrites the message of an MlflowException raised by `predict` to
    "Failed to predict data '<the whole request>'. \nError: ..." (mlflow.pyfunc.scoring_server),
    several lines holding the client's own payload; this exception keeps its first message."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    class RequestError(MlflowException):
        @property
        def message(self) -> str:
            return self._one_line

        @message.setter
        def message(self, value: str) -> None:
            if not hasattr(self, "_one_line"):  # set once, by __init__
                self._one_line = value

    return RequestError(message, error_code=INVALID_PARAMETER_VALUE)


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
        """Top-k rows, every row checked first and all scored in batches; a bad request raises an
        MlflowException(INVALID_PARAMETER_VALUE) the scoring server answers with HTTP 400 and one
        line (no traceback)."""
        import pandas as pd

        rec = self.recommender
        try:
            rows, upcast = self._rows(model_input), self._k_upcast(model_input)
        except XlrecError as exc:
            raise request_error(str(exc)) from None
        if len(rows) > MAX_ROWS:
            raise request_error(
                f"A request holds at most {MAX_ROWS:,} rows; this one has {len(rows):,}. Send them in parts."
            )
        histories, ks, excludes = [], [], []
        for n, row in enumerate(rows):
            try:
                history = rec.history_indices(_raw_history(row.get("history")))
                k, exclude = _k(row.get("k"), upcast), _exclude_seen(row.get("exclude_seen"), rec.exclude_seen)
                rec.check_k(k, history, exclude, flag="k")
            except XlrecError as exc:
                where = f"Row {n}: " if len(rows) > 1 else ""
                raise request_error(where + str(exc)) from None
            histories.append(history)
            ks.append(k)
            excludes.append(exclude)
        ranked = rec.recommend_many(histories, ks, excludes)
        return pd.DataFrame(
            {
                "item_ids": [r.item_ids for r in ranked],
                "titles": [r.titles for r in ranked],
                "scores": [r.scores for r in ranked],
            }
        )

    @staticmethod
    def _k_upcast(model_input: Any) -> bool:
        """Whether pandas made the `k` column float because some rows leave k out (NaN)."""
        import pandas as pd

        if isinstance(model_input, pd.DataFrame) and "k" in model_input:
            column = model_input["k"]
            return column.dtype.kind == "f" and bool(column.isna().any())
        return False


def _load_pyfunc(data_path: str) -> XlrecPyfunc:
    """MLflow's loader_module hook: `data_path` is the model's data/xlrec folder."""
    from xlrec.platform.registry import model_format

    data = Path(data_path)
    return XlrecPyfunc(model_format.load_model_dir(data, f"model data at {data}"))
