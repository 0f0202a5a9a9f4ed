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
                group_seeds: false,              # grid: a cell's seeds share one trial process (GPU)
                stack_seeds: false}              # ... and train as one batched model (torch.func.vmap)

Every problem names its line (xlrec.sweeps.lined_yaml); the search space's distributions are read
by `parse_space` below.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from xlrec.config import arch_hints, setting_names
from xlrec.errors import ConfigError
from xlrec.settings import PREP_HINTS, RUN_HINTS, SettingInfo, coerce, settings_of
from xlrec.settings.types import describe
from xlrec.sweeps.lined_yaml import LinedMap, SpecFile, load, show
from xlrec.sweeps.spec import CELL_KEYS, SweepSpec

# Settings the spec names at its top level, never as a training setting of `fixed`/`grid`/`space`.
_TOP_LEVEL = {"model": "models", "dataset": "datasets", "seed": "seeds", "source": "--source"}
# The structural keys, read by their own readers below; every scalar setting's key comes from its
# SweepSpec field (`setting(..., key="resources.cpus_per_trial")`).
_STRUCTURE = {
    "datasets": "dataset names",
    "models": "model names, or a mapping model -> {fixed, grid, space}",
    "seeds": "training seeds",
    "fixed": "training settings every trial gets",
    "grid": "grid axes",
}
_SEARCH_SPACE = "space"
_MODEL_KEYS = ("fixed", "grid", "space")


def _scalars() -> list[SettingInfo]:
    return [s for s in settings_of(SweepSpec, declared_only=True) if s.key is not None]


def _sections() -> dict[str, tuple[str, ...]]:
    """Top-level key -> its known keys (a section such as `resources`), () for a plain key."""
    out: dict[str, tuple[str, ...]] = {k: () for k in _STRUCTURE}
    for info in _scalars():
        head, _, rest = info.key.partition(".")  # type: ignore[union-attr]
        out[head] = (*out.get(head, ()), rest) if rest else out.get(head, ())
    out["search"] = (*out["search"], _SEARCH_SPACE)
    return out


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
    f.known(doc, tuple(_sections()), "the spec")
    return _build(f, doc)


def _build(f: SpecFile, doc: LinedMap) -> SweepSpec:
    spec = SweepSpec(spec_file=f.path)
    spec.mode = doc.get("mode", "search" if "search" in doc else "grid")
    sections = _sections()
    for key, known in sections.items():
        if known and key in doc:
            f.mapping(doc, key, known)
    if "pruning" in doc and isinstance(doc["pruning"], bool):  # `pruning: false` for `pruning: {enabled: false}`
        pruning = LinedMap(enabled=doc["pruning"])
        pruning.line = f.at(doc, "pruning")
        pruning.lines = {"enabled": pruning.line}
        doc["pruning"] = pruning
    for info in _scalars():
        _scalar(f, doc, spec, info)
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
    if "epochs" not in doc and spec.mode == "grid":
        spec.epochs = None  # each model's own default (xLSTM's cosine schedule spans its 30)
    if "fixed" in doc:
        block = f.mapping(doc, "fixed")
        if "epochs" in block:  # a cell or a model may set its own; for every trial it is the top-level key
            f.fail(f.at(block, "epochs"), "'epochs' for every trial is the spec's top-level 'epochs' key.")
        spec.overrides = _settings(f, block, "fixed")
    spec.grid = _grid(f, doc, "grid") if "grid" in doc else [{}]
    if spec.group_seeds and spec.mode != "grid":
        res = doc["resources"]
        f.fail(
            f.at(res, "group_seeds"),
            "'group_seeds' applies to a grid, whose cells train several seeds; a search trial trains "
            "one. Remove it, or use mode: grid.",
        )
    if spec.mode == "search":
        _search(f, doc, spec)
    elif any(p.get("space") for p in spec.per_model.values()):
        f.fail(f.at(doc, "models"), "a model's 'space' applies to a search; a grid has no search space.")
    return spec


def _scalar(f: SpecFile, doc: LinedMap, spec: SweepSpec, info: SettingInfo) -> None:
    """One scalar setting at its key (`epochs`, `resources.cpus_per_trial`), checked against its
    field: type (or its own parser), choices and smallest value."""
    assert info.key is not None
    parent, *rest = info.key.split(".")
    block, leaf = (doc, parent) if not rest else (doc.get(parent), rest[0])
    if not isinstance(block, LinedMap) or leaf not in block:
        return
    value, line = block[leaf], f.at(block, leaf)
    if info.parse is not None:
        try:
            value = info.parse(value)
        except ValueError as exc:
            f.fail(line, f"{leaf!r} must be {exc}, got {show(block[leaf])}.")
    else:
        try:
            value = coerce(leaf, value, info.hint, "the spec")
        except ConfigError:
            f.fail(line, f"{leaf!r} must be {describe(info.hint)}, got {show(value)}.")
    if isinstance(value, str) and info.hint in (str, str | None) and not value.strip():
        f.fail(line, f"{leaf!r} must be a non-empty string, got {show(value)}.")
    if info.choices is not None and value not in info.choices:
        f.fail(line, f"{leaf!r} must be one of {', '.join(map(str, info.choices))}, got {show(value)}.")
    if info.minimum is not None and isinstance(value, (int, float)) and value < info.minimum:
        f.fail(line, f"{leaf!r} must be {_at_least(info)}, got {show(value)}.")
    setattr(spec, info.name, value.strip() if isinstance(value, str) else value)


def _at_least(info: SettingInfo) -> str:
    kind = "an integer" if info.hint in (int, int | None) else "a number"
    return f"{kind} >= {info.minimum:g}"


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
    if "search" in doc and _SEARCH_SPACE in doc["search"]:
        spec.space = parse_space(f, f.mapping(doc["search"], _SEARCH_SPACE), "search.space")


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
    doc: dict[str, Any] = {}
    for info in _scalars():
        value = getattr(spec, info.name)
        if value is None or (spec.mode == "grid" and info.key.split(".")[0] in ("search", "pruning")):  # type: ignore[union-attr]
            continue
        if info.name in ("group_seeds", "stack_seeds") and not value:
            continue
        parent, _, leaf = info.key.partition(".")  # type: ignore[union-attr]
        if leaf:
            doc.setdefault(parent, {})[leaf] = value
        else:
            doc[parent] = value
    doc["datasets"] = list(spec.datasets)
    if spec.per_model:
        doc["models"] = {m: dict(spec.per_model.get(m, {})) or None for m in spec.models}
    else:
        doc["models"] = list(spec.models)
    doc["seeds"] = [fixed.pop("seed")] if spec.mode == "search" and "seed" in fixed else list(spec.seeds)
    if spec.mode == "search" and "seeds" in doc and len(doc["seeds"]) != 1:
        doc.pop("seeds")  # a search from flags trains with the config's seed
    if fixed:
        doc["fixed"] = fixed
    if spec.mode == "grid" and spec.grid != [{}]:
        doc["grid"] = [dict(c) for c in spec.grid]
    if spec.mode == "search":
        doc["search"][_SEARCH_SPACE] = spec.space if spec.space is not None else DEFAULT_SPACE
    return yaml.safe_dump(_plain(doc), sort_keys=False, default_flow_style=None, width=110)


def _plain(value: Any) -> Any:
    """Plain dicts and lists (a spec read from a file holds LinedMap/LinedList values)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- a search's `space:` --------------------------------------------------------------------
_DISTRIBUTIONS = ("int", "float", "categorical")
# settings a sweep sets itself (never searched)
_OWN = {"model", "dataset", "seed", "source", "epochs"}


def parse_space(f: SpecFile, block: LinedMap, where: str) -> dict[str, dict[str, Any]]:
    """Optuna distributions: {int: [low, high]}, {float: [low, high], log: true}, {categorical: [...]}
    (`step` allowed for int and float). `head_dim` is searchable too: embedding_dim = num_heads x head_dim."""
    out = {}
    for key, dist in block.items():
        line = f.at(block, key)
        if key != "head_dim" and (key in _OWN or key not in _searchable()):
            f.fail(line, f"cannot search {key!r} in {where}: not a training setting, or one the sweep sets itself.")
        if not isinstance(dist, LinedMap) or len([k for k in dist if k in _DISTRIBUTIONS]) != 1:
            f.fail(
                line,
                f"{key!r}: write one of {{int: [low, high]}}, {{float: [low, high], log: true}} or "
                f"{{categorical: [a, b]}}.",
            )
        kind = next(k for k in dist if k in _DISTRIBUTIONS)
        f.known(dist, (kind, "log", "step"), f"{where}.{key}")
        out[key] = _distribution(f, dist, key, kind, line)
    return out


def _searchable() -> set[str]:
    return setting_names() - {"prep"}


def _distribution(f: SpecFile, dist: LinedMap, key: str, kind: str, line: int) -> dict[str, Any]:
    values = dist[kind]
    if kind == "categorical":
        if not isinstance(values, list) or not values:
            f.fail(line, f"{key!r}: categorical needs a non-empty list of choices, got {show(values)}.")
        return {"categorical": list(values)}
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(values, list)
        or len(values) != 2
        or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)
        or values[0] > values[1]
    ):
        f.fail(line, f"{key!r}: {kind} needs [low, high] {kind}s with low <= high, got {show(values)}.")
    log = dist.get("log", False)
    if not isinstance(log, bool) or (log and values[0] <= 0):
        f.fail(line, f"{key!r}: log must be true or false, and a log range must start above 0.")
    out: dict[str, Any] = {kind: [values[0], values[1]], "log": log}
    if "step" in dist:
        if log or not isinstance(dist["step"], number) or dist["step"] <= 0:
            f.fail(line, f"{key!r}: step must be a positive {kind}, and cannot be combined with log.")
        out["step"] = dist["step"]
    return out
