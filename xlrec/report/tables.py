"""Reports from MLflow runs: an experiment's runs as an export (CSV) and the docs/results tables.

`export_runs` reads MLflow through xlrec.platform.tracking.read; everything else works on the
export's DataFrame, so a table comes out the same from a live store and from a committed CSV
(`load_export`). Tables hold the formatted cells (strings); `to_markdown` writes the pipe table
the docs/results pages paste verbatim.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from xlrec.errors import ConfigError
from xlrec.platform.tracking import read

FIRST = ("run_id", "run_name", "status", "start_time")
REQUIRED = ("run_id", "status", "params.model")
EXTRA_TAGS = ("tags.xlrec.sweep_run_id", "tags.device_name")
ROW_ORDER = ("params.model", "params.dataset", "params.seed", "run_id")
FORMATS = ("ms4", "mean1", "mean2", "int")
# Formats of metrics whose integral values are still averaged (epochs) or never are.
DEFAULT_FORMATS = {"epochs_run": "mean1", "best_epoch": "mean1", "avg_epoch_time_s": "mean2", "params_total": "int"}
MISSING = "–"
TABLE4_KEYS = ["model", "dataset", "max_len"]
TABLE4_METRICS = [
    "params_total:int",
    "test_recall_at_10",
    "test_ndcg_at_10",
    "test_mrr_at_10",
    "avg_epoch_time_s:mean2",
    "gpu_peak_allocated_mb:mean1",
    "energy_j:mean1",
]
TABLE4_LABELS = {
    "runs": "seeds",
    "params_total": "params",
    "test_recall_at_10": "Recall@10",
    "test_ndcg_at_10": "NDCG@10",
    "test_mrr_at_10": "MRR@10",
    "avg_epoch_time_s": "s/epoch",
    "gpu_peak_allocated_mb": "peak GPU MB",
    "energy_j": "J/run",
}


# --- the export -----------------------------------------------------------------------------


def _natural(s: pd.Series) -> pd.Series:
    """Sort key: numbers as numbers when every value of the column is one ("5" before "10")."""
    num = pd.to_numeric(s, errors="coerce")
    return num if num.notna().sum() == s.notna().sum() else s


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """The export's canonical form (columns, dtypes, row order), the same whether the runs came
    from MLflow or from a CSV, so that both give identical tables."""
    df = df.copy()
    for c in ("params.model", *FIRST):
        if c not in df:
            df[c] = None
    params = sorted(c for c in df if c.startswith("params."))
    metrics = sorted(c for c in df if c.startswith("metrics."))
    tags = [c for c in EXTRA_TAGS if c in df]
    df = df[[*FIRST, *params, *metrics, *tags]]
    for c in [*FIRST, *params, *tags]:
        df[c] = df[c].map(
            lambda v: None if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else str(v)
        )
        df[c] = df[c].astype(object)
    for c in metrics:
        df[c] = pd.to_numeric(df[c]).astype("float64")
    order = [c for c in ROW_ORDER if c in df]
    return df.sort_values(order, key=_natural, na_position="last", kind="stable").reset_index(drop=True)


def export_runs(experiment: str, parent_id: str | None = None) -> pd.DataFrame:
    """One row per training run of `experiment` (or of the sweep `parent_id`) in the current
    tracking store, in the export's canonical form."""
    return normalise(read.search_training_runs(experiment, parent_id))


def write_export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the export atomically (a temp file renamed into place): an error leaves no half file."""
    dst = Path(path)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        df.to_csv(tmp, index=False)  # floats as repr: a re-read gives the same values
        os.replace(tmp, dst)
    except OSError as exc:
        raise ConfigError(f"Cannot write the export {dst}: {exc}. Pass --export with a writable file path.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def load_export(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by `write_export`; anything else is a one-paragraph ConfigError."""
    src = Path(path)
    hint = f"Pass a file written by `xlrec report --experiment NAME --export {src.name}`."
    try:
        cols = list(pd.read_csv(src, nrows=0).columns)
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise ConfigError(
                f"{src} is not an xlrec report export: it has no {', '.join(missing)} column"
                f"{'s' if len(missing) > 1 else ''} (its columns: {', '.join(map(str, cols[:8])) or 'none'}"
                f"{', ...' if len(cols) > 8 else ''}). {hint}"
            )
        df = pd.read_csv(src, dtype=str, keep_default_na=False, na_values=[""])
        for c in (c for c in cols if c.startswith("metrics.")):  # Python's float(): exactly what repr wrote
            df[c] = df[c].map(lambda v: float(v) if isinstance(v, str) else math.nan)
    except (OSError, ValueError) as exc:  # unreadable, not CSV, a metric that is not a number
        raise ConfigError(f"Cannot read {src} as an xlrec report export: {exc}. {hint}") from exc
    return normalise(df)


# --- tables ----------------------------------------------------------------------------------


def parse_metric(spec: str) -> tuple[str, str | None]:
    """`name[:fmt]` -> (name, fmt or None)."""
    name, _, fmt = spec.partition(":")
    if fmt and fmt not in FORMATS:
        raise ConfigError(f"Unknown format {fmt!r} in --metrics {spec!r}; use one of {', '.join(FORMATS)}.")
    return name, fmt or None


def _format_of(name: str, fmt: str | None, column: pd.Series) -> str:
    """The explicit format, else the metric's usual one, else `int` for all-integral values, else `ms4`."""
    if fmt:
        return fmt
    if name in DEFAULT_FORMATS:
        return DEFAULT_FORMATS[name]
    vals = column.dropna()
    return "int" if len(vals) and bool((vals == vals.round()).all()) else "ms4"


def format_cell(values: pd.Series, fmt: str) -> str:
    """One group's cell: mean ± std (sample std; the value alone for one run), a mean, or the first value."""
    vals = values.dropna()
    if len(vals) == 0:
        return MISSING
    if fmt == "int":
        return f"{int(round(float(vals.iloc[0]))):,}"
    if fmt in ("mean1", "mean2"):
        return f"{vals.mean():.{fmt[-1]}f}"
    if len(vals) == 1:
        return f"{vals.iloc[0]:.4f}"
    return f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}"


def _column(df: pd.DataFrame, prefix: str, name: str, flag: str) -> str:
    col = f"{prefix}.{name}"
    if col not in df:
        known = sorted(c.split(".", 1)[1] for c in df if c.startswith(prefix + "."))
        raise ConfigError(
            f"{flag} names {name!r}, but no run has {col}; the runs have: {', '.join(known) or 'none'}. "
            f"Pass one of those names."
        )
    return col


def filter_runs(df: pd.DataFrame, filters: Iterable[str]) -> pd.DataFrame:
    """Runs whose params.KEY equals VALUE (as strings) for every `KEY=VALUE`."""
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--filter {item!r} is not KEY=VALUE; pass e.g. --filter exclude_seen=False.")
        col = _column(df, "params", key, "--filter")
        df = df[df[col] == value]
    return df


def grouped_table(
    df: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], *, order_by: str | None = None
) -> pd.DataFrame:
    """Mean ± std (or the metric's format) of each metric per group of FINISHED runs: columns the
    keys (missing values `–`), `runs`, one per metric; rows by the keys, or by `order_by`'s mean, best first."""
    key_cols = [_column(df, "params", k, "--group-by") for k in keys]
    parsed = [parse_metric(m) for m in metrics]
    metric_cols = [_column(df, "metrics", name, "--metrics") for name, _ in parsed]
    order_col = _column(df, "metrics", order_by, "--order-by") if order_by else None
    done = df[df["status"] == "FINISHED"]
    fmts = [_format_of(name, fmt, done[col]) for (name, fmt), col in zip(parsed, metric_cols)]
    rows, order = [], []
    for group_keys, g in done.groupby(key_cols, dropna=False, sort=False):
        row = {k: (MISSING if pd.isna(v) else v) for k, v in zip(keys, group_keys)}
        row["runs"] = str(len(g))
        row.update({name: format_cell(g[col], fmt) for (name, _), col, fmt in zip(parsed, metric_cols, fmts)})
        rows.append(row)
        order.append([*group_keys, g[order_col].mean() if order_col else 0.0])
    table = pd.DataFrame(rows, columns=[*keys, "runs", *(name for name, _ in parsed)])
    sort = pd.DataFrame(order, columns=[*(f"k{i}" for i in range(len(keys))), "mean"])
    idx = sort.sort_values([f"k{i}" for i in range(len(keys))], key=_natural, kind="stable").index
    if order_col:
        idx = sort.loc[idx].sort_values("mean", ascending=False, na_position="last", kind="stable").index
    return table.loc[idx].reset_index(drop=True)


def grouped_numbers(df: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """`grouped_table` as numbers, for a CSV a reader computes with: per group the keys, `runs`,
    and each metric's `_mean` and `_std` (sample std; empty for one run), rows in the same order."""
    key_cols = [_column(df, "params", k, "--group-by") for k in keys]
    names = [parse_metric(m)[0] for m in metrics]
    metric_cols = [_column(df, "metrics", name, "--metrics") for name in names]
    done = df[df["status"] == "FINISHED"]
    rows = []
    for group_keys, g in done.groupby(key_cols, dropna=False, sort=False):
        row: dict[str, object] = {k: (None if pd.isna(v) else _as_number(v)) for k, v in zip(keys, group_keys)}
        row["runs"] = len(g)
        for name, col in zip(names, metric_cols):
            vals = g[col].dropna()
            row[f"{name}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        rows.append(row)
    columns = [*keys, "runs", *(f"{n}_{s}" for n in names for s in ("mean", "std"))]
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        table = table.sort_values(list(keys), key=_natural, kind="stable").reset_index(drop=True)
    return table


def _as_number(value: object) -> object:
    """A param's value as a number where it is one (`"50"` -> 50), else as it is."""
    try:
        number = float(str(value))
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


DEFAULT_SPLIT = "leave_last_two"
PROTOCOL_BASE = "dataset_protocol_base"  # the dataset label before with_protocols


def with_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs under another protocol than leave-last-two, or trained on shuffled sequences, are on a
    dataset of their own (`ml-1m (temporal 0.8/0.9, first targets)`, `ml-1m (shuffled training)`),
    and runs of one dataset name on different processed data (param `data_sha256`) are told apart
    by its first 8 hex digits (`ml-1m [data 1a2b3c4d]`): no table cell or test mixes them. Runs
    from before these params count as leave-last-two, on unknown data. Idempotent."""
    runs = runs.copy()
    if "params.dataset" not in runs or not len(runs):
        return runs
    if PROTOCOL_BASE not in runs:
        runs[PROTOCOL_BASE] = runs["params.dataset"]
    base = runs[PROTOCOL_BASE]

    def param(name: str, default: object = None) -> pd.Series:
        col = runs.get(f"params.{name}", pd.Series(None, index=runs.index, dtype=object))
        return col.where(col.notna(), default)

    split, shuffled = param("split", DEFAULT_SPLIT), param("shuffle_train_sequences", "False")
    q_val, q_test, targets = param("temporal_val_quantile"), param("temporal_test_quantile"), param("temporal_targets")
    labels = []
    for i in runs.index:
        label = base[i]
        if label is not None and split[i] != DEFAULT_SPLIT:
            label = f"{label} ({split[i]} {_as_number(q_val[i])}/{_as_number(q_test[i])}, {targets[i]} targets)"
        if label is not None and str(shuffled[i]).lower() == "true":
            label = f"{label} (shuffled training)"
        labels.append(label)
    labelled = pd.Series(labels, index=runs.index, dtype=object)
    digest = param("data_sha256")
    for _, rows in labelled.groupby(labelled, dropna=True):
        known = digest[rows.index].dropna()
        if known.nunique() > 1:
            labelled[known.index] = [f"{lab} [data {str(h)[:8]}]" for lab, h in zip(labelled[known.index], known)]
    runs["params.dataset"] = labelled
    return runs


def protocol_note(runs: pd.DataFrame) -> str:
    """A sentence naming the rows `with_protocols` set apart (empty when none)."""
    if PROTOCOL_BASE not in runs:
        runs = with_protocols(runs)
    if PROTOCOL_BASE not in runs:
        return ""
    apart = sorted({str(d) for d, b in zip(runs["params.dataset"], runs[PROTOCOL_BASE]) if d != b and d is not None})
    if not apart:
        return ""
    return (
        "Runs under another evaluation protocol, on shuffled training sequences or on other processed data are "
        f"rows of their own, never averaged or tested with the others: {'; '.join(apart)}."
    )


def table4(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 4 layout per (model, dataset, max_len): seeds, params, test Recall/NDCG/MRR@10
    mean ± std, s/epoch, peak GPU MB; a param or metric no run has shows as `–`. Runs of other
    protocols or data are rows of their own (with_protocols)."""
    df = with_protocols(df)
    for k in TABLE4_KEYS:
        if f"params.{k}" not in df:
            df[f"params.{k}"] = None
    for name, _ in map(parse_metric, TABLE4_METRICS):
        if f"metrics.{name}" not in df:
            df[f"metrics.{name}"] = math.nan
    return grouped_table(df, TABLE4_KEYS, TABLE4_METRICS)


def table4_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Table 4 as numbers (grouped_numbers): what its CSVs hold."""
    df = with_protocols(df)
    for k in TABLE4_KEYS:
        if f"params.{k}" not in df:
            df[f"params.{k}"] = None
    for name, _ in map(parse_metric, TABLE4_METRICS):
        if f"metrics.{name}" not in df:
            df[f"metrics.{name}"] = math.nan
    return grouped_numbers(df, TABLE4_KEYS, TABLE4_METRICS)


_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def _lead(cell: str) -> float:
    """The number a cell starts with (its mean, or its first value); NaN for `–`."""
    m = _NUMBER.match(cell)
    return float(m.group().replace(",", "")) if m else math.nan


def to_markdown(df: pd.DataFrame, bold: Sequence[str] = ()) -> str:
    """A pipe table, the best (max) cell of each `bold` column in **bold** (every cell on a tie)."""
    cells = df.astype(str).copy()
    for col in bold:
        if col not in cells:
            raise ConfigError(f"--bold names {col!r}, which is not a column of the table ({', '.join(cells)}).")
        lead = cells[col].map(_lead)
        if lead.notna().any():
            best = lead == lead.max()
            cells.loc[best, col] = "**" + cells.loc[best, col] + "**"
    lines = [
        "| " + " | ".join(map(str, cells.columns)) + " |",
        "| " + " | ".join("---" for _ in cells.columns) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False, name=None)]
    return "\n".join(lines)


def aggregate_table4(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, max_len) of finished trials: seeds, params, each test metric's mean and
    sample std over seeds (numbers, std empty for one seed) and the mean s/epoch: a grid sweep's
    table4.csv, from its own trials table (plain column names, every trial has max_len)."""
    done = table[table["status"] == "FINISHED"]
    out = []
    if "split" not in done:
        done = done.assign(split=DEFAULT_SPLIT)
    for (model, dataset, max_len, split), g in done.groupby(["model", "dataset", "max_len", "split"]):
        row = {
            "model": model,
            "dataset": dataset,
            "max_len": max_len,
            "split": split,
            "seeds": len(g),
            "params": int(g["params_total"].iloc[0]) if g["params_total"].notna().any() else None,
        }
        for key in ("test_recall_at_10", "test_ndcg_at_10", "test_mrr_at_10"):
            row[f"{key}_mean"] = float(g[key].mean())
            row[f"{key}_std"] = float(g[key].std(ddof=1)) if len(g) > 1 else math.nan
        row["avg_epoch_time_s"] = float(g["avg_epoch_time_s"].mean())
        out.append(row)
    return pd.DataFrame(out)
