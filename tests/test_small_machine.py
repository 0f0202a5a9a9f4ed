"""What keeps a sweep quick on a small CPU machine (the README's main job on two cores): the
sweep's own mlflow server runs no job consumers and one worker there; a sweep's last trials widen
to the CPUs no trial holds (xlrec.sweeps.trial.IdleCores), on a real local Ray cluster; and
evaluation batches that fit a CPU's caches rank exactly as the configured ones."""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import torch

from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.device import CPU_EVAL_BATCH, eval_batch_size, select_runtime
from xlrec.experiment import assemble


def test_the_sweeps_server_runs_no_job_consumers_and_one_worker_on_two_cores(tmp_path, monkeypatch):
    import psutil

    from xlrec.platform.tracking.server import health, local_sqlite_server

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert local_sqlite_server(tmp_path / "other.db").workers == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    server = local_sqlite_server(tmp_path / "mlflow.db")
    assert server.workers == 1
    with server:
        assert health(server.uri) == 200
        group = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == server.proc.pid:
                    group.append(" ".join(proc.cmdline()))
    assert any("-m mlflow server" in cmd for cmd in group), group
    # MLflow's job runner and its huey consumers (GenAI jobs polled every minute) are not started
    assert not [cmd for cmd in group if "huey" in cmd or "_job_runner" in cmd], group


@pytest.fixture
def local_ray(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    for key in ("RAY_ADDRESS",):
        monkeypatch.delenv(key, raising=False)
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=f"/tmp/xrc{os.getpid()}", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_a_cpu_trial_takes_its_share_of_the_cpus_no_trial_holds(local_ray, monkeypatch):
    from ray.util.placement_group import placement_group, remove_placement_group

    from xlrec.sweeps.trial import widened_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the cluster's 4 logical CPUs decide, not this machine
    trials = [placement_group([{"CPU": 1}]) for _ in range(3)]  # three running trials of one CPU each
    local_ray.get([pg.ready() for pg in trials])
    assert widened_threads(1) == 1  # one CPU free among three trials: nobody widens
    remove_placement_group(trials.pop())
    assert _settled(lambda: widened_threads(1), 2)  # two free among two trials: one more thread each
    remove_placement_group(trials.pop())
    assert _settled(lambda: widened_threads(1), 4)  # the last trial alone takes the whole machine
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert widened_threads(1) == 2  # never more threads than the machine has cores


def _settled(read, expected, within_s: float = 60.0) -> bool:
    """Whether `read()` reaches `expected` (Ray's resource view follows a removed placement group
    within moments, not at once)."""
    deadline = time.monotonic() + within_s
    while read() != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_cpu_evaluation_batches_are_capped_and_rank_exactly_as_larger_ones(tmp_path, monkeypatch):
    cpu = select_runtime("cpu")
    assert eval_batch_size(cpu, 1024) == CPU_EVAL_BATCH and eval_batch_size(cpu, 100) == 100
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path))
    cfg = resolve_config("sasrec", "synthetic", overrides={"device": "cpu", "epochs": 1, "max_len": 20})
    exp = assemble(cfg, prepare(cfg.dataset, cfg.prep, cfg.source))
    assert exp.eval_batch == min(cfg.eval_batch_size, CPU_EVAL_BATCH)
    capped = exp.evaluate("test")
    exp.cfg.eval_batch_size = 7  # another split of the same users into batches
    small = exp.evaluate("test")
    assert len(capped.ranks) > 7
    assert (capped.ranks == small.ranks).all() and (capped.topk == small.topk).all()
    assert torch.get_num_threads() >= 1
