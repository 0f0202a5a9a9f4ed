"""Where a sweep keeps Tune's results and the Optuna study when no flag names a place."""

from __future__ import annotations

import os
from pathlib import Path

# Ray's job supervisor hands a job's entrypoint its job config in this variable.
_RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """True when this process is a `ray job submit` entrypoint."""
    return _RAY_JOB_ENV in os.environ


def sweep_home() -> Path:
    """The working directory, except in a Ray job: there it is a temporary copy of --working-dir
    that Ray deletes, so the study and the trials' results would go with it; ~/.xlrec outlives it."""
    if not in_ray_job():
        return Path.cwd()
    home = Path.home() / ".xlrec"
    home.mkdir(parents=True, exist_ok=True)  # sqlite creates optuna.db, not its directory
    return home
