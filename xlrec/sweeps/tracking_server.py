"""The tracking store a sweep's trials log to, and the local server that serves it.

Trials log over HTTP. With a sqlite store (the default `mlflow.db`, or the one `mlflow run`
exports) the sweep serves it with its own `mlflow server` for its duration; a resumed sweep
reuses the port its dead driver served on, so the trials Tune restores keep their URI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from xlrec.platform.tracking.server import health, local_sqlite_server, stop_process_group
from xlrec.platform.tracking.uri import check_reachable, resolve_tracking
from xlrec.sweeps.paths import sweep_home
from xlrec.sweeps.resume_state import ResumeState
from xlrec.sweeps.spec import SweepSpec
from xlrec.sweeps.state import SweepState


def serve_tracking(
    spec: SweepSpec, state: SweepState, stack: contextlib.ExitStack, saved: ResumeState | None
) -> tuple[str, Callable[[], object]]:
    """The URI trials log to, and a call that blocks until it answers (a server this sweep
    starts is launched, not yet up: the caller starts Ray meanwhile). A server this sweep starts
    (or inherits) is stopped by `stack`."""
    target = resolve_tracking(spec.tracking_uri, sweep_home=sweep_home())
    if target.serve_db is None:
        check_reachable(target.uri)
        return target.uri, lambda: None
    state.served_db = str(target.serve_db)
    # MLflow prints "View run ... at <server>" as runs end; this server stops with the sweep, so
    # its links would be dead: the sweep's last line says how to open the store (inherited by the
    # trials, which Ray starts from this process's environment)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    server = local_sqlite_server(target.serve_db, port=saved.server_port if saved else None)
    if saved and saved.server_port and health(server.uri) == 200:  # the killed driver's server still serves
        if saved.server_pid:
            stack.callback(stop_process_group, saved.server_pid)
        return server.uri, lambda: None
    server.launch()
    stack.callback(server.stop)
    assert server.proc is not None  # launch() started it
    state.server_pid = server.proc.pid  # recorded so a resumed sweep can stop it if this driver dies
    return server.uri, server.wait_healthy


def served_port(state: SweepState, uri: str) -> int | None:
    """The port of the server this sweep serves its store on (None: it logs to a given server)."""
    return int(uri.rsplit(":", 1)[1]) if state.served_db else None
