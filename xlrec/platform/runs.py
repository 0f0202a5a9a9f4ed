"""Runs whose process is gone: `xlrec runs reap`.

A process killed with SIGKILL (or by the OOM killer, or a lost machine) cannot close its
MLflow run, which then says RUNNING forever. Every xlrec run records at its start which
process owns it (`xlrec.host`, `xlrec.pid` and the process's start time, which guards
against a recycled pid); reaping marks a RUNNING run FAILED when that process no longer
exists. Runs of other hosts cannot be checked that way: they are only listed, unless
`--stale-minutes N` says that N minutes without a metric or heartbeat mean dead.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass

HOST_TAG, PID_TAG, START_TAG, HEARTBEAT_TAG = "xlrec.host", "xlrec.pid", "xlrec.pid_start", "xlrec.heartbeat"


def pause_point(name: str) -> None:
    """Test hook: XLREC_TEST_PAUSE_AT=NAME sleeps here (XLREC_TEST_PAUSE_S, default 60 s), so a
    test can signal a process inside a named window deterministically."""
    if os.environ.get("XLREC_TEST_PAUSE_AT") == name:
        import sys

        print(f"[xlrec] paused at {name}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("XLREC_TEST_PAUSE_S", "60")))


def process_tags() -> dict[str, str]:
    """Who owns a run: this host, this pid and its start time (psutil's create_time)."""
    import psutil

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            START_TAG: f"{psutil.Process().create_time():.3f}"}


def process_alive(pid: int, start: float | None) -> bool:
    """Whether the process `pid` that started at `start` still runs (a reused pid does not count)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    return start is None or abs(created - start) < 1.0


@dataclass
class Verdict:
    run_id: str
    experiment_id: str
    name: str
    owner: str
    action: str  # reaped | alive | not checkable
    detail: str


def _last_update_s(run) -> float:
    """Newest of: start, heartbeat tag, latest metric timestamps (seconds since the epoch)."""
    times = [run.info.start_time / 1000.0]
    beat = run.data.tags.get(HEARTBEAT_TAG)
    if beat:
        try:
            times.append(float(beat))
        except ValueError:
            pass
    times += [m.timestamp / 1000.0 for m in getattr(run.data, "_metric_objs", []) or []]
    return max(times)


def reap(client, experiment_ids: list[str], stale_minutes: float | None = None, filter_string: str = "",
         reason_prefix: str = "reaped") -> list[Verdict]:
    """Mark RUNNING runs whose process is gone FAILED; return one verdict per RUNNING run."""
    query = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
    here = socket.gethostname()
    verdicts = []
    for run in client.search_runs(experiment_ids, query, max_results=5000):
        tags = run.data.tags
        host, pid = tags.get(HOST_TAG), tags.get(PID_TAG)
        owner = f"pid {pid} on {host}" if host and pid else "unknown process"
        reason = None
        if host == here and pid and pid.isdigit():
            start = float(tags[START_TAG]) if tags.get(START_TAG) else None
            if process_alive(int(pid), start):
                verdicts.append(Verdict(run.info.run_id, run.info.experiment_id, run.info.run_name, owner, "alive", ""))
                continue
            reason = f"process {pid} on {host} is gone (killed or crashed without closing its run); {reason_prefix}"
        elif stale_minutes is not None:
            idle = (time.time() - _last_update_s(run)) / 60.0
            if idle >= stale_minutes:
                reason = f"no metric or heartbeat for {idle:.0f} min (>= --stale-minutes {stale_minutes:g}); {reason_prefix}"
        if reason is None:
            why = "recorded no process" if not (host and pid) else f"runs on another host ({host})"
            verdicts.append(Verdict(run.info.run_id, run.info.experiment_id, run.info.run_name, owner,
                                    "not checkable", f"{why}; --stale-minutes N reaps it after N idle minutes"))
            continue
        client.set_tag(run.info.run_id, "xlrec.status", "FAILED")
        client.set_tag(run.info.run_id, "xlrec.failure_reason", reason)
        client.set_terminated(run.info.run_id, "FAILED")
        verdicts.append(Verdict(run.info.run_id, run.info.experiment_id, run.info.run_name, owner, "reaped", reason))
    return verdicts


def cmd_runs_reap(args: argparse.Namespace) -> int:
    import mlflow
    from mlflow import MlflowClient

    from xlrec.errors import XlrecError
    from xlrec.platform.tracking import check_reachable, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    if args.experiment:
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise XlrecError(f"There is no experiment named {args.experiment!r} at the tracking store. "
                             f"Check --experiment (or leave it out to check every experiment).")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments(max_results=50000)]
    verdicts = reap(client, ids, args.stale_minutes, reason_prefix="reaped by `xlrec runs reap`") if ids else []
    if not verdicts:
        print("No RUNNING runs.")
    for v in verdicts:
        print(f"{v.action:<14} {v.run_id}  exp {v.experiment_id:<4} {v.name or '-'}  ({v.owner})"
              + (f": {v.detail}" if v.detail else ""))
    return 0


def add_runs_command(sub) -> None:
    runs = sub.add_parser("runs", help="run bookkeeping")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    rp = runs_sub.add_parser("reap", help="mark RUNNING runs whose process is gone FAILED")
    rp.add_argument("--experiment", default=None, help="only this experiment (default: all)")
    rp.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    rp.add_argument("--stale-minutes", type=float, default=None,
                    help="also reap runs of other hosts (or without a recorded process) idle this long")
    rp.set_defaults(func=cmd_runs_reap)
