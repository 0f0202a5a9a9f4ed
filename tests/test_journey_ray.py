"""The README's Ray-cluster journey, run as a user runs it, on a host where the main job ran before.

A local `ray.init()` (what the main job does) leaves `~/.ray/auth_token`, and from then on
`ray start --head` turns token authentication on by itself; the README's recipe must work
there. The test gives the user a HOME of its own (so the token is the test's), makes that
token the way the main job does, then runs the README's `ray` journey block literally in one
bash shell from the repository root: the documented ports become free ones, the head gets
one logical GPU (this machine has none; Ray schedules logical GPUs without hardware), and the
sweep gets the documented size flags. Against a real `mlflow server`, it then checks the job
SUCCEEDED, the parent run with its two nested trial runs and the champion in the server, and
the Optuna study and Tune's results under ~/.xlrec, where they outlive the job's temporary
working directory. Every process the journey started (they all carry the test's HOME) is
stopped afterwards; `ray stop` would stop other tests' clusters too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import psutil
import pytest
from mlflow import MlflowClient

from readme_script import journey
from xlrec.platform.tracking.server import MlflowServer, free_port

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1]
SIZE = ["--model", "gru4rec", "--trials", "2", "--epochs", "1", "--grace-period", "1"]


def _substitute(line: str, old: str, new: str) -> str:
    assert old in line, f"the README's ray journey no longer has {old!r}: {line}"
    return line.replace(old, new)


def journey_script(tracking_uri: str) -> str:
    """The README's ray journey with free ports, one logical GPU and the small sweep size.

    Other tests' Ray instances run beside this one: the node's other fixed ports (Ray client
    server 10001, dashboard agent 52365, which an instance that cannot bind silently runs
    without, and jobs then find no agent) get free ones too."""
    ray_port, dashboard_port, client_port, agent_port = (free_port() for _ in range(4))
    lines = []
    for line in journey("ray"):
        if line.startswith("ray start"):
            line = _substitute(line, "--port=6380", f"--port={ray_port}")
            line = _substitute(line, "--dashboard-port=8265", f"--dashboard-port={dashboard_port}")
            line += f" --num-gpus=1 --ray-client-server-port={client_port} --dashboard-agent-listen-port={agent_port}"
        if line.startswith("ray job submit"):
            line = _substitute(line, "http://127.0.0.1:8265", f"http://127.0.0.1:{dashboard_port}")
            line = _substitute(line, "http://127.0.0.1:5000", tracking_uri)
            line += " " + " ".join(SIZE)
        lines.append(line)
    assert any(ln.startswith("ray start --head") for ln in lines) and lines[-1].startswith("ray job submit")
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


def user_env(home: Path, ray_tmp: str) -> dict[str, str]:
    """A user's shell with the project's venv on PATH: nothing of Ray's, MLflow's or xlrec's set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "XLREC_")) and k != "PYTHONPATH"}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        RAY_TMPDIR=ray_tmp,  # Ray's sessions and sockets in the test's own short temp dir
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def stop_processes_of(home: Path) -> None:
    """SIGKILL every live process started with this HOME: the Ray node, the job and its trials, only ours."""
    for _ in range(3):  # again, for a worker a raylet started while the first round ran
        procs = []
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and p.environ().get("HOME") == str(home):
                    p.send_signal(signal.SIGKILL)
                    procs.append(p)
            except psutil.Error:
                pass
        if not procs:
            return
        psutil.wait_procs(procs, timeout=2)


def test_readme_ray_job_journey_on_a_host_that_ran_the_main_job(tmp_path, shared_data):
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="xrj", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = user_env(home, ray_tmp)
    server = MlflowServer(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts", workers=1)
    had_study_here = (REPO / "optuna.db").exists()
    try:
        # the main job's local Ray leaves ~/.ray/auth_token behind (while the tracking server starts)
        main_job_ray = subprocess.Popen(
            [sys.executable, "-c", "import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        server.start()
        assert main_job_ray.wait(timeout=180) == 0, main_job_ray.stderr.read()[-3000:]
        assert (home / ".ray" / "auth_token").is_file()

        script = journey_script(server.uri)
        proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]

        # the job
        job_id = re.search(r"Job '(raysubmit_\w+)' succeeded", out)
        assert job_id, out[-4000:]
        dashboard = re.search(r"--address (http://127\.0\.0\.1:\d+)", script)[1]
        status = subprocess.run(
            ["ray", "job", "status", "--address", dashboard, job_id[1]],
            env={**env, "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert f"Job '{job_id[1]}' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr

        # the sweep: its JSON line, the runs and the champion in the tracking server
        summary = json.loads(
            [ln for ln in proc.stdout.splitlines() if ln.startswith("{") and '"parent_run_id"' in ln][-1]
        )
        assert summary["trials_done"] + summary["trials_failed"] + summary["trials_pruned"] == 2
        assert summary["trials_done"] >= 1
        client = MlflowClient(server.uri)
        parent = client.get_run(summary["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert parent.data.params["resources.gpus_per_trial"] == "0.5"
        children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert len(children) == 2 and all(c.info.status in ("FINISHED", "KILLED") for c in children)
        champion = client.get_model_version_by_alias("gru4rec-ml-100k", "champion")
        assert champion.run_id in {c.info.run_id for c in children}

        # the study and Tune's results outlive the job's temporary working directory
        name = f"{parent.data.tags['xlrec.sweep_name']}-{parent.info.run_id[:8]}"
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{home / '.xlrec' / 'optuna.db'}")
        assert len(study.trials) == 2
        assert study.best_value == pytest.approx(
            max(c.data.metrics["best_val_recall_at_10"] for c in children if c.info.status == "FINISHED")
        )
        results = home / ".xlrec" / "ray_results"
        assert (results / name).is_dir() and (
            results / f"{parent.data.tags['xlrec.sweep_name']}.xlrec-sweep.json"
        ).is_file()
        assert len(list((results / name).glob("*/params.json"))) == 2
        assert (REPO / "optuna.db").exists() == had_study_here
    finally:
        stop_processes_of(home)
        server.stop(timeout=5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
