"""`xlrec report`: an experiment's runs in MLflow as a full report (report.md, report.html,
figures and their CSVs, logged back to MLflow: xlrec.report), or, with --table or
--from-csv, as one results table (xlrec.report.tables; docs/results/).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from xlrec.cli.common import add_tracking_args, connect
from xlrec.errors import ConfigError
from xlrec.settings import BEST_VAL_SELECTION_KEY

if TYPE_CHECKING:  # pandas is imported when a report runs, not when the parser is built
    import pandas as pd


def _report_runs(args: argparse.Namespace) -> pd.DataFrame:
    """The export's rows: from --from-csv (no tracking store contacted) or the experiment in MLflow
    (written to --export when asked)."""
    from xlrec.report.tables import export_runs, load_export, write_export

    if args.from_csv:
        if args.export:
            raise ConfigError("--export writes runs read from MLflow; with --from-csv the export already exists.")
        return load_export(args.from_csv)
    connect(args)
    if not args.experiment:
        from xlrec.platform.tracking.read import latest_experiment

        args.experiment = latest_experiment()
    runs = export_runs(args.experiment)
    if args.export:
        print(f"(wrote {write_export(runs, args.export)}: {len(runs)} runs)", file=sys.stderr)
    return runs


def _csv_list(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        for pair in _csv_list(item):
            name, sep, label = pair.partition("=")
            if not sep or not name.strip():
                raise ConfigError(
                    f"--labels {pair!r} is not METRIC=Label; pass e.g. test_recall_at_10='test Recall@10'."
                )
            labels[name.strip()] = label.strip()
    return labels


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "experiment"


def cmd_full_report(args: argparse.Namespace) -> int:
    """The full report of an experiment (or one sweep: --parent) from MLflow."""
    started = time.monotonic()
    connect(args)
    return _full_report(args, started)


def _full_report(args: argparse.Namespace, started: float) -> int:
    from xlrec.report import publish
    from xlrec.report.runs import collect

    rr = collect(args.experiment, args.parent)
    if len(rr.finished) == 0:
        raise ConfigError(
            f"Experiment {rr.experiment!r} has no FINISHED training run"
            + (f" under sweep {args.parent}" if args.parent else "")
            + ": nothing to report. Wait for the sweep to finish, or pass another --experiment."
        )
    out = publish.write(rr, Path(args.out or Path("xlrec-report") / _slug(rr.experiment)))
    where = "" if args.no_log else f"; logged to MLflow run {publish.log(rr, out)} under report/"
    print(
        f"(wrote {out / 'report.md'} and {out / 'report.html'} from {len(rr.finished)} finished runs of "
        f"{rr.experiment!r} in {time.monotonic() - started:.1f} s{where})",
        file=sys.stderr,
    )
    print(out / "report.html")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from xlrec.report.tables import (
        TABLE4_LABELS,
        filter_runs,
        grouped_numbers,
        grouped_table,
        protocol_note,
        table4,
        table4_numbers,
        to_markdown,
        write_export,
    )

    if args.table is None and not (args.from_csv or args.export or args.filter):  # no table asked for
        return cmd_full_report(args)
    args.table = args.table or "table4"
    args.out = "report" if args.out is None else args.out
    runs = _report_runs(args)
    if args.parent:  # one sweep's runs, e.g. a tuning's confirmation among its search trials
        column = "tags.xlrec.sweep_run_id"
        if column not in runs:
            raise ConfigError(
                f"These runs carry no {column} tag: none belongs to a sweep, so --parent selects nothing."
            )
        runs = runs[runs[column] == args.parent]
    runs = filter_runs(runs, args.filter or [])
    labels = _labels(args.labels or [])
    if args.table == "table4":
        table, labels = table4(runs), {**TABLE4_LABELS, **labels}
        numbers = table4_numbers(runs)
    else:
        keys = _csv_list(args.group_by)
        if not keys:
            raise ConfigError("--group-by names no param; pass e.g. --group-by model,exclude_seen.")
        table = grouped_table(runs, keys, _csv_list(args.metrics), order_by=args.order_by)
        numbers = grouped_numbers(runs, keys, _csv_list(args.metrics))
    shown = table.rename(columns=labels)
    markdown = to_markdown(shown, bold=[labels.get(b, b) for b in args.bold or []])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_export(runs, out / "runs.csv")
        numbers.to_csv(out / f"{args.table}.csv", index=False)  # numbers; table.md is the formatted table
        (out / "table.md").write_text(markdown + "\n")
        print(f"(wrote runs.csv, {args.table}.csv and table.md in {out})", file=sys.stderr)
    if len(table) == 0:
        print("(no FINISHED runs match)", file=sys.stderr)
    elif args.table == "table4" and protocol_note(runs):
        print(f"({protocol_note(runs)})", file=sys.stderr)
    print(markdown)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser(
        "report",
        help="an experiment's runs as a report (report.md + report.html, logged to MLflow), or with --table "
        "one results table (markdown on stdout, as in docs/results/), from MLflow or an exported CSV",
    )
    src = rep.add_mutually_exclusive_group()
    src.add_argument(
        "--experiment", help="MLflow experiment whose runs to report (default: the one of the latest xlrec run)"
    )
    src.add_argument("--from-csv", default=None, help="read runs from a CSV written by --export (no MLflow)")
    rep.add_argument("--parent", default=None, help="only this sweep's runs (its parent run id)")
    rep.add_argument("--no-log", action="store_true", help="full report: do not log it to MLflow")
    rep.add_argument("--export", default=None, help="also write the experiment's runs to this CSV")
    rep.add_argument(
        "--table", choices=("table4", "grouped"), default=None, help="one table instead of the full report"
    )
    rep.add_argument("--group-by", default="model", help="grouped: params to group by, e.g. model,exclude_seen")
    rep.add_argument(
        "--metrics",
        default=f"test_recall_at_10,test_ndcg_at_10,test_mrr_at_10,{BEST_VAL_SELECTION_KEY}",
        help="grouped: metrics, each optionally METRIC:FMT with FMT ms4 | mean1 | mean2 | int",
    )
    rep.add_argument("--order-by", default=None, help="grouped: rows by this metric's mean, best first")
    rep.add_argument("--bold", action="append", default=None, help="bold the best cell of this metric (repeatable)")
    rep.add_argument("--labels", action="append", default=None, help="column headers: METRIC=Label,...")
    rep.add_argument("--filter", action="append", default=None, help="keep runs whose param KEY=VALUE (repeatable)")
    rep.add_argument(
        "--out",
        default=None,
        help="full report: its folder (default xlrec-report/EXPERIMENT); --table: directory for runs.csv, "
        "TABLE.csv and table.md (default report; '' writes none)",
    )
    add_tracking_args(rep)
    rep.set_defaults(func=cmd_report)
