"""Run artifacts as plain files (no MLflow here): config, history, curves, predictions, per-user results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from xlrec.data_prep.preprocess import Sequences
from xlrec.redact import redact
from xlrec.settings import metric_key


def _redacted(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def write_config(path: Path, cfg) -> Path:
    """The resolved config as YAML, with credentials in any location (e.g. `source`) masked:
    it travels with the registered model. Evaluating later needs --source again then."""
    path.write_text(yaml.safe_dump(_redacted(cfg.to_dict()), sort_keys=False))
    return path


def write_history(path: Path, history: list[dict]) -> Path:
    pd.DataFrame(history).to_csv(path, index=False)
    return path


def plot_curves(path: Path, history: list[dict], title: str) -> Path:
    """Training loss and validation Recall/NDCG/MRR@10 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(df):
        ax1.plot(df["epoch"], df["train_loss"], marker="o")
        for name in ("recall@10", "ndcg@10", "mrr@10"):
            ax2.plot(df["epoch"], df[metric_key(name, "val")], marker="o", label=name)
    ax1.set(xlabel="epoch", ylabel="train loss (full-softmax CE)", title="training loss")
    ax2.set(xlabel="epoch", ylabel="validation metric", title="validation @10")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_params_table(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    df = pd.DataFrame(rows, columns=["component", "parameter", "count"])
    total = pd.DataFrame([("total", "", int(df["count"].sum()))], columns=df.columns)
    pd.concat([df, total]).to_csv(path, index=False)
    return path


def per_user_table(
    seqs: Sequences,
    users: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    topk: np.ndarray,
    positions: np.ndarray,
) -> pd.DataFrame:
    """One row per test case (one per user, except a temporal split's `all` targets): ids, the
    target, its rank, the top-10 (for paired tests later) and the last `HISTORY` items before the
    target, oldest first (for a report's qualitative tables)."""
    ends = np.asarray(positions, dtype=np.int64)  # the target's flat position: its input ends there
    starts = np.maximum(seqs.offsets[users], ends - HISTORY)
    return pd.DataFrame(
        {
            "user_index": users.astype(np.int64),
            "user_id": seqs.user_ids[users].astype(str),
            "target_item": targets.astype(np.int64),
            "target_item_id": seqs.item_ids[targets].astype(str),
            "rank": ranks.astype(np.int64),
            "top10": [row[:10].tolist() for row in topk],
            "history": [seqs.items[a:b].tolist() for a, b in zip(starts, ends)],
        }
    )


HISTORY = 10  # history items per test user in test_per_user.parquet


def test_histories(
    seqs: Sequences, users: np.ndarray, positions: np.ndarray, max_len: int, limit: int = 256
) -> np.ndarray:
    """(n, max_len) left-padded items before the test target of the first `limit` test cases: the
    histories the model scored (what a run's position profile reads)."""
    users, positions = users[:limit], positions[:limit]
    out = np.zeros((len(users), max_len), dtype=np.int64)
    for row, (u, end) in enumerate(zip(users, positions)):
        h = seqs.items[max(seqs.offsets[u], end - max_len) : end]
        if len(h):
            out[row, -len(h) :] = h
    return out


def items_table(seqs: Sequences, popularity: np.ndarray | None = None) -> pd.DataFrame:
    """One row per item: its index (what top10 lists hold), raw id, title, interactions in the
    prepared dataset, interactions in the training split (`popularity`: what the run's head and
    tail shares were computed from) and genres ("" where unknown), so a report can name, weigh
    and colour recommendations without the data files, with the run's own numbers."""
    counts = np.bincount(seqs.items, minlength=seqs.num_items + 1)
    index = np.arange(1, seqs.num_items + 1)
    table = {
        "item_index": index.astype(np.int64),
        "item_id": seqs.item_ids[index].astype(str),
        "title": [str(seqs.titles[i]) for i in index],
        "interactions": counts[index].astype(np.int64),
        "genres": [seqs.genres[i] if seqs.genres else "" for i in index],
    }
    if popularity is not None:
        table["train_interactions"] = np.asarray(popularity)[index].astype(np.int64)
    return pd.DataFrame(table)


def item_vectors_table(weight: np.ndarray) -> pd.DataFrame:
    """The vectors items are scored with (the output layer's rows 1..N; row 0 is padding), one float32
    column per dimension: what a report's embedding geometry reads."""
    v = np.asarray(weight, dtype=np.float32)[1:]
    frame = pd.DataFrame(v, columns=[f"e{i}" for i in range(v.shape[1])])
    frame.insert(0, "item_index", np.arange(1, v.shape[0] + 1, dtype=np.int64))
    return frame


def write_sample_predictions(
    path: Path, seqs: Sequences, table: pd.DataFrame, n_users: int = 5, history_items: int = 10
) -> Path:
    """Markdown with a few users' recent history, target and top-10 with titles."""
    titles = seqs.titles
    lines = ["# Sample predictions (test)", ""]
    for row in table.head(n_users).itertuples():
        start = seqs.offsets[row.user_index]
        end = seqs.offsets[row.user_index + 1] - 1  # the test target is the last item
        recent = seqs.items[max(start, end - history_items) : end]
        lines.append(f"## User {row.user_id} (target rank {row.rank})")
        lines.append("Recent history: " + "; ".join(titles[i] for i in recent))
        lines.append(f"Target: {titles[row.target_item]}")
        for r, item in enumerate(row.top10, 1):
            mark = " <- target" if item == row.target_item else ""
            lines.append(f"{r}. {titles[item]} (item {seqs.item_ids[item]}){mark}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def write_item_map(path: Path, seqs: Sequences) -> Path:
    """Contiguous id -> raw item id and title, so predictions come back as real items."""
    path.write_text(json.dumps({"item_ids": [str(x) for x in seqs.item_ids.tolist()], "titles": list(seqs.titles)}))
    return path
