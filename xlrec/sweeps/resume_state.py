"""The file that lets `xlrec sweep --resume` pick up a sweep whose driver died.

It sits beside Tune's results (`<storage>/<name>.xlrec-sweep.json`) and names the parent run
to continue, Tune's experiment directory to restore, and the local tracking server the dead
driver served (its port, so the trials Tune restores keep their tracking URI, and its process
group, so the resumed driver can stop it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from xlrec.errors import ConfigError


@dataclass
class ResumeState:
    parent_run_id: str
    experiment_dir: str  # under the storage path: Tune's run name
    server_port: int | None = None
    server_pid: int | None = None


def state_file(storage_path: str, name: str) -> Path:
    return Path(storage_path) / f"{name}.xlrec-sweep.json"


def load(storage_path: str, name: str) -> ResumeState:
    """The state of the sweep `name`; a ConfigError when there is none to resume."""
    path = state_file(storage_path, name)
    if not path.is_file():
        raise ConfigError(
            f"There is no sweep named {name!r} to resume under {storage_path} (no {path.name}). "
            f"Run it without --resume, or pass the --name and --storage-path it was started with."
        )
    saved = json.loads(path.read_text())
    return ResumeState(
        saved["parent_run_id"], saved["experiment_dir"], saved.get("server_port"), saved.get("server_pid")
    )


def save(storage_path: str, name: str, state: ResumeState) -> None:
    Path(storage_path).mkdir(parents=True, exist_ok=True)
    state_file(storage_path, name).write_text(json.dumps(dataclasses.asdict(state)))
