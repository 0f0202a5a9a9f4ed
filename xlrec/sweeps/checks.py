"""Sweep arguments checked before anything starts (no tracking server, no Ray, no data work).

A bad sweep argument used to surface only inside Ray (a failed trial per cell, exit 0) or
not at all (`--trials -1` is Ray's "sample forever"). Every argument is checked here, in
one place, and the first problem is one ConfigError paragraph.
"""

from __future__ import annotations

import math
from typing import Any

from xlrec.errors import ConfigError

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


def check_spec(spec) -> None:
    """Raise ConfigError for the first unusable argument of a SweepSpec."""
    from xlrec.data_prep import DATASETS
    from xlrec.rec_models import MODELS

    if spec.mode not in ("search", "grid"):
        _fail(f"--mode must be search or grid, got {spec.mode!r}.")
    grid = spec.mode == "grid"
    models = spec.models if grid else [spec.model]
    datasets = spec.datasets if grid else [spec.dataset]
    for flag, values, known in (
        ("--models" if grid else "--model", models, MODELS),
        ("--datasets" if grid else "--dataset", datasets, DATASETS),
    ):
        if not values:
            _fail(f"{flag} is empty; name at least one of: {', '.join(known)}.")
        unknown = [v for v in values if v not in known]
        if unknown:
            _fail(f"{flag}: unknown name(s) {', '.join(map(repr, unknown))}. Choose from: {', '.join(known)}.")
    if grid:
        for flag, values in (("--max-lens", spec.max_lens), ("--seeds", spec.seeds)):
            if not values:
                _fail(f"{flag} is empty; a grid needs at least one value.")
    ints = {
        "--epochs": (spec.epochs, 1),
        "--seed": (spec.seed, 0),
        "--max-concurrent": (spec.max_concurrent, 0),
        "--max-failures": (spec.max_failures, -1),
    }
    if not grid:  # grid mode runs every cell once, without ASHA
        ints.update({"--trials": (spec.trials, 1), "--grace-period": (spec.grace_period, 1)})
    for flag, (value, low) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            what = "-1 (retry forever) or more" if flag == "--max-failures" else f"an integer >= {low}"
            _fail(f"{flag} must be {what}, got {value!r}.")
    if spec.seed >= 2**32:
        _fail(f"--seed must be below 2**32, got {spec.seed}.")
    if not grid and spec.grace_period > spec.epochs:
        _fail(
            f"--grace-period ({spec.grace_period}) cannot exceed --epochs ({spec.epochs}): ASHA could never "
            f"prune a trial."
        )
    _resources("--cpus-per-trial", spec.cpus_per_trial)
    _resources("--gpus-per-trial", spec.gpus_per_trial)
    if spec.cpus_per_trial == 0 and spec.gpus_per_trial == 0:
        _fail(
            "--cpus-per-trial and --gpus-per-trial are both 0: a trial would ask for nothing and Ray would start "
            "them all at once. Give each trial at least part of a CPU or a GPU."
        )
    for key in spec.overrides:
        if key in _OWN_FLAGS:
            _fail(f"--set {key}=... is not a fixed training setting of a sweep; use {_OWN_FLAGS[key]} instead.")
        if grid and key in _GRID_AXES:
            _fail(f"--set {key}=... would be overridden by the grid; use {_GRID_AXES[key]} instead.")


def grid_cells(spec) -> list[dict[str, Any]]:
    """The (model, dataset, max_len, seed) settings whose configs the preflight resolves."""
    if spec.mode != "grid":
        return [{"model": spec.model, "dataset": spec.dataset}]
    return [
        {"model": m, "dataset": d, "max_len": L, "seed": s}
        for d in spec.datasets
        for m in spec.models
        for L in spec.max_lens
        for s in spec.seeds
    ]
