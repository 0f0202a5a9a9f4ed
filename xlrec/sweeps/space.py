"""The architecture search space, define-by-run so constraints never crash a trial.

`embedding_dim` is sampled as heads x per-head width, so it is always divisible by the
number of heads (mLSTM and attention both need that) instead of being rejected later.
"""

from __future__ import annotations

from typing import Any

import optuna

# Sized so a default search on ML-100K fits a 2-core CPU in minutes (dims 16..128, 1-2 blocks);
# widen them for GPU sweeps of the paper's larger settings (dim 256, 4 blocks).
HEADS = (1, 2, 4)
HEAD_DIMS = (16, 32)
BLOCKS = (1, 2)  # inclusive range
LR = (3e-4, 3e-3)
DROPOUT = (0.0, 0.5)


def define_space(trial: optuna.Trial, fixed: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Sample the architecture; settings fixed with `--set` are not searched (they hold for every trial)."""
    fixed = fixed or {}
    const: dict[str, Any] = {}
    if "embedding_dim" in fixed:  # only head counts that divide the fixed width
        if "num_heads" not in fixed:
            dim = int(fixed["embedding_dim"])
            trial.suggest_categorical("num_heads", [h for h in HEADS if dim % h == 0] or [1])
    else:
        heads = int(fixed["num_heads"]) if "num_heads" in fixed else trial.suggest_categorical("num_heads", list(HEADS))
        head_dim = trial.suggest_categorical("head_dim", list(HEAD_DIMS))
        const["embedding_dim"] = heads * head_dim  # constant (derived) value for the trial config
    if "num_blocks" not in fixed:
        trial.suggest_int("num_blocks", *BLOCKS)
    if "lr" not in fixed:
        trial.suggest_float("lr", *LR, log=True)
    if "dropout" not in fixed:
        trial.suggest_float("dropout", *DROPOUT)
    return const or None


def trial_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Turn a sampled config into TrainConfig overrides (drops the helper parameter head_dim)."""
    out = {k: v for k, v in config.items() if not k.startswith("_") and k != "head_dim"}
    if "head_dim" in config and "num_heads" in config:
        out["embedding_dim"] = int(config["num_heads"]) * int(config["head_dim"])
    return out


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
_ORDER = ("embedding_dim", "num_heads", "num_blocks", "lr", "dropout", "max_len", "seed")


def _number(value: Any, key: str) -> str:
    if key == "lr":  # 0.00213 -> 2.1e-3: the run list has no room for six decimals
        mantissa, exp = f"{float(value):.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return str(int(value)) if isinstance(value, float) else str(value)


def sampled_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a search trial sampled (embedding_dim derived from heads x width), or a grid
    cell's max_len and seed, in a fixed readable order."""
    out = trial_overrides(config)
    return {k: out[k] for k in _ORDER if k in out}


def trial_label(model: str, config: dict[str, Any], dataset: str | None = None) -> str:
    """A trial's run name: the model and what this trial sampled, e.g. `xlstm d128 h4 b2 lr2e-3 drop0.12`
    (search) or `sasrec L64 s123` (grid; `dataset` added when the grid spans several)."""
    parts = [model] + ([dataset] if dataset else [])
    parts += [f"{_SHORT[k]}{_number(v, k)}" for k, v in sampled_settings(config).items()]
    return " ".join(parts)


def settings_text(config: dict[str, Any]) -> str:
    """The sampled settings as `key=value` pairs for the progress lines."""
    return " ".join(
        f"{k}={_number(v, k) if k != 'lr' else f'{float(v):.3g}'}" for k, v in sampled_settings(config).items()
    )
