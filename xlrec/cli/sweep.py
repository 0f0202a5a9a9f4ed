"""`xlrec sweep`: its flags, read into a sweep spec (xlrec.sweeps.spec) and run (xlrec.sweeps.driver)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from xlrec.cli.flags import add_flag, add_switch, lenient
from xlrec.errors import ConfigError
from xlrec.settings import SettingInfo, settings_of
from xlrec.settings.types import inner_type
from xlrec.sweeps.spec import SweepSpec

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


def flag_type(info: SettingInfo) -> Callable[[str], Any]:
    if info.parse is not None:
        parse = info.parse

        def parsed(text: str):
            if text == "":
                return None
            try:
                return parse(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"expected {exc}, got {text!r}") from None

        return parsed
    return lenient(inner_type(info.hint))


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="Ray Tune trials: an Optuna search or a grid, from a spec file (--spec) or flags",
        description="Flags given with --spec override the spec's values (e.g. --epochs 2 for a quick check). "
        "Defaults (without a spec): a search of 8 trials of xlstm on ml-100k.",
    )
    p.add_argument("--spec", default=None, type=lenient(str), help="sweep spec YAML (see configs/sweeps/)")
    p.add_argument("--model", default=None, type=lenient(str), help="search: the model whose settings are searched")
    p.add_argument("--dataset", default=None, type=lenient(str), help="search: the dataset")
    p.add_argument("--models", type=_names, default=None, help="grid: comma-separated models")
    p.add_argument("--datasets", type=_names, default=None, help="grid: comma-separated datasets")
    p.add_argument("--max-lens", type=_ints, default=None, help="grid: max_len values (default 32,64,128)")
    p.add_argument("--seeds", type=_ints, default=None, help="grid: seeds (default 42,123,2023)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed training setting for every trial, e.g. --set window_stride=0 (added to the spec's `fixed`)",
    )
    for info in settings_of(SweepSpec, declared_only=True):
        if info.flag is None:
            continue
        where = f" (spec: {info.key})" if info.key else ""
        default = "" if info.default is None else f" [{str(info.default).lower() if info.is_switch else info.default}]"
        text = f"{info.help}{where}{default}"
        if info.is_switch:
            add_switch(p, info.flag[2:], text, f"the opposite of {info.flag}", dest=info.name)
        else:
            add_flag(p, info.flag, dest=info.name, type=flag_type(info), default=None, help=text)
    p.set_defaults(func=cmd_sweep)


def set_values(items: list[str]) -> dict:
    """`--set KEY=VALUE` items as settings (values read as YAML)."""
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


def spec_from_args(args: argparse.Namespace):
    """The SweepSpec of a command line: the spec file's (or the defaults'), with every given flag on top."""
    from xlrec.sweeps.spec import SweepSpec
    from xlrec.sweeps.spec_file import load_spec

    spec = load_spec(args.spec) if args.spec else SweepSpec()
    spec.mode = args.mode or spec.mode
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
    for info in settings_of(SweepSpec, declared_only=True):
        value = getattr(args, info.name, None)
        if value is not None and info.name != "mode":
            setattr(spec, info.name, value)
    if args.seeds is not None:
        spec.seeds = args.seeds
    spec.overrides.update(set_values(args.set))
    return spec


def cmd_sweep(args: argparse.Namespace) -> int:
    from xlrec.sweeps.driver import run_sweep

    run_sweep(spec_from_args(args))
    return 0
