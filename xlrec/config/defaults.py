"""Settings that come from YAML files: the packaged defaults (defaults.yaml) and a user's --config file.

The defaults are data, not code: per dataset the run settings every model starts from (the
paper's Table 3 and Table 1 presets), and per model and dataset its architecture and
optimisation settings. Every entry says in `chosen_by` where its values came from, so an entry a
sweep picks later replaces one block and names the sweep. A plugin model's own settings per
dataset come from the defaults file it ships (`defaults_file` on its class: the same mapping of
dataset -> settings as one model's block here). `xlrec.config.resolve_config` lays them over the
dataclass defaults in that order, before the user's file and flags.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from xlrec.catalog import models
from xlrec.catalog.datasets import DataShape
from xlrec.errors import ConfigError

DEFAULTS_FILE = Path(__file__).parents[1] / "defaults.yaml"  # data beside the package, where users look for it


@functools.cache
def _packaged() -> dict[str, Any]:
    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))


def _entry(entry: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (entry or {}).items() if k != "chosen_by"}


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """The run settings every model starts from on `dataset` (none for an unknown dataset)."""
    return _entry(_packaged()["datasets"].get(dataset))


def model_defaults(model: str, dataset: str) -> dict[str, Any]:
    """`model`'s own settings on `dataset`, laid over `dataset_defaults` (none if it has no entry):
    a built-in's from defaults.yaml, a plugin's from the defaults file it ships."""
    entry = models.get(model)
    if entry.builtin:
        return _entry((_packaged()["models"].get(entry.name) or {}).get(dataset))
    path = entry.defaults_path()
    if path is None:
        return {}
    per_dataset = load_yaml(path)
    block = per_dataset.get(dataset)
    if block is not None and not isinstance(block, dict):
        raise entry.error(
            f"ships a defaults file {path} whose entry {dataset!r} is not a mapping of settings",
            "write it as `DATASET: {setting: value, ...}`",
        )
    return _entry(block)


def shape_defaults(shape: DataShape, current: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    """The settings the rule for an unseen dataset (defaults.yaml `unseen`) changes, given the
    prepared data's `shape` and the settings resolved so far (`current`: the base dataset's and the
    model's defaults); only settings in `keys` (those the model has) are touched."""
    rule = _packaged()["unseen"]
    out: dict[str, Any] = {}
    base_len = current.get("max_len")
    if "max_len" in keys and base_len and shape.users:
        multiple = int(rule["max_len_multiple"])
        wanted = max(int(rule["max_len_min"]), math.ceil(shape.len_p90 / multiple) * multiple)
        if wanted < base_len:
            out["max_len"] = wanted
    if shape.users and shape.mean_len < float(rule["short_mean_len"]):
        for key, floor in (("dropout", rule["short_dropout_at_least"]), ("patience", rule["short_patience_at_least"])):
            if key in keys and current.get(key) is not None and current[key] < floor:
                out[key] = type(current[key])(floor)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The settings mapping of a user's --config file, or a one-paragraph ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass --config with the path of a YAML file.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded); it may be a "
            f"binary file. Pass --config with the path of a YAML file."
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Config file {path} cannot be read ({exc.strerror or exc}). Check the path and its permissions."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())  # PyYAML's message spans lines; the error is one paragraph
        raise ConfigError(f"Config file {path} is not valid YAML ({reason}). Fix the file and run again.") from None
    except RecursionError:
        raise ConfigError(
            f"Config file {path} is nested too deeply to be a settings file. Fix the file and run again."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of settings, got {type(data).__name__}.")
    return data
