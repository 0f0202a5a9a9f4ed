"""Stopping a sweep cleanly.

A SIGTERM/SIGINT to the driver must stop everything the sweep started (trials, Ray, the
tracking server it serves) and mark its runs KILLED (a sweep resumed after its driver was
SIGKILLed reaps the trial runs that died with it: SweepRecorder.reap_dead_trials).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from xlrec.sweeps.state import SweepState

if TYPE_CHECKING:
    from xlrec.platform.tracking.sweep_tracking import SweepRecorder


class StopSignals:
    """SIGINT/SIGTERM stop the sweep as a whole, once. Inside `tuner.fit()` the signal is passed
    to Tune's own graceful stop (its SIGUSR1 handler: no new trial starts and the experiment
    state is saved for --resume); elsewhere it unwinds as KeyboardInterrupt. Either way the
    driver then stops what it started and marks the runs KILLED (`abort`). A repeated signal
    does not cut that cleanup short."""

    def __init__(self):
        self.signum: int | None = None
        self.in_tune = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT stays ours (Tune would end FINISHED)
        self.install()
        return self

    def install(self) -> None:
        """(Again) after ray.init: Ray's core worker installs a C-level SIGTERM handler that
        aborts the driver on the spot, leaving the trials, Ray and the tracking server running."""
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signum is not None:
            return
        self.signum = signum
        print(
            f"[xlrec] {signal.Signals(signum).name}: stopping the sweep (trials, Ray, the tracking server)",
            file=sys.stderr,
            flush=True,
        )
        tune_stop = signal.getsignal(signal.SIGUSR1) if self.in_tune else None
        if callable(tune_stop):
            tune_stop(signal.SIGUSR1, frame)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def raise_if_stopped(self) -> None:
        import signal

        if self.signum is not None:
            raise KeyboardInterrupt(signal.Signals(self.signum).name)


def _descendants() -> list:
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def stop_ray(state: SweepState) -> None:
    """ray.shutdown() when this driver started Ray, then end any process it started that outlived
    that (Ray workers of a local cluster still running trials), except the tracking server, which
    the stack stops last (the runs are marked through it first)."""
    import psutil
    import ray

    if not state.ray_started:
        return
    server_pid = state.server_pid
    started = [p for p in _descendants() if server_pid is None or _pgid(p.pid) != server_pid]
    if ray.is_initialized():
        ray.shutdown()
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def abort(exc: BaseException, recorder: SweepRecorder | None, state: SweepState) -> None:
    """The sweep ends early: stop its trials and Ray, then mark every trial run still RUNNING
    and the parent KILLED (a signal) or FAILED (an error), with the reason."""
    stop_ray(state)
    if recorder is not None:
        recorder.abort(exc)
