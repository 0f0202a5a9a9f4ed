"""Run configuration: the run's own settings, plus the chosen model family's settings nested in `arch`.

Each model family declares its settings and their checks (`xlrec.rec_models`: XLSTMSettings,
SASRecSettings, ...); `TrainConfig` holds what every run has (model, dataset, max_len, seed,
optimisation, early stopping, evaluation, hardware, data) and the family's settings as `arch`.
Users still see one flat namespace: YAML keys, flags, `--set` and MLflow params name
`embedding_dim`, not `arch.embedding_dim` (`TrainConfig.to_dict` is that flat view).

Resolution order (later wins): the dataclass defaults, the dataset's and then the model's
defaults for that dataset (`xlrec/defaults.yaml`, see xlrec.defaults), a YAML file (`--config`),
then flags. `build_config` is the one place a config is assembled and checked, whatever the
source: flags and YAML through `resolve_config`, a saved model through xlrec.platform.model_format.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from xlrec.config_types import coerce, show
from xlrec.defaults import dataset_defaults, load_yaml, model_defaults
from xlrec.errors import ConfigError


@dataclass
class PrepConfig:
    """Preprocessing settings; part of the processed-data cache key."""

    min_rating: float | None = None  # None: every rating is an interaction (implicit feedback)
    min_user_interactions: int = 0  # k-core thresholds; 0 disables
    min_item_interactions: int = 0
    kcore_iterate: bool = True  # repeat the filter until nothing changes (a fixed point)
    # keep this share of the users (a fixed random order, so a smaller share is a subset of a larger
    # one), before the k-core filter: the datasets of a scaling study (RQ1)
    user_fraction: float = 1.0
    # synthetic generator size (ignored by real datasets)
    synthetic_users: int = 1000
    synthetic_items: int = 500
    synthetic_mean_len: int = 40
    synthetic_seed: int = 0


@dataclass
class ModelSettings:
    """Base of a model family's settings (nanoGPT's GPTConfig): the fields its model is built from.

    A family subclasses this in its module under xlrec/rec_models/ and checks its own fields in
    `validate`. `exclusive` names settings that only this family has and that are refused, not
    ignored, for a model without them (see `build_config`).
    """

    exclusive: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        """Raise ConfigError (through `check`) for the first invalid field."""


def check(checks: list[tuple[bool, str]]) -> None:
    """Raise the ConfigError of the first failed (ok, message) pair."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"Invalid configuration: {message}. Fix the flag or the --config file and run again.")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything one training run needs; `to_dict` is the flat form of MLflow params and config.yaml."""

    model: str = "xlstm"
    dataset: str = "ml-100k"
    max_len: int = 50
    seed: int = 42
    # the model family's settings: an instance of the settings class xlrec.rec_models.MODELS names
    # for `model` (read them as cfg.arch.embedding_dim, ...)
    arch: ModelSettings
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Adam's second-moment decay; the original SASRec trains with 0.98 (torch's default 0.999)
    adam_beta2: float = 0.999
    scheduler: str = "none"  # none | step | cosine
    step_size: int = 10
    gamma: float = 0.5
    epochs: int = 200
    batch_size: int = 128
    grad_clip: float = 1.0
    # exponential moving average of the weights, updated after every optimizer step; validation,
    # the best-epoch checkpoint and the test use the averaged weights. 0 = off
    ema_decay: float = 0.0
    patience: int = 3
    # early stopping may end the run only from this epoch on (Lightning's min_epochs; Keras calls
    # it start_from_epoch); the best-validation weights are still tracked from epoch 1
    min_epochs: int = 0
    sample_mode: str = "window"  # window (all positions) | prefix (the paper's scheme)
    # Window mode: a new window every `window_stride` targets (0 = max_len, no overlap). With a
    # smaller stride, windows overlap and the earlier positions serve as context only, so every
    # target still counts once per epoch but sees up to max_len items of history.
    window_stride: int = 0
    # evaluation
    exclude_seen: bool = True
    cold_start_threshold: int = 5
    eval_batch_size: int = 1024
    # hardware
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    kernel: str = "auto"  # xlstm kernels: auto | triton | native
    amp: bool = True  # bf16 autocast on CUDA
    # replay the training step as one CUDA graph where it can be (CUDA, causal model, window
    # mode; see xlrec.device.use_cuda_graph); launch-bound small models train several times faster
    cuda_graph: bool = True
    # torch.compile the model's encoder inside the training step on CUDA (xlrec.device.use_compile):
    # Inductor fuses its elementwise chains (norms, gates, autocast casts) that otherwise launch one
    # small kernel each; costs seconds to a minute of compilation per process, cached on disk after
    compile: bool = False
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    # data
    source: str | None = None  # mirror directory or base URL
    # a user's own file (`--dataset PATH`; `dataset` is then its sanitised stem): its absolute path,
    # the --columns map and the --titles side file, so a saved config says where its data came from
    data_file: str | None = None
    columns: str | None = None
    titles_file: str | None = None
    # the named dataset whose defaults a user's file started from (xlrec.data_prep.user_files.nearest_defaults)
    defaults_from: str | None = None
    prep: PrepConfig = field(default_factory=PrepConfig)

    def to_dict(self) -> dict[str, Any]:
        """The flat settings (the family's in place of `arch`, `prep` nested): what config.yaml
        holds, what MLflow params are named after, and what `build_config` takes back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "arch":
                out.update(dataclasses.asdict(self.arch))
            else:
                value = getattr(self, f.name)
                out[f.name] = dataclasses.asdict(value) if f.name == "prep" else value
        return out


# the run's and preprocessing's own settings -> their annotations
RUN_HINTS = {k: v for k, v in typing.get_type_hints(TrainConfig).items() if k not in ("arch", "prep")}
PREP_HINTS = typing.get_type_hints(PrepConfig)


def families() -> Mapping[str, type[ModelSettings]]:
    """Model name -> its settings class (imported here, not at the top: xlrec.config is also read by
    data preparation, which needs no torch)."""
    from xlrec.rec_models import MODELS

    return {name: entry.settings for name, entry in MODELS.items()}


def settings_class(model: str) -> type[ModelSettings]:
    known = families()
    if model not in known:
        raise ConfigError(f"Unknown model {model!r}. Choose one of: {', '.join(known)}.")
    return known[model]


def arch_hints() -> dict[str, Any]:
    """Every family's setting -> its annotation (a key has the same type in every family that has it)."""
    hints: dict[str, Any] = {}
    for cls in families().values():
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
) -> TrainConfig:
    """Build the final config: defaults < dataset defaults < model defaults on that dataset < YAML < flags."""
    file_values = load_yaml(config_file) if config_file else {}
    overrides = dict(overrides or {})
    for values, origin in ((file_values, f"config file {config_file}"), (overrides, "command line")):
        for key in ("model", "dataset"):  # needed as names before anything else is merged
            if values.get(key) is not None:
                values[key] = coerce(key, values[key], str, origin)
    dataset = dataset or overrides.pop("dataset", None) or file_values.get("dataset") or TrainConfig.dataset
    model = model or overrides.pop("model", None) or file_values.get("model") or TrainConfig.model
    overrides.pop("dataset", None)
    overrides.pop("model", None)
    merged: dict[str, Any] = {"model": model, "dataset": dataset, "prep": {}}
    given_file = overrides.get("data_file") or file_values.get("data_file")  # a saved config.yaml as --config
    merged.update(_user_file(dataset, given_file, overrides.get("defaults_from") or file_values.get("defaults_from")))
    defaults = merged.get("defaults_from") or dataset
    for layer, origin in (
        (dataset_defaults(defaults), f"defaults for {defaults}"),
        (model_defaults(model, defaults), f"defaults for {model} on {defaults}"),
        (file_values, f"config file {config_file}"),
        (overrides, "command line"),
    ):
        _merge(merged, {k: v for k, v in layer.items() if k not in ("model", "dataset", *_FILE_KEYS)}, origin)
    stride_given = "window_stride" in file_values or "window_stride" in overrides
    if not stride_given and merged.get("window_stride", 0) > merged.get("max_len", TrainConfig.max_len):
        # a default stride chosen for a longer max_len than the user's: non-overlapping windows
        merged["window_stride"] = 0
    return build_config(merged)


_FILE_KEYS = ("data_file", "defaults_from")  # set from --dataset PATH, not merged as layers


def _user_file(dataset: str, given_file: Any, defaults_from: Any) -> dict[str, Any]:
    """For `--dataset PATH` (or a config's `data_file`): the file's name, absolute path and the named
    dataset whose defaults it starts from; nothing for a named dataset."""
    from xlrec.data_prep import user_files
    from xlrec.data_prep.dataset import DATASETS

    if given_file is not None and dataset not in DATASETS and not user_files.looks_like_file(dataset):
        dataset = coerce("data_file", given_file, str, "config")  # `dataset: my-data` with its data_file
    if dataset in DATASETS or not user_files.looks_like_file(dataset):
        return {}
    path = user_files.resolve_path(dataset)
    if defaults_from is None:
        defaults_from = user_files.nearest_defaults(user_files.count_rows(path))
    return {
        "dataset": user_files.dataset_name(path, DATASETS),
        "data_file": str(path),
        "defaults_from": coerce("defaults_from", defaults_from, str, "config"),
    }


def build_config(values: Mapping[str, Any]) -> TrainConfig:
    """The one place a TrainConfig is assembled and checked, whatever the source.

    `values`: flat settings already of their annotated types (`resolve_config` coerces flags and
    YAML; xlrec.platform.model_format checks a saved config.yaml more strictly), `prep` nested;
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
    for name, cls in families().items():
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
    from xlrec.data_prep.dataset import DATASETS
    from xlrec.data_prep.user_files import parse_columns

    no_file = cfg.data_file is None
    check(
        [
            (no_file or cfg.dataset not in DATASETS, f"a data file cannot take the name of dataset {cfg.dataset!r}"),
            (not no_file or cfg.columns is None, "--columns applies only to --dataset PATH (a file of your own)"),
            (not no_file or cfg.titles_file is None, "--titles applies only to --dataset PATH (a file of your own)"),
            (
                cfg.defaults_from is None or cfg.defaults_from in DATASETS,
                f"defaults_from must name a dataset ({', '.join(DATASETS)}), got {cfg.defaults_from!r}",
            ),
        ]
    )
    parse_columns(cfg.columns)


def validate(cfg: TrainConfig) -> None:
    """The run's checks and its family's (`cfg.arch.validate`), first failure raised as ConfigError."""
    check([(cfg.max_len >= 2, f"--max-len must be at least 2, got {cfg.max_len}")])
    _validate_data(cfg)
    cfg.arch.validate()
    check(
        [
            (cfg.lr > 0, f"lr must be positive, got {cfg.lr}"),
            (0.0 < cfg.adam_beta2 < 1.0, f"adam_beta2 must be in (0, 1), got {cfg.adam_beta2}"),
            (cfg.batch_size > 0, f"batch_size must be positive, got {cfg.batch_size}"),
            (0.0 <= cfg.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {cfg.ema_decay}"),
            (cfg.epochs >= 0, f"epochs must be >= 0, got {cfg.epochs}"),
            (cfg.min_epochs >= 0, f"min_epochs must be >= 0, got {cfg.min_epochs}"),
            (
                cfg.scheduler in ("none", "step", "cosine"),
                f"scheduler must be none, step or cosine, got {cfg.scheduler!r}",
            ),
            (0 <= cfg.window_stride <= cfg.max_len, f"window_stride must be in [0, max_len], got {cfg.window_stride}"),
            (cfg.sample_mode in ("window", "prefix"), f"sample_mode must be window or prefix, got {cfg.sample_mode!r}"),
            (cfg.kernel in ("auto", "triton", "native"), f"kernel must be auto, triton or native, got {cfg.kernel!r}"),
            (cfg.cold_start_threshold >= 3, f"cold_start_threshold must be at least 3, got {cfg.cold_start_threshold}"),
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
