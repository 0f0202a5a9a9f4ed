"""The command line: `xlrec data prepare`, `train`, `evaluate`, `recommend`, `registry`, `sweep`,
`tune`, `report` and `runs`; every argparse line of xlrec lives in this package.

Every command turns user mistakes (`XlrecError`) into one paragraph on stderr and a non-zero
exit code, without a traceback; SIGINT and SIGTERM end the runs the process holds as KILLED.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from xlrec.cli import models, report, runs, sweep, train, tune
from xlrec.errors import XlrecError
from xlrec.platform.tracking import run_lifecycle


def build_parser(model_flags: bool = True) -> argparse.ArgumentParser:
    """The parser of every command. `model_flags`: give `train` a flag for every registered
    model's settings (it imports every model, and so torch: only for the command that needs them)."""
    parser = argparse.ArgumentParser(
        prog="xlrec", description="Train, track, search, register, serve and report sequential recommenders."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_commands(sub, model_flags)
    models.add_commands(sub)
    report.add_command(sub)
    runs.add_command(sub)
    sweep.add_command(sub)
    tune.add_command(sub)
    return parser


_stopping = False  # set once an error or signal is being handled: later signals wait for the cleanup


def _terminate_as_interrupt(signum, frame) -> None:
    # SIGINT and `kill`/Ray/`mlflow run` SIGTERM alike unwind as KeyboardInterrupt (once a shielded
    # store request is done), so every run this process holds ends KILLED; a repeated signal must
    # not cut that cleanup short.
    if not _stopping:
        run_lifecycle.signal_received(signum)


def _close_runs(args: argparse.Namespace | None, exc: BaseException) -> None:
    """End the MLflow runs this process still holds (FAILED or KILLED), whatever step it was in."""
    if args is None or getattr(args, "command", None) not in ("train", "sweep", "tune", "evaluate", "report"):
        return  # commands that never open a run
    adopted = None
    if args.command == "train" and not getattr(args, "no_tracking", True) and os.environ.get("MLFLOW_RUN_ID"):
        from xlrec.platform.tracking.uri import tracking_uri  # `mlflow run` made this run before we started

        adopted = (os.environ["MLFLOW_RUN_ID"], tracking_uri(getattr(args, "tracking_uri", None)))
    try:
        run_lifecycle.close_open_runs(exc, adopted)
    except Exception as close_exc:  # never hide the original error behind a cleanup error
        print(f"xlrec: warning: could not close the MLflow run: {close_exc}", file=sys.stderr)


def _model_target(argv: list[str]) -> str | None:
    """`--model package.module:Class` on a train command line: registered before the parser is
    built, so the class's own settings have flags."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--model" and i + 1 < len(argv) else arg.partition("=")[2]
        if (arg == "--model" or arg.startswith("--model=")) and ":" in value:
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    global _stopping
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    signal.signal(signal.SIGINT, _terminate_as_interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args: argparse.Namespace | None = None
    try:
        target = _model_target(argv) if command == "train" else None
        if target:
            from xlrec.catalog import models as registry

            registry.register_target(target)
        args = build_parser(model_flags=command == "train").parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except BaseException as exc:
        _stopping = True
        if run_lifecycle.SIGNALLED and not isinstance(exc, KeyboardInterrupt):
            exc = KeyboardInterrupt(run_lifecycle.SIGNALLED)  # a library turned the interrupt into its own error
        _close_runs(args, exc)
        if isinstance(exc, XlrecError):
            from xlrec.redact import redact

            print(f"xlrec: error: {redact(exc)}", file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, KeyboardInterrupt):
            print(f"xlrec: interrupted ({exc or 'SIGINT'})", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
