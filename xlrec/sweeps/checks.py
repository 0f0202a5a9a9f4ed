"""Sweep arguments checked before anything starts (no tracking server, no Ray, no data work).

A bad sweep argument used to surface only inside Ray (a failed trial per cell, exit 0) or
not at all (`--trials -1` is Ray's "sample forever"). Every argument is checked here, in
one place, and the first problem is one ConfigError paragraph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from xlrec.errors import ConfigError
from xlrec.settings import settings_of
from xlrec.sweeps.spec import SweepSpec

# Settings a sweep owns through its own flags; fixing them with --set would be ignored or
# contradict what the sweep logs and schedules.
_OWN_FLAGS = {
    "model": "--model (search) or --models (grid)",
    "dataset": "--dataset (search) or --datasets (grid)",
    "source": "--source",
    "epochs": "--epochs",
}
_GRID_AXES = {"max_len": "--max-lens", "seed": "--seeds"}


def _fail(message: str) -> None:
    raise ConfigError(f"{message} Fix the sweep arguments and run again; nothing was started.")


def _resources(flag: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        _fail(f"{flag} must be a finite number >= 0, got {value!r}.")
    if value > 1 and not float(value).is_integer():  # Ray accepts fractions of one unit only
        _fail(f"{flag} above 1 must be a whole number (Ray shares fractions of one CPU/GPU only), got {value!r}.")


def _dataset_or_file(value: str, named: tuple[str, ...]) -> str:
    """A named dataset as is; a user's file as its absolute path (trials may run in another folder)."""
    from xlrec.catalog import datasets

    if value in named or not datasets.looks_like_file(value):
        return value
    return str(datasets.resolve_path(value))


def check_spec(spec) -> None:
    """Raise ConfigError for the first unusable argument of a SweepSpec (a spec file's keys were
    checked, with their lines, when it was read: xlrec.sweeps.spec_file)."""
    from xlrec.catalog import models
    from xlrec.catalog.datasets import DATASETS

    named = {m: models.get(m).name for m in spec.models if ":" in m}  # module:Class -> the name it registers
    spec.models = [named.get(m, m) for m in spec.models]
    spec.per_model = {named.get(m, m): entry for m, entry in spec.per_model.items()}
    MODELS = models.names()

    if spec.mode not in ("search", "grid"):
        _fail(f"--mode must be search or grid, got {spec.mode!r}.")
    grid = spec.mode == "grid"
    spec.datasets = [_dataset_or_file(d, DATASETS) for d in spec.datasets]
    for flag, values, known in (
        ("--models" if grid else "--model", spec.models, MODELS),
        ("--datasets" if grid else "--dataset", spec.datasets, DATASETS),
    ):
        if not values:
            _fail(f"{flag} is empty; name at least one of: {', '.join(known)}.")
        unknown = [v for v in values if v not in known and not Path(v).is_absolute()]  # absolute: a user's file
        if unknown:
            _fail(f"{flag}: unknown name(s) {', '.join(map(repr, unknown))}. Choose from: {', '.join(known)}.")
    if not grid and len(spec.datasets) > 1:
        _fail("a search tunes on one dataset; name one --dataset (or write one spec per dataset).")
    unknown = [m for m in spec.per_model if m not in spec.models]
    if unknown:
        _fail(f"settings are given for model(s) {', '.join(map(repr, unknown))} that the sweep does not run.")
    if grid and not spec.seeds:
        _fail("--seeds is empty; a grid needs at least one value.")
    if spec.group_seeds and not grid:
        _fail(
            "--group-seeds applies to --mode grid, whose cells train several seeds; a search trial trains one. "
            "Drop --group-seeds, or pass --mode grid."
        )
    if spec.stack_seeds and not spec.group_seeds:
        _fail(
            "--stack-seeds stacks the seeds of a grouped cell into one model; it needs --group-seeds "
            "(and --mode grid). Add --group-seeds, or drop --stack-seeds."
        )
    if spec.epochs is None and not grid:
        _fail("a search needs --epochs (the most a trial trains; ASHA schedules on it).")
    for info in settings_of(SweepSpec, declared_only=True):
        value = getattr(spec, info.name)
        if grid and info.name in ("trials", "grace_period") or value is None:  # a grid has no trials to prune
            continue
        if info.choices is not None and value not in info.choices:
            _fail(f"{info.flag} must be one of {', '.join(map(str, info.choices))}, got {value!r}.")
        if info.minimum is None or (info.name == "gpus_per_trial" and spec.gpus_auto):
            continue
        if info.hint in (int, int | None):
            if not isinstance(value, int) or isinstance(value, bool) or value < info.minimum:
                what = "-1 (retry forever) or more" if info.minimum < 0 else f"an integer >= {info.minimum:g}"
                _fail(f"{info.flag} must be {what}, got {value!r}.")
        else:
            _resources(info.flag or info.name, value)
    if spec.seed >= 2**32:
        _fail(f"--seed must be below 2**32, got {spec.seed}.")
    if not grid and spec.pruning and spec.epochs is not None and spec.grace_period > spec.epochs:
        _fail(
            f"--grace-period ({spec.grace_period}) cannot exceed --epochs ({spec.epochs}): ASHA could never "
            f"prune a trial."
        )
    if spec.cpus_per_trial == 0 and spec.gpu_share == 0 and not spec.gpus_auto:
        _fail(
            "--cpus-per-trial and --gpus-per-trial are both 0: a trial would ask for nothing and Ray would start "
            "them all at once. Give each trial at least part of a CPU or a GPU."
        )
    for key in spec.overrides:
        if key in _OWN_FLAGS:
            _fail(f"--set {key}=... is not a fixed training setting of a sweep; use {_OWN_FLAGS[key]} instead.")
        if grid and (key == "seed" or key in spec.axes()):
            _fail(
                f"--set {key}=... (a fixed setting) would be overridden by the grid; use {_GRID_AXES[key]} "
                f"instead (or the spec's grid)."
                if key in _GRID_AXES
                else f"{key} is both a fixed setting and a grid axis; keep one."
            )
    if not grid:
        _check_space(spec)


def _check_space(spec) -> None:
    """A searched setting that none of the searched models has would be sampled for nothing."""
    from xlrec.sweeps.space import DEFAULT_SPACE, model_space

    asked = set(DEFAULT_SPACE if spec.space is None else spec.space)
    for entry in spec.per_model.values():
        asked |= set(entry.get("space", {}))
    searched = {k for m in spec.models for k in model_space(spec, m)} | {"embedding_dim"}
    missing = sorted(asked - searched - {"head_dim"} - set(spec.overrides))
    if missing and spec.space is not None:
        _fail(
            f"the search space names {', '.join(missing)}, which no model of this search "
            f"({', '.join(spec.models)}) has; remove it or search a model that has it."
        )
    if not searched - {"embedding_dim"} and not any(model_space(spec, m) for m in spec.models):
        _fail("the search space is empty once the fixed settings are taken out; search at least one setting.")
