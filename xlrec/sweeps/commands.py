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


def add_sweep_command(sub, lenient_parse) -> None:
    def lenient(typ):
        """As the CLI's lenient parsing, and `spec` also means "not given": MLproject's sweep entry
        passes every parameter, and its default `spec` keeps the spec file's value."""
        parse = lenient_parse(typ)

        def spec_or(text: str):
            return None if text == "spec" else parse(text)

        spec_or.__name__ = typ.__name__
        return spec_or

    p = sub.add_parser(
        "sweep",
        help="Ray Tune trials: an Optuna search or a grid, from a spec file (--spec) or flags",
        description="Flags given with --spec override the spec's values (e.g. --epochs 2 for a quick check). "
        "Defaults (without a spec): a search of 8 trials of xlstm on ml-100k.",
    )
    p.add_argument("--spec", default=None, type=lenient(str), help="sweep spec YAML (see configs/sweeps/)")
    p.add_argument("--mode", default=None, choices=["search", "grid"])
    p.add_argument(
        "--model", default=None, type=lenient(str), help="search mode: the model whose architecture is searched"
    )
    p.add_argument("--dataset", default=None, type=lenient(str), help="search mode: the dataset")
    p.add_argument("--models", type=_names, default=None, help="grid mode: comma-separated models")
    p.add_argument("--datasets", type=_names, default=None, help="grid mode: comma-separated datasets")
    p.add_argument("--max-lens", type=_ints, default=None, help="grid mode: max_len values (default 32,64,128)")
    p.add_argument("--seeds", type=_ints, default=None, help="grid mode: seeds (default 42,123,2023)")
    p.add_argument("--trials", type=lenient(int), default=None, help="search mode: number of Optuna trials (8)")
    p.add_argument("--epochs", type=lenient(int), default=None, help="maximum epochs per trial (8)")
    p.add_argument("--grace-period", type=lenient(int), default=None, help="ASHA: epochs before pruning (2)")
    p.add_argument("--seed", type=lenient(int), default=None, help="TPE sampler seed (42)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="(1)")
    p.add_argument(
        "--gpus-per-trial",
        type=_gpu_share,
        default=None,
        help="fractional: 0.25 packs 4 trials per GPU; auto spreads the trials at once over every GPU (0)",
    )
    p.add_argument("--max-concurrent", type=lenient(int), default=None, help="bound on concurrent trials (0 = Ray's)")
    p.add_argument("--max-failures", type=lenient(int), default=None, help="retries per failed trial (0)")
    p.add_argument(
        "--group-seeds",
        action="store_true",
        default=None,
        help="grid mode: a cell's seeds train together in one trial process, a thread and CUDA stream each, "
        "each its own MLflow run (--gpus-per-trial is then the group's share)",
    )
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
        help="fixed training setting for every trial, e.g. --set window_stride=0 (added to the spec's `fixed`)",
    )
    p.set_defaults(func=cmd_sweep)


def _gpu_share(text: str) -> float | str:
    """--gpus-per-trial: a number, or `auto`."""
    if text.strip() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def _set_values(items: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in items:
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
    return overrides


# flag -> SweepSpec field, for the flags that map one to one
_PLAIN = {
    "trials": "trials",
    "epochs": "epochs",
    "grace_period": "grace_period",
    "seed": "seed",
    "cpus_per_trial": "cpus_per_trial",
    "gpus_per_trial": "gpus_per_trial",
    "max_concurrent": "max_concurrent",
    "max_failures": "max_failures",
    "group_seeds": "group_seeds",
    "seeds": "seeds",
    "tracking_uri": "tracking_uri",
    "experiment": "experiment",
    "ray_address": "ray_address",
    "storage_path": "storage_path",
    "study_storage": "study_storage",
    "name": "name",
    "source": "source",
    "resume": "resume",
}


def spec_from_args(args: argparse.Namespace):
    """The SweepSpec of a command line: the spec file's (or the defaults'), with every given flag on top."""
    from xlrec.sweeps.spec import SweepSpec
    from xlrec.sweeps.spec_file import load_spec

    spec = load_spec(args.spec) if args.spec else SweepSpec()
    if args.mode:
        spec.mode = args.mode
    if spec.mode == "search":
        for flag, given in (("--models", args.models), ("--datasets", args.datasets)):
            if given is not None and not args.spec:  # silently searching only --model would ignore the ask
                raise ConfigError(
                    f"{flag} applies to --mode grid only; a search tunes one --model on one "
                    f"--dataset. Pass --mode grid, or --model/--dataset."
                )
    models = args.models or ([args.model] if args.model else None)
    datasets = args.datasets or ([args.dataset] if args.dataset else None)
    if models:
        spec.models = models
        spec.per_model = {m: v for m, v in spec.per_model.items() if m in models}
    if datasets:
        spec.datasets = datasets
    if args.max_lens is not None:  # the max_len axis replaced, the spec's other axes kept
        others = [{k: v for k, v in c.items() if k != "max_len"} for c in spec.grid]
        others = [dict(c) for c in {tuple(sorted(c.items())): c for c in others}.values()]
        spec.grid = [{**c, "max_len": L} for c in others for L in args.max_lens]
    for flag, field_name in _PLAIN.items():
        value = getattr(args, flag)
        if value is not None and value is not False:
            setattr(spec, field_name, value)
    if args.gpus_per_trial is not None:  # a number given replaces the spec's auto
        spec.gpus_auto = args.gpus_per_trial == "auto"
        spec.gpus_per_trial = 0.0 if spec.gpus_auto else args.gpus_per_trial
    spec.overrides.update(_set_values(args.set))
    return spec


def cmd_sweep(args: argparse.Namespace) -> int:
    from xlrec.sweeps.driver import run_sweep

    run_sweep(spec_from_args(args))
    return 0
