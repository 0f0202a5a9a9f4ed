"""Settings that come from YAML files: the packaged defaults (defaults.yaml) and a user's --config file.

The defaults are data, not code: per dataset the run settings every model starts from (the
paper's Table 3 and Table 1 presets), and per model and dataset its architecture and
optimisation settings. Every entry says in `chosen_by` where its values came from, so an entry a
sweep picks later replaces one block and names the sweep. A plugin model's own settings per
dataset come from the defaults file it ships (`defaults_file` on its class: the same mapping of
dataset -> settings as one model's block here). `xlrec.config.resolve_config` lays them over the
dataclass defaults in that order, before the user's file and flags.

A user's own tuned defaults live outside the package: `xlrec tune` writes one file per dataset
(`xlrec-defaults/<dataset>.yaml` in the working directory, or under XLREC_DEFAULTS_DIR), each
model's entry with its `chosen_by`, and resolution lays a model's entry over the packaged
defaults (and the rule for an unseen dataset) for runs on that dataset.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
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


# --- a user's tuned defaults (`xlrec tune`) -------------------------------------------------------

TUNED_DIR = "xlrec-defaults"  # beside mlflow.db and ray_results: a project's files live in its folder
TUNED_DIR_ENV = "XLREC_DEFAULTS_DIR"
_TUNED_HEADER = (
    "# Written by `xlrec tune`; yours to edit or delete. `xlrec train` and `xlrec sweep` on this dataset\n"
    "# start each model below from these settings (over xlrec/defaults.yaml; --config and flags win).\n"
    "# `chosen_by` names the tuning run and what the confirmation over seeds measured.\n"
)


def tuned_dir(given: str | None = None) -> Path | None:
    """Where tuned defaults are read and written: `given` (from --defaults-dir), else XLREC_DEFAULTS_DIR,
    else ./xlrec-defaults; '' or `none` switches them off (the packaged defaults alone)."""
    value = given if given is not None else os.environ.get(TUNED_DIR_ENV, TUNED_DIR)
    if value.strip().lower() in ("", "none"):
        return None
    return Path(value).expanduser().absolute()


def data_key(dataset: str, variant: Mapping[str, Any]) -> str:
    """The name of a dataset's tuned-defaults file: the dataset's name, and the preprocessing settings
    that make its data differ from the named dataset's (a 10%-of-items cut of ml-1m is another
    dataset: `ml-1m__item_fraction-0.1`)."""
    parts = [dataset] + [f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in sorted(variant.items())]
    return "__".join(parts)


def _tuned_error(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"The tuned defaults file {path} {what}. It should hold `models: {{MODEL: {{setting: value, ...}}}}` "
        f"as `xlrec tune` writes it; fix or delete the file (or pass --defaults-dir none) and run again."
    )


def load_tuned(directory: Path | None) -> dict[str, dict[str, Any]]:
    """Every tuned-defaults file under `directory`: data key -> {"path": file, "models": {model: entry}}
    (an entry keeps its `chosen_by`); nothing for a missing directory."""
    if directory is None or not directory.is_dir():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise _tuned_error(path, f"cannot be read as YAML ({reason})") from None
        block = data.get("models") if isinstance(data, dict) else None
        if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
            raise _tuned_error(path, "has no `models` mapping of settings")
        out[path.stem] = {"path": str(path), "models": {str(m): dict(v) for m, v in block.items()}}
    return out


def tuned_entry(tuned: Mapping[str, Any] | None, key: str, model: str) -> tuple[dict[str, Any], str | None]:
    """`model`'s tuned settings for the data `key` (without chosen_by), and where they came from."""
    found = (tuned or {}).get(key) or {}
    entry = found.get("models", {}).get(model)
    if not entry:
        return {}, None
    origin = f"{found['path']}" + (f" ({entry['chosen_by']})" if entry.get("chosen_by") else "")
    return _entry(entry), origin


def write_tuned(directory: Path, key: str, entries: Mapping[str, Mapping[str, Any]], about: Mapping[str, Any]) -> Path:
    """Lay `entries` (model -> settings with chosen_by) into `directory/key.yaml`, keeping the other
    models' entries a user has there; written whole and renamed into place (never half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.yaml"
    current = load_tuned(directory).get(key, {}).get("models", {})
    models_block = {**current, **{m: dict(v) for m, v in entries.items()}}
    body = yaml.safe_dump({**about, "models": models_block}, sort_keys=False, width=100)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".yaml", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_TUNED_HEADER + body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
