"""What one Tune trial trains: its Tune config (a grid cell or what the search sampled) as the
run settings it overrides, and the runs of a grouped grid cell (one per seed)."""

from __future__ import annotations

from typing import Any


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
