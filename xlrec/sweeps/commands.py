"""`xlrec sweep` argument parsing."""

from __future__ import annotations

import argparse
import re

from xlrec.errors import ConfigError

_SCI = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _ints(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
        if all(v.is_integer() for v in values):  # "64.0" is 64 (MLproject has no integer type); 1.5 is not
            return [int(v) for v in values]
    except (ValueError, OverflowError):
        pass
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_sweep_command(sub, lenient) -> None:
    p = sub.add_parser("sweep", help="Ray Tune trials with Optuna search (search) or the paper's grid (grid)")
    p.add_argument("--mode", default="search", choices=["search", "grid"])
    p.add_argument("--model", default="xlstm", help="search mode: the model whose architecture is searched")
    p.add_argument("--dataset", default="ml-100k", help="search mode: the dataset")
    p.add_argument("--models", type=_names, default=None, help="grid mode: comma-separated models")
    p.add_argument("--datasets", type=_names, default=None, help="grid mode: comma-separated datasets")
    p.add_argument("--max-lens", type=_ints, default=[32, 64, 128], help="grid mode: max_len values")
    p.add_argument("--seeds", type=_ints, default=[42, 123, 2023], help="grid mode: seeds")
    p.add_argument("--trials", type=lenient(int), default=8, help="search mode: number of Optuna trials")
    p.add_argument("--epochs", type=lenient(int), default=8, help="maximum epochs per trial")
    p.add_argument("--grace-period", type=lenient(int), default=2, help="ASHA: epochs before a trial can be pruned")
    p.add_argument("--seed", type=lenient(int), default=42, help="TPE sampler seed")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional: 0.25 packs 4 trials per GPU")
    p.add_argument("--max-concurrent", type=lenient(int), default=0, help="bound on concurrent trials (0 = Ray's)")
    p.add_argument("--max-failures", type=lenient(int), default=0, help="retries per failed trial")
    p.add_argument(
        "--tracking-uri",
        default=None,
        type=lenient(str),
        help="MLflow server (http://...); default: serve ./mlflow.db locally for the sweep",
    )
    p.add_argument("--experiment", default=None, type=lenient(str))
    p.add_argument(
        "--ray-address", default=None, type=lenient(str), help="existing Ray cluster (else RAY_ADDRESS or local)"
    )
    p.add_argument(
        "--storage-path",
        default=None,
        type=lenient(str),
        help="Ray Tune results (default ./ray_results; in a Ray job, whose working directory Ray "
        "deletes, ~/.xlrec/ray_results; with several hosts, a shared filesystem or s3://)",
    )
    p.add_argument(
        "--study-storage",
        default=None,
        type=lenient(str),
        help="Optuna RDB storage URL (default sqlite:///optuna.db, in ~/.xlrec/ in a Ray job; "
        "PostgreSQL for a shared server)",
    )
    p.add_argument("--name", default=None, type=lenient(str), help="sweep name (needed to --resume it)")
    p.add_argument(
        "--resume", action="store_true", help="continue the sweep of this --name after the driver died (Tuner.restore)"
    )
    p.add_argument("--source", default=None, type=lenient(str), help="dataset mirror directory or base URL")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed training setting for every trial, e.g. --set window_stride=0",
    )
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from xlrec.sweeps.driver import run_sweep
    from xlrec.sweeps.spec import SweepSpec

    if args.mode == "search":
        for flag, given in (("--models", args.models), ("--datasets", args.datasets)):
            if given is not None:  # silently searching only --model would ignore what was asked for
                raise ConfigError(
                    f"{flag} applies to --mode grid only; a search tunes one --model on one "
                    f"--dataset. Pass --mode grid, or --model/--dataset."
                )
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}.")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"--set {key.strip()}: cannot read the value {value!r}; write a number, true/false, "
                f"a string or a [list]."
            ) from None
        if isinstance(parsed, str) and _SCI.fullmatch(parsed.strip()):
            parsed = float(parsed)  # YAML 1.1 reads 1e-3 (no dot) as a string
        overrides[key.strip()] = parsed
    spec = SweepSpec(
        mode=args.mode,
        model=args.model,
        dataset=args.dataset,
        models=args.models or [args.model],
        datasets=args.datasets or [args.dataset],
        max_lens=args.max_lens,
        seeds=args.seeds,
        trials=args.trials,
        epochs=args.epochs,
        grace_period=args.grace_period,
        seed=args.seed,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        ray_address=args.ray_address,
        storage_path=args.storage_path,
        study_storage=args.study_storage,
        name=args.name,
        source=args.source,
        overrides=overrides,
        resume=args.resume,
    )
    run_sweep(spec)
    return 0
