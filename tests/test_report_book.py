"""`xlrec report`'s full report from a real grid sweep (local Ray, sqlite MLflow): the files, the
MLflow logging, numbers recomputed from the runs by hand, and report.html rendered by a real
headless Chromium (every table and figure present, every image decoded)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from scipy.stats import ttest_rel, wilcoxon

from helpers import SweepOutcome, error_line, run_xlrec, summary_of, sweep, xlrec_env

pytestmark = pytest.mark.server

MODELS = ("xlstm", "bert4rec", "gru4rec", "pop")  # pop: a run with no epochs (an empty history)
SECTIONS = (
    "Protocol",
    "Table 4: accuracy and cost",
    "Significance",
    "Table 6: parameters per component",
    "Training curves",
    "Accuracy against cost (RQ3)",
    "Popularity bias, long tail and coverage",
    "Gradient stability (RQ5)",
    "Embedding geometry",
    "Where models look (RQ10)",
    "Qualitative: what each model recommends",
    "What this report cannot show",
)


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """4 models x 2 seeds on a small synthetic dataset, one max_len, 2 epochs each: the sweep."""
    cwd = tmp_path_factory.mktemp("report-grid")
    proc = sweep(
        cwd,
        "--mode",
        "grid",
        "--models",
        ",".join(MODELS),
        "--datasets",
        "synthetic",
        "--max-lens",
        "10",
        "--seeds",
        "1,2",
        "--epochs",
        "2",
        "--cpus-per-trial",
        "0.5",
        "--set",
        "synthetic_users=80",
        "--set",
        "synthetic_items=40",
        "--set",
        "window_stride=0",
        "--set",
        "embedding_dim=16",
    )
    return cwd, proc


@pytest.fixture(scope="module")
def grid(grid_sweep):
    cwd, proc = grid_sweep
    summary = summary_of(proc)
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xlrec-synthetic")
    parent = client.search_runs([exp.experiment_id], "tags.`xlrec.sweep` = 'parent'")[0]
    assert summary["trials_done"] == 8
    return cwd, uri, client, exp, parent


def test_grid_runs_every_combination_and_aggregates_table4(grid_sweep):
    cwd, proc = grid_sweep
    out = SweepOutcome(cwd, proc)
    parent_id = out.parent.info.run_id
    trials = [c for c in out.children if c.data.tags.get("mlflow.parentRunId") == parent_id]
    assert out.summary["mode"] == "grid" and out.summary["trials_done"] == 8
    assert out.parent.info.status == "FINISHED" and len(trials) == 8
    combos = {(c.data.params["model"], int(c.data.params["max_len"]), int(c.data.params["seed"])) for c in trials}
    assert combos == set(itertools.product(MODELS, [10], [1, 2]))
    assert all(c.info.status == "FINISHED" for c in trials)
    assert all(c.data.params["embedding_dim"] == "16" for c in trials if c.data.params["model"] != "pop")
    assert len(out.parent_csv("trials.csv")) == 8
    # one experiment per dataset, the parent named after the sweep, trials after their grid cell
    assert out.client.get_experiment(out.parent.info.experiment_id).name == "xlrec-synthetic"
    assert out.parent.info.run_name == f"grid-{'_'.join(MODELS)}-synthetic"
    assert {c.info.run_name for c in trials} == {f"{m} L10 s{s}" for m in MODELS for s in (1, 2)}
    lines = re.findall(
        r"^\[xlrec\] trial (\d)/8 finished  \S+ max_len=10 seed=\d  val Recall@10 \d\.\d{4}", proc.stderr, re.M
    )
    assert sorted(lines) == [str(i) for i in range(1, 9)], proc.stderr[-4000:]
    table4 = out.parent_csv("table4.csv")
    assert set(zip(table4["model"], table4["max_len"])) == {(m, 10) for m in MODELS}
    assert (table4["seeds"] == 2).all() and (table4["dataset"] == "synthetic").all()
    for _, row in table4.iterrows():
        runs = [c for c in trials if c.data.params["model"] == row["model"]]
        for key in ("test_recall_at_10", "test_ndcg_at_10", "test_mrr_at_10"):  # numbers, full precision
            values = pd.Series([c.data.metrics[key] for c in runs])
            assert row[f"{key}_mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert row[f"{key}_std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert row["params"] == int(runs[0].data.metrics.get("params_total", 0))
    assert (out.artifact_dir(out.parent) / "table4.md").is_file()
    assert not (cwd / "optuna.db").exists()  # no study in grid mode
    # the spec it ran, as a file `xlrec sweep --spec` takes back
    logged = yaml.safe_load((out.artifact_dir(out.parent) / "sweep.yaml").read_text())
    assert (logged["mode"], logged["models"], logged["seeds"], logged["grid"]) == (
        "grid",
        list(MODELS),
        [1, 2],
        [{"max_len": 10}],
    )
    assert logged["epochs"] == 2 and logged["fixed"]["embedding_dim"] == 16


@pytest.fixture(scope="module")
def report(grid):
    cwd, uri, client, exp, parent = grid
    out = cwd / "rep"
    proc = run_xlrec(
        ["report", "--parent", parent.info.run_id, "--out", str(out), "--tracking-uri", uri],
        xlrec_env(cwd / "data"),
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == str(out / "report.html")
    return out


def _served_files(uri: str, artifact_uri: str) -> Path:
    """A run's files in the sweep's local store, where its `mlflow server` keeps (and serves) them."""
    return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / artifact_uri.removeprefix("mlflow-artifacts:/")


def _children(client, exp, parent):
    return client.search_runs([exp.experiment_id], f"tags.`xlrec.sweep_run_id` = '{parent.info.run_id}'")


def test_report_files_sections_and_mlflow_copy(grid, report):
    _, _, client, _, parent = grid
    md = (report / "report.md").read_text()
    assert [s for s in SECTIONS if f"## {s}\n" not in md] == []
    # what it cannot show is said, in one paragraph
    limits = md.split("## What this report cannot show\n", 1)[1]
    assert "one max_len per model: no sequence-length figure" in limits
    assert "no model ran with several architectures" in limits
    assert "unreadable" not in limits
    for link in re.findall(r"\]\(((?:figures|data)/[^)]+)\)", md):  # every linked file exists
        assert (report / link).is_file(), link
    pngs = sorted(p.name for p in (report / "figures").iterdir())
    assert {"curves_synthetic_L10.png", "cost_synthetic.png", "popularity_synthetic.png"} <= set(pngs)
    logged = _served_files(grid[1], parent.info.artifact_uri) / "report"
    assert {"report.md", "report.html", "figures", "data"} <= {p.name for p in logged.iterdir()}
    assert (logged / "report.md").read_text() == md


def test_report_numbers_equal_the_runs(grid, report):
    _, uri, client, exp, parent = grid
    runs = _children(client, exp, parent)
    t4 = pd.read_csv(report / "data" / "table4.csv")
    for model in MODELS:
        values = pd.Series([r.data.metrics["test_ndcg_at_10"] for r in runs if r.data.params["model"] == model])
        row = t4.loc[t4["model"] == model]  # numbers, to full precision
        assert row["test_ndcg_at_10_mean"].item() == pytest.approx(values.mean(), abs=1e-12)
        assert row["test_ndcg_at_10_std"].item() == pytest.approx(values.std(ddof=1), abs=1e-12)
    # the paired test, recomputed from the runs' per-user files without the report's code
    per_user = {}
    for r in runs:
        local = _served_files(uri, r.info.artifact_uri) / "test_per_user.parquet"
        per_user[(r.data.params["model"], r.data.params["seed"])] = pd.read_parquet(local)

    def ndcg(model):  # users x seeds: the seeds are replicates, the user is the unit
        ranks = np.stack([per_user[(model, s)].sort_values("user_index")["rank"].to_numpy() for s in ("1", "2")], 1)
        return np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)

    # where models look: the seeds' mean of each run's positions.parquet; GRU4Rec logs none
    pos = pd.read_csv(report / "data" / "positions_synthetic_L10.csv")

    def first(t, signal):  # the last position's value in block 0
        return t[(t["signal"] == signal) & (t["block"] == 0) & (t["distance"] == 0)]["value"]

    for model, signal in (("bert4rec", "attention"), ("xlstm", "forget_gate")):
        files = [
            _served_files(uri, r.info.artifact_uri) / "positions.parquet"
            for r in runs
            if r.data.params["model"] == model
        ]
        mean = np.mean([first(pd.read_parquet(f), signal).item() for f in files])
        assert first(pos[pos["model"] == model], signal).item() == pytest.approx(mean, rel=1e-9)
    assert set(pos["model"]) == {"bert4rec", "xlstm"}
    assert not any(
        (_served_files(uri, r.info.artifact_uri) / "positions.parquet").exists()
        for r in runs
        if r.data.params["model"] == "gru4rec"
    )
    sig = pd.read_csv(report / "data" / "significance.csv")
    row = sig[sig["A vs B"] == "bert4rec vs xlstm"].iloc[0]
    a, b = ndcg("bert4rec").mean(axis=1), ndcg("xlstm").mean(axis=1)  # each user's mean over the 2 seeds
    assert row["users"] == len(a) == len(per_user[("xlstm", "1")]) and row["seeds"] == "1 2"
    assert row["diff"] == pytest.approx((a - b).mean(), rel=1e-9, abs=1e-12)
    # differences equal but for float rounding (sums of other NDCG values) are ties, and zeros
    d = np.round(a - b, 12)
    assert row["zero_diffs"] == (d == 0).sum()
    p = wilcoxon(d, zero_method="wilcox").pvalue if np.any(d != 0) else 1.0
    assert row["p_wilcoxon"] == pytest.approx(p, rel=1e-6)
    assert row["p_t"] == pytest.approx(ttest_rel(a, b).pvalue if np.any(a != b) else 1.0, rel=1e-6)
    per_seed = (ndcg("bert4rec") - ndcg("xlstm")).mean(axis=0)
    assert row["diff_per_seed"] == f"s1 {per_seed[0]:+.4f}, s2 {per_seed[1]:+.4f}"
    for test in ("p_wilcoxon", "p_t"):  # adjusted across the cell's comparisons: BH <= Holm, both >= p
        assert (sig[f"{test}_holm"] >= sig[f"{test}_bh"] - 1e-12).all()
        assert (sig[f"{test}_bh"] >= sig[test] - 1e-12).all()
    assert set(sig["verdict"]) <= {"no significant difference", "tests disagree"} | {
        f"{m} significantly ahead" for m in MODELS
    }
    # Table 6's total is the run's parameter count
    t6 = pd.read_csv(report / "data" / "table6.csv", thousands=",")
    total = t6[(t6["model"] == "xlstm") & (t6["component"] == "total")]["params"].item()
    assert total == next(r.data.metrics["params_total"] for r in runs if r.data.params["model"] == "xlstm")
    # qualitative: the first user's caption names the history the run logged, oldest first
    first = next(r for r in runs if r.data.params["model"] == MODELS[0] and r.data.params["seed"] == "1")
    files = _served_files(uri, first.info.artifact_uri)
    table = pd.read_parquet(files / "test_per_user.parquet").sort_values("user_index")
    items = pd.read_parquet(files / "items.parquet")
    title = dict(zip(items["item_index"], items["title"]))
    history = "; ".join(title[int(i)] for i in table["history"].iloc[0])
    md = (report / "report.md").read_text()
    n = len(table["history"].iloc[0])
    assert f"user {table['user_id'].iloc[0]} (seed 1); the last {n} items of the history before the test item, " in md
    assert f"oldest first: {history}; true next item {title[int(table['target_item'].iloc[0])]}" in md
    # embedding geometry: the logged vectors are the model's scoring vectors (40 items), and the
    # effective rank recomputed from them by hand is the report's
    geo = pd.read_csv(report / "data" / "geometry_synthetic_L10.csv")
    for r in (r for r in runs if r.data.params["model"] != "pop"):  # popularity has no item vectors
        v = pd.read_parquet(_served_files(uri, r.info.artifact_uri) / "item_vectors.parquet")
        assert v["item_index"].tolist() == list(range(1, 41))
        sv = np.linalg.svd(v.drop(columns="item_index").to_numpy(np.float64), compute_uv=False)
        p = sv / sv.sum()
        row = geo[(geo["model"] == r.data.params["model"]) & (geo["seed"].astype(str) == r.data.params["seed"])]
        assert row["effective_rank"].item() == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)


PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = `imgs=${imgs.length};decoded=${decoded};tables=${document.querySelectorAll('table').length};` +
    `plots=${document.querySelectorAll('figure.plot').length};sections=${document.querySelectorAll('section').length}`;
});
</script></body>"""


def test_report_html_renders_in_a_real_browser(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (scripts/test installs Debian's chromium package)")
    html = (report / "report.html").read_text()
    assert "<script" not in html and "http" not in html.split("<body>", 1)[1]  # offline, nothing to fetch
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    title = re.search(r"<title>(imgs=.*?)</title>", dom)
    assert title, dom[:2000]
    got = dict(kv.split("=") for kv in title.group(1).split(";"))
    md = (report / "report.md").read_text()
    assert int(got["imgs"]) == md.count("![") == int(got["plots"]) > 0
    assert got["decoded"] == got["imgs"]
    assert int(got["tables"]) == md.count("\n| ---") > 0
    assert int(got["sections"]) == md.count("\n## ")


def test_the_experiment_page_shows_the_sweep_nested_in_a_real_browser(grid, tmp_path):
    """What the README's screenshots show, checked in headless Chromium (scripts/readme_screenshots.py):
    the training view (not the GenAI overview), the sweep as one row until its expander is clicked,
    then every trial run under it; the parent's own page."""
    cwd, uri, client, exp, parent = grid
    repo = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(repo / "scripts" / "readme_screenshots.py"), "--tracking-uri", uri]
    script += ["--experiment", exp.name, "--out", str(tmp_path), "--no-compare"]
    proc = subprocess.run(script, cwd=cwd, capture_output=True, text=True, timeout=300, env=xlrec_env(cwd / "data"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    shown = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = sorted(
        r.info.run_name
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    )
    assert len(trials) == 8 and shown["trials"] == trials
    assert shown["training_view"].endswith("?workflowType=machine_learning") and not shown["body_has_genai_overview"]
    assert shown["runs_table"] and shown["trials_shown_collapsed"] == []  # the sweep is one collapsed row
    assert shown["expander"] == "clicked" and sorted(shown["trials_shown"]) == trials
    assert shown["parent_page"] and shown["parent"] == parent.info.run_name
    for name in ("mlflow-sweep-runs.png", "mlflow-sweep-parent.png"):
        head = (tmp_path / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 1600


def test_report_without_parent_logs_a_report_run_that_no_table_counts(grid, tmp_path):
    cwd, uri, client, exp, _ = grid
    env = xlrec_env(cwd / "data")
    proc = run_xlrec(["report", "--out", str(tmp_path / "r"), "--tracking-uri", uri], env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "xlrec-synthetic" in proc.stderr  # the latest run's experiment, unasked
    reports = client.search_runs([exp.experiment_id], "tags.`xlrec.report` = 'true'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    assert (_served_files(uri, reports[0].info.artifact_uri) / "report" / "report.html").is_file()
    table = run_xlrec(["report", "--table", "table4", "--out", "", "--tracking-uri", uri], env, cwd=cwd)
    assert table.returncode == 0 and [ln.split(" | ")[3] for ln in table.stdout.splitlines()[2:]] == ["2"] * len(MODELS)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--parent", "1 or 1=1"], "is not an MLflow run id"),
        (["--parent", "0" * 32], "does not exist"),
        (["--experiment", "nope"], "'nope' does not exist"),
    ],
)
def test_report_user_mistakes_are_one_paragraph(grid, tmp_path, args, named):
    cwd, uri, *_ = grid
    out = tmp_path / "never"
    proc = run_xlrec(["report", *args, "--out", str(out), "--tracking-uri", uri], xlrec_env(cwd / "data"), cwd=cwd)
    assert proc.returncode == 2
    assert named in error_line(proc.stderr)
    assert not out.exists()


def test_scaling_section_from_runs_on_shares_of_the_users(tmp_path):
    """RQ1: runs with prep user_fraction 0.5 and 1 are two datasets in the report (each with its own
    Table-1 statistics), and the scaling figure's numbers are those runs' test metrics."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = xlrec_env(tmp_path / "data")
    for share in ("0.5", "1.0"):
        proc = run_xlrec(
            ["train", "--model", "gru4rec", "--dataset", "synthetic", "--epochs", "1", "--seed", "1"]
            + ["--user-fraction", share, "--synthetic-users", "120", "--synthetic-items", "60"]
            + ["--tracking-uri", uri],
            env,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "rep"
    proc = run_xlrec(
        ["report", "--experiment", "xlrec-synthetic", "--out", str(out), "--tracking-uri", uri], env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "report.md").read_text()
    assert "## Scaling with dataset size (RQ1)\n" in md and "| synthetic (50% of users) |" in md
    # the share is in Table 4 and the scaling figure, not drawn again beside the whole dataset
    assert sorted(p.name for p in (out / "figures").iterdir() if "pct" in p.name) == []
    assert pd.read_csv(out / "data" / "table6.csv")["dataset"].unique().tolist() == ["synthetic"]
    assert "synthetic data: 120 users, 60 items" in md  # the generator's settings describe the synthetic dataset
    scaling = pd.read_csv(out / "data" / "scaling_synthetic.csv").sort_values("user share %")
    assert scaling["user share %"].tolist() == [50.0, 100.0] and scaling["users"].tolist() == [60, 120]
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("xlrec-synthetic").experiment_id])
    trained = [r for r in runs if "model" in r.data.params]  # not the report's own run
    by_share = {r.data.params["prep.user_fraction"]: r.data.metrics["test_ndcg_at_10"] for r in trained}
    assert scaling["ndcg"].tolist() == pytest.approx([by_share["0.5"], by_share["1.0"]])
