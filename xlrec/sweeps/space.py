"""The search space, define-by-run so constraints never crash a trial.

A spec's `search.space` (and a model's own `space`) are Optuna distributions by setting; without
one the built-in space below is searched. `head_dim` is a helper: `embedding_dim` is sampled as
heads x per-head width, so it is always divisible by the number of heads (mLSTM and attention
both need that) instead of being rejected later. With several models, Optuna samples the model
first and then that model's space (a conditional space; TPE handles it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import optuna

from xlrec.config import resolve_config, settings_class
from xlrec.settings import PREP_HINTS, RUN_HINTS
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
        choices = dist["categorical"]
        if any(isinstance(c, list) for c in choices):  # e.g. dilations: [[1, 4], [1, 2, 4]]
            # Optuna stores only scalar choices: a list is sampled as its JSON text
            return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in choices]))
        return trial.suggest_categorical(key, choices)
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
    # constants of the trial, over what Optuna recorded: list choices as lists, derived widths
    constants: dict[str, Any] = {k: v for k, v in sampled.items() if isinstance(v, list)}
    if "head_dim" in sampled:
        heads: Any = sampled.get("num_heads", fixed.get("num_heads"))
        if heads is None:  # the model's default head count for this dataset
            heads = getattr(resolve_config(model, spec.dataset).arch, "num_heads", 1)
        constants["embedding_dim"] = int(heads) * int(sampled["head_dim"])
    return constants or None
