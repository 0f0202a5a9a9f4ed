"""What a sweep is asked to do (`SweepSpec`), its default names, and the facts the driver
learns while it runs that stopping and the progress lines need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SweepSpec:
    mode: str = "search"  # search | grid
    model: str = "xlstm"
    dataset: str = "ml-100k"
    models: list[str] = field(default_factory=lambda: ["xlstm"])
    datasets: list[str] = field(default_factory=lambda: ["ml-100k"])
    max_lens: list[int] = field(default_factory=lambda: [32, 64, 128])
    seeds: list[int] = field(default_factory=lambda: [42, 123, 2023])
    trials: int = 8
    epochs: int = 8
    grace_period: int = 2
    seed: int = 42
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    max_failures: int = 0
    tracking_uri: str | None = None
    experiment: str | None = None
    ray_address: str | None = None
    storage_path: str | None = None
    study_storage: str | None = None
    name: str | None = None
    resume: bool = False
    source: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    # Learned while the sweep runs.
    served_db: str | None = field(default=None, init=False)  # the sqlite file the sweep's own server serves
    server_pid: int | None = field(default=None, init=False)  # that server (its process group)
    ray_started: bool = field(default=False, init=False)  # this driver called ray.init
    cells: int = field(default=0, init=False)  # trials to run (search) or grid cells

    def name_defaults(self) -> tuple[str, str]:
        """Fill in the name and the experiment, and return them. One experiment per dataset for
        every entry point (`xlrec train`, `xlrec sweep`, `mlflow run`, a Ray job), so a sweep's
        trials sit beside the single runs they compete with; the sweep's name says what it runs."""
        search = self.mode == "search"
        self.experiment = self.experiment or (f"xlrec-{self.dataset}" if search else f"xlrec-{'_'.join(self.datasets)}")
        self.name = self.name or (
            f"{self.mode}-{self.model}-{self.dataset}"
            if search
            else f"grid-{'_'.join(self.models)}-{'_'.join(self.datasets)}"
        )
        return self.name, self.experiment
