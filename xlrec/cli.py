"""Command-line interface: `xlrec data prepare`, `xlrec train`, and the platform commands.

Every command turns user mistakes (`XlrecError`) into one paragraph on stderr and a
non-zero exit code, without a traceback. (Just over 300 lines: the train/prepare flag table,
which mirrors the config's fields one per line, and the signal handling that closes runs.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xlrec.errors import XlrecError

# Flags that map one-to-one onto settings (dest = the flat setting name of xlrec.config).
_TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("--max-len", int, "maximum history length L"),
    ("--seed", int, "random seed (same seed, config and device give identical metrics)"),
    ("--epochs", int, "maximum number of epochs"),
    ("--embedding-dim", int, "embedding / hidden size D"),
    ("--num-heads", int, "attention / mLSTM heads"),
    ("--num-blocks", int, "number of blocks (layers)"),
    ("--dropout", float, "dropout probability"),
    ("--lr", float, "Adam learning rate"),
    ("--weight-decay", float, "Adam weight decay"),
    ("--adam-beta2", float, "Adam second-moment decay (torch default 0.999; the original SASRec 0.98)"),
    ("--scheduler", str, "learning-rate schedule: none | step | cosine"),
    ("--batch-size", int, "training batch size (windows, or prefixes in prefix mode)"),
    ("--grad-clip", float, "gradient-norm clipping (0 disables)"),
    ("--ema-decay", float, "moving average of the weights, e.g. 0.99 (0 disables)"),
    ("--patience", int, "early-stopping patience in epochs (validation Recall@10)"),
    ("--min-epochs", int, "early stopping may end the run only from this epoch on"),
    ("--sample-mode", str, "window (all positions) | prefix (the paper's one prefix per target)"),
    (
        "--window-stride",
        int,
        "window mode: targets per window; smaller overlaps windows for more context (0 = max_len)",
    ),
    ("--mask-prob", float, "BERT4Rec masking probability"),
    ("--cold-start-threshold", int, "users with fewer interactions form the cold-start group"),
    ("--eval-batch-size", int, "evaluation batch size"),
    ("--device", str, "auto | cpu | cuda | cuda:N"),
    ("--kernel", str, "mLSTM kernels: auto | triton | native"),
    ("--num-threads", int, "torch CPU threads (0 = default)"),
]
_PREP_FLAGS: list[tuple[str, type, str]] = [
    ("--min-rating", float, "keep only ratings >= this (default: every rating is an interaction)"),
    ("--min-user-interactions", int, "k-core: minimum interactions per user"),
    ("--min-item-interactions", int, "k-core: minimum interactions per item"),
    ("--user-fraction", float, "keep this share of the users (a fixed random subset; scaling studies)"),
    ("--synthetic-users", int, "synthetic dataset: number of users"),
    ("--synthetic-items", int, "synthetic dataset: number of items"),
    ("--synthetic-mean-len", int, "synthetic dataset: mean sequence length"),
    ("--synthetic-seed", int, "synthetic dataset: generator seed"),
]


def _lenient(typ: type) -> Callable[[str], Any]:
    """Parse a flag value; "" means "not given" and "50.0" is a valid int (MLproject passes
    empty strings for unset parameters and has no integer type)."""

    def parse(text: str):
        if text == "":
            return None
        if typ is int:
            value = float(text)
            if value != int(value):
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
            return int(value)
        return typ(text)

    parse.__name__ = typ.__name__
    return parse


def _add_switch(p: argparse.ArgumentParser, name: str, on_help: str, off_help: str) -> None:
    """`--NAME` (or `--NAME=false`, as MLproject passes it) and `--no-NAME`; unset is None (the default)."""
    dest = name.replace("-", "_")
    group = p.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=dest, nargs="?", const=True, type=_bool, default=None, help=on_help)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=off_help)


def _bool(text: str) -> bool | None:
    if text == "":
        return None
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_flags(p: argparse.ArgumentParser, flags: list[tuple[str, type, str]]) -> None:
    for flag, typ, help_ in flags:
        p.add_argument(flag, type=_lenient(typ), default=None, help=help_)


def _overrides(args: argparse.Namespace, flags: list[tuple[str, type, str]]) -> dict[str, Any]:
    return {f[0][2:].replace("-", "_"): getattr(args, f[0][2:].replace("-", "_")) for f in flags}


def _add_run_args(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        p.add_argument("--model", default=None, help="xlstm | xlstm-s | sasrec | bert4rec | gru4rec | lstm | pop")
    p.add_argument(
        "--dataset",
        default=None,
        help="ml-100k | ml-1m | ml-10m | ml-20m | steam | synthetic, or the path of your own file "
        "(.inter, .txt, .csv, .tsv, .parquet)",
    )
    p.add_argument(
        "--columns",
        default=None,
        type=_lenient(str),
        help="your file's columns: user=COL,item=COL[,time=COL][,rating=COL][,title_item=COL,title=COL]",
    )
    p.add_argument(
        "--titles", default=None, type=_lenient(str), help="CSV/TSV of item ids and titles for your own file"
    )
    p.add_argument("--config", default=None, type=_lenient(str), help="YAML file with settings (flags win)")
    p.add_argument(
        "--source", default=None, type=_lenient(str), help="mirror directory or base URL (else XLREC_DATA_MIRROR)"
    )
    _add_switch(
        p,
        "exclude-seen",
        "rank only items not in the user's history (default; --exclude-seen=false turns it off)",
        "rank every item (the paper's protocol)",
    )
    _add_switch(
        p,
        "cuda-graph",
        "on CUDA, replay the training step of causal models as one CUDA graph (default)",
        "run every training step eagerly (for debugging or comparison)",
    )
    _add_switch(
        p,
        "compile",
        "on CUDA, train through a torch.compile'd encoder (fused kernels; compiles once per process)",
        "train the encoder eagerly (default)",
    )
    _add_flags(p, _TRAIN_FLAGS)
    _add_flags(p, _PREP_FLAGS)


def resolve_from_args(args: argparse.Namespace):
    from xlrec.config import resolve_config

    overrides = {**_overrides(args, _TRAIN_FLAGS), **_overrides(args, _PREP_FLAGS)}
    overrides["exclude_seen"] = args.exclude_seen
    overrides["cuda_graph"] = args.cuda_graph
    overrides["compile"] = args.compile
    overrides["source"] = args.source
    overrides["columns"] = args.columns
    overrides["titles_file"] = str(Path(args.titles).expanduser().absolute()) if args.titles else None
    cfg = resolve_config(getattr(args, "model", None), args.dataset, args.config, overrides)
    preflight(cfg)
    return cfg


def preflight(cfg) -> None:
    """Reject unknown names and unusable devices before any data or training work."""
    from xlrec.data_prep import DATASETS
    from xlrec.device import select_runtime
    from xlrec.errors import ConfigError
    from xlrec.rec_models import MODELS

    if cfg.model not in MODELS:
        raise ConfigError(f"Unknown model {cfg.model!r}. Choose one of: {', '.join(MODELS)}.")
    if cfg.dataset not in DATASETS and cfg.data_file is None:
        raise ConfigError(
            f"Unknown dataset {cfg.dataset!r}. Choose one of: {', '.join(DATASETS)}, or pass the path of "
            f"your own file (.inter, .txt, .csv, .tsv, .parquet)."
        )
    if cfg.defaults_from:
        print(f"[xlrec] {cfg.data_file}: dataset {cfg.dataset}, defaults from {cfg.defaults_from}", file=sys.stderr)
    select_runtime(cfg.device, cfg.kernel, cfg.amp)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from xlrec.data_prep import format_stats, prepare_config

    cfg = resolve_from_args(args)
    data = prepare_config(cfg)
    print(format_stats(cfg.dataset, data.stats))
    where = "from cache" if data.from_cache else "processed and cached"
    print(f"({where}: {data.cache_path})", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from xlrec.data_prep import prepare_config
    from xlrec.experiment import train
    from xlrec.training.events import Callback
    from xlrec.training.progress import ProgressPrinter

    cfg = resolve_from_args(args)
    if not args.no_tracking:
        from xlrec.platform.runs import pause_point

        pause_point("start")  # test hook: a signal before the run exists
        from xlrec.platform.tracking_uri import check_reachable, tracking_uri

        check_reachable(tracking_uri(args.tracking_uri))  # fail fast, before any data or training work
    data = prepare_config(cfg)
    callbacks: list[Callback] = [ProgressPrinter()]
    tracker = _tracker(args, data)
    if tracker is not None:
        callbacks.append(tracker)
    result = train(cfg, data, callbacks)
    print(json.dumps(result.summary()))
    return 0


def _tracker(args: argparse.Namespace, data):
    """The MLflow callback when the platform is available (see xlrec.platform), from the
    tracking flags (xlrec.platform.commands.add_train_tracking_args)."""
    if args.no_tracking:
        return None
    try:
        from xlrec.platform.tracking import MlflowTracker
    except ImportError:
        return None
    return MlflowTracker(
        data,
        uri=args.tracking_uri,
        experiment=args.experiment,
        run_name=args.run_name,
        parent_run_id=args.parent_run_id,
        register=not args.no_register,
        system_metrics=args.system_metrics,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="acquire, preprocess and cache a dataset; print Table-1 statistics")
    _add_run_args(prep, with_model=False)
    prep.set_defaults(func=cmd_data_prepare)

    train = sub.add_parser("train", help="train one model on one dataset and print one JSON line")
    _add_run_args(train)
    train.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    try:
        from xlrec.platform.commands import add_train_tracking_args
    except ImportError:
        pass
    else:
        add_train_tracking_args(train)
    train.set_defaults(func=cmd_train)

    try:
        from xlrec.platform.commands import add_platform_commands
    except ImportError:
        pass
    else:
        add_platform_commands(sub, _add_run_args)
    try:
        from xlrec.platform.runs import add_runs_command
    except ImportError:
        pass
    else:
        add_runs_command(sub)
    try:
        from xlrec.sweeps.commands import add_sweep_command
    except ImportError:
        pass
    else:
        add_sweep_command(sub, _lenient)
    return parser


_stopping = False  # set once an error or signal is being handled: later signals wait for the cleanup


def _terminate_as_interrupt(signum, frame) -> None:
    # SIGINT and `kill`/Ray/`mlflow run` SIGTERM alike unwind as KeyboardInterrupt, so every run
    # this process holds ends KILLED; a repeated signal must not cut that cleanup short.
    if not _stopping:
        import signal

        raise KeyboardInterrupt(signal.Signals(signum).name)


def _close_runs(args: argparse.Namespace, exc: BaseException) -> None:
    """End the MLflow runs this process still holds (FAILED or KILLED), whatever step it was in."""
    import os

    try:
        from xlrec.platform import runs
    except ImportError:  # no platform, no runs
        return
    adopted = None
    if (
        getattr(args, "command", None) == "train"
        and not getattr(args, "no_tracking", True)
        and os.environ.get("MLFLOW_RUN_ID")
    ):  # `mlflow run` made this run before we started
        from xlrec.platform.tracking_uri import tracking_uri

        adopted = (os.environ["MLFLOW_RUN_ID"], tracking_uri(getattr(args, "tracking_uri", None)))
    try:
        runs.close_open_runs(exc, adopted)
    except Exception as close_exc:  # never hide the original error behind a cleanup error
        print(f"xlrec: warning: could not close the MLflow run: {close_exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import signal

    global _stopping
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    signal.signal(signal.SIGINT, _terminate_as_interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BaseException as exc:
        _stopping = True
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
