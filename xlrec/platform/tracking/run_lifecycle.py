"""The life of a run: who owns it, how it ends on any exit, and reaping runs whose process is gone.

A process killed with SIGKILL (or by the OOM killer, or a lost machine) cannot close its
MLflow run, which then says RUNNING forever. Every xlrec run records at its start which
process owns it (`xlrec.host`, `xlrec.pid` and the process's start time, which guards
against a recycled pid); reaping marks a RUNNING run FAILED when that process no longer
exists. Runs of other hosts cannot be checked that way: they are only listed, unless
`--stale-minutes N` says that N minutes without a metric or heartbeat mean dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from xlrec.errors import XlrecError

HOST_TAG, PID_TAG, START_TAG, HEARTBEAT_TAG = "xlrec.host", "xlrec.pid", "xlrec.pid_start", "xlrec.heartbeat"


def process_tags() -> dict[str, str]:
    """Who owns a run: this host, this pid and its start time (psutil's create_time)."""
    import psutil

    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        START_TAG: f"{psutil.Process().create_time():.3f}",
    }


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


# --- closing this process's runs ----------------------------------------------------------


# The signal this process was stopped by (SIGINT/SIGTERM), once one came: a library may turn the
# KeyboardInterrupt it raised into its own exception (pydantic, a store's retries), and the
# process must still end as interrupted, its runs KILLED.
SIGNALLED: str | None = None
_shield = threading.local()  # shield_signals blocks in progress on this thread, and a deferred signal


def signal_received(signum: int) -> None:
    """The CLI's SIGINT/SIGTERM handler: KeyboardInterrupt now, or when the shielded block ends."""
    global SIGNALLED
    name = signal.Signals(signum).name
    SIGNALLED = SIGNALLED or name
    if getattr(_shield, "depth", 0):
        _shield.pending = name
        return
    raise KeyboardInterrupt(name)


@contextlib.contextmanager
def shield_signals() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block is done: a run is never created (or closed), and an
    epoch never printed unlogged, without this process knowing it, whatever moment a signal
    picks. A deferred signal fires right after. The mask keeps the kernel from picking this
    thread; Python runs handlers on the main thread whichever thread the kernel picked, so the
    handler defers too (signal_received)."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    if main:
        _shield.depth = getattr(_shield, "depth", 0) + 1
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if main:
            _shield.depth -= 1
            pending = getattr(_shield, "pending", None)
            if not _shield.depth and pending:
                _shield.pending = None
                raise KeyboardInterrupt(pending)


# How long closing a run retries a store that answers but fails (a locked sqlite file).
CLOSE_RETRY_S = 30.0
# Runs this process opened (or adopted) and has not closed yet: run_id -> tracking URI.
_OPEN: dict[str, str] = {}


def end_status(exc: BaseException) -> tuple[str, str]:
    """(MLflow status, failure reason) for a run ended by `exc`."""
    if isinstance(exc, KeyboardInterrupt):
        what = str(exc) or "SIGINT"
        return "KILLED", f"interrupted ({what})"
    if isinstance(exc, SystemExit):
        return "KILLED", f"stopped (SystemExit {exc.code})"
    from xlrec.redact import redact

    return "FAILED", redact(f"{type(exc).__name__}: {exc}")[:4000]


def _forget_active(run_id: str) -> None:
    """Drop the run from MLflow's active-run stack without calling the store: MLflow's atexit
    hook would otherwise end it FINISHED (or retry a dead server) on the way out."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()  # no public API pops a run without a store call
    while stack and stack[-1].info.run_id == run_id:
        stack.pop()
    if os.environ.get("MLFLOW_RUN_ID") == run_id:
        del os.environ["MLFLOW_RUN_ID"]


def close_run(run_id: str, uri: str, status: str, reason: str) -> bool:
    """End a run with `status` and the xlrec.status / xlrec.failure_reason tags; False when the
    store cannot be reached (the run is then left for `xlrec runs reap`)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    from xlrec.platform.mlflow_env import quiet_links_for
    from xlrec.platform.tracking.store import check_store

    quiet_links_for(uri)
    _OPEN.pop(run_id, None)
    with shield_signals():
        try:
            check_store(uri)  # seconds; a dead server would cost every call below its retries
        except XlrecError:
            _forget_active(run_id)
            return False
        # A sqlite store shared by several busy processes can stay locked for seconds (its writers
        # queue): a run that ends must not stay RUNNING for that, so the close is retried a while.
        deadline = time.monotonic() + CLOSE_RETRY_S
        attempt = 0
        while True:
            attempt += 1
            try:
                client = MlflowClient(uri)
                if client.get_run(run_id).info.status != "RUNNING":
                    _forget_active(run_id)
                    return True
                tags = [RunTag("xlrec.status", status), RunTag("xlrec.failure_reason", reason)]
                client.log_batch(run_id, tags=tags)
                active = mlflow.active_run()
                if active is not None and active.info.run_id == run_id:
                    mlflow.end_run(status=status)
                else:
                    client.set_terminated(run_id, status)
                return True
            except Exception:
                if time.monotonic() > deadline:
                    break
                time.sleep(min(2.0, 0.25 * attempt))
        _forget_active(run_id)
        return False


def close_open_runs(exc: BaseException, adopted: tuple[str, str] | None = None) -> None:
    """End every run this process still holds open, as `exc` says (the CLI calls this for any
    error or signal, so setup, evaluation and result logging are covered as well as the loop).
    `adopted` (run id, URI): the run `mlflow run` created for this process (MLFLOW_RUN_ID),
    which exists before this process could open it."""
    status, reason = end_status(exc)
    runs = dict(_OPEN)
    if adopted:
        runs.setdefault(*adopted)
    for run_id, uri in runs.items():
        close_run(run_id, uri, status, reason)


# --- reaping runs whose process is gone -----------------------------------------------------


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


def reap(
    client,
    experiment_ids: list[str],
    stale_minutes: float | None = None,
    filter_string: str = "",
    reason_prefix: str = "reaped",
) -> list[Verdict]:
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
                reason = (
                    f"no metric or heartbeat for {idle:.0f} min (>= --stale-minutes {stale_minutes:g}); {reason_prefix}"
                )
        if reason is None:
            why = "recorded no process" if not (host and pid) else f"runs on another host ({host})"
            verdicts.append(
                Verdict(
                    run.info.run_id,
                    run.info.experiment_id,
                    run.info.run_name,
                    owner,
                    "not checkable",
                    f"{why}; --stale-minutes N reaps it after N idle minutes",
                )
            )
            continue
        client.set_tag(run.info.run_id, "xlrec.status", "FAILED")
        client.set_tag(run.info.run_id, "xlrec.failure_reason", reason)
        client.set_terminated(run.info.run_id, "FAILED")
        verdicts.append(Verdict(run.info.run_id, run.info.experiment_id, run.info.run_name, owner, "reaped", reason))
    return verdicts


def reap_runs(experiment: str | None, stale_minutes: float | None) -> list[Verdict]:
    """`reap` over one experiment of the current store (None: every experiment)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise XlrecError(
                f"There is no experiment named {experiment!r} at the tracking store. "
                f"Check --experiment (or leave it out to check every experiment)."
            )
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments(max_results=50000)]
    return reap(client, ids, stale_minutes, reason_prefix="reaped by `xlrec runs reap`") if ids else []
