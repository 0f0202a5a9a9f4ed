"""Config resolution: a run's settings from the defaults, a --config file and flags (xlrec.config.resolve),
checked once; the defaults themselves are data (xlrec/defaults.yaml, xlrec.config.defaults)."""

from xlrec.config.defaults import dataset_defaults, load_yaml, model_defaults
from xlrec.config.resolve import (
    arch_hints,
    build_config,
    resolve_config,
    setting_names,
    settings_class,
    tuned_key,
    validate,
)

__all__ = [
    "arch_hints",
    "build_config",
    "dataset_defaults",
    "load_yaml",
    "model_defaults",
    "resolve_config",
    "setting_names",
    "settings_class",
    "tuned_key",
    "validate",
]
