"""The config.yaml of a saved model, read as untrusted input.

Exactly the keys this xlrec writes for the model's family, each of its declared type (strictly:
xlrec wrote the file, so a string where a number belongs means damage or tampering), within
`LIMITS`, then assembled and checked by `xlrec.config.build_config`, the same code a config
from flags and YAML goes through. A config from another xlrec version gets one paragraph that
says to re-train, never a TypeError.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from xlrec.catalog import models
from xlrec.catalog.datasets import DATASETS
from xlrec.config import arch_hints, build_config
from xlrec.errors import ConfigError
from xlrec.settings import PREP_HINTS, RUN_HINTS, TrainConfig

# Upper bounds for a config read from a model: far above any real run (ML-20M/Steam use
# dim 256, 4 blocks, L 200, ~27k items), low enough that a crafted config cannot make
# xlrec allocate absurd memory while building the model or preparing data for evaluation.
LIMITS: dict[str, int] = {
    "max_len": 4096,
    "embedding_dim": 4096,
    "num_heads": 256,
    "num_blocks": 64,
    "ffn_mult": 64,
    "batch_size": 1_000_000,
    "eval_batch_size": 65_536,
    "num_threads": 1024,
    "synthetic_users": 10_000_000,
    "synthetic_items": 10_000_000,
    "synthetic_mean_len": 100_000,
}
# Longest text a string setting may hold (a path, a column map); these settings may also be absent,
# as in a config.yaml written before user files (`--dataset PATH`) existed.
TEXT_LIMIT = 4096
OPTIONAL = ("data_file", "columns", "titles_file", "defaults_from", "tuned_defaults")
OPTIONAL_PREP = ("item_fraction",)  # a model saved before the setting existed kept every item


def _type_ok(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and len(value) <= 1024 and all(_type_ok(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False


def _shown(hint: Any) -> str:
    """An annotation as written, e.g. `float | None`, `list[int]`."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"list[{_shown(args[0])}]"
    if args:
        return " | ".join(_shown(a) for a in args)
    return "None" if hint is type(None) else hint.__name__


def _typed(raw: dict, hints: dict[str, Any], where: str) -> dict[str, Any]:
    """`raw`'s values checked strictly against `hints` (no string is read as a number or a boolean:
    xlrec wrote this file, so a value of another type means damage or tampering)."""
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if not _type_ok(value, hint):
            raise ConfigError(
                f"The config.yaml of {where} sets {name} to {repr(value)[:80]}, which is not of type "
                f"{_shown(hint)}; the model's config is damaged or crafted. Re-train it with "
                f"`xlrec train`."
            )
        wants_float = hint is float or float in typing.get_args(hint)
        values[name] = float(value) if wants_float and isinstance(value, int) else value
    return values


def config_from_dict(raw: Any, where: str) -> TrainConfig:
    """A TrainConfig from a model's config.yaml: exactly the keys this xlrec writes for the model,
    of the right types and within LIMITS, then assembled and checked by `build_config`, the code
    a config from flags and YAML goes through."""
    again = (
        "It was written by another xlrec version or edited; re-train the model with this xlrec "
        "(`xlrec train`) and register it again."
    )
    if not isinstance(raw, dict):
        raise ConfigError(f"The config.yaml of {where} holds no mapping of settings; the model is damaged.")
    model = raw.get("model")
    if not isinstance(model, str) or len(model) > TEXT_LIMIT:
        raise ConfigError(f"The config.yaml of {where} names no model; the model is damaged or crafted.")
    entry = models.registered(model)  # a name only: a saved model never names code to import
    if entry is None:
        raise models.not_installed(model, where[:1].upper() + where[1:])
    prep_raw = raw.get("prep", {})
    if not isinstance(prep_raw, dict):
        raise ConfigError(f"The config.yaml of {where} has a 'prep' that is not a mapping; the model is damaged.")
    hints = {**RUN_HINTS, **arch_hints()}
    unknown = sorted(set(map(str, raw)) - set(hints) - {"prep"}) + sorted(
        f"prep.{k}" for k in set(map(str, prep_raw)) - set(PREP_HINTS)
    )
    if unknown:
        raise ConfigError(
            f"The config.yaml of {where} has unknown setting(s) {unknown[:10]}; this xlrec does not "
            f"know them, so it will not guess how to build the model. {again}"
        )
    values = {
        **_typed({k: v for k, v in raw.items() if k != "prep"}, hints, where),
        "prep": _typed(prep_raw, PREP_HINTS, where),
    }
    flat = {**values["prep"], **values}
    for key, cap in LIMITS.items():
        value = flat.get(key)
        if value is not None and not 0 <= value <= cap:
            raise ConfigError(
                f"The config.yaml of {where} sets {key} = {value}, outside xlrec's limit of 0..{cap} "
                f"for a model it loads; the config is damaged or crafted, so nothing was built."
            )
    if any(not 0 <= i <= LIMITS["num_blocks"] for i in values.get("slstm_at", [])):  # xlstm-s ignores the rest
        raise ConfigError(
            f"The config.yaml of {where} puts sLSTM blocks at {values['slstm_at'][:10]}, outside "
            f"0..{LIMITS['num_blocks']}; the config is damaged or crafted."
        )
    family = [f.name for f in dataclasses.fields(entry.settings)]
    long = sorted(k for k, v in values.items() if isinstance(v, str) and len(v) > TEXT_LIMIT)
    if long:
        raise ConfigError(
            f"The config.yaml of {where} sets {long[0]} to a text longer than {TEXT_LIMIT} characters; "
            f"the config is damaged or crafted."
        )
    missing = sorted(k for k in (*RUN_HINTS, *family) if k not in values and k not in OPTIONAL) + sorted(
        f"prep.{k}" for k in PREP_HINTS if k not in values["prep"] and k not in OPTIONAL_PREP
    )
    if missing:
        raise ConfigError(
            f"The config.yaml of {where} lacks setting(s) {missing[:10]}, which this xlrec builds "
            f"and checks the model from. {again}"
        )
    if values.get("data_file") is not None:
        if not re.fullmatch(r"[a-z0-9-]{1,200}", values["dataset"]):
            raise ConfigError(
                f"The config.yaml of {where} names the dataset of its data file {values['dataset']!r}, which is "
                f"not a name xlrec gives a file ([a-z0-9-]); the config is damaged or crafted."
            )
    elif values["dataset"] not in DATASETS:
        raise ConfigError(
            f"The config.yaml of {where} names dataset {values['dataset']!r}, which is not one of "
            f"xlrec's datasets ({', '.join(DATASETS)})."
        )
    try:
        return build_config(values)
    except ConfigError as exc:
        raise ConfigError(f"The config.yaml of {where} is invalid: {exc}") from None
