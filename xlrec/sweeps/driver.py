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
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from xlrec.platform.mlflow_env import quiet_links_for
from xlrec.errors import ConfigError
from xlrec.redact import redact
from xlrec.platform.reports import aggregate_table4
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
    db = Path.cwd() / "mlflow.db"
    if uri:  # `mlflow run` exports the sqlite store it uses, e.g. sqlite:////abs/path/mlflow.db
        if not uri.startswith("sqlite:///"):
            raise ConfigError(f"A sweep logs its trials over HTTP; {uri!r} is neither a tracking server nor a "
                              f"sqlite file it could serve. Pass --tracking-uri http://HOST:PORT.")
        db = Path(uri[len("sqlite:///"):]).resolve()
    print(f"[xlrec] serving sqlite:///{db} over HTTP for the sweep", file=sys.stderr)
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

    env_run = resume_run or env_run
    if not env_run:
        mlflow.set_experiment(spec.experiment)
    with shield_signals():  # the driver's handlers find the parent once it exists (and `runs reap` its owner)
        run = mlflow.start_run(run_id=env_run) if env_run else mlflow.start_run(run_name=spec.name)
    mlflow.set_tags(process_tags())
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
    spec.experiment = spec.experiment or (f"xlrec-sweep-{spec.dataset}" if spec.mode == "search"
                                          else "xlrec-grid")
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
        mlflow.log_params({
            "sweep.mode": spec.mode, "sweep.trials": spec.trials, "sweep.epochs": spec.epochs,
            "sweep.models": ",".join(spec.models if spec.mode == "grid" else [spec.model]),
            "sweep.datasets": ",".join(spec.datasets if spec.mode == "grid" else [spec.dataset]),
            "sweep.gpus_per_trial": spec.gpus_per_trial, "sweep.cpus_per_trial": spec.cpus_per_trial,
            "sweep.seed": spec.seed})
    mlflow.set_tags({"xlrec.sweep": "parent", "xlrec.sweep_name": name})
    # Tune writes the param space into ray_results (params.json, experiment state): a URI's
    # password travels to the trials in their environment instead, never in the params.
    secrets = _secret_env(uri, spec.source)
    base = {"model": spec.model, "dataset": spec.dataset, "tracking_uri": redact(uri), "experiment": spec.experiment,
            "parent_run_id": parent_id, "overrides": {"epochs": spec.epochs,
                                                       "source": redact(spec.source) if spec.source else None,
                                                       **spec.overrides},
            "threads": max(1, int(spec.cpus_per_trial))}
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
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0)
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
    return _finish(spec, results, parent_id, study_name)


def _finish(spec: SweepSpec, results, parent_id: str, study_name: str) -> dict[str, Any]:
    """Mark pruned/failed trial runs, log the trials table, plots or Table 4 to the parent run."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = []
    for res in results:
        m = res.metrics or {}
        cfg = res.config or {}
        run_id = m.get("mlflow_run_id")
        if res.error is not None:
            status = "FAILED"
        elif m.get("trial_finished"):
            status = "FINISHED"
        else:
            status = "PRUNED"
        reason = _failure_reason(res.error) if res.error is not None else ""
        if run_id:
            run = client.get_run(run_id)
            if run.info.status == "RUNNING":  # the trial was stopped by ASHA (or died) mid-training
                client.set_tag(run_id, "xlrec.status", status.lower())
                if status == "PRUNED":
                    client.set_tag(run_id, "xlrec.pruned", "true")
                else:
                    client.set_tag(run_id, "xlrec.failure_reason", reason[:4000])
                client.set_terminated(run_id, "KILLED" if status == "PRUNED" else "FAILED")
            elif status == "PRUNED" and run.data.tags.get("xlrec.pruned") != "true":  # closed by the dying trial
                client.set_tag(run_id, "xlrec.status", "pruned")
                client.set_tag(run_id, "xlrec.pruned", "true")
            elif status == "FAILED" and "xlrec.failure_reason" not in run.data.tags:  # keep the trial's own
                client.set_tag(run_id, "xlrec.failure_reason", reason[:4000])
        fixed = {**base_defaults(spec), **spec.overrides}
        row = {"trial_id": m.get("trial_id"), "status": status, "mlflow_run_id": run_id,
               "model": cfg.get("model", spec.model), "dataset": cfg.get("dataset", spec.dataset),
               "max_len": cfg.get("max_len", fixed.get("max_len")), "seed": cfg.get("seed", fixed.get("seed")),
               "embedding_dim": cfg.get("embedding_dim", fixed.get("embedding_dim")),
               "num_heads": cfg.get("num_heads", fixed.get("num_heads")),
               "num_blocks": cfg.get("num_blocks", fixed.get("num_blocks")), "lr": cfg.get("lr", fixed.get("lr")),
               "dropout": cfg.get("dropout", fixed.get("dropout")), "epochs": m.get("epoch"), METRIC: m.get(METRIC),
               "error": reason[:300]}
        if run_id:
            run_data = client.get_run(run_id).data
            rm = run_data.metrics
            row["cuda_visible_devices"] = run_data.tags.get("cuda_visible_devices", "")
            for key in ("embedding_dim", "num_heads", "num_blocks", "lr", "dropout"):  # as the trial resolved them
                if row[key] is None and key in run_data.params:
                    row[key] = yaml.safe_load(run_data.params[key])
            row.update({"test_recall_at_10": rm.get("test_recall_at_10"), "test_ndcg_at_10": rm.get("test_ndcg_at_10"),
                        "test_mrr_at_10": rm.get("test_mrr_at_10"), "avg_epoch_time_s": rm.get("avg_epoch_time_s"),
                        "gpu_peak_allocated_mb": rm.get("gpu_peak_allocated_mb"), "params_total": rm.get("params_total")})
        rows.append(row)
    table = pd.DataFrame(rows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table.to_csv(tmp / "trials.csv", index=False)
        mlflow.log_artifact(str(tmp / "trials.csv"))
        if spec.mode == "search":
            for png in _optuna_plots(spec, study_name, tmp):
                mlflow.log_artifact(str(png), artifact_path="optuna")
        else:
            agg = aggregate_table4(table)
            agg.to_csv(tmp / "table4.csv", index=False)
            (tmp / "table4.md").write_text(agg.to_string(index=False))
            mlflow.log_artifact(str(tmp / "table4.csv"))
            mlflow.log_artifact(str(tmp / "table4.md"))
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    done = table[table["status"] == "FINISHED"]
    best = done.sort_values(METRIC, ascending=False).head(1).to_dict("records") if len(done) else []
    champion = None
    if best:
        from xlrec.platform.registry import ALIAS, registered_name

        name = registered_name(best[0]["model"], best[0]["dataset"])
        try:
            champion = {"name": name, "version": int(client.get_model_version_by_alias(name, ALIAS).version)}
        except Exception:
            champion = None
    mlflow.log_metrics({"trials_done": counts.get("FINISHED", 0), "trials_failed": counts.get("FAILED", 0),
                        "trials_pruned": counts.get("PRUNED", 0)})
    return {"parent_run_id": parent_id, "mode": spec.mode, "trials_done": counts.get("FINISHED", 0),
            "trials_failed": counts.get("FAILED", 0), "trials_pruned": counts.get("PRUNED", 0),
            "best_trial": _jsonable(best[0]) if best else None, "champion": champion}


def _failure_reason(error: BaseException) -> str:
    """The trial's own exception (Ray wraps it in a RayTaskError whose text is a remote traceback)."""
    cause = getattr(error, "cause", None)
    cause = cause if isinstance(cause, BaseException) else error
    return redact(f"{type(cause).__name__}: {cause}")


def _secret_env(uri: str, source: str | None) -> dict[str, str]:
    """The tracking URI and data source for the trials' environment, when they hold credentials."""
    env = {}
    if redact(uri) != uri:
        env[SECRET_URI_ENV] = uri
    if source and redact(source) != source:
        env[SECRET_SOURCE_ENV] = source
    return env


def base_defaults(spec: SweepSpec) -> dict[str, Any]:
    """max_len and seed a search trial inherits when it does not sample them."""
    from xlrec.config import resolve_config

    cfg = resolve_config(spec.model, spec.dataset)
    return {"max_len": cfg.max_len, "seed": cfg.seed}


def _jsonable(row: dict) -> dict:
    return {k: (None if (isinstance(v, float) and v != v) else v) for k, v in row.items()}


def _optuna_plots(spec: SweepSpec, study_name: str, tmp: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    study = optuna.load_study(study_name=study_name, storage=_study_storage(spec))
    pngs = []
    for name, fn in (("optimization_history", ovm.plot_optimization_history),
                     ("param_importances", ovm.plot_param_importances),
                     ("parallel_coordinate", ovm.plot_parallel_coordinate),
                     ("intermediate_values", ovm.plot_intermediate_values)):
        try:
            ax = fn(study)
        except Exception as exc:  # e.g. importances need >= 2 completed trials
            print(f"[xlrec] skipped the {name} plot: {exc}", file=sys.stderr)
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(9, 5)
        fig.tight_layout()
        path = tmp / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        pngs.append(path)
    return pngs
