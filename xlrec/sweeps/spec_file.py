"""A sweep spec file (YAML) read into a `SweepSpec`, every key and value checked before anything
starts, each problem reported with the line of the file it is on.

    description: what the sweep answers          # the parent run's description starts with it
    experiment: paper-protocol-ml-100k           # MLflow experiment (default xlrec-<datasets>)
    name: paper-protocol                         # the parent run (default <mode>-<models>-<datasets>)
    mode: grid                                   # grid | search (default: search if `search:` is given)
    datasets: [ml-100k]
    models: [xlstm, sasrec]                      # or a mapping: model -> {fixed, grid, space} of its own
    seeds: [42, 123, 2023]                       # grid: one cell per seed; search: one seed
    epochs: 200                                  # the most a trial trains (grid default: each model's own)
    fixed: {exclude_seen: false}                 # any training setting, every trial
    grid: {max_len: [32, 64, 128]}               # axes (cartesian product), or a list of combinations
    search:
      trials: 20
      sampler_seed: 42
      space: {lr: {float: [3.0e-4, 3.0e-3], log: true}, num_blocks: {int: [1, 2]}}
    metric: val_recall_at_10                     # or val_ndcg_at_10: what ASHA, Optuna and "best" use
    pruning: {enabled: true, grace_period: 2}
    resources: {cpus_per_trial: 1, gpus_per_trial: 0.25, max_concurrent: 0, max_failures: 0,  # gpus: or auto
                group_seeds: false}              # grid: a cell's seeds share one trial process (GPU)

Every problem names its line (xlrec.sweeps.lined_yaml); the search space's distributions are read
by xlrec.sweeps.space.parse_space.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from xlrec.errors import ConfigError
from xlrec.sweeps.lined_yaml import LinedMap, SpecFile, load, show
from xlrec.sweeps.space import parse_space
from xlrec.sweeps.spec import CELL_KEYS, METRICS, SweepSpec

# Settings the spec names at its top level, never as a training setting of `fixed`/`grid`/`space`.
_TOP_LEVEL = {"model": "models", "dataset": "datasets", "seed": "seeds", "source": "--source"}
_KEYS = {
    "description": "free text: what the sweep answers",
    "experiment": "the MLflow experiment",
    "name": "the parent run's name",
    "mode": "grid or search",
    "datasets": "dataset names",
    "models": "model names, or a mapping model -> {fixed, grid, space}",
    "seeds": "training seeds",
    "epochs": "the most epochs a trial trains",
    "fixed": "training settings every trial gets",
    "grid": "grid axes",
    "search": "trials, sampler_seed, space",
    "metric": f"one of {', '.join(METRICS)}",
    "pruning": "{enabled, grace_period}",
    "resources": "{cpus_per_trial, gpus_per_trial, max_concurrent, max_failures, group_seeds}",
}
_SEARCH_KEYS = ("trials", "sampler_seed", "space")
_PRUNING_KEYS = ("enabled", "grace_period")
_RESOURCE_KEYS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "group_seeds")
_MODEL_KEYS = ("fixed", "grid", "space")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; raise ConfigError naming the line of the first problem."""
    f = SpecFile(str(path))
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the sweep spec {path}: {exc.strerror or exc}. Pass --spec with a YAML file "
            f"(examples: configs/sweeps/)."
        ) from None
    try:
        doc = load(text)
    except ConfigError as exc:
        raise ConfigError(f"Sweep spec {path}, {exc} Fix the spec and run again; nothing was started.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise ConfigError(
            f"Sweep spec {path} is not valid YAML ({where}: {getattr(exc, 'problem', None) or exc}). "
            f"Fix the spec and run again; nothing was started."
        ) from None
    if not isinstance(doc, LinedMap):
        f.fail(1, "a spec is a mapping of keys (datasets:, models:, grid: ...), see configs/sweeps/ for examples.")
    f.known(doc, tuple(_KEYS), "the spec")
    return _build(f, doc)


def _build(f: SpecFile, doc: LinedMap) -> SweepSpec:
    spec = SweepSpec(spec_file=f.path)
    for key in ("description", "experiment", "name"):
        if key in doc:
            if not isinstance(doc[key], str) or not doc[key].strip():
                f.fail(f.at(doc, key), f"{key!r} must be a non-empty string, got {show(doc[key])}.")
            setattr(spec, key, doc[key].strip())
    spec.mode = doc.get("mode", "search" if "search" in doc else "grid")
    if spec.mode not in ("grid", "search"):
        f.fail(f.at(doc, "mode"), f"'mode' must be grid or search, got {show(spec.mode)}.")
    if "search" in doc and spec.mode != "search":
        f.fail(f.at(doc, "search"), "a 'search' section needs mode: search (a grid runs every cell; drop one of them).")
    if "datasets" in doc:
        spec.datasets = f.names(doc, "datasets")
    if "models" in doc:
        _models(f, doc, spec)
    if "seeds" in doc:
        seeds = doc["seeds"] if isinstance(doc["seeds"], list) else [doc["seeds"]]
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds):
            f.fail(f.at(doc, "seeds"), f"'seeds' must be integers in [0, 2**32), got {show(doc['seeds'])}.")
        spec.seeds = list(seeds)
    if "epochs" in doc:
        spec.epochs = f.integer(doc, "epochs", 1)
    elif spec.mode == "grid":
        spec.epochs = None  # each model's own default (xLSTM's cosine schedule spans its 30)
    if "fixed" in doc:
        block = f.mapping(doc, "fixed")
        if "epochs" in block:  # a cell or a model may set its own; for every trial it is the top-level key
            f.fail(f.at(block, "epochs"), "'epochs' for every trial is the spec's top-level 'epochs' key.")
        spec.overrides = _settings(f, block, "fixed")
    spec.grid = _grid(f, doc, "grid") if "grid" in doc else [{}]
    if "metric" in doc:
        if doc["metric"] not in METRICS:
            f.fail(f.at(doc, "metric"), f"'metric' must be one of {', '.join(METRICS)}, got {show(doc['metric'])}.")
        spec.metric = doc["metric"]
    if "pruning" in doc:
        _pruning(f, doc, spec)
    if "resources" in doc:
        res = f.mapping(doc, "resources", _RESOURCE_KEYS)
        if isinstance(res.get("gpus_per_trial"), str):
            if res["gpus_per_trial"] != "auto":
                got = show(res["gpus_per_trial"])
                f.fail(f.at(res, "gpus_per_trial"), f"'gpus_per_trial' must be a number or auto, got {got}.")
            spec.gpus_auto, spec.gpus_per_trial = True, 0.0
        for key in ("cpus_per_trial", "gpus_per_trial"):
            if key in res and not (key == "gpus_per_trial" and spec.gpus_auto):
                setattr(spec, key, f.number(res, key))
        if "max_concurrent" in res:
            spec.max_concurrent = f.integer(res, "max_concurrent", 0)
        if "max_failures" in res:
            spec.max_failures = f.integer(res, "max_failures", -1)
        if "group_seeds" in res:
            if not isinstance(res["group_seeds"], bool):
                got = show(res["group_seeds"])
                f.fail(f.at(res, "group_seeds"), f"'group_seeds' must be true or false, got {got}.")
            if res["group_seeds"] and spec.mode != "grid":
                f.fail(
                    f.at(res, "group_seeds"),
                    "'group_seeds' applies to a grid, whose cells train several seeds; a search trial trains "
                    "one. Remove it, or use mode: grid.",
                )
            spec.group_seeds = res["group_seeds"]
    if spec.mode == "search":
        _search(f, doc, spec)
    elif any(p.get("space") for p in spec.per_model.values()):
        f.fail(f.at(doc, "models"), "a model's 'space' applies to a search; a grid has no search space.")
    return spec


def _models(f: SpecFile, doc: LinedMap, spec: SweepSpec) -> None:
    value = doc["models"]
    if not isinstance(value, LinedMap):
        spec.models = f.names(doc, "models")
        return
    if not value:
        f.fail(f.at(doc, "models"), "'models' names no model.")
    spec.models = [str(m) for m in value]
    for model, block in value.items():
        if block is None:
            continue
        own = f.mapping(value, model, _MODEL_KEYS)
        entry: dict[str, Any] = {}
        if "fixed" in own:
            entry["fixed"] = _settings(f, f.mapping(own, "fixed"), f"models.{model}.fixed")
        if "grid" in own:
            entry["grid"] = _grid(f, own, "grid", f"models.{model}.grid")
        if "space" in own:
            entry["space"] = parse_space(f, f.mapping(own, "space"), f"models.{model}.space")
        spec.per_model[str(model)] = entry


def _settings(f: SpecFile, block: LinedMap, where: str) -> dict[str, Any]:
    """Training settings, each a known key of a coercible value (checked against every model
    again when the preflight resolves each cell's config)."""
    return {key: _setting(f, block, key, block[key], where) for key in block}


def _setting(f: SpecFile, block: LinedMap, key: Any, value: Any, where: str) -> Any:
    from xlrec.config import PREP_HINTS, RUN_HINTS, arch_hints, setting_names
    from xlrec.config_types import coerce

    line = f.at(block, key)
    if key in _TOP_LEVEL:
        f.fail(line, f"{key!r} in {where}: the sweep sets it through {_TOP_LEVEL[key]!r}, not as a setting.")
    if key == "prep" or key not in setting_names():
        f.fail(
            line,
            f"unknown setting {key!r} in {where}. Known settings: {', '.join(sorted(setting_names() - {'prep'}))}.",
        )
    hint = {**RUN_HINTS, **arch_hints(), **PREP_HINTS}[key]
    try:
        return coerce(key, value, hint, f"{where}")
    except ConfigError as exc:
        f.fail(line, str(exc))


def _grid(f: SpecFile, parent: LinedMap, key: str, where: str | None = None) -> list[dict[str, Any]]:
    """Axes as a mapping (their cartesian product) or a list of combinations (mappings)."""
    where = where or key
    value = parent[key]
    if isinstance(value, LinedMap):
        axes: dict[str, list[Any]] = {}
        for axis, values in value.items():
            if not isinstance(values, list) or not values:
                f.fail(f.at(value, axis), f"grid axis {axis!r} needs a non-empty list of values, got {show(values)}.")
            axes[axis] = [_setting(f, value, axis, v, where) for v in values]
        return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())] or [{}]
    if isinstance(value, list) and value and all(isinstance(c, LinedMap) for c in value):
        return [{k: _setting(f, combo, k, combo[k], where) for k in combo} for combo in value]
    f.fail(
        f.at(parent, key),
        f"{where!r} must map each setting to a list of values (all combinations run), or be a list of "
        f"mappings (those combinations run), got {show(value)}.",
    )
    return []


def _pruning(f: SpecFile, doc: LinedMap, spec: SweepSpec) -> None:
    value = doc["pruning"]
    if isinstance(value, bool):
        spec.pruning = value
        return
    block = f.mapping(doc, "pruning", _PRUNING_KEYS)
    if "enabled" in block:
        if not isinstance(block["enabled"], bool):
            f.fail(f.at(block, "enabled"), f"'enabled' must be true or false, got {show(block['enabled'])}.")
        spec.pruning = block["enabled"]
    if "grace_period" in block:
        spec.grace_period = f.integer(block, "grace_period", 1)


def _search(f: SpecFile, doc: LinedMap, spec: SweepSpec) -> None:
    if len(spec.datasets) > 1:
        f.fail(f.at(doc, "datasets"), "a search tunes on one dataset; write one spec per dataset.")
    if "grid" in doc:
        f.fail(
            f.at(doc, "grid"), "a search samples its settings; put the values under search.space, or use mode: grid."
        )
    if "seeds" in doc:
        if len(spec.seeds) != 1:
            f.fail(
                f.at(doc, "seeds"),
                "a search trains each sampled setting once: give one seed (run the best settings over "
                "several seeds with a grid spec).",
            )
        spec.overrides["seed"] = spec.seeds[0]
    if "search" not in doc:
        return
    block = f.mapping(doc, "search", _SEARCH_KEYS)
    if "trials" in block:
        spec.trials = f.integer(block, "trials", 1)
    if "sampler_seed" in block:
        spec.seed = f.integer(block, "sampler_seed", 0)
    if "space" in block:
        spec.space = parse_space(f, f.mapping(block, "space"), "search.space")


def cell_text(cell: dict[str, Any]) -> str:
    """A grid cell for an error message: `model=sasrec dataset=ml-100k max_len=32 seed=42`."""
    keys = ["model", "dataset"] + [k for k in cell if k not in CELL_KEYS] + ["seed"]
    keys = [k for k in keys if k in cell]
    return " ".join(f"{k}={cell[k]}" for k in keys)


def spec_yaml(spec: SweepSpec) -> str:
    """The spec as a file `load_spec` reads back to the same sweep (logged on the parent run as
    `sweep.yaml`, so a sweep started from flags can be re-run, or edited, as a spec)."""
    from xlrec.sweeps.space import DEFAULT_SPACE

    fixed = dict(spec.overrides)
    doc: dict[str, Any] = {k: getattr(spec, k) for k in ("description", "experiment", "name") if getattr(spec, k)}
    doc["mode"] = spec.mode
    doc["datasets"] = list(spec.datasets)
    if spec.per_model:
        doc["models"] = {m: dict(spec.per_model.get(m, {})) or None for m in spec.models}
    else:
        doc["models"] = list(spec.models)
    doc["seeds"] = [fixed.pop("seed")] if spec.mode == "search" and "seed" in fixed else list(spec.seeds)
    if spec.mode == "search" and "seeds" in doc and len(doc["seeds"]) != 1:
        doc.pop("seeds")  # a search from flags trains with the config's seed
    if spec.epochs is not None:
        doc["epochs"] = spec.epochs
    if fixed:
        doc["fixed"] = fixed
    if spec.mode == "grid" and spec.grid != [{}]:
        doc["grid"] = [dict(c) for c in spec.grid]
    if spec.mode == "search":
        doc["search"] = {
            "trials": spec.trials,
            "sampler_seed": spec.seed,
            "space": spec.space if spec.space is not None else DEFAULT_SPACE,
        }
        doc["pruning"] = {"enabled": spec.pruning, "grace_period": spec.grace_period}
    doc["metric"] = spec.metric
    doc["resources"] = {
        "cpus_per_trial": spec.cpus_per_trial,
        "gpus_per_trial": "auto" if spec.gpus_auto else spec.gpus_per_trial,
        "max_concurrent": spec.max_concurrent,
        "max_failures": spec.max_failures,
    }
    if spec.group_seeds:
        doc["resources"]["group_seeds"] = True
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)
