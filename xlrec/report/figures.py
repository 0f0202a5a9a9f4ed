"""The report's figures: each is computed as a DataFrame first (written as its CSV), then
drawn from that frame with matplotlib (Agg), so every plotted number is in a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLOURS = {"xlstm": "#d62728", "sasrec": "#1f77b4", "bert4rec": "#2ca02c", "gru4rec": "#9467bd", "lstm": "#8c564b"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(model: str) -> str:
    return COLOURS.get(model, "#7f7f7f")


def fit_titles(fig) -> int:
    """Wrap the figure's title and each panel's title to the width they have, so no title runs
    past its axes or the figure's edge; returns the suptitle's lines (for a layout made by hand)."""
    import textwrap

    width_px = fig.get_figwidth() * fig.dpi
    for ax in fig.axes:
        title = ax.get_title()
        if title:
            size = ax.title.get_fontsize() * fig.dpi / 72
            chars = max(12, int(ax.get_position().width * width_px / (0.58 * size)))
            ax.set_title(textwrap.fill(title, chars))
    sup = fig._suptitle
    if sup is None or not sup.get_text():
        return 0
    size = sup.get_fontsize() * fig.dpi / 72
    text = textwrap.fill(sup.get_text().replace("\n", " "), max(20, int(0.96 * width_px / (0.58 * size))))
    sup.set_text(text)
    return text.count("\n") + 1


def save(fig, path: Path) -> Path:
    fit_titles(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def curves(frame: pd.DataFrame, keys: list[tuple[str, str]], title: str, path: Path) -> Path:
    """frame: model, epoch, <key>_mean, <key>_std per (model, epoch); one panel per key, a line
    per model with a band of one std over seeds."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6))
    for ax, (key, label) in zip(np.atleast_1d(axes), keys):
        for model, g in frame.groupby("model", sort=True):
            m, s = g[f"{key}_mean"].to_numpy(), g[f"{key}_std"].fillna(0).to_numpy()
            ax.plot(g["epoch"], m, label=model, color=_colour(str(model)))
            ax.fill_between(g["epoch"], m - s, m + s, alpha=0.18, color=_colour(str(model)))
        ax.set(xlabel="epoch", ylabel=label, title=label)
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def pareto_mask(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Points no other point beats on both (lower cost and higher score, one strictly)."""
    keep = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        better = (cost <= cost[i]) & (score >= score[i]) & ((cost < cost[i]) | (score > score[i]))
        keep[i] = not better.any()
    return keep


def cost_scatter(frame: pd.DataFrame, costs: list[tuple[str, str]], title: str, path: Path) -> Path:
    """frame: label, model, ndcg, and the cost columns; the Pareto front per panel as a line."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(costs), figsize=(5.5 * len(costs), 3.8))
    for ax, (col, label) in zip(np.atleast_1d(axes), costs):
        ok = frame[col].notna() & frame["ndcg"].notna()
        f = frame[ok]
        for row in f.itertuples():
            ax.scatter(getattr(row, col), row.ndcg, color=_colour(row.model), s=36)
            ax.annotate(row.label, (getattr(row, col), row.ndcg), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = f[pareto_mask(f[col].to_numpy(float), f["ndcg"].to_numpy(float))].sort_values(col)
        ax.plot(front[col], front["ndcg"], "k--", lw=1, label="Pareto front")
        if len(f) and f[col].max() >= 10_000:  # parameter counts: 240k, not 240000 (labels overlap)
            from matplotlib.ticker import FuncFormatter

            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k"))
        ax.set(xlabel=label, ylabel="test NDCG@10", title=f"NDCG@10 against {label}")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def grouped_bars(frame: pd.DataFrame, index: str, columns: list[str], ylabel: str, title: str, path: Path) -> Path:
    """One group of bars per row of `index`, a bar per column."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(frame) + 2), 3.6))
    x = np.arange(len(frame))
    width = 0.8 / max(1, len(columns))
    for i, col in enumerate(columns):
        ax.bar(x + i * width - 0.4 + width / 2, frame[col].to_numpy(float), width, label=col)
    ax.set_xticks(x, frame[index].astype(str), rotation=0)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


def lines_by(frame: pd.DataFrame, x: str, ys: list[tuple[str, str]], title: str, path: Path) -> Path:
    """frame: model, x, y columns; one panel per y, a line per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(ys), figsize=(4.6 * len(ys), 3.6))
    for ax, (col, label) in zip(np.atleast_1d(axes), ys):
        for model, g in frame.groupby("model", sort=True):
            g = g.sort_values(x)
            ax.plot(g[x], g[col], marker="o", label=model, color=_colour(str(model)))
        ax.set(xlabel=x, ylabel=label, title=label)
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def ablation(frame: pd.DataFrame, knobs: list[str], metric: str, title: str, path: Path) -> Path:
    """A search's trials: the metric against each architecture knob (jittered strip plot)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(knobs), figsize=(4.2 * len(knobs), 3.4))
    rng = np.random.default_rng(0)
    for ax, knob in zip(np.atleast_1d(axes), knobs):
        values = sorted(frame[knob].dropna().unique())
        pos = {v: i for i, v in enumerate(values)}
        xs = frame[knob].map(pos).to_numpy(float) + rng.uniform(-0.15, 0.15, len(frame))
        ax.scatter(xs, frame[metric], s=18, alpha=0.8)
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set(xlabel=knob, ylabel=metric)
    fig.suptitle(title)
    return save(fig, path)


def spectra(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """frame: model, index, share (singular values normalised to sum 1), log scale; a line per model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for model, g in frame.groupby("model", sort=True):
        ax.plot(g["index"], g["share"], label=str(model), color=_colour(str(model)))
    ax.set_yscale("log")
    ax.set(xlabel="singular value index", ylabel="share of the sum", title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


POSITION_SIGNALS = {
    "attention": "attention of the prediction",
    "input_gate": "input gate (soft-capped pre-activation)",
    "forget_gate": "forget gate (sigmoid)",
}


def position_profiles(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """frame: model, signal, distance, value (one block); a panel per signal, a line per model,
    distance from the latest position on a log axis (the near past is where they differ)."""
    plt = _plt()
    signals = [k for k in POSITION_SIGNALS if k in set(frame["signal"])]
    fig, axes = plt.subplots(1, len(signals), figsize=(4.6 * len(signals), 3.4), squeeze=False)
    for ax, signal in zip(axes[0], signals):
        for model, g in frame[frame["signal"] == signal].groupby("model", sort=True):
            ax.plot(g["distance"] + 1, g["value"], label=str(model), color=_colour(str(model)))
        ax.set_xscale("log")
        ax.set(xlabel="positions back from the latest (1 = latest)", title=POSITION_SIGNALS[signal])
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def projections_by_genre(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """frame: model, pc1, pc2, genre; a panel per model, items coloured by their (first) genre."""
    plt = _plt()
    models = sorted(frame["model"].unique())
    top = [g for g in frame["genre"].value_counts().index if g][:8]
    palette = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models) + 1.6, 3.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = frame[frame["model"] == model]
        rest = g[~g["genre"].isin(top)]
        ax.scatter(rest["pc1"], rest["pc2"], s=3, color="#cccccc", label="other")
        for k, genre in enumerate(top):
            part = g[g["genre"] == genre]
            ax.scatter(part["pc1"], part["pc2"], s=3, color=palette(k), label=genre)
        ax.set(title=str(model), xticks=[], yticks=[])
    axes[0][-1].legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    return save(fig, path)


def projections(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """frame: model, pc1, pc2, log10_interactions; a panel per model, items coloured by popularity."""
    plt = _plt()
    models = sorted(frame["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = frame[frame["model"] == model]
        points = ax.scatter(g["pc1"], g["pc2"], c=g["log10_interactions"], s=3, cmap="viridis")
        ax.set(title=str(model), xticks=[], yticks=[])
    fig.suptitle(title)
    lines = fit_titles(fig)
    # not save(): tight_layout and a shared colour bar do not mix, so room is made for the title here
    fig.subplots_adjust(top=1 - (0.1 + 0.07 * lines) * 3.4 / fig.get_figheight(), bottom=0.05)
    fig.colorbar(points, ax=list(axes[0]), label="log10 interactions")
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path
