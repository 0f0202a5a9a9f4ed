"""`xlrec tune`: its flags, read into a TuneRequest (xlrec.sweeps.tuning) and run."""

from __future__ import annotations

import argparse

from xlrec.cli.common import add_tracking_args
from xlrec.cli.flags import add_flag, add_switch
from xlrec.cli.sweep import flag_type, set_values
from xlrec.settings import settings_of
from xlrec.sweeps.tuning import TuneRequest

_HOST = ("tracking_uri",)  # flags `add_tracking_args` declares with the other commands' wording


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="give every model the same search budget on one dataset, confirm the winners over seeds and "
        "write them as that dataset's defaults",
        description="One Optuna search per model on validation Recall@10 (test is never read to choose), with "
        "equal time (--budget) or equal trials (--trials); each winner re-trained over --seeds; the winners "
        "written to xlrec-defaults/<dataset>.yaml (later train and sweep runs on that data start from them); "
        "a report of the confirmation grid with each search's budget and importances.",
    )
    for info in settings_of(TuneRequest, declared_only=True):
        if info.name in _HOST or info.flag is None:
            continue
        shown = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else info.default
        default = "" if info.default is None else f" [{shown}]"
        if info.is_switch:
            add_switch(p, info.flag[2:], f"{info.help}{default}", f"the opposite of {info.flag}", dest=info.name)
        else:
            add_flag(p, info.flag, dest=info.name, type=flag_type(info), default=None, help=f"{info.help}{default}")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every trial, e.g. --set item_fraction=0.1 (a data variant is tuned as a dataset of "
        "its own)",
    )
    add_tracking_args(p)
    p.set_defaults(func=cmd_tune)


def request_from_args(args: argparse.Namespace) -> TuneRequest:
    req = TuneRequest()
    for info in settings_of(TuneRequest, declared_only=True):
        value = getattr(args, info.name, None)
        if value is not None:
            setattr(req, info.name, value)
    req.overrides = set_values(args.set)
    return req


def cmd_tune(args: argparse.Namespace) -> int:
    from xlrec.sweeps.tuning import run_tuning

    run_tuning(request_from_args(args))
    return 0
