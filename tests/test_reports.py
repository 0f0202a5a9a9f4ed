"""`xlrec report`: the docs/results tables from runs logged to a real SQLite MLflow store, online and
from an exported CSV. Expected numbers are worked out by hand from the logged metrics."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from helpers import error_line, run_xlrec, xlrec_env
from xlrec.errors import ConfigError
from xlrec.report.tables import export_runs, grouped_table, load_export, table4, to_markdown, write_export

EXP = "xlrec-ml-100k"
_M = ("test_recall_at_10", "test_ndcg_at_10", "test_mrr_at_10", "best_val_recall_at_10")
# (model, seed, exclude_seen, status, (recall, ndcg, mrr, val), epochs_run, avg_epoch_time_s, params_total, gpu MB)
RUNS = [
    ("sasrec", 1, "True", "FINISHED", (0.12, 0.06, 0.04, 0.15), 10, 2.0, 269184, None),
    ("sasrec", 2, "True", "FINISHED", (0.14, 0.07, 0.05, 0.17), 12, 3.0, 269184, None),
    ("sasrec", 3, "False", "FINISHED", (0.10, 0.05, 0.03, 0.13), 15, 2.5, 269184, None),
    ("xlstm", 1, "True", "FINISHED", (0.11, 0.055, 0.035, 0.14), 20, 4.25, 269188, 512.5),
    ("xlstm", 2, "True", "FAILED", (0.90, 0.90, 0.90, 0.90), 1, 9.0, 269188, 999.0),  # never counted
]


def _log(client: MlflowClient, exp_id: str, params: dict, metrics: dict, status: str, tags: dict | None = None) -> str:
    run = client.create_run(exp_id, run_name=f"{params.get('model')} s{params.get('seed')}", tags=tags or {})
    for k, v in params.items():
        client.log_param(run.info.run_id, k, v)
    for k, v in metrics.items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture
def store(sqlite_tracking_uri) -> str:
    """A SQLite store with RUNS in EXP, a sweep parent there (excluded), and in Default a parent-like
    run of `mlflow run . -e sweep` (params.model, no max_len, no metrics) beside one training run."""
    client = MlflowClient(sqlite_tracking_uri)
    exp_id = client.create_experiment(EXP)
    for model, seed, seen, status, scores, epochs, t, total, gpu in RUNS:
        params = {"model": model, "dataset": "ml-100k", "seed": seed, "exclude_seen": seen, "max_len": 50}
        metrics = dict(zip(_M, scores), epochs_run=epochs, avg_epoch_time_s=t, params_total=total)
        if gpu is not None:
            metrics["gpu_peak_allocated_mb"] = gpu
        _log(client, exp_id, params, metrics, status, {"xlrec.sweep_run_id": "abc"} if seed == 3 else None)
    _log(client, exp_id, {"model": "xlstm", "dataset": "ml-100k"}, {}, "FINISHED", {"xlrec.sweep": "parent"})
    _log(client, "0", {"model": "xlstm", "dataset": "ml-100k", "mode": "search", "trials": "8.0"}, {}, "FINISHED")
    _log(
        client,
        "0",
        {"model": "gru4rec", "dataset": "ml-100k", "seed": 1, "max_len": 50},
        {"test_recall_at_10": 0.1},
        "FINISHED",
    )
    return sqlite_tracking_uri


@pytest.fixture
def runs(store) -> pd.DataFrame:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        yield export_runs(EXP)
    finally:
        mlflow.set_tracking_uri(previous)


GROUPED = """\
| model | exclude_seen | runs | test Recall@10 | epochs_run | avg_epoch_time_s | params_total |
| --- | --- | --- | --- | --- | --- | --- |
| sasrec | False | 1 | 0.1000 | 15.0 | 2.50 | 269,184 |
| sasrec | True | 2 | **0.1300 ± 0.0141** | 11.0 | 2.50 | 269,184 |
| xlstm | True | 1 | 0.1100 | 20.0 | 4.25 | 269,188 |"""

TABLE4 = """\
| model | dataset | max_len | seeds | params | Recall@10 | NDCG@10 | MRR@10 | s/epoch | peak GPU MB | J/run |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| sasrec | ml-100k | 50 | 3 | 269,184 | 0.1200 ± 0.0200 | 0.0600 ± 0.0100 | 0.0400 ± 0.0100 | 2.50 | – | – |
| xlstm | ml-100k | 50 | 1 | 269,188 | 0.1100 | 0.0550 | 0.0350 | 4.25 | 512.5 | – |"""

GROUPED_ARGS = [
    "--table",
    "grouped",
    "--group-by",
    "model,exclude_seen",
    "--metrics",
    "test_recall_at_10,epochs_run,avg_epoch_time_s,params_total",
    "--labels",
    "test_recall_at_10=test Recall@10",
    "--bold",
    "test_recall_at_10",
]


def test_export_has_training_runs_only_sorted_with_every_param_and_metric(runs):
    assert len(runs) == 5  # the sweep parent is left out, the FAILED run kept (it is a run)
    assert list(runs[["params.model", "params.seed"]].itertuples(index=False, name=None)) == [
        ("sasrec", "1"),
        ("sasrec", "2"),
        ("sasrec", "3"),
        ("xlstm", "1"),
        ("xlstm", "2"),
    ]
    cols = list(runs.columns)
    assert cols[:4] == ["run_id", "run_name", "status", "start_time"]
    params = [c for c in cols if c.startswith("params.")]
    metrics = [c for c in cols if c.startswith("metrics.")]
    assert params == sorted(params) and metrics == sorted(metrics)
    assert cols == cols[:4] + params + metrics + ["tags.xlrec.sweep_run_id"]
    assert set(params) == {f"params.{k}" for k in ("dataset", "exclude_seen", "max_len", "model", "seed")}
    assert runs["tags.xlrec.sweep_run_id"].fillna("-").tolist() == ["-", "-", "abc", "-", "-"]
    assert runs["run_name"].iloc[0] == "sasrec s1" and runs["status"].tolist()[-1] == "FAILED"
    assert pd.Timestamp(runs["start_time"].iloc[0]).tzinfo is not None  # ISO with its zone


def test_grouped_and_table4_markdown(runs):
    labels = {"test_recall_at_10": "test Recall@10"}
    grouped = grouped_table(
        runs, ["model", "exclude_seen"], ["test_recall_at_10", "epochs_run", "avg_epoch_time_s", "params_total"]
    )
    assert to_markdown(grouped.rename(columns=labels), bold=["test Recall@10"]) == GROUPED
    ordered = grouped_table(
        runs, ["model", "exclude_seen"], ["test_recall_at_10:ms4", "epochs_run:int"], order_by="test_recall_at_10"
    )
    assert ordered.values.tolist() == [
        ["sasrec", "True", "2", "0.1300 ± 0.0141", "10"],  # int: the group's first value
        ["xlstm", "True", "1", "0.1100", "20"],
        ["sasrec", "False", "1", "0.1000", "15"],
    ]
    from xlrec.report.tables import TABLE4_LABELS

    assert to_markdown(table4(runs).rename(columns=TABLE4_LABELS)) == TABLE4


def test_export_roundtrip_gives_identical_tables(runs, tmp_path):
    (tmp_path / "out").mkdir()
    path = write_export(runs, tmp_path / "out" / "runs.csv")
    back = load_export(path)
    pd.testing.assert_frame_equal(back, runs)
    assert to_markdown(table4(back)) == to_markdown(table4(runs))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["runs.csv"]  # no temp file left


def test_cli_online_export_and_offline_tables_agree(store, tmp_path):
    env = xlrec_env(tmp_path / "data", MLFLOW_TRACKING_URI=store)
    export = tmp_path / "runs.csv"
    online = run_xlrec(
        ["report", "--experiment", EXP, "--export", str(export), "--out", "", *GROUPED_ARGS], env, cwd=tmp_path
    )
    assert online.returncode == 0, online.stderr
    assert online.stdout == GROUPED + "\n"
    # offline: no tracking store at all (a URI that cannot be reached would fail `_connect`)
    offline_env = xlrec_env(tmp_path / "data", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    offline = run_xlrec(
        ["report", "--from-csv", str(export), "--out", str(tmp_path / "rep"), *GROUPED_ARGS], offline_env
    )
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout
    assert (tmp_path / "rep" / "table.md").read_text() == GROUPED + "\n"
    assert pd.read_csv(tmp_path / "rep" / "grouped.csv")["runs"].tolist() == [1, 2, 1]
    t4 = run_xlrec(["report", "--from-csv", str(export), "--out", ""], offline_env)
    assert t4.stdout == TABLE4 + "\n", t4.stderr
    only = run_xlrec(
        ["report", "--from-csv", str(export), "--out", "", "--filter", "exclude_seen=False", *GROUPED_ARGS], offline_env
    )
    assert only.stdout.splitlines()[2:] == ["| sasrec | False | 1 | **0.1000** | 15.0 | 2.50 | 269,184 |"]


def test_default_experiment_with_a_parent_like_run_does_not_crash(store, tmp_path):
    env = xlrec_env(tmp_path / "data", MLFLOW_TRACKING_URI=store)
    args = ["report", "--experiment", "Default", "--table", "table4", "--out", str(tmp_path / "rep")]
    proc = run_xlrec(args, env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == [
        "| gru4rec | ml-100k | 50 | 1 | – | 0.1000 | – | – | – | – | – |",
        "| xlstm | ml-100k | – | 1 | – | – | – | – | – | – | – |",
    ]
    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 2
    # the full report of the same runs, which logged no files: what it cannot show, said, no traceback
    full = run_xlrec(["report", "--experiment", "Default", "--out", str(tmp_path / "full")], env, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    md = (tmp_path / "full" / "report.md").read_text()
    assert "| gru4rec | ml-100k | 50 | 1 | – | **0.1000** |" in md
    assert "no significance tests" in md and "history.csv unreadable" in md


@pytest.mark.parametrize(
    "content, missing",
    [
        ("run_id,status,metrics.test_recall_at_10\nabc,FINISHED,0.1\n", "params.model"),
        ("model,recall\nxlstm,0.1\n", "run_id, status, params.model"),
        ("", "No columns to parse"),
        ("run_id,status,params.model,metrics.test_recall_at_10\na,FINISHED,xlstm,high\n", "'high'"),
    ],
)
def test_from_csv_that_is_not_an_export_is_one_paragraph(tmp_path, content, missing):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    proc = run_xlrec(["report", "--from-csv", str(bad), "--out", ""], xlrec_env(tmp_path / "data"))
    assert proc.returncode == 2
    line = error_line(proc.stderr)
    assert str(bad) in line and missing in line and "--export" in line
    with pytest.raises(ConfigError):
        load_export(bad)


def test_unknown_names_are_one_paragraph(runs, tmp_path):
    path = write_export(runs, tmp_path / "runs.csv")
    env = xlrec_env(tmp_path / "data")
    for args, named in [
        (["--table", "grouped", "--group-by", "optimizer"], "'optimizer'"),
        (["--table", "grouped", "--metrics", "test_recall_at_20"], "'test_recall_at_20'"),
        (["--table", "grouped", "--metrics", "test_recall_at_10:pct"], "'pct'"),
        (["--filter", "exclude_seen"], "KEY=VALUE"),
        (["--bold", "hit_rate"], "'hit_rate'"),
    ]:
        proc = run_xlrec(["report", "--from-csv", str(path), "--out", "", *args], env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert named in error_line(proc.stderr)
    missing = run_xlrec(["report", "--from-csv", str(tmp_path / "nope.csv"), "--out", ""], env)
    assert missing.returncode == 2 and "nope.csv" in error_line(missing.stderr)


def test_export_write_failure_leaves_nothing(runs, tmp_path):
    target = tmp_path / "out" / "dir.csv"
    target.mkdir(parents=True)  # os.replace onto a directory fails
    with pytest.raises(ConfigError):
        write_export(runs, target)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dir.csv"]
