"""`xlrec runs reap`: mark RUNNING runs whose process is gone FAILED (xlrec.platform.tracking.run_lifecycle)."""

from __future__ import annotations

import argparse

from xlrec.cli.common import add_tracking_args, connect


def cmd_runs_reap(args: argparse.Namespace) -> int:
    from xlrec.platform.tracking.run_lifecycle import reap_runs

    connect(args)
    verdicts = reap_runs(args.experiment, args.stale_minutes)
    if not verdicts:
        print("No RUNNING runs.")
    for v in verdicts:
        print(
            f"{v.action:<14} {v.run_id}  exp {v.experiment_id:<4} {v.name or '-'}  ({v.owner})"
            + (f": {v.detail}" if v.detail else "")
        )
    return 0


def _positive_minutes(text: str) -> float:
    """Minutes a run may go without a metric or heartbeat before it counts as dead: a positive,
    finite number (0 or less would reap a run that logged a second ago)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes (a number), got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"must be more than 0 minutes, got {text!r}: a run idle that short may be alive (epochs take minutes)"
        )
    return value


def add_command(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="run bookkeeping")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    rp = runs_sub.add_parser("reap", help="mark RUNNING runs whose process is gone FAILED")
    rp.add_argument("--experiment", default=None, help="only this experiment (default: all)")
    add_tracking_args(rp)
    rp.add_argument(
        "--stale-minutes",
        type=_positive_minutes,
        default=None,
        help="also reap runs of other hosts (or without a recorded process) idle this long",
    )
    rp.set_defaults(func=cmd_runs_reap)
