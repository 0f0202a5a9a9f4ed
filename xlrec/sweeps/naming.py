"""The names trials get (the MLflow runs list shows what differs between trials), their
settings as the progress lines print them, and how those lines are printed (`say`, `duration`):
light, so a command's parser can use them without importing Ray."""

from __future__ import annotations

import sys
from typing import Any

from xlrec.sweeps.trial_config import trial_overrides

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
    if isinstance(value, list):  # as its MLflow param: 1,4
        return ",".join(_number(v, key) for v in value)
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


def say(text: str) -> None:
    print(f"[xlrec] {text}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
