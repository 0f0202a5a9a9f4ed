"""What a sweep is asked to do (`SweepSpec`): one format for both modes, filled from a spec file
(`xlrec sweep --spec FILE`, see xlrec.sweeps.spec_file) or from flags, plus the facts the driver
learns while it runs that stopping and the progress lines need.

A grid sweep runs every cell of datasets x models x the grid's combinations x seeds once; a
search sweep lets Optuna sample the search space (and the model, when several are named) for
`trials` trials on one dataset, with ASHA pruning on the selection metric.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The metrics a trial reports every epoch; the sweep selects (ASHA, Optuna, best trial) on one.
METRICS = {"val_recall_at_10": "val Recall@10", "val_ndcg_at_10": "val NDCG@10"}
# A grid cell's settings that the sweep itself owns (never a grid axis or a fixed setting).
CELL_KEYS = ("model", "dataset", "seed")


@dataclass
class SweepSpec:
    mode: str = "search"  # search | grid
    models: list[str] = field(default_factory=lambda: ["xlstm"])
    datasets: list[str] = field(default_factory=lambda: ["ml-100k"])
    seeds: list[int] = field(default_factory=lambda: [42, 123, 2023])
    # grid axes as the list of their combinations ([{}]: no axis); `per_model` may add a model's own
    grid: list[dict[str, Any]] = field(default_factory=lambda: [{"max_len": L} for L in (32, 64, 128)])
    # settings every trial gets (`fixed:` in a spec, `--set` on the command line)
    overrides: dict[str, Any] = field(default_factory=dict)
    # model -> {"fixed": {...}, "grid": [combinations], "space": {...}}: what applies to that model only
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    # search: Optuna distributions by setting (xlrec.sweeps.space); None = the built-in space
    space: dict[str, dict[str, Any]] | None = None
    metric: str = "val_recall_at_10"
    pruning: bool = True
    trials: int = 8
    epochs: int | None = 8  # None (a grid spec without `epochs`): each model's own default
    grace_period: int = 2
    seed: int = 42  # the TPE sampler's seed
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # `gpus_per_trial: auto`: the share that spreads the trials running at once evenly over the
    # cluster's GPUs, set once Ray is up (xlrec.sweeps.ray_session.spread_over_gpus)
    gpus_auto: bool = False
    max_concurrent: int = 0
    max_failures: int = 0
    # grid: a cell's seeds train together in one trial process, a thread and CUDA stream each
    # (xlrec.sweeps.trial_group), each seed still its own MLflow run
    group_seeds: bool = False
    tracking_uri: str | None = None
    experiment: str | None = None
    ray_address: str | None = None
    storage_path: str | None = None
    study_storage: str | None = None
    name: str | None = None
    description: str | None = None  # what the sweep answers (the parent run's description begins with it)
    spec_file: str | None = None  # the file it was read from (logged on the parent run)
    resume: bool = False
    source: str | None = None
    # Learned while the sweep runs.
    served_db: str | None = field(default=None, init=False)  # the sqlite file the sweep's own server serves
    server_pid: int | None = field(default=None, init=False)  # that server (its process group)
    ray_started: bool = field(default=False, init=False)  # this driver called ray.init
    cells: int = field(default=0, init=False)  # trials to run (search) or grid cells

    @property
    def model(self) -> str:
        """The model a search tunes (the first when Optuna samples among several)."""
        return self.models[0]

    @property
    def dataset(self) -> str:
        return self.datasets[0]

    def fixed_for(self, model: str) -> dict[str, Any]:
        """The fixed settings of a trial of `model`: the common ones, then that model's own."""
        return {**self.overrides, **self.per_model.get(model, {}).get("fixed", {})}

    def grid_cells(self) -> list[dict[str, Any]]:
        """Every grid trial's own settings: dataset x model x (grid x the model's grid) x seed.
        A search has one "cell", its model and dataset (what the preflight resolves)."""
        if self.mode != "grid":
            return [{"model": m, "dataset": self.dataset} for m in self.models]
        cells = []
        for dataset, model in itertools.product(self.datasets, self.models):
            own = self.per_model.get(model, {}).get("grid") or [{}]
            for common, mine, seed in itertools.product(self.grid or [{}], own, self.seeds):
                cells.append({"model": model, "dataset": dataset, **common, **mine, "seed": seed})
        return cells

    def trial_cells(self) -> list[dict[str, Any]]:
        """What each Tune trial runs, in the order Tune starts them: a grid cell, or with `group_seeds`
        the cells that differ only in their seed, together (the cell's settings, and `seeds`).

        The models take turns (one trial of each, then the next of each): Ray places fractional-GPU
        trials on a GPU until it is full before it opens the next, so in the grid's own order the
        first GPU got every xLSTM and BERT4Rec trial of the paper's ML-1M grid, ran two minutes
        longer than the second and left it idle (docs/results/grids.md "Seeds in one process")."""
        cells = self.grid_cells()
        if self.mode != "grid":
            return cells
        if self.group_seeds:
            n = len(self.seeds)  # grid_cells lists a cell's seeds one after another
            cells = [
                {**{k: v for k, v in cells[i].items() if k != "seed"}, "seeds": [c["seed"] for c in cells[i : i + n]]}
                for i in range(0, len(cells), n)
            ]
        by_model: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for cell in cells:
            by_model.setdefault((cell["dataset"], cell["model"]), []).append(cell)
        turns = itertools.zip_longest(*by_model.values())
        return [cell for turn in turns for cell in turn if cell is not None]

    @property
    def runs_per_trial(self) -> int:
        return len(self.seeds) if self.group_seeds and self.mode == "grid" else 1

    def axes(self) -> list[str]:
        """The settings that differ between grid cells, in their order of appearance."""
        keys: dict[str, None] = {}
        for combo in [*(self.grid or []), *(g for p in self.per_model.values() for g in p.get("grid") or [])]:
            keys.update(dict.fromkeys(combo))
        return list(keys)

    def epochs_text(self) -> str:
        return f"up to {self.epochs} epochs" if self.epochs is not None else "each model's default epochs"

    def name_defaults(self) -> tuple[str, str]:
        """Fill in the name and the experiment, and return them. One experiment per dataset for
        every entry point (`xlrec train`, `xlrec sweep`, `mlflow run`, a Ray job), so a sweep's
        trials sit beside the single runs they compete with; the sweep's name says what it runs."""
        names = "_".join(dataset_label(d) for d in self.datasets)
        self.experiment = self.experiment or f"xlrec-{names}"
        self.name = self.name or f"{self.mode}-{'_'.join(self.models)}-{names}"
        return self.name, self.experiment


def dataset_label(dataset: str) -> str:
    """The name runs use for a dataset: a named one's, or a user file's sanitised stem."""
    from xlrec.data_prep import DATASETS, user_files

    if dataset in DATASETS or not user_files.looks_like_file(dataset):
        return dataset
    return user_files.dataset_name(Path(dataset), DATASETS)
