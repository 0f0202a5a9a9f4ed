"""`xlrec sweep`: a parent MLflow run, Ray Tune trials, Optuna search or the paper's grid.

Flow: resolve the tracking server (with the embedded default, start a local `mlflow
server` on sqlite:///mlflow.db for the sweep's duration), open the parent run (adopting
`mlflow run`'s MLFLOW_RUN_ID), run the trials with `tune.Tuner` (OptunaSearch with a
seeded TPE sampler and an RDB study in search mode, `tune.grid_search` in grid mode;
ASHA on validation Recall@10 in search mode), then log the trials table, Optuna's plots or the
Table-4 aggregate to the parent and print one JSON line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlrec.errors import ConfigError
from xlrec.platform.mlflow_env import quiet_links_for
from xlrec.redact import redact
from xlrec.sweeps.paths import sweep_home
from xlrec.sweeps.stopping import StopSignals, abort, reap_dead_trials, stop_ray
from xlrec.sweeps.trial import METRIC, SECRET_SOURCE_ENV, SECRET_URI_ENV, run_trial


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


def _kill_group(pid: int) -> None:
    from xlrec.platform.server import stop_process_group

    stop_process_group(pid)


def _tracking(spec: SweepSpec, stack: contextlib.ExitStack, port: int | None = None,
              server_pid: int | None = None) -> str:
    from xlrec.platform.server import health, local_sqlite_server
    from xlrec.platform.tracking import check_reachable

    uri = spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith(("http://", "https://")):
        check_reachable(uri)
        return uri
    db = sweep_home() / "mlflow.db"  # outside a Ray job: the working directory
    if uri:  # `mlflow run` exports the sqlite store it uses, e.g. sqlite:////abs/path/mlflow.db
        if not uri.startswith("sqlite:///"):
            raise ConfigError(f"A sweep logs its trials over HTTP; {uri!r} is neither a tracking server nor a "
                              f"sqlite file it could serve. Pass --tracking-uri http://HOST:PORT.")
        db = Path(uri[len("sqlite:///"):]).resolve()
    spec._sqlite_db = str(db)
    server = local_sqlite_server(db, port=port)  # a resumed sweep reuses its port: trials keep their URI
    if port and health(server.uri) == 200:  # the killed driver's server is still serving ./mlflow.db
        if server_pid:
            stack.callback(_kill_group, server_pid)
        return server.uri
    server.start()
    stack.callback(server.stop)
    spec._server_pid = server.proc.pid  # recorded so a resumed sweep can stop it if this driver dies
    return server.uri


def _parent_run(spec: SweepSpec, uri: str, resume_run: str | None = None):
    import mlflow

    quiet_links_for(uri)
    mlflow.set_tracking_uri(uri)
    env_run = os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run . -e sweep` made the parent for us
    from xlrec.platform.runs import process_tags
    from xlrec.platform.tracking import shield_signals

    adopted = env_run and not resume_run
    env_run = resume_run or env_run
    if not env_run:
        mlflow.set_experiment(spec.experiment)
    with shield_signals():  # the driver's handlers find the parent once it exists (and `runs reap` its owner)
        run = mlflow.start_run(run_id=env_run) if env_run else mlflow.start_run(run_name=spec.name)
    mlflow.set_tags(process_tags())
    if adopted:  # `mlflow run` named it at random and chose its experiment: name it after the sweep
        mlflow.set_tag("mlflow.runName", spec.name)
        wanted = spec.experiment
        spec.experiment = mlflow.get_experiment(run.info.experiment_id).name  # the trials nest there too
        if spec.experiment != wanted:
            from xlrec.sweeps.progress import say

            say(f"this sweep logs to the experiment {spec.experiment!r} that `mlflow run` chose; "
                f"`mlflow run ... --experiment-name {wanted}` puts it beside the other {spec.dataset} runs")
    return run


def _study_storage(spec: SweepSpec) -> str:
    """The Optuna storage URL, without a PostgreSQL password: Tune pickles the searcher, storage
    URL included, into ray_results, so the password moves to PGPASSWORD (libpq reads it there)."""
    if not spec.study_storage:
        return f"sqlite:///{sweep_home() / 'optuna.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(spec.study_storage)
    except ArgumentError:
        raise ConfigError(f"--study-storage {redact(spec.study_storage)!r} is not a database URL; use e.g. "
                          f"postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB or sqlite:///optuna.db.") from None
    if url.password and url.get_backend_name() == "postgresql":
        os.environ["PGPASSWORD"] = str(url.password)
        return url._replace(password=None).render_as_string(hide_password=False)  # set(password=None) keeps it
    return spec.study_storage


def _search_alg(spec: SweepSpec, study_name: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from xlrec.sweeps.space import define_space

    class _MarkingOptunaSearch(OptunaSearch):
        """Records failed and pruned trials as FAIL/PRUNED in the study (Ray tells COMPLETE)."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and trial_id not in self._completed_trials and (
                    error or not (result or {}).get("trial_finished", False)):
                state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
                try:
                    self._ot_study.tell(ot_trial, None, state=state)
                except Exception:  # already told (e.g. a retried trial)
                    pass
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    storage = optuna.storages.RDBStorage(_study_storage(spec))
    sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=max(2, min(5, spec.trials // 2)))
    space = functools.partial(define_space, fixed=spec.overrides)  # --set values are fixed, not searched
    return _MarkingOptunaSearch(space=space, metric=METRIC, mode="max", sampler=sampler,
                                study_name=study_name, storage=storage)


def _log_sweep_params(spec: SweepSpec, parent_id: str) -> None:
    """The sweep's settings, under the names of the MLproject parameters: `mlflow run` has logged
    those already (params are immutable), so a key it logged with the same value is not logged
    again, and a differing one is logged as resolved.<key>."""
    import mlflow

    if spec.mode == "search":
        params = {"mode": spec.mode, "model": spec.model, "dataset": spec.dataset, "trials": spec.trials}
    else:
        params = {"mode": spec.mode, "models": ",".join(spec.models), "datasets": ",".join(spec.datasets),
                  "max_lens": ",".join(map(str, spec.max_lens)), "seeds": ",".join(map(str, spec.seeds))}
    params.update({"epochs": spec.epochs, "grace_period": spec.grace_period, "sampler_seed": spec.seed,
                   "cpus_per_trial": spec.cpus_per_trial, "gpus_per_trial": spec.gpus_per_trial,
                   "max_concurrent": spec.max_concurrent})
    params.update({f"set.{k}": v for k, v in spec.overrides.items()})
    existing = mlflow.get_run(parent_id).data.params

    def same(a: str, b: Any) -> bool:
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)

    mlflow.log_params({(k if k not in existing else f"resolved.{k}"): redact(str(v)) for k, v in params.items()
                       if k not in existing or not same(existing[k], v)})


def _concurrency(spec: SweepSpec, total: int) -> int:
    """How many trials Ray can run at once: the cluster's CPUs (and GPUs) over a trial's share."""
    import ray

    res = ray.cluster_resources()
    fits = [res.get("CPU", 1.0) / spec.cpus_per_trial] if spec.cpus_per_trial else []
    if spec.gpus_per_trial:
        fits.append(res.get("GPU", 0.0) / spec.gpus_per_trial)
    n = int(math.floor(min(fits) + 1e-9)) if fits else total
    return max(1, min(total, n, spec.max_concurrent or total))


def _param_space(spec: SweepSpec, base: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    if spec.mode == "search":
        return {"_xlrec": base}
    return {"_xlrec": base, "model": tune.grid_search(spec.models), "dataset": tune.grid_search(spec.datasets),
            "max_len": tune.grid_search(spec.max_lens), "seed": tune.grid_search(spec.seeds)}


def _absolute(location: str | None) -> str | None:
    """A local path made absolute (URLs unchanged): trials run in their own working directories."""
    if not location or "://" in location:
        return location
    return str(Path(location).expanduser().resolve())


def _prepare_data(spec: SweepSpec) -> None:
    """Check the settings and prepare every dataset once, here, before any server or Ray starts.

    Every sweep argument, and the config of every grid cell (or the search's base config)
    with the --set values, is checked first; a wrong one then fails the sweep at once with
    one clear error (instead of failing every trial, or being ignored), and trials find the
    processed data in the cache. Data that the metrics cannot score (too few items, no warm
    user) is refused here too. Data locations become absolute: `XLREC_DATA_MIRROR=../shared/data`
    means the driver's directory, not each trial's.
    """
    from xlrec.config import resolve_config
    from xlrec.data_prep import leave_two_out, prepare
    from xlrec.sweeps.checks import check_spec, grid_cells
    from xlrec.training.evaluate import check_evaluable

    check_spec(spec)
    spec.source = _absolute(spec.source)
    for var in ("XLREC_DATA_MIRROR", "XLREC_DATA_DIR"):
        if os.environ.get(var):
            os.environ[var] = _absolute(os.environ[var])
    configs = {}
    for cell in grid_cells(spec):  # validates the fixed settings against every cell's config
        cell = dict(cell)
        cfg = resolve_config(cell.pop("model"), cell.pop("dataset"),
                             overrides={**spec.overrides, **cell, "source": spec.source})
        configs.setdefault(cfg.dataset, cfg)
    for cfg in configs.values():
        data = prepare(cfg.dataset, cfg.prep, cfg.source)
        check_evaluable(cfg.dataset, data.seqs, leave_two_out(data.seqs, cfg.cold_start_threshold),
                        cfg.cold_start_threshold)


def run_sweep(spec: SweepSpec) -> dict[str, Any]:
    import mlflow

    if spec.mode not in ("search", "grid"):
        raise ConfigError(f"--mode must be search or grid, got {spec.mode!r}.")
    # One experiment per dataset for every entry point (`xlrec train`, `xlrec sweep`, `mlflow run`,
    # a Ray job), so a sweep's trials sit beside the single runs they compete with.
    spec.experiment = spec.experiment or (f"xlrec-{spec.dataset}" if spec.mode == "search"
                                          else f"xlrec-{'_'.join(spec.datasets)}")
    name = spec.name or (f"{spec.mode}-{spec.model}-{spec.dataset}" if spec.mode == "search"
                         else f"grid-{'_'.join(spec.models)}-{'_'.join(spec.datasets)}")
    spec.name = name
    _prepare_data(spec)
    storage_path = str(Path(spec.storage_path or sweep_home() / "ray_results").expanduser().resolve())
    state_file = Path(storage_path) / f"{name}.xlrec-sweep.json"
    saved = None
    if spec.resume:
        if not state_file.is_file():
            raise ConfigError(f"There is no sweep named {name!r} to resume under {storage_path} (no {state_file.name}). "
                              f"Run it without --resume, or pass the --name and --storage-path it was started with.")
        saved = json.loads(state_file.read_text())
    with StopSignals() as stop, contextlib.ExitStack() as stack:
        uri = _tracking(spec, stack, port=saved.get("server_port") if saved else None,
                        server_pid=saved.get("server_pid") if saved else None)
        parent_id = None
        try:
            parent = _parent_run(spec, uri, resume_run=saved["parent_run_id"] if saved else None)
            parent_id = parent.info.run_id
            if saved:
                reap_dead_trials(parent, parent_id)
            summary = _run_trials(spec, stop, uri, parent_id, storage_path, state_file, saved)
        except BaseException as exc:  # the parent and its trials must not end FINISHED or stay RUNNING
            active = mlflow.active_run()
            abort(exc, parent_id or (active.info.run_id if active else None), spec)
            raise
        stop_ray(spec)
        mlflow.end_run()
    print(json.dumps(summary))
    return summary


def _run_trials(spec: SweepSpec, stop: StopSignals, uri: str, parent_id: str, storage_path: str,
                state_file: Path, saved: dict | None) -> dict[str, Any]:
    import mlflow
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    name = spec.name
    if not saved:
        Path(storage_path).mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"parent_run_id": parent_id, "experiment_dir": f"{name}-{parent_id[:8]}",
                                          "server_port": int(uri.rsplit(":", 1)[1]) if not spec.tracking_uri
                                          and uri.startswith("http://127.0.0.1") else None,
                                          "server_pid": getattr(spec, "_server_pid", None)}))
    if not saved:
        _log_sweep_params(spec, parent_id)
    mlflow.set_tags({"xlrec.sweep": "parent", "xlrec.sweep_name": name})
    # Tune writes the param space into ray_results (params.json, experiment state): a URI's
    # password travels to the trials in their environment instead, never in the params.
    secrets = _secret_env(uri, spec.source)
    base = {"model": spec.model, "dataset": spec.dataset, "tracking_uri": redact(uri), "experiment": spec.experiment,
            "parent_run_id": parent_id, "overrides": {"epochs": spec.epochs,
                                                       "source": redact(spec.source) if spec.source else None,
                                                       **spec.overrides},
            "threads": max(1, int(spec.cpus_per_trial)),
            "multi_dataset": spec.mode == "grid" and len(spec.datasets) > 1}
    # Trials checkpoint every epoch on purpose (fault tolerance); Tune warns about frequent
    # experiment snapshots then, which says nothing actionable to a sweep user.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        address = spec.ray_address or os.environ.get("RAY_ADDRESS")
        spec._ray_started = True
        try:
            local = {} if address else {"XLREC_DATA_DIR": os.environ.get("XLREC_DATA_DIR", ""),
                                        "XLREC_DATA_MIRROR": os.environ.get("XLREC_DATA_MIRROR", "")}
            env_vars = {**local, **secrets}
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env_vars} if env_vars else None)
        except ConnectionError as exc:  # also a cluster that wants a token (RAY_AUTH_MODE=token)
            from xlrec.errors import XlrecError

            lines = str(exc.__cause__ or "").strip().splitlines()  # Ray embeds a remote traceback here
            cause = f" ({lines[-1][:300]})." if lines else "."
            raise XlrecError(f"Cannot connect to the Ray cluster at {address}: {exc}{cause} Check --ray-address"
                             f" / RAY_ADDRESS; a cluster started with token authentication needs "
                             f"RAY_AUTH_MODE=token (and its token) in this environment too.") from None
        stop.install()
    trainable = tune.with_resources(run_trial, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    from xlrec.sweeps.checks import grid_cells
    from xlrec.sweeps.progress import SweepProgress, say, start_line

    spec._cells = len(list(grid_cells(spec))) if spec.mode == "grid" else spec.trials
    concurrency = _concurrency(spec, spec._cells)
    progress = SweepProgress(spec._cells, concurrency)
    experiment_id = mlflow.get_run(parent_id).info.experiment_id
    say(start_line(spec, uri, experiment_id, parent_id, concurrency))
    scheduler = ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration", max_t=spec.epochs + 1,
                              grace_period=spec.grace_period, reduction_factor=2)
    study_name = f"{name}-{parent_id[:8]}"
    tune_config = tune.TuneConfig(
        # ASHA prunes searches only: every grid cell (model, max_len, seed) must finish for Table 4
        scheduler=scheduler if spec.mode == "search" else None,
        num_samples=spec.trials if spec.mode == "search" else 1,
        search_alg=_search_alg(spec, study_name) if spec.mode == "search" else None,
        max_concurrent_trials=spec.max_concurrent or None)
    run_config = tune.RunConfig(name=f"{name}-{parent_id[:8]}", storage_path=storage_path,
                                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                # trials checkpoint every epoch; a retry needs only the latest
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0,
                                callbacks=[progress])
    if saved:
        tuner = tune.Tuner.restore(str(Path(storage_path) / saved["experiment_dir"]), trainable=trainable,
                                   param_space=_param_space(spec, base), resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, param_space=_param_space(spec, base), tune_config=tune_config,
                           run_config=run_config)
    stop.in_tune = True
    try:
        results = tuner.fit()
    finally:
        stop.in_tune = False
    stop.raise_if_stopped()  # Tune stopped gracefully on the signal: the sweep did not finish
    from xlrec.sweeps.results import finish

    summary = finish(spec, results, parent_id, study_name, _study_storage(spec) if spec.mode == "search" else "")
    _say_summary(spec, progress, summary, uri, experiment_id, parent_id)
    return summary


def _say_summary(spec: SweepSpec, progress, summary: dict, uri: str, experiment_id: str, parent_id: str) -> None:
    from xlrec.sweeps.progress import say

    text = progress.summary()
    champ = summary.get("champion")
    if champ:
        text += f"; champion models:/{champ['name']}@champion is version {champ['version']}"
    say(text)
    where = (f"mlflow ui --backend-store-uri sqlite:///{spec._sqlite_db}" if getattr(spec, "_sqlite_db", None)
             else redact(uri))
    say(f"compare the trials: {where}, experiment {spec.experiment!r}, parent run {spec.name!r} "
        f"(#/experiments/{experiment_id}/runs/{parent_id})")


def _secret_env(uri: str, source: str | None) -> dict[str, str]:
    """The tracking URI and data source for the trials' environment, when they hold credentials."""
    env = {}
    if redact(uri) != uri:
        env[SECRET_URI_ENV] = uri
    if source and redact(source) != source:
        env[SECRET_SOURCE_ENV] = source
    return env


