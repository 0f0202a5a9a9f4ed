"""Which runs a report compares with each other: models at their own default max_len meet in one
cell; a swept max_len keeps models apart by length; the significance section's tests over users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from xlrec.report.document import file_name
from xlrec.report.sections import filtering_text
from xlrec.report.view import PER_MODEL, comparison_cells, figured_runs


def _runs(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["params.dataset", "params.model", "params.max_len"])


def test_models_at_their_own_defaults_meet_in_one_cell():
    runs = _runs([("ml-100k", "xlstm", "100"), ("ml-100k", "sasrec", "50"), ("ml-100k", "lstm", "200")] * 3)
    assert set(comparison_cells(runs)) == {PER_MODEL}


def test_a_swept_max_len_keeps_each_length_its_own_cell_and_datasets_apart():
    runs = _runs(
        [("ml-100k", m, L) for m in ("xlstm", "sasrec") for L in ("32", "64")]
        + [("ml-1m", "xlstm", "200"), ("ml-1m", "sasrec", "200")]
        + [("steam", "xlstm", "50"), ("steam", "sasrec", "200")]
    )
    cells = comparison_cells(runs).tolist()
    assert cells == ["32", "64", "32", "64", "200", "200", PER_MODEL, PER_MODEL]


def test_shares_of_a_dataset_are_not_drawn_beside_the_whole_dataset():
    runs = pd.DataFrame(
        {
            "params.dataset": ["ml-1m", "ml-1m (10% of users)", "steam (50% of users)"],
            "dataset_base": ["ml-1m", "ml-1m", "steam"],
            "user_fraction": [1.0, 0.1, 0.5],
        }
    )
    assert figured_runs(runs)["params.dataset"].tolist() == ["ml-1m", "steam (50% of users)"]


def test_report_file_names_are_safe_in_markdown_links():
    assert file_name("curves_ml-1m (10% of users)_L200.png") == "curves_ml-1m-10pct-of-users-_L200.png"
    assert file_name("table4.csv") == "table4.csv"


def test_protocol_names_the_synthetic_generator_only_for_synthetic_runs():
    runs = pd.DataFrame(
        {
            "params.dataset": ["ml-1m", "ml-1m"],
            "params.prep.min_item_interactions": ["5", "5"],
            "params.prep.user_fraction": ["0.1", "1.0"],
            "params.prep.synthetic_users": ["1000", "1000"],
        }
    )
    assert filtering_text(runs) == (
        "items with fewer than 5 interactions dropped; a fixed random 10%/100% of the users kept "
        "(each share a dataset of its own)"
    )
    runs["params.prep.kcore_iterate"] = ["True", "True"]
    runs["params.prep.min_rating"] = ["None", "None"]
    assert filtering_text(runs).startswith(
        "every rating is an interaction; items with fewer than 5 interactions dropped; repeated until no user or "
        "item falls short (a k-core)"
    )
    assert "synthetic" not in filtering_text(runs)
    runs["params.dataset"] = ["synthetic", "ml-1m"]
    runs["params.prep.synthetic_items"] = runs["params.prep.synthetic_mean_len"] = ["50", "50"]
    runs["params.prep.synthetic_seed"] = ["0", "0"]
    assert "synthetic data: 1000 users, 50 items, mean length 50, generator seed 0" in filtering_text(runs)


def test_trials_that_shared_a_gpu_are_named_in_the_protocol(sqlite_tracking_uri, tmp_path, monkeypatch):
    """A sweep parent's `gpus_per_trial` below 1 (read from MLflow) puts a sentence under the
    hardware line: those epoch times were measured beside other trials on the same card."""
    import mlflow
    from mlflow import MlflowClient

    from xlrec.platform.tracking.read import ReportRuns, _gpu_sharing
    from xlrec.report.sections import Builder

    # the report reads through mlflow's global URI (as `xlrec report` sets it); restored after
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    exp = client.create_experiment("sharing")
    parents = {}
    # sweeps log their spec's keys (resources.gpus_per_trial); sweeps before them the bare names
    for name, share, prefix in (("shared", "0.25", "resources."), ("whole", "1.0", "resources."), ("old", "0.5", "")):
        run = client.create_run(exp)
        client.log_param(run.info.run_id, f"{prefix}gpus_per_trial", share)
        client.log_param(run.info.run_id, f"{prefix}max_concurrent", "8")
        parents[name] = run.info.run_id
    found = _gpu_sharing([parents["shared"], parents["whole"], parents["old"], "f" * 32, "not-an-id"])
    assert found == {parents["shared"]: (0.25, 8), parents["old"]: (0.5, 8)}

    done = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "status": ["FINISHED"] * 2,
            "params.dataset": ["ml-1m"] * 2,
            "params.model": ["xlstm", "sasrec"],
            "params.max_len": ["200"] * 2,
            "params.seed": ["42"] * 2,
            "tags.xlrec.sweep_run_id": [parents["shared"]] * 2,
        }
    )
    rr = ReportRuns("sharing", None, done, {}, {}, gpu_sharing=found)
    protocol = " ".join(str(b) for b in Builder(rr, tmp_path).protocol().blocks)
    assert "The trials shared GPUs (0.25 of a GPU per trial, up to 8 at once)" in protocol
    rr.gpu_sharing = {}
    assert "shared GPUs" not in " ".join(str(b) for b in Builder(rr, tmp_path).protocol().blocks)


def test_significance_section_tests_users_not_user_seed_pairs(tmp_path):
    """Three models x three seeds on 200 users: `users` counts users, Holm and BH run across the
    cell's comparisons, the per-seed view and α are shown, and the paper's BERT4Rec line follows
    the new tests."""
    from xlrec.report.runs import ReportRuns
    from xlrec.report.sections import Builder

    rng = np.random.default_rng(0)
    n, seeds = 200, ("42", "123", "7")
    base = rng.integers(1, 40, n)
    shift = {"xlstm": 1, "sasrec": 0, "bert4rec": 8}  # BERT4Rec ranks every target 7 places below xLSTM
    rows, files = [], {}
    for model in shift:
        for seed in seeds:
            rid = f"{model}-{seed}"
            ranks = np.maximum(1, base + shift[model] + rng.integers(-1, 2, n))
            files[rid] = {"test_per_user.parquet": pd.DataFrame({"user_index": np.arange(n), "rank": ranks})}
            ndcg = np.where(ranks <= 10, 1 / np.log2(ranks + 1.0), 0.0).mean()
            rows.append((rid, model, seed, ndcg))
    runs = pd.DataFrame(rows, columns=["run_id", "params.model", "params.seed", "metrics.test_ndcg_at_10"])
    runs = runs.assign(**{"status": "FINISHED", "params.dataset": "ml-1m", "params.max_len": "200"})
    s = Builder(ReportRuns("e", None, runs, files, {}), tmp_path).significance()
    text = " ".join(b for b in s.blocks if isinstance(b, str))
    assert "α = 0.05" in text and "zero_method 'wilcox'" in text and "two-level bootstrap" in text
    sig = pd.read_csv(tmp_path / "data" / "significance.csv")
    assert sig["A vs B"].tolist() == ["bert4rec vs xlstm", "sasrec vs xlstm", "sasrec vs bert4rec"]
    assert (sig["users"] == n).all() and (sig["seeds"] == "7 42 123").all()
    for test in ("p_wilcoxon", "p_t"):
        for method, column in (("holm", f"{test}_holm"), ("fdr_bh", f"{test}_bh")):
            assert sig[column].tolist() == pytest.approx(multipletests(sig[test], method=method)[1], rel=1e-12)
    assert sig["diff_per_seed"].str.match(r"^s7 [+-]0\.\d{4}, s42 [+-]0\.\d{4}, s123 [+-]0\.\d{4}$").all()
    assert sig.loc[0, "verdict"] == "xlstm significantly ahead" and sig.loc[0, "p_wilcoxon_holm"] < 1e-6
    tables = [b for b in s.blocks if not isinstance(b, str)]
    assert [list(t.df.columns)[3:5] for t in tables] == [
        ["users", "NDCG@10 A"],
        ["A − B per seed", "Welch p (seed means)"],
    ]
    claim = next(b for b in s.blocks if isinstance(b, str) and b.startswith("**ml-1m, max_len 200:**"))
    assert "does not hold here" in claim and f"over {n} users, seeds 7, 42, 123" in claim
    assert "xLSTM is significantly ahead (Holm p Wilcoxon " in claim


def test_figure_titles_are_wrapped_to_fit_inside_the_figure(tmp_path, monkeypatch):
    """A report's figure titles are long (dataset, share of users, what is drawn): each one is
    wrapped to its panel or to the figure, so no title is clipped at the image's edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xlrec.report import figures

    drawn = []
    monkeypatch.setattr(plt, "close", lambda fig=None: drawn.append(fig))
    title = (
        "ml-1m (25% of users): share of the top-10 slots on head (top 20%) and tail (bottom 50%) items, "
        "against the test targets"
    )
    bars = pd.DataFrame(
        {"model": ["xlstm", "sasrec", "ground truth (test targets)"], "head": [0.9, 0.8, 0.5], "tail": [0.0, 0.1, 0.2]}
    )
    figures.grouped_bars(bars, "model", ["head", "tail"], "share", title, tmp_path / "bars.png")
    points = pd.DataFrame(
        {"model": ["a", "a", "b", "b"], "pc1": [0, 1, 0, 1], "pc2": [1, 0, 1, 0], "log10_interactions": [1, 2, 1, 2]}
    )
    figures.projections(points, title, tmp_path / "pca.png")
    assert len(drawn) == 2 and (tmp_path / "bars.png").is_file() and (tmp_path / "pca.png").is_file()
    for fig in drawn:
        fig.canvas.draw()
        renderer, frame = fig.canvas.get_renderer(), fig.bbox
        texts = [ax.title for ax in fig.axes if ax.get_title()] + [fig._suptitle] * (fig._suptitle is not None)
        assert any("\n" in t.get_text() for t in texts)  # the long one was wrapped
        for text in texts:
            box = text.get_window_extent(renderer)
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and box.y1 <= frame.y1 + 1, text.get_text()
