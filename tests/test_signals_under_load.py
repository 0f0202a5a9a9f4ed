"""SIGINT and SIGTERM at random moments of a run while another process keeps its sqlite store busy.

Each time: the process exits 130 with no traceback, its run (if it was created yet) ends KILLED
with the reason, and every epoch the console printed is an epoch MLflow holds: an epoch is logged
before it is printed, and a signal waits for a request to the store to finish. The moments are
drawn from a seeded generator: some during start-up and setup (a delay after the process starts),
most in the epoch loop (a delay after its first epoch line); runs go four at a time against the one
store, which another connection locks for writing three quarters of the time, as concurrent
trainings and a UI would.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from helpers import run_xlrec, xlrec_env

pytestmark = pytest.mark.slow

MOMENTS = 8  # 2 in start-up and setup, 6 in the epoch loop: 2 rounds of AT_ONCE (the suite's 20-minute budget)
AT_ONCE = 4
TINY = [
    "--model",
    "gru4rec",
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "60",
    "--synthetic-items",
    "40",
    "--synthetic-mean-len",
    "12",
    "--embedding-dim",
    "8",
    "--max-len",
    "10",
    "--device",
    "cpu",
    "--no-register",
    "--epochs",
    "100000",
    "--patience",
    "100000",
]


class BusyStore(threading.Thread):
    """Holds the sqlite store's write lock 150 ms of every 200 ms until stopped."""

    def __init__(self, db: Path):
        super().__init__(daemon=True)
        self.db, self.stop = db, threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        while not self.stop.is_set():
            con.execute("BEGIN IMMEDIATE")
            time.sleep(0.15)
            con.execute("COMMIT")
            time.sleep(0.05)
        con.close()


def _printed_epochs(stderr: str) -> set[int]:
    return {int(n) for n in re.findall(r"^\[xlrec\] epoch +(\d+) ", stderr, re.M)}


def test_signals_at_random_moments_of_runs_on_a_busy_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = xlrec_env(tmp_path / "data")
    prep = run_xlrec(["data", "prepare", *TINY[2:10]], env, cwd=tmp_path)
    assert prep.returncode == 0, prep.stderr[-2000:]
    MlflowClient(uri).search_experiments()  # the store's tables exist before the lock is held
    busy = BusyStore(tmp_path / "mlflow.db")
    busy.start()
    rng = random.Random(20261207)
    # (after the first epoch line?, delay in seconds, signal)
    moments = [
        (i >= MOMENTS // 4, rng.uniform(0.0, 1.5) if i >= MOMENTS // 4 else rng.uniform(0.3, 4.0), sig)
        for i, sig in enumerate(rng.choice([signal.SIGINT, signal.SIGTERM]) for _ in range(MOMENTS))
    ]
    outcomes, started = [], []
    try:
        for first in range(0, MOMENTS, AT_ONCE):
            batch = []
            for i, (in_loop, delay, sig) in enumerate(moments[first : first + AT_ONCE], start=first):
                err = open(tmp_path / f"run{i}.err", "w")  # noqa: SIM115 - closed below
                args = ["train", *TINY, "--tracking-uri", uri, "--experiment", f"signal-{i}"]
                proc = subprocess.Popen(
                    [sys.executable, "-m", "xlrec", *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err
                )
                batch.append((i, in_loop, delay, sig, proc, err, time.monotonic()))
                started.append(proc)
            # when each one's clock starts: at its start, or (in the loop) at its first epoch line
            clock = {i: (None if in_loop else started) for i, in_loop, _, _, _, _, started in batch}
            waiting = {i: (delay, sig, proc) for i, _, delay, sig, proc, _, _ in batch}
            while waiting:
                for i, (delay, sig, proc) in list(waiting.items()):
                    if clock[i] is None:
                        text = (tmp_path / f"run{i}.err").read_text()
                        assert proc.poll() is None, f"run {i} ended before its signal:\n{text[-3000:]}"
                        if "[xlrec] epoch " in text:
                            clock[i] = time.monotonic()
                    elif time.monotonic() >= clock[i] + delay:
                        proc.send_signal(sig)
                        del waiting[i]
                time.sleep(0.02)
            for i, _, delay, sig, proc, err, _ in batch:
                try:
                    rc = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:  # still running 2 minutes after its signal: say which, how far it got
                    text = (tmp_path / f"run{i}.err").read_text()
                    pytest.fail(
                        f"run {i}: {signal.Signals(sig).name} after {delay:.1f} s did not end it:\n{text[-3000:]}"
                    )
                err.close()
                outcomes.append((i, delay, sig, rc, (tmp_path / f"run{i}.err").read_text()))
    finally:
        for proc in started:  # a failed assertion leaves no training of 100,000 epochs behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        busy.stop.set()
        busy.join()
    client = MlflowClient(uri)
    for i, delay, sig, rc, stderr in outcomes:
        where = f"run {i}: {signal.Signals(sig).name} after {delay:.1f} s"
        assert rc == 130, f"{where}: exit {rc}\n{stderr[-3000:]}"
        assert "Traceback" not in stderr, f"{where}\n{stderr[-3000:]}"
        exp = client.get_experiment_by_name(f"signal-{i}")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        printed = _printed_epochs(stderr)
        if not runs:  # signalled before its run existed: nothing printed, nothing to close
            assert not printed, f"{where}: epochs printed without a run"
            continue
        (run,) = runs
        assert run.info.status == "KILLED", f"{where}: {run.info.status}\n{stderr[-2000:]}"
        assert run.data.tags["xlrec.failure_reason"] == f"interrupted ({signal.Signals(sig).name})"
        logged = {m.step for m in client.get_metric_history(run.info.run_id, "val_recall_at_10")}
        assert printed <= logged, f"{where}: printed epochs {sorted(printed)}, MLflow holds {sorted(logged)}"
    assert sum(bool(_printed_epochs(o[4])) for o in outcomes) >= MOMENTS // 3  # many hit the epoch loop


@pytest.mark.parametrize("handled", [False, True])
def test_an_interrupt_main_handled_exits_130_not_by_sigint(handled, tmp_path):
    """CPython marks a KeyboardInterrupt unhandled when it passed through PyRun_String code, even after
    main() caught it, and a `python -m` process then exits by SIGINT (-2); xlrec's entry point clears
    the mark."""
    (tmp_path / "entry.py").write_text(
        "import ctypes, sys\n"
        "ctypes.c_int.in_dll(ctypes.pythonapi, '_Py_UnhandledKeyboardInterrupt').value = 1\n"
        "from xlrec.__main__ import _forget_handled_interrupt\n"
        + ("_forget_handled_interrupt(130)\n" if handled else "")
        + "sys.exit(130)\n"
    )
    proc = subprocess.run([sys.executable, "-m", "entry"], cwd=tmp_path, capture_output=True, timeout=60)
    assert proc.returncode == (130 if handled else -signal.SIGINT), proc.stderr[-2000:]
