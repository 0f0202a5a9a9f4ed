"""The search space, define-by-run so constraints never crash a trial, and the names trials get.

A spec's `search.space` (and a model's own `space`) are Optuna distributions by setting; without
one the built-in space below is searched. `head_dim` is a helper: `embedding_dim` is sampled as
heads x per-head width, so it is always divisible by the number of heads (mLSTM and attention
both need that) instead of being rejected later. With several models, Optuna samples the model
first and then that model's space (a conditional space; TPE handles it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import optuna

from xlrec.sweeps.lined_yaml import LinedMap, SpecFile, show
from xlrec.sweeps.spec import SweepSpec

# Sized so a default search on ML-100K fits a 2-core CPU in minutes (dims 16..128, 1-2 blocks);
# widen it in a spec for GPU sweeps of the paper's larger settings (dim 256, 4 blocks).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "num_heads": {"categorical": [1, 2, 4]},
    "head_dim": {"categorical": [16, 32]},
    "num_blocks": {"int": [1, 2], "log": False},
    "lr": {"float": [3e-4, 3e-3], "log": True},
    "dropout": {"float": [0.0, 0.5], "log": False},
}
# A family without heads (GRU4Rec, LSTM) searches the same widths directly.
_WIDTHS = {"categorical": [16, 32, 64, 128]}


@dataclass(frozen=True)
class SearchPlan:
    """What the search space needs of a SweepSpec, and nothing more: Tune pickles the searcher (this
    included) into ray_results, so it must not carry the spec's URIs and their credentials."""

    models: tuple[str, ...]
    dataset: str
    space: dict[str, dict[str, Any]] | None
    per_model: dict[str, dict[str, Any]]
    overrides: dict[str, Any]

    @classmethod
    def of(cls, spec: SweepSpec) -> SearchPlan:
        return cls(tuple(spec.models), spec.dataset, spec.space, spec.per_model, dict(spec.overrides))

    def fixed_for(self, model: str) -> dict[str, Any]:
        return {**self.overrides, **self.per_model.get(model, {}).get("fixed", {})}


def _family_keys(model: str) -> set[str]:
    from xlrec.config import settings_class
    from xlrec.settings import PREP_HINTS, RUN_HINTS

    return {f.name for f in dataclasses.fields(settings_class(model))} | set(RUN_HINTS) | set(PREP_HINTS)


def model_space(spec: SweepSpec | SearchPlan, model: str) -> dict[str, dict[str, Any]]:
    """What a trial of `model` samples: the spec's space (or the built-in one) with the model's own
    on top, less the settings the model does not have and those fixed for it."""
    space = dict(DEFAULT_SPACE if spec.space is None else spec.space)
    space.update(spec.per_model.get(model, {}).get("space", {}))
    own, fixed = _family_keys(model), spec.fixed_for(model)
    if spec.space is None and "num_heads" not in own and "embedding_dim" not in space:
        space["embedding_dim"] = _WIDTHS
    if "num_heads" not in own or "embedding_dim" in fixed:
        space.pop("head_dim", None)
    return {k: v for k, v in space.items() if (k in own or k == "head_dim") and k not in fixed}


def _suggest(trial: optuna.Trial, key: str, dist: dict[str, Any]) -> Any:
    if "categorical" in dist:
        return trial.suggest_categorical(key, dist["categorical"])
    if "int" in dist:
        return trial.suggest_int(key, *dist["int"], step=dist.get("step", 1), log=dist.get("log", False))
    return trial.suggest_float(key, *dist["float"], step=dist.get("step"), log=dist.get("log", False))


def define_space(trial: optuna.Trial, spec: SweepSpec | SearchPlan) -> dict[str, Any] | None:
    """Sample one trial's settings (Ray's OptunaSearch define-by-run); returns the derived constants."""
    model = trial.suggest_categorical("model", list(spec.models)) if len(spec.models) > 1 else spec.models[0]
    fixed = spec.fixed_for(model)
    space = model_space(spec, model)
    if "embedding_dim" in fixed and "num_heads" in space and "categorical" in space["num_heads"]:
        dim = int(fixed["embedding_dim"])  # only head counts that divide the fixed width
        space["num_heads"] = {"categorical": [h for h in space["num_heads"]["categorical"] if dim % h == 0] or [1]}
    sampled = {key: _suggest(trial, key, dist) for key, dist in space.items()}
    if "head_dim" not in sampled:
        return None
    heads: Any = sampled.get("num_heads", fixed.get("num_heads"))
    if heads is None:  # the model's default head count for this dataset
        from xlrec.config import resolve_config

        heads = getattr(resolve_config(model, spec.dataset).arch, "num_heads", 1)
    return {"embedding_dim": int(heads) * int(sampled["head_dim"])}  # constant (derived) value for the trial


def trial_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's Tune config as TrainConfig overrides: a grid cell's settings, or what the search
    sampled (the helper head_dim dropped; embedding_dim is its derived constant)."""
    out = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("head_dim", "cell")}
    out.update({k: v for k, v in (config.get("cell") or {}).items() if k != "seeds"})
    if "head_dim" in config and "num_heads" in config and "embedding_dim" not in out:
        out["embedding_dim"] = int(config["num_heads"]) * int(config["head_dim"])
    return out


def member_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a trial trains: itself, or each seed of a grouped grid cell (`seeds`, the spec's
    group_seeds) as a trial config of that cell and one seed."""
    cell = config.get("cell") or {}
    if "seeds" not in cell:
        return [config]
    own = {k: v for k, v in cell.items() if k != "seeds"}
    return [{**config, "cell": {**own, "seed": seed}} for seed in cell["seeds"]]


# Short labels for run names (the MLflow runs list shows what differs between trials).
_SHORT = {
    "embedding_dim": "d",
    "num_heads": "h",
    "num_blocks": "b",
    "lr": "lr",
    "dropout": "drop",
    "max_len": "L",
    "seed": "s",
}
_ORDER = ("embedding_dim", "num_heads", "num_blocks", "lr", "dropout", "max_len")
_NOT_SHOWN = ("model", "dataset")


def _number(value: Any, key: str) -> str:
    if key == "lr":  # 0.00213 -> 2.1e-3: the run list has no room for six decimals
        mantissa, exp = f"{float(value):.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if key == "dropout" else f"{value:.4g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def sampled_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a trial different: the settings a search trial sampled (embedding_dim derived
    from heads x width) or a grid cell's axes, in a fixed readable order, the seed last."""
    out = trial_overrides(config)
    keys = [k for k in _ORDER if k in out]
    keys += [k for k in out if k not in keys and k not in _NOT_SHOWN and k != "seed"]
    keys += ["seed"] if "seed" in out else []
    return {k: out[k] for k in keys}


def _label(key: str, value: Any) -> str:
    return f"{_SHORT[key]}{_number(value, key)}" if key in _SHORT else f"{key}={_number(value, key)}"


def trial_label(model: str, config: dict[str, Any], dataset: str | None = None) -> str:
    """A trial's run name: the model and what this trial sampled, e.g. `xlstm d128 h4 b2 lr2e-3 drop0.12`
    (search) or `sasrec L64 ema_decay=0.99 s123` (grid; `dataset` added when the grid spans several)."""
    parts = [model] + ([dataset] if dataset else [])
    parts += [_label(k, v) for k, v in sampled_settings(config).items()]
    return " ".join(parts)


def settings_text(config: dict[str, Any]) -> str:
    """The trial's model (when the sweep chose it) and sampled settings as `key=value` pairs for
    the progress lines."""
    model = trial_overrides(config).get("model")
    return " ".join(
        ([str(model)] if model else [])
        + [f"{k}={_number(v, k) if k != 'lr' else f'{float(v):.3g}'}" for k, v in sampled_settings(config).items()]
    )


# --- reading a spec's `space:` (xlrec.sweeps.spec_file) ---------------------------------------
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
    from xlrec.config import setting_names

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
