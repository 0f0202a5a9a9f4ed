"""Config resolution: the layers of defaults, a --config file and flags, checked into one `TrainConfig`.

Resolution order (later wins): the dataclass defaults (xlrec.settings), the dataset's and then the
model's defaults for that dataset (`xlrec/defaults.yaml`, or a plugin's own defaults file: see
xlrec.config.defaults), for a dataset of the user's own the rule that adapts those to its
sequences (`shape`, read from the prepared data one floor up), a YAML file (`--config`), then
flags. `build_config` is the one place a config is assembled and checked, whatever the source:
flags and YAML through `resolve_config`, a saved model through xlrec.platform.registry.saved_config.
Model names and dataset names mean what the registries one floor down say (xlrec.catalog).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xlrec.catalog import datasets, models
from xlrec.config.defaults import (
    data_key,
    dataset_defaults,
    load_yaml,
    model_defaults,
    shape_defaults,
    tuned_entry,
)
from xlrec.errors import ConfigError
from xlrec.settings import (
    PREP_HINTS,
    RUN_HINTS,
    ModelSettings,
    PrepConfig,
    TrainConfig,
    check,
    coerce,
    settings_of,
    show,
)


def settings_class(model: str) -> type[ModelSettings]:
    return models.settings_class(model)


def arch_hints() -> dict[str, Any]:
    """Every family's setting -> its annotation (a key has the same type in every family that has it)."""
    hints: dict[str, Any] = {}
    for cls in models.all_settings_classes().values():
        hints.update({k: v for k, v in typing.get_type_hints(cls).items() if k != "exclusive"})
    return hints


def setting_names() -> set[str]:
    """Every key a user may set: the run's, any family's, the preprocessing ones and `prep` itself."""
    return {*RUN_HINTS, *arch_hints(), *PREP_HINTS, "prep"}


def _merge(values: dict[str, Any], layer: Mapping[str, Any], origin: str) -> None:
    """Type-check the settings of one layer (defaults, a file, flags) and lay them over `values`."""
    hints = {**RUN_HINTS, **arch_hints()}
    for key, value in layer.items():
        if value is None:
            continue
        if key == "prep":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: 'prep' must be a mapping of preprocessing settings, got {show(value)}.")
            unknown = set(value) - set(PREP_HINTS)
            if unknown:
                raise ConfigError(
                    f"{origin}: unknown preprocessing setting(s) {sorted(map(str, unknown))}. "
                    f"Known settings are: {', '.join(sorted(PREP_HINTS))}."
                )
            values["prep"].update(
                {k: coerce(f"prep.{k}", v, PREP_HINTS[k], origin) for k, v in value.items() if v is not None}
            )
        elif key in PREP_HINTS:
            values["prep"][key] = coerce(key, value, PREP_HINTS[key], origin)
        elif key in hints:
            values[key] = coerce(key, value, hints[key], origin)
        else:
            raise ConfigError(
                f"{origin}: unknown setting {show(key)}. Known settings are: {', '.join(sorted(setting_names()))}."
            )


def resolve_config(
    model: str | None = None,
    dataset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    shape: datasets.DataShape | None = None,
    tuned: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Build the final config: defaults < dataset defaults < model defaults on that dataset < (a user's
    file: the rule for its `shape`) < the model's tuned defaults for this data (`tuned`: the files
    `xlrec tune` wrote, xlrec.config.defaults.load_tuned) < YAML < flags."""
    file_values = load_yaml(config_file) if config_file else {}
    overrides = dict(overrides or {})
    for values, origin in ((file_values, f"config file {config_file}"), (overrides, "command line")):
        for key in ("model", "dataset"):  # needed as names before anything else is merged
            if values.get(key) is not None:
                values[key] = coerce(key, values[key], str, origin)
    dataset = dataset or overrides.pop("dataset", None) or file_values.get("dataset") or TrainConfig.dataset
    model = model or overrides.pop("model", None) or file_values.get("model") or TrainConfig.model
    model = models.get(model).name  # `package.module:Class` registers the class under its own name
    overrides.pop("dataset", None)
    overrides.pop("model", None)
    merged: dict[str, Any] = {"model": model, "dataset": dataset, "prep": {}}
    given_file = overrides.get("data_file") or file_values.get("data_file")  # a saved config.yaml as --config
    merged.update(_user_file(dataset, given_file, overrides.get("defaults_from") or file_values.get("defaults_from")))
    defaults = merged.get("defaults_from") or dataset
    for layer, origin in (
        (dataset_defaults(defaults), f"defaults for {defaults}"),
        (model_defaults(model, defaults), f"defaults for {model} on {defaults}"),
    ):
        _merge(merged, _settings_only(layer), origin)
    shaped = (_shaped(model, merged, shape), f"defaults for {merged['dataset']}'s sequences")
    top = [
        (_settings_only(file_values), f"config file {config_file}"),
        (_settings_only(overrides), "command line"),
    ]
    final = _layered(merged, [shaped, *top])
    if tuned:  # the data is known once every layer has set its preprocessing: its key finds the entry
        entry, tuned_from = tuned_entry(tuned, tuned_key(build_config(_strided(final, file_values, overrides))), model)
        if entry and tuned_from:
            own = {k: v for k, v in entry.items() if k not in ("prep", *PREP_HINTS)}  # a data variant is its key
            final = _layered(merged, [shaped, (_settings_only(own), f"tuned defaults {tuned_from}"), *top])
            final["tuned_defaults"] = tuned_from
    return build_config(_strided(final, file_values, overrides))


def tuned_key(cfg: TrainConfig) -> str:
    """The name of the tuned-defaults file for `cfg`'s data (xlrec.config.defaults.data_key): its
    dataset, and the preprocessing settings that differ from that dataset's defaults."""
    defaults = cfg.defaults_from or cfg.dataset
    named = dataclasses.asdict(PrepConfig())
    for layer in (dataset_defaults(defaults), model_defaults(cfg.model, defaults)):
        named.update(layer.get("prep") or {})
        named.update({k: v for k, v in layer.items() if k in PREP_HINTS})
    variant = {k: v for k, v in dataclasses.asdict(cfg.prep).items() if named.get(k) != v}
    return data_key(cfg.dataset, variant)


def _strided(values: dict[str, Any], file_values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A default stride chosen for a longer max_len than the user's: non-overlapping windows."""
    stride_given = "window_stride" in file_values or "window_stride" in overrides
    if not stride_given and values.get("window_stride", 0) > values.get("max_len", TrainConfig.max_len):
        return {**values, "window_stride": 0}
    return values


def _settings_only(layer: Mapping[str, Any]) -> dict[str, Any]:
    """A layer's settings: the names (model, dataset) and a user file's location are set apart."""
    return {k: v for k, v in layer.items() if k not in ("model", "dataset", *_FILE_KEYS)}


def _layered(merged: dict[str, Any], layers: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    """`merged` with `layers` laid over it in order (a copy: resolution tries the layers twice)."""
    out = copy.deepcopy(merged)
    for layer, origin in layers:
        _merge(out, layer, origin)
    return out


_FILE_KEYS = ("data_file", "defaults_from")  # set from --dataset PATH, not merged as layers


def _shaped(model: str, merged: dict[str, Any], shape: datasets.DataShape | None) -> dict[str, Any]:
    """The rule for an unseen dataset's `shape` (a user's file only), over the base's defaults merged so far."""
    if shape is None or not merged.get("defaults_from"):
        return {}
    base = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    own = {f.name: f.default for f in dataclasses.fields(settings_class(model))}
    current = {**base, **own, **{k: v for k, v in merged.items() if k != "prep"}}
    return shape_defaults(shape, current, {*base, *own})


def _user_file(dataset: str, given_file: Any, defaults_from: Any) -> dict[str, Any]:
    """For `--dataset PATH` (or a config's `data_file`): the file's name, absolute path and the named
    dataset whose defaults it starts from; nothing for a named dataset."""
    if given_file is not None and dataset not in datasets.DATASETS and not datasets.looks_like_file(dataset):
        dataset = coerce("data_file", given_file, str, "config")  # `dataset: my-data` with its data_file
    if not datasets.is_user_file(dataset):
        return {}
    path = datasets.resolve_path(dataset)
    if defaults_from is None:
        defaults_from = datasets.nearest_defaults(datasets.count_rows(path))
    return {
        "dataset": datasets.dataset_name(path),
        "data_file": str(path),
        "defaults_from": coerce("defaults_from", defaults_from, str, "config"),
    }


def build_config(values: Mapping[str, Any]) -> TrainConfig:
    """The one place a TrainConfig is assembled and checked, whatever the source.

    `values`: flat settings already of their annotated types (`resolve_config` coerces flags and
    YAML; xlrec.platform.registry.model_format checks a saved config.yaml more strictly), `prep` nested;
    a setting left out keeps its dataclass default. A setting of another model family is ignored:
    a sweep passes the same `--set` values and search space (num_heads, ...) to every model it
    trains, and config.yaml files written before the settings were split carry every family's
    keys. Only a family's `exclusive` settings, given a value other than their default, are refused.
    """
    family = settings_class(values.get("model", TrainConfig.model))
    own = {f.name for f in dataclasses.fields(family)}
    run = {k: v for k, v in values.items() if k in RUN_HINTS}
    arch = {k: v for k, v in values.items() if k in own}
    foreign = {k: v for k, v in values.items() if k not in RUN_HINTS and k not in own and k != "prep"}
    cfg = TrainConfig(**run, arch=family(**arch), prep=PrepConfig(**values.get("prep", {})))
    validate(cfg)
    _refuse_exclusive(cfg.model, foreign)
    return cfg


def _refuse_exclusive(model: str, foreign: Mapping[str, Any]) -> None:
    given: dict[str, list[str]] = {}  # an exclusive setting given a value other than its default -> its families
    for name, cls in models.all_settings_classes().items():
        default = cls()
        for key in cls.exclusive:
            if key in foreign and foreign[key] != getattr(default, key):
                given.setdefault(key, []).append(name)
    if given:
        names = list(dict.fromkeys(n for owners in given.values() for n in owners))
        message = (
            f"{', '.join(given)} only shape the {' and '.join(names)} layouts; model {model!r} has no "
            f"such setting, so remove it"
        )
        check([(False, message)])


def _validate_data(cfg: TrainConfig) -> None:
    """A user's file settings: only with a file, a parseable column map, defaults of a named dataset."""
    no_file = cfg.data_file is None
    named = datasets.DATASETS
    check(
        [
            (no_file or cfg.dataset not in named, f"a data file cannot take the name of dataset {cfg.dataset!r}"),
            (not no_file or cfg.columns is None, "--columns applies only to --dataset PATH (a file of your own)"),
            (not no_file or cfg.titles_file is None, "--titles applies only to --dataset PATH (a file of your own)"),
            (
                cfg.defaults_from is None or cfg.defaults_from in named,
                f"defaults_from must name a dataset ({', '.join(named)}), got {cfg.defaults_from!r}",
            ),
        ]
    )
    datasets.parse_columns(cfg.columns)


def validate(cfg: TrainConfig) -> None:
    """The run's checks and its family's (`cfg.arch.validate`), first failure raised as ConfigError."""
    check([(cfg.max_len >= 2, f"--max-len must be at least 2, got {cfg.max_len}")])
    check(
        [
            (
                getattr(cfg, s.name) in s.choices,
                f"{s.name} must be one of {', '.join(map(str, s.choices))}, got {getattr(cfg, s.name)!r}",
            )
            for s in settings_of(TrainConfig, skip=("arch", "prep"))
            if s.choices is not None
        ]
    )
    _validate_data(cfg)
    cfg.arch.validate()
    check(
        [
            (cfg.lr > 0, f"lr must be positive, got {cfg.lr}"),
            (0.0 < cfg.adam_beta2 < 1.0, f"adam_beta2 must be in (0, 1), got {cfg.adam_beta2}"),
            (cfg.batch_size > 0, f"batch_size must be positive, got {cfg.batch_size}"),
            (0.0 <= cfg.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {cfg.ema_decay}"),
            (cfg.epochs >= 1, f"epochs must be at least 1 (an untrained model is not registered), got {cfg.epochs}"),
            (cfg.min_epochs >= 0, f"min_epochs must be >= 0, got {cfg.min_epochs}"),
            (0 <= cfg.window_stride <= cfg.max_len, f"window_stride must be in [0, max_len], got {cfg.window_stride}"),
            (cfg.cold_start_threshold >= 3, f"cold_start_threshold must be at least 3, got {cfg.cold_start_threshold}"),
            (
                0.0 < cfg.temporal_val_quantile < cfg.temporal_test_quantile < 1.0,
                "temporal_val_quantile and temporal_test_quantile must satisfy 0 < val < test < 1 (the validation "
                f"window before the test window), got {cfg.temporal_val_quantile} and {cfg.temporal_test_quantile}",
            ),
            (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
            (cfg.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {cfg.grad_clip}"),
            (cfg.patience >= 0, f"patience must be >= 0, got {cfg.patience}"),
            (cfg.eval_batch_size > 0, f"eval_batch_size must be positive, got {cfg.eval_batch_size}"),
            (cfg.step_size > 0, f"step_size must be positive, got {cfg.step_size}"),
            (0.0 < cfg.gamma <= 1.0, f"gamma must be in (0, 1], got {cfg.gamma}"),
            (cfg.num_threads >= 0, f"num_threads must be >= 0 (0 = torch's default), got {cfg.num_threads}"),
            # numpy's and torch's generators take seeds in [0, 2**32)
            (0 <= cfg.seed < 2**32, f"seed must be in [0, 2**32), got {cfg.seed}"),
            (
                cfg.prep.min_user_interactions >= 0,
                f"min_user_interactions must be >= 0, got {cfg.prep.min_user_interactions}",
            ),
            (
                cfg.prep.min_item_interactions >= 0,
                f"min_item_interactions must be >= 0, got {cfg.prep.min_item_interactions}",
            ),
            (
                0.0 < cfg.prep.user_fraction <= 1.0,
                f"user_fraction must be in (0, 1], got {cfg.prep.user_fraction}",
            ),
            (
                0.0 < cfg.prep.item_fraction <= 1.0,
                f"item_fraction must be in (0, 1], got {cfg.prep.item_fraction}",
            ),
            (cfg.prep.synthetic_users > 0, f"synthetic_users must be positive, got {cfg.prep.synthetic_users}"),
            (cfg.prep.synthetic_items > 0, f"synthetic_items must be positive, got {cfg.prep.synthetic_items}"),
            (
                cfg.prep.synthetic_mean_len > 0,
                f"synthetic_mean_len must be positive, got {cfg.prep.synthetic_mean_len}",
            ),
            (
                0 <= cfg.prep.synthetic_seed < 2**32,
                f"synthetic_seed must be in [0, 2**32), got {cfg.prep.synthetic_seed}",
            ),
        ]
    )
