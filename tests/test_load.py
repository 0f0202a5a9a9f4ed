"""Load: N `xlrec train` processes at once against one real `mlflow server` (PostgreSQL store).

Every run must end FINISHED with every per-epoch metric point it logged (points expected =
runs x epochs x per-epoch keys; found must equal it), one registered version per run, and
the `champion` alias on the version with the best validation Recall@10. The figures are
printed (and quoted in RELIABILITY.md); `XLREC_LOAD_RUNS` raises N for a heavier probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from mlflow import MlflowClient

from helpers import xlrec_env

pytestmark = [pytest.mark.server, pytest.mark.slow]

N_RUNS = int(os.environ.get("XLREC_LOAD_RUNS", "6"))
EPOCHS = 3
PER_EPOCH = ("train_loss", "val_recall_at_10", "val_ndcg_at_10", "val_mrr_at_10", "lr", "epoch_time_s")
TINY = [
    "--model",
    "gru4rec",
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "120",
    "--synthetic-items",
    "60",
    "--synthetic-mean-len",
    "12",
    "--max-len",
    "10",
    "--embedding-dim",
    "8",
    "--epochs",
    str(EPOCHS),
    "--min-epochs",
    str(EPOCHS),
    "--patience",
    str(EPOCHS),
    "--device",
    "cpu",
    "--num-threads",
    "1",
]


def test_concurrent_trainings_lose_nothing(mlflow_server, tmp_path):
    experiment = f"load-{uuid.uuid4().hex[:8]}"
    env = xlrec_env(tmp_path / "data", OMP_NUM_THREADS="1")
    prep = subprocess.run(
        [sys.executable, "-m", "xlrec", "data", "prepare", *TINY[2:10]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prep.returncode == 0, prep.stderr  # cache the dataset once, before the concurrent runs
    # One registered model per test run (the synthetic dataset name is shared), so the
    # champion check sees only this test's versions: the experiment name is unique, and the
    # version count is read from the runs' own registrations.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xlrec",
                "train",
                *TINY,
                "--seed",
                str(seed),
                "--experiment",
                experiment,
                "--tracking-uri",
                mlflow_server,
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(N_RUNS)
    ]
    outputs = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == N_RUNS
    assert {r.info.status for r in runs} == {"FINISHED"}

    expected = N_RUNS * EPOCHS * len(PER_EPOCH)
    found = sum(len(client.get_metric_history(r.info.run_id, key)) for r in runs for key in PER_EPOCH)
    steps = {
        (r.info.run_id, key): sorted(m.step for m in client.get_metric_history(r.info.run_id, key))
        for r in runs
        for key in PER_EPOCH
    }
    assert found == expected
    assert all(s == list(range(1, EPOCHS + 1)) for s in steps.values())

    name = runs[0].data.tags["xlrec.registered_model"]
    mine = {r.info.run_id for r in runs}
    versions = [v for v in client.search_model_versions(f"name='{name}'") if v.run_id in mine]
    assert len(versions) == N_RUNS  # one version per run, none twice
    assert len({v.run_id for v in versions}) == N_RUNS
    best_val = max(r.data.metrics["best_val_recall_at_10"] for r in runs)
    champion = client.get_model_version_by_alias(name, "champion")
    all_scores = [float(v.tags["val_recall_at_10"]) for v in client.search_model_versions(f"name='{name}'")]
    assert float(champion.tags["val_recall_at_10"]) == pytest.approx(max(all_scores), abs=1e-9)
    assert max(all_scores) >= best_val - 1e-9
    print(
        json.dumps(
            {
                "load_runs": N_RUNS,
                "points_expected": expected,
                "points_found": found,
                "versions": len(versions),
                "champion": f"v{champion.version}",
                "lost": expected - found,
            }
        )
    )
