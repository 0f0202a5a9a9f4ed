"""The README's main job, run as a new user runs it, and what the MLflow UI then shows.

The command is read from the README (`<!-- journey: main -->`, tests/readme_script.py) and run
literally in a copy of the repository, with only the two documented sizing parameters
appended (`-P trials=3 -P epochs=2`): `mlflow run` (real), a real local Ray, MLflow's sqlite
store served by the sweep, ML-100K from the shared mirror (`../shared/data`). Afterwards the
test reads ./mlflow.db as the UI would: the experiment, the parent and trial run names, the
parent's scores and champion, trials.csv, and the per-epoch resource metrics.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from helpers import SHARED_DATA, copy_checkout
from readme_script import journey

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the venv whose bin/ the README puts on PATH (not resolved)
SIZE = " -P trials=3 -P epochs=2"  # documented in the README: these two parameters size the job


def _is_install(line: str) -> bool:
    return "pip install" in line or line.startswith("python3 -m venv")


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    lines = [ln for ln in journey("main") if not _is_install(ln)]
    assert len(lines) == 1 and "mlflow run . -e sweep" in lines[0], lines
    base = tmp_path_factory.mktemp("journey")
    repo = copy_checkout(base / "repo")
    (base / "shared").symlink_to(SHARED_DATA.parent)  # ../shared/data as beside a clone
    (repo / ".venv").symlink_to(VENV)  # the README's `PATH=$PWD/.venv/bin:$PATH`
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "XLREC_"))}
    # PYTHONPATH stands in for `pip install -e .` of this clone (the shared venv's points elsewhere)
    env.update({"PYTHONPATH": str(repo), "XLREC_DATA_DIR": str(base / "cache"), "RAY_USAGE_STATS_ENABLED": "0"})
    proc = subprocess.run(
        ["bash", "-c", lines[0] + SIZE], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    (base / "main-job.stderr").write_text(proc.stderr)  # kept for a look after a failure
    return repo, proc


@pytest.fixture(scope="module")
def runs(main_job):
    repo, proc = main_job
    assert proc.returncode == 0, proc.stderr[-6000:]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("xlrec-ml-100k")
    assert exp is not None, [e.name for e in client.search_experiments()]
    found = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in found if r.data.tags.get("xlrec.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in found]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


def test_progress_lines_one_per_trial_and_a_summary(main_job):
    _, proc = main_job
    assert proc.returncode == 0, proc.stderr[-6000:]
    err = proc.stderr
    start = re.search(
        r"^\[xlrec\] sweep search-xlstm-ml-100k: 3 trials of xlstm on ml-100k .*"
        r"experiment 'xlrec-ml-100k'.*http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/\w+\?workflowType=machine_learning",
        err,
        re.M,
    )
    assert start, err[-4000:]
    lines = re.findall(r"^\[xlrec\] trial (\d)/3 (finished|pruned at epoch \d|failed \(.*?\))  (.*)$", err, re.M)
    assert sorted(int(n) for n, _, _ in lines) == [1, 2, 3], err[-4000:]
    for _, outcome, rest in lines:
        assert re.search(r"embedding_dim=\d+ num_heads=\d num_blocks=\d lr=[\d.e-]+ dropout=[\d.]+", rest), rest
        assert re.search(r"best (\d\.\d{4} \(trial \d\)|-)  \d/3 done  elapsed \d+(s|m\d\ds)", rest), rest
        if outcome == "finished":
            assert re.search(r"val Recall@10 \d\.\d{4}", rest), rest
    done = [rest for _, _, rest in lines]
    assert sum("left" in r for r in done) == 2 and "left" not in done[-1]  # an estimate until the last one
    assert re.search(r"^\[xlrec\] sweep done in \d+(s|m\d\ds): \d finished, \d pruned, \d failed", err, re.M)
    assert re.search(
        r"^\[xlrec\] compare the trials: mlflow ui --backend-store-uri sqlite:///\S+mlflow\.db, then "
        r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/\w+\?workflowType=machine_learning",
        err,
        re.M,
    )
    # MLflow's own "View run ... at" links would name the sweep's own server, stopped by now
    assert not re.search(r"View run .* at: http://127\.0\.0\.1:(?!5000)", proc.stdout + err)


def test_runs_are_in_the_dataset_experiment_under_a_parent_named_after_the_sweep(runs):
    client, parent, children = runs
    assert parent.info.run_name == "search-xlstm-ml-100k"
    assert parent.info.status == "FINISHED"
    assert len(children) == 3
    for child in children:  # named by what it sampled, and the name agrees with its params
        p = child.data.params
        m = re.fullmatch(r"xlstm d(\d+) h(\d) b(\d) lr(\d(?:\.\d)?)e-(\d) drop(\d\.\d\d)", child.info.run_name)
        assert m, child.info.run_name
        assert (m[1], m[2], m[3]) == (p["embedding_dim"], p["num_heads"], p["num_blocks"])
        assert float(f"{m[4]}e-{m[5]}") == pytest.approx(float(p["lr"]), rel=0.05)
        assert float(m[6]) == pytest.approx(float(p["dropout"]), abs=0.005)
    assert len({c.info.run_name for c in children}) == 3


def test_parent_carries_the_best_trial_and_the_champion(runs):
    client, parent, children = runs
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert finished
    best = max(finished, key=lambda c: c.data.metrics["best_val_recall_at_10"])
    pm = parent.data.metrics
    assert pm["best_val_recall_at_10"] == pytest.approx(best.data.metrics["best_val_recall_at_10"], abs=1e-9)
    assert pm["test_recall_at_10"] == pytest.approx(best.data.metrics["test_recall_at_10"], abs=1e-9)
    assert pm["trials_done"] == len(finished)
    assert pm["trials_done"] + pm["trials_pruned"] + pm["trials_failed"] == 3
    tags = parent.data.tags
    assert tags["xlrec.best_trial"] == best.info.run_name
    champion = client.get_model_version_by_alias("xlstm-ml-100k", "champion")
    assert (tags["xlrec.champion_model"], tags["xlrec.champion_version"]) == ("xlstm-ml-100k", str(champion.version))
    assert tags["xlrec.champion_uri"] == "models:/xlstm-ml-100k@champion"
    note = tags["mlflow.note.content"]
    assert best.info.run_name in note and "models:/xlstm-ml-100k@champion" in note


def test_parent_params_are_each_logged_once_without_empty_values(runs):
    _, parent, _ = runs
    params = parent.data.params
    assert [k for k in params if k.rsplit(".", 1)[-1] == "mode"] == ["mode"]
    assert params["mode"] == "search" and params["trials"] == "3" and params["epochs"] == "2"
    assert "source" not in params
    assert not [k for k, v in params.items() if v in ("", "''", '""')]


def test_trials_csv_has_a_header_and_string_trial_ids(runs, tmp_path):
    client, parent, children = runs
    path = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path)))
    header = path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["trial", "run_name", "status", "val_recall_at_10"]
    table = pd.read_csv(path)  # type inference, as MLflow's preview does (it would read 00097008 as 97008)
    assert len(table) == 3
    assert all(isinstance(t, str) and re.fullmatch(r"trial_\w+", t) for t in table["trial_id"])
    assert set(table["run_name"]) == {c.info.run_name for c in children}


def test_compare_view_leads_with_validation_recall_and_cpu_is_measured(runs):
    client, _, children = runs
    for child in children:
        # MLflow's compare view colours its parallel-coordinates plot by a run's first metric
        assert next(iter(child.data.metrics)) == "val_recall_at_10"
        cpu = [m.value for m in client.get_metric_history(child.info.run_id, "cpu_percent")]
        assert cpu and max(cpu) > 0.0, cpu


def test_cpu_percent_is_measured_over_the_interval():
    """One psutil handle per process: a fresh handle per reading always said 0.0."""
    from xlrec.device import resource_usage, select_runtime, start_usage_interval

    rt = select_runtime("cpu")
    start_usage_interval(rt, reset_gpu_peak=False)
    total = 0
    for i in range(3_000_000):  # CPU work inside the interval
        total += i * i
    assert total > 0
    assert resource_usage(rt)["cpu_percent"] > 0.0


def test_mlproject_report_entry_reports_what_the_main_job_left(main_job, runs):
    """The README's next step: `mlflow run . -e report` with its defaults, right after the main job."""
    repo, _ = main_job
    client, parent, children = runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "XLREC_"))}
    env.update({"PYTHONPATH": str(repo), "PATH": f"{repo / '.venv' / 'bin'}:{os.environ['PATH']}"})
    proc = subprocess.run(
        ["mlflow", "run", ".", "-e", "report", "--env-manager", "local", "--experiment-name", "xlrec-ml-100k"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    out = repo / "xlrec-report" / "xlrec-ml-100k"
    md = (out / "report.md").read_text()
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert f"Runs: {len(finished)} finished of {len(children)} in experiment `xlrec-ml-100k`" in md
    assert "## Architecture ablation (RQ4, RQ13)" in md or "no model ran with several architectures" in md
    assert (out / "report.html").read_text().count("data:image/png;base64,") == md.count("![")
    # logged on the run `mlflow run` made for the entry, which no table counts as a training run
    reports = client.search_runs([parent.info.experiment_id], "tags.`xlrec.report` = 'true'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED" and "model" not in reports[0].data.params
