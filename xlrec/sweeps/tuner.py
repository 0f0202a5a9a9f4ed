"""The sweep's `tune.Tuner`: what each trial gets (the param space), how trials are chosen
(OptunaSearch with a seeded TPE sampler and an RDB study in search mode, `tune.grid_search` in
grid mode) and stopped (ASHA on the spec's metric, in a search with pruning on), and where Tune keeps
its state (restored by `--resume`)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, cast

from xlrec.errors import ConfigError
from xlrec.redact import redact
from xlrec.sweeps.paths import sweep_home
from xlrec.sweeps.resume_state import ResumeState
from xlrec.sweeps.spec import SweepSpec
from xlrec.sweeps.trainable import run_trial


def study_storage(spec: SweepSpec) -> str:
    """The Optuna storage URL, without a PostgreSQL password: Tune pickles the searcher, storage
    URL included, into ray_results, so the password moves to PGPASSWORD (libpq reads it there)."""
    if not spec.study_storage:
        return f"sqlite:///{sweep_home() / 'optuna.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(spec.study_storage)
    except ArgumentError:
        raise ConfigError(
            f"--study-storage {redact(spec.study_storage)!r} is not a database URL; use e.g. "
            f"postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB or sqlite:///optuna.db."
        ) from None
    if url.password and url.get_backend_name() == "postgresql":
        os.environ["PGPASSWORD"] = str(url.password)
        return url._replace(password=None).render_as_string(hide_password=False)  # set(password=None) keeps it
    return spec.study_storage


def _search_alg(spec: SweepSpec, study_name: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from xlrec.sweeps.space import SearchPlan, define_space

    class _MarkingOptunaSearch(OptunaSearch):
        """Records failed and pruned trials as FAIL/PRUNED in the study (Ray tells COMPLETE)."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            ot_trial = self._ot_trials.get(trial_id)
            if (
                ot_trial is not None
                and trial_id not in self._completed_trials
                and (error or not (result or {}).get("trial_finished", False))
            ):
                state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
                try:
                    cast("optuna.Study", self._ot_study).tell(ot_trial, None, state=state)
                except Exception:  # already told (e.g. a retried trial)
                    pass
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    storage = optuna.storages.RDBStorage(study_storage(spec))
    sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=max(2, min(5, spec.trials // 2)))
    space = functools.partial(define_space, spec=SearchPlan.of(spec))  # fixed settings are not searched
    return _MarkingOptunaSearch(
        space=space, metric=spec.metric, mode="max", sampler=sampler, study_name=study_name, storage=storage
    )


def _param_space(spec: SweepSpec, uri: str, parent_id: str) -> dict[str, Any]:
    """What every trial gets under `_xlrec` (Tune writes it into ray_results, so a URI's or a
    source's password is masked here and reaches the trials in their environment instead),
    plus the grid's axes in grid mode."""
    from ray import tune

    base = {
        "model": spec.model,
        "dataset": spec.dataset,
        "tracking_uri": redact(uri),
        "experiment": spec.experiment,
        "parent_run_id": parent_id,
        "overrides": {
            **({"epochs": spec.epochs} if spec.epochs is not None else {}),
            "source": redact(spec.source) if spec.source else None,
            **spec.overrides,
        },
        "per_model": {m: p.get("fixed", {}) for m, p in spec.per_model.items() if p.get("fixed")},
        "threads": max(1, int(spec.cpus_per_trial)),
        "stack_seeds": spec.stack_seeds,
        "tuned": spec.tuned,
        "multi_dataset": spec.mode == "grid" and len(spec.datasets) > 1,
    }
    if spec.mode == "search":
        return {"_xlrec": base}
    # One grid axis of whole cells: Tune's per-key grid_search can only form a full cartesian
    # product, and a spec's grid may list combinations or give a model axes of its own.
    return {"_xlrec": base, "cell": tune.grid_search(spec.trial_cells())}


def make_tuner(
    spec: SweepSpec,
    gpus_per_trial: float,
    uri: str,
    parent_id: str,
    storage_path: str,
    tune_name: str,
    saved: ResumeState | None,
    callbacks: list,
):
    """A new Tuner, or the one `saved` names restored (unfinished and errored trials resume).
    `tune_name` names both Tune's experiment and the Optuna study."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    # Trials checkpoint every epoch on purpose (fault tolerance); Tune warns about frequent
    # experiment snapshots then, which says nothing actionable to a sweep user.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(run_trial, {"cpu": spec.cpus_per_trial, "gpu": gpus_per_trial})
    param_space = _param_space(spec, uri, parent_id)
    if saved:
        return tune.Tuner.restore(
            str(Path(storage_path) / saved.experiment_dir),
            trainable=trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=True,
        )
    search = spec.mode == "search"
    scheduler = ASHAScheduler(
        metric=spec.metric,
        mode="max",
        time_attr="training_iteration",
        max_t=(spec.epochs or 1) + 1,
        grace_period=spec.grace_period,
        reduction_factor=2,
    )
    tune_config = tune.TuneConfig(
        # ASHA prunes searches only: every grid cell (model, max_len, seed) must finish for Table 4
        scheduler=scheduler if search and spec.pruning else None,
        num_samples=spec.trials if search else 1,
        search_alg=_search_alg(spec, tune_name) if search else None,
        max_concurrent_trials=spec.max_concurrent or None,
        time_budget_s=spec.time_budget_s if search else None,
        # A new trial runs in the actor a finished one leaves (same resources): no new worker
        # process and no second import of torch, xlstm and mlflow (docs/results/main-job.md "What
        # the job's settings save").
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=tune_name,
        storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # trials checkpoint every epoch; a retry needs only the latest
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=0,
        callbacks=callbacks,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
