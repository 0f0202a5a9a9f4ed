"""What a sweep is asked to do (`SweepSpec`): one format for both modes, filled from a spec file
(`xlrec sweep --spec FILE`, see xlrec.sweeps.spec_file) or from flags (xlrec.cli.sweep). What the
driver learns while the sweep runs is its `SweepState` (xlrec.sweeps.state), not the spec's.

A grid sweep runs every cell of datasets x models x the grid's combinations x seeds once; a
search sweep lets Optuna sample the search space (and the model, when several are named) for
`trials` trials on one dataset, with ASHA pruning on the selection metric.

Each scalar setting is one field declared with `setting`: its spec-file key (`key`), its flag,
its help text, its smallest value and the parent run's param all follow from it (the spec
reader, the CLI and the driver read the fields; nothing lists them a second time).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from xlrec.catalog.datasets import dataset_label
from xlrec.settings import SELECTION_METRIC_LABEL, VAL_SELECTION_KEY, metric_key, setting

# The metrics a trial reports every epoch; the sweep selects (ASHA, Optuna, best trial) on one.
METRICS = {VAL_SELECTION_KEY: f"val {SELECTION_METRIC_LABEL}", metric_key("ndcg@10", "val"): "val NDCG@10"}
# A grid cell's settings that the sweep itself owns (never a grid axis or a fixed setting).
CELL_KEYS = ("model", "dataset", "seed")
AUTO = "auto"


def gpu_share(value: Any) -> float | str:
    """A trial's GPU share: a number, or `auto` (spread the trials at once over every GPU)."""
    if isinstance(value, str) and value.strip() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a number or auto")
    try:
        return float(value)
    except ValueError:
        raise ValueError("a number or auto") from None


@dataclass
class SweepSpec:
    # --- the spec's structure (read by xlrec.sweeps.spec_file's own readers)
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
    # --- scalar settings: spec key, flag and help from each field
    mode: str = setting(
        "search", "search (Optuna samples the settings) | grid (every cell runs)", choices=("search", "grid")
    )
    description: str | None = setting(
        None, "what the sweep answers (the parent run's description starts with it)", flag=None
    )
    experiment: str | None = setting(None, "the MLflow experiment (default xlrec-<datasets>)")
    name: str | None = setting(None, "the sweep's name: its parent run's (needed to --resume it)")
    epochs: int | None = setting(
        8, "the most epochs a trial trains (a grid spec without it: each model's own)", minimum=1
    )
    metric: str = setting(VAL_SELECTION_KEY, "what ASHA, Optuna and the best trial select on", choices=tuple(METRICS))
    trials: int = setting(8, "search: number of Optuna trials", key="search.trials", minimum=1)
    seed: int = setting(42, "search: the TPE sampler's seed", key="search.sampler_seed", minimum=0)
    time_budget_s: float | None = setting(
        None,
        "search: stop after this many seconds, trials still running then ending as pruned (Tune's time_budget_s)",
        key="search.time_budget_s",
        minimum=1,
    )
    pruning: bool = setting(True, "search: ASHA stops trials that trail on the metric", key="pruning.enabled")
    grace_period: int = setting(2, "ASHA: epochs before a trial may be pruned", key="pruning.grace_period", minimum=1)
    cpus_per_trial: float = setting(1.0, "CPUs per trial", key="resources.cpus_per_trial", minimum=0)
    gpus_per_trial: float | str = setting(
        0.0,
        "GPUs per trial: a share (0.25 packs 4 trials per GPU), or auto: the trials at once spread over every GPU",
        key="resources.gpus_per_trial",
        minimum=0,
        parse=gpu_share,
    )
    max_concurrent: int = setting(
        0, "bound on trials at once (0 = what the resources allow)", key="resources.max_concurrent", minimum=0
    )
    max_failures: int = setting(0, "retries per failed trial (-1 = forever)", key="resources.max_failures", minimum=-1)
    # xlrec.sweeps.trial_group: a thread and CUDA stream each, each seed still its own MLflow run
    group_seeds: bool = setting(
        False,
        "grid: a cell's seeds train together in one trial process (--gpus-per-trial is then the group's share)",
        key="resources.group_seeds",
    )
    # xlrec.training.stacked: one vmapped model instead of a thread and stream per seed
    stack_seeds: bool = setting(
        False,
        "grid with group_seeds: a cell's seeds train as one batched model (torch.func.vmap; SASRec, and xLSTM "
        "on its native kernels), each seed still its own run",
        key="resources.stack_seeds",
    )
    # --- where the sweep runs: flags only, never in a spec file (a spec is shared, these are a host's)
    tracking_uri: str | None = setting(
        None, "MLflow server (http://...); default: serve ./mlflow.db locally for the sweep", key=None
    )
    ray_address: str | None = setting(None, "existing Ray cluster (else RAY_ADDRESS or a local one)", key=None)
    storage_path: str | None = setting(
        None,
        "Ray Tune results (default ./ray_results; in a Ray job, whose working directory Ray deletes, "
        "~/.xlrec/ray_results; with several hosts, a shared filesystem or s3://)",
        key=None,
    )
    study_storage: str | None = setting(
        None,
        "Optuna RDB storage URL (default sqlite:///optuna.db, in ~/.xlrec/ in a Ray job; PostgreSQL for a "
        "shared server)",
        key=None,
    )
    source: str | None = setting(None, "dataset mirror directory or base URL", key=None)
    resume: bool = setting(False, "continue the sweep of this --name after its driver died (Tuner.restore)", key=None)
    defaults_dir: str | None = setting(
        None,
        "tuned defaults (the files `xlrec tune` writes) for the trials: default XLREC_DEFAULTS_DIR or "
        "./xlrec-defaults; none: the packaged defaults alone",
        key=None,
    )
    spec_file: str | None = None  # the file it was read from (logged on the parent run)
    # the tuned defaults the trials start from (read by the driver: trials on another host get the
    # content, not a path); xlrec.config.defaults.load_tuned
    tuned: dict[str, Any] = field(default_factory=dict)
    nested_in: str | None = None  # the run this sweep's parent nests under (`xlrec tune`'s own)

    @property
    def gpus_auto(self) -> bool:
        return self.gpus_per_trial == AUTO

    @property
    def gpu_share(self) -> float:
        """The GPU share as given (0 while `auto` is unresolved: the state holds the resolved one)."""
        return 0.0 if self.gpus_per_trial == AUTO else float(self.gpus_per_trial)

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
        trials on a GPU until it is full before it opens the next, so in the grid's own order one GPU
        gets all the long models' trials and the other goes idle early (docs/results/grids.md "Seeds
        in one process")."""
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

    def trial_count(self) -> int:
        """Tune trials: a search's trials, or a grid's cells (a grouped cell's seeds are one trial)."""
        return len(self.trial_cells()) if self.mode == "grid" else self.trials

    def run_count(self) -> int:
        """Training runs: a search's trials, or a grid's cells with every seed."""
        return len(self.grid_cells()) if self.mode == "grid" else self.trials

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
