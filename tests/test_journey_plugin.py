"""The README's "Your own model" journey, run as written: a model plugin installed beside xlrec
gets the whole platform.

The README block (`<!-- journey: plugin -->`) runs literally in a copy of the repository with only
the documented sizes appended (`--epochs 1`; the search `--trials 2 --epochs 1 --grace-period 1`).
`pip install ./examples/plugin-model` installs into a folder of this test (PIP_TARGET, on
PYTHONPATH), not into the shared virtualenv, so other tests never see the plugin. Then: the
plugin's settings are flags and MLflow params, an Optuna search samples the plugin's own settings
beside SASRec's as nested runs, the champion is registered and re-evaluated, the report covers
the plugin, `mlflow models serve` answers like `xlrec recommend`, and without the plugin a saved
plugin model is refused with one paragraph.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from helpers import SHARED_DATA, copy_checkout, exec_line, free_port, run_xlrec, wait_for_ping, xlrec_env
from readme_script import journey

pytestmark = [pytest.mark.server, pytest.mark.slow]

VENV = Path(sys.executable).parent.parent
# the documented sizes: a run of one epoch, a search of two one-epoch trials
SIZES = {"xlrec train": " --epochs 1", "xlrec sweep": " --trials 2 --epochs 1 --grace-period 1"}
EXPERIMENT = "ml100k-nextitnet-vs-sasrec"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    lines = journey("plugin")
    assert lines[0].endswith("pip install ./examples/plugin-model"), lines
    base = tmp_path_factory.mktemp("plugin")
    repo = copy_checkout(base / "repo")
    (repo / ".venv").symlink_to(VENV)
    site = base / "site"
    env = xlrec_env(base / "data", mirror=SHARED_DATA)
    # PYTHONPATH stands in for `pip install -e .` of this copy; the plugin goes to a folder of its own
    env.update({"PYTHONPATH": f"{site}:{repo}", "PIP_TARGET": str(site), "PIP_NO_DEPS": "1"})
    outputs = []
    for line in lines:
        sized = line + next((extra for cmd, extra in SIZES.items() if cmd in line), "")
        proc = subprocess.run(["bash", "-c", sized], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        (base / f"step{len(outputs)}.stderr").write_text(proc.stderr)
        assert proc.returncode == 0, (sized, proc.stderr[-4000:])
        outputs.append(proc)
    return {
        "repo": repo,
        "env": env,
        "site": site,
        "out": outputs,
        "client": MlflowClient(f"sqlite:///{repo}/mlflow.db"),
    }


def _last_json(text: str) -> dict:
    return json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])


def test_installed_plugin_trains_with_its_own_settings_as_flags_and_params(plugin):
    assert (plugin["site"] / "xlrec_nextitnet" / "model.py").is_file()
    summary = _last_json(plugin["out"][1].stdout)
    assert summary["model"] == "nextitnet" and summary["epochs_run"] == 1
    client = plugin["client"]
    exp = client.get_experiment_by_name("xlrec-ml-100k")
    (run,) = client.search_runs([exp.experiment_id])
    params = run.data.params
    # --kernel-size 2 given; the rest from the plugin's defaults file for ml-100k, then its dataclass
    assert (params["kernel_size"], params["dilations"], params["max_len"]) == ("2", "1,4", "50")
    assert params["model"] == "nextitnet" and "num_heads" not in params  # only its own settings
    assert run.data.metrics["test_recall_at_10"] == pytest.approx(summary["test"]["recall@10"])


def test_the_search_samples_the_plugins_settings_beside_sasrecs_as_nested_runs(plugin):
    client = plugin["client"]
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("xlrec.sweep") == "parent"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2 and {r.info.status for r in trials} <= {"FINISHED", "KILLED"}
    mine = [r for r in trials if r.data.params["model"] == "nextitnet"]
    assert mine, [r.data.params["model"] for r in trials]
    for r in mine:  # the plugin's own dimensions sampled from the spec's space, named in the run's name
        assert r.data.params["kernel_size"] in ("2", "3", "4")
        assert r.data.params["dilations"] in ("1,4", "1,2,4", "1,4,16")
        assert f"dilations={r.data.params['dilations']}" in r.info.run_name
    for r in trials:
        if r.data.params["model"] == "sasrec":
            assert "kernel_size" not in r.data.params
    sweep = _last_json(plugin["out"][2].stdout)
    assert sweep["trials_done"] + sweep["trials_pruned"] == 2


def test_the_champion_is_registered_and_evaluate_reproduces_its_test_score(plugin):
    client = plugin["client"]
    champion = client.get_model_version_by_alias("nextitnet-ml-100k", "champion")
    logged = client.get_run(champion.run_id).data.metrics["test_recall_at_10"]
    evaluated = _last_json(plugin["out"][3].stdout)
    assert evaluated["model"] == "nextitnet" and evaluated["run_id"] == champion.run_id
    assert evaluated["test"]["recall@10"] == pytest.approx(logged, abs=1e-12)


def test_the_report_covers_the_plugin_and_says_what_it_cannot_show(plugin):
    report = Path(plugin["out"][4].stdout.strip().splitlines()[-1])
    md = (report.parent / "report.md").read_text()
    table4 = md[md.index("Table 4") :]
    assert re.search(r"^\| nextitnet \| ml-100k \|", table4, re.M), table4[:2000]
    client = plugin["client"]
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    finished = {r.data.params.get("model") for r in runs if r.info.status == "FINISHED"}
    if {"nextitnet", "sasrec"} <= finished:  # paired per-user tests over ML-100K's 943 users
        assert re.search(r"^\| ml-100k \| 50 \| (nextitnet vs sasrec|sasrec vs nextitnet) \| 943 \|", md, re.M)
    cannot = md[md.index("## What this report cannot show") :]
    assert "nextitnet: no attention weights or xLSTM gates to read" in cannot


def test_the_served_champion_answers_like_recommend(plugin):
    """`mlflow models serve` of the plugin's champion (the serve journey, its model name substituted)."""
    from xlrec.platform.tracking.server import stop_process_group

    env = {**plugin["env"], "MLFLOW_TRACKING_URI": f"sqlite:///{plugin['repo']}/mlflow.db"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    serve = [ln for ln in journey("serve") if "mlflow models serve" in ln]
    port = str(free_port())
    command = re.sub(r"\b5001\b", port, serve[0].replace("xlstm-ml-100k", "nextitnet-ml-100k"))
    log = plugin["repo"] / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            ["bash", "-c", exec_line(command)],
            env=env,
            cwd=plugin["repo"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(url, server, log)
        body = json.dumps({"dataframe_records": [{"history": ["50", "172", "133"], "k": 5}]}).encode()
        req = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            (pred,) = json.loads(resp.read())["predictions"]
    finally:
        stop_process_group(server.pid)
        server.wait(timeout=30)
    cli = run_xlrec(
        ["recommend", "--model-uri", "models:/nextitnet-ml-100k@champion", "--items", "50,172,133", "--k", "5"],
        env,
        cwd=plugin["repo"],
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert re.findall(r"\(item (\S+), score", cli.stdout) == pred["item_ids"]


def test_without_the_plugin_a_saved_plugin_model_is_refused_with_one_paragraph(plugin):
    env = {**plugin["env"], "PYTHONPATH": str(plugin["repo"])}  # the plugin's folder left out
    env.pop("XLREC_MODELS", None)
    proc = run_xlrec(["evaluate", "--model-uri", "models:/nextitnet-ml-100k@champion"], env, cwd=plugin["repo"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "'nextitnet', which is not registered in this environment" in line
    assert "install the package that registers 'nextitnet'" in line and "never names code to import" in line
    assert os.environ.get("XLREC_MODELS") is None
