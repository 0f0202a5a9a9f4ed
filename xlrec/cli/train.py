"""`xlrec data prepare` and `xlrec train`: their flags come from the settings dataclasses
(xlrec.cli.flags), their config from xlrec.config, their tracking from xlrec.platform."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlrec.catalog import models
from xlrec.cli.common import add_tracking_args
from xlrec.cli.flags import add_setting_flags, given
from xlrec.settings import PrepConfig, SettingInfo, TrainConfig, settings_of

if TYPE_CHECKING:
    from xlrec.catalog.datasets import DataShape
    from xlrec.data_prep import PreparedDataset


def run_settings() -> list[SettingInfo]:
    return list(settings_of(TrainConfig, skip=("arch", "prep")))


def prep_settings() -> list[SettingInfo]:
    return list(settings_of(PrepConfig))


def model_settings() -> list[SettingInfo]:
    """Every registered model's own settings (a name shared by families is one flag)."""
    seen: dict[str, SettingInfo] = {}
    for cls in models.all_settings_classes().values():
        for info in settings_of(cls):
            seen.setdefault(info.name, info)
    return list(seen.values())


def add_run_args(p: argparse.ArgumentParser, with_model: bool = True, model_flags: bool = True) -> None:
    """--config and every setting's flag: the run's, preprocessing's and (for train) every model's."""
    p.add_argument("--config", default=None, help="YAML file with settings (flags win over it)")
    infos = [s for s in run_settings() if with_model or s.name != "model"]
    groups = [("run settings", infos), ("preprocessing", prep_settings())]
    if model_flags:
        groups.append(("model settings (each model reads its own)", model_settings()))
    for title, group in groups:
        add_setting_flags(p.add_argument_group(title), group)


def resolve_from_args(args: argparse.Namespace, shape: DataShape | None = None) -> TrainConfig:
    """The run's config from its flags; with `shape` (a user's file, once its data is prepared) the
    rule for an unseen dataset adapts the base's defaults to it (checked before: it only shortens
    max_len and raises dropout and patience, so the first config's preflight holds)."""
    from xlrec.config import resolve_config

    overrides: dict[str, Any] = {}
    for name in [*TrainConfig.__dataclass_fields__, *PrepConfig.__dataclass_fields__]:
        if name not in ("arch", "prep") and hasattr(args, name):
            overrides[name] = getattr(args, name)
    if getattr(args, "model_flags", False):
        overrides.update(given(args, model_settings()))
    if overrides.get("titles_file"):
        overrides["titles_file"] = str(Path(overrides["titles_file"]).expanduser().absolute())
    model, dataset = overrides.pop("model", None), overrides.pop("dataset", None)
    tuned = None
    if args.command == "train":  # the defaults `xlrec tune` wrote for this data
        from xlrec.config.defaults import load_tuned, tuned_dir

        tuned = load_tuned(tuned_dir(args.defaults_dir))
    cfg = resolve_config(model, dataset, args.config, overrides, shape=shape, tuned=tuned)
    if shape is None:
        preflight(cfg, data_only=args.command == "data")
        if cfg.tuned_defaults:
            print(
                f"[xlrec] {cfg.model} on {cfg.dataset} starts from the tuned defaults in {cfg.tuned_defaults}; "
                f"--config and flags win over them (--defaults-dir none: the packaged defaults alone)",
                file=sys.stderr,
            )
    return cfg


def shaped_for_data(args: argparse.Namespace, cfg: TrainConfig, data: PreparedDataset) -> TrainConfig:
    """For a dataset of the user's own: the config again with the rule for its sequences, and a line
    saying what the rule changed (nothing for a named dataset)."""
    from xlrec.data_prep import data_shape

    if not cfg.data_file:
        return cfg
    shape = data_shape(data)
    shaped = resolve_from_args(args, shape)
    changed = [
        f"{key} {_setting(cfg, key)} -> {_setting(shaped, key)}"
        for key in ("max_len", "window_stride", "dropout", "patience")
        if _setting(cfg, key) != _setting(shaped, key)
    ]
    if changed:
        print(
            f"[xlrec] {cfg.dataset}: {shape.users:,} users, mean sequence length {shape.mean_len:.1f}, 0.9 quantile "
            f"{shape.len_p90:.0f}; the rule for an unseen dataset (xlrec/defaults.yaml `unseen`) set "
            f"{', '.join(changed)}; a --config file or a flag overrides it",
            file=sys.stderr,
        )
    return shaped


def preflight(cfg: TrainConfig, data_only: bool = False) -> None:
    """Reject unknown names, unusable devices and runs too big for their device (an estimate from
    the settings: xlrec.training.footprint) before any data or training work."""
    from xlrec.catalog.datasets import DATASETS, unknown_dataset
    from xlrec.device import select_runtime
    from xlrec.training.footprint import check_fits

    if cfg.dataset not in DATASETS and cfg.data_file is None:
        raise unknown_dataset(cfg.dataset)
    if cfg.defaults_from:
        print(f"[xlrec] {cfg.data_file}: dataset {cfg.dataset}, defaults from {cfg.defaults_from}", file=sys.stderr)
    rt = select_runtime(cfg.device, cfg.kernel, cfg.amp)
    check_fits(cfg, rt.device, data_only=data_only)


def _setting(cfg: TrainConfig, key: str) -> Any:
    return getattr(cfg.arch, key) if hasattr(cfg.arch, key) else getattr(cfg, key, None)


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
        from xlrec.platform.tracking.uri import check_reachable, tracking_uri

        check_reachable(tracking_uri(args.tracking_uri))  # fail fast, before any data or training work
    data = prepare_config(cfg)
    cfg = shaped_for_data(args, cfg, data)
    callbacks: list[Callback] = []
    if not args.no_tracking:  # first: an epoch is logged before it is printed
        from xlrec.platform.tracking.train_run import MlflowTracker

        callbacks.append(
            MlflowTracker(
                data,
                uri=args.tracking_uri,
                experiment=args.experiment,
                run_name=args.run_name,
                parent_run_id=args.parent_run_id,
                register=not args.no_register,
                system_metrics=args.system_metrics,
            )
        )
    callbacks.append(ProgressPrinter())
    result = train(cfg, data, callbacks)
    print(json.dumps(result.summary()))
    return 0


def add_commands(sub: argparse._SubParsersAction, model_flags: bool) -> None:
    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="acquire, preprocess and cache a dataset; print Table-1 statistics")
    add_run_args(prep, with_model=False, model_flags=False)
    prep.set_defaults(func=cmd_data_prepare, model_flags=False)

    train = sub.add_parser(
        "train",
        help="train one model on one dataset and print one JSON line",
        description="Every setting has a flag; flags win over --config, which wins over the defaults "
        "(xlrec/defaults.yaml, or a plugin's own defaults file).",
    )
    add_run_args(train, model_flags=model_flags)
    train.add_argument(
        "--defaults-dir",
        default=None,
        help="where the defaults `xlrec tune` writes are read (default XLREC_DEFAULTS_DIR or ./xlrec-defaults; "
        "none: the packaged defaults alone)",
    )
    track = train.add_argument_group("tracking")
    track.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_tracking_args(track)
    track.add_argument("--experiment", default=None, help="MLflow experiment (default: xlrec-<dataset>)")
    track.add_argument("--run-name", default=None, help="MLflow run name")
    track.add_argument("--parent-run-id", default=None, help="nest this run under a parent run")
    track.add_argument("--system-metrics", action="store_true", help="also log MLflow system metrics")
    track.add_argument("--no-register", action="store_true", help="log the model but do not register/promote it")
    train.set_defaults(func=cmd_train, model_flags=model_flags)
