"""`xlrec sweep`: a parent MLflow run, Ray Tune trials, Optuna search or the paper's grid.

Flow: check the settings and prepare the data (preflight), resolve the tracking store (a
sqlite one is served by a local `mlflow server` for the sweep's duration: tracking_server),
start Ray while that server comes up (ray_session), open the parent run (adopting `mlflow
run`'s MLFLOW_RUN_ID: platform.tracking.sweep_tracking), run the trials with `tune.Tuner` (tuner), then log
the trials table, Optuna's plots or the Table-4 aggregate to the parent (results) and print one
JSON line.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from xlrec.errors import ConfigError
from xlrec.platform.tracking.sweep_tracking import ParentRun, SweepRecorder
from xlrec.platform.tracking.uri import MLFLOW_UI, ui_url
from xlrec.redact import redact
from xlrec.settings import settings_of
from xlrec.sweeps import resume_state
from xlrec.sweeps.paths import sweep_home
from xlrec.sweeps.preflight import prepare_data
from xlrec.sweeps.progress import SweepProgress, out_of_memory_hint, say, start_line
from xlrec.sweeps.resume_state import ResumeState
from xlrec.sweeps.spec import SweepSpec
from xlrec.sweeps.spec_file import spec_yaml
from xlrec.sweeps.state import SweepState
from xlrec.sweeps.stopping import StopSignals, abort, stop_ray
from xlrec.sweeps.tracking_server import serve_tracking, served_port


def run_sweep(spec: SweepSpec, announce: bool = True) -> dict[str, Any]:
    """Run the sweep `spec` asks for and return its summary (printed as one JSON line when `announce`)."""
    if spec.mode not in ("search", "grid"):
        raise ConfigError(f"--mode must be search or grid, got {spec.mode!r}.")
    named = spec.name is not None  # a name given is kept; a default one takes a free suffix
    name, experiment = spec.name_defaults()
    storage_path = str(Path(spec.storage_path or sweep_home() / "ray_results").expanduser().resolve())
    saved = resume_state.load(storage_path, name) if spec.resume else None  # before anything is made
    prepare_data(spec)
    from xlrec.sweeps.ray_session import cluster_resources, secret_env, spread_over_gpus, start_ray

    state = SweepState.of(spec)
    with StopSignals() as stop, contextlib.ExitStack() as stack:
        recorder = None
        try:
            uri, server_ready = serve_tracking(spec, state, stack, saved)
            start_ray(spec, state, stop, secret_env(uri, spec.source))  # while the tracking server comes up
            if spec.gpus_auto:
                state.gpus_per_trial, line = spread_over_gpus(spec, spec.trial_count(), cluster_resources())
                say(line)
            server_ready()
            recorder = SweepRecorder(uri)
            if not saved:
                name = _free_name(spec, name, experiment, named, recorder)
            parent = _open_parent(spec, name, experiment, recorder, saved)
            summary = _run_trials(spec, state, name, stop, uri, recorder, parent, storage_path, saved)
        except BaseException as exc:  # the parent and its trials must not end FINISHED or stay RUNNING
            abort(exc, recorder, state)
            raise
        stop_ray(state)
        recorder.end()
    if announce:
        print(json.dumps(summary))
    return summary


def _free_name(spec: SweepSpec, name: str, experiment: str, named: bool, recorder: SweepRecorder) -> str:
    """The sweep's name, unique in its experiment: two sweeps of one name would be two parent runs
    MLflow's list cannot tell apart, and --resume finds a sweep by its name. A default name takes
    the first free suffix (search-xlstm-ml-100k-2); a name given for an existing sweep is refused."""
    taken = recorder.sweep_names(experiment)
    if name not in taken:
        return name
    if named:
        raise ConfigError(
            f"A sweep named {name!r} already ran in experiment {experiment!r}. Pass --resume to continue it "
            f"(after its driver died), or give this one another --name."
        )
    free = next(f"{name}-{i}" for i in itertools.count(2) if f"{name}-{i}" not in taken)
    say(f"a sweep named {name!r} already ran in experiment {experiment!r}: this one is {free!r}")
    spec.name = free
    return free


def _open_parent(
    spec: SweepSpec, name: str, experiment: str, recorder: SweepRecorder, saved: ResumeState | None
) -> ParentRun:
    """The parent run: a new one, the resumed sweep's, or the one `mlflow run` made (its
    experiment then holds the trials too)."""
    parent = recorder.open_parent(
        name, experiment, resume_run_id=saved.parent_run_id if saved else None, nested_in=spec.nested_in
    )
    spec.experiment = parent.experiment
    if parent.adopted and parent.experiment != experiment:
        say(
            f"this sweep logs to the experiment {parent.experiment!r} that `mlflow run` chose; "
            f"`mlflow run ... --experiment-name {experiment}` puts it beside the other {spec.dataset} runs"
        )
    if saved:
        recorder.reap_dead_trials()
    return parent


# the spec's settings that only one mode uses (a grid has no trials to sample or prune)
_SEARCH_ONLY = ("trials", "seed", "pruning", "grace_period", "time_budget_s")


def _sweep_params(spec: SweepSpec, state: SweepState) -> dict[str, Any]:
    """What the sweep ran, for the parent run: every setting of the spec that applies to its
    mode, under its spec-file key (`search.trials`, `resources.gpus_per_trial`, ... as the GPU
    share resolved where the spec says auto), the models, datasets and grid axes; the spec file
    itself is logged beside them. Where the sweep runs (URIs, paths) is not a param."""
    params: dict[str, Any] = {"models": ",".join(spec.models), "datasets": ",".join(spec.datasets)}
    for info in settings_of(SweepSpec, declared_only=True):
        if info.key is None or info.name in ("description", "experiment", "name"):
            continue
        if spec.mode == "grid" and info.name in _SEARCH_ONLY:
            continue
        params[info.key] = getattr(spec, info.name)
    if spec.epochs is None:
        params["epochs"] = "model default"
    params["resources.gpus_per_trial"] = state.gpus_per_trial
    if spec.mode == "search":
        params.update({"model": spec.model, "dataset": spec.dataset})
    else:
        params["seeds"] = ",".join(map(str, spec.seeds))
        params.update({f"grid.{k}": ",".join(str(c[k]) for c in spec.grid_cells() if k in c) for k in spec.axes()})
        params["grid.cells"] = len(spec.grid_cells())
    if spec.gpus_auto:
        params["resources.gpus_per_trial_auto"] = True
    params.update({f"set.{k}": v for k, v in spec.overrides.items()})
    for model, entry in spec.per_model.items():
        params.update({f"set.{model}.{k}": v for k, v in entry.get("fixed", {}).items()})
    return {k: str(v)[:6000] for k, v in params.items()}  # MLflow's limit on a param value


def _run_trials(
    spec: SweepSpec,
    state: SweepState,
    name: str,
    stop: StopSignals,
    uri: str,
    recorder: SweepRecorder,
    parent: ParentRun,
    storage_path: str,
    saved: ResumeState | None,
) -> dict[str, Any]:
    from xlrec.sweeps.ray_session import cluster_gpus, concurrency, idle_gpus_note
    from xlrec.sweeps.results import finish
    from xlrec.sweeps.tuner import make_tuner, study_storage

    parent_id, experiment_id = parent.run_id, parent.experiment_id
    tune_name = f"{name}-{parent_id[:8]}"
    if not saved:
        resume_state.save(
            storage_path, name, ResumeState(parent_id, tune_name, served_port(state, uri), state.server_pid)
        )
        recorder.log_params(_sweep_params(spec, state))
        recorder.log_spec(spec_yaml(spec))
    recorder.set_tags({"xlrec.sweep": "parent", "xlrec.sweep_name": name})
    groups = concurrency(spec, state.gpus_per_trial, spec.trial_count())
    note = idle_gpus_note(state.gpus_per_trial, groups, cluster_gpus())
    if note:
        say(note)
    at_once = groups * spec.runs_per_trial  # runs training at once
    budget = spec.time_budget_s if spec.mode == "search" else None
    progress = SweepProgress(spec.run_count(), at_once, spec.metric, spec.runs_per_trial, budget)
    say(start_line(spec, state, uri, experiment_id, parent_id, at_once))
    tuner = make_tuner(spec, state.gpus_per_trial, uri, parent_id, storage_path, tune_name, saved, callbacks=[progress])
    stop.in_tune = True
    try:
        # Tune prints its experiment's configuration box to stdout: stdout is the summary's JSON line
        with contextlib.redirect_stdout(sys.stderr):
            results = tuner.fit()
    finally:
        stop.in_tune = False
    stop.raise_if_stopped()  # Tune stopped gracefully on the signal: the sweep did not finish
    summary = finish(spec, results, recorder, tune_name, study_storage(spec) if spec.mode == "search" else "")
    summary["seconds"] = round(time.monotonic() - progress.started, 1)
    if spec.mode == "search":
        summary["study_name"] = tune_name
    _say_summary(spec, state, progress, summary, uri, experiment_id, parent_id)
    return summary


def _say_summary(
    spec: SweepSpec,
    state: SweepState,
    progress: SweepProgress,
    summary: dict,
    uri: str,
    experiment_id: str,
    parent_id: str,
) -> None:
    counts = {k: summary[f"trials_{v}"] for k, v in (("finished", "done"), ("pruned", "pruned"), ("failed", "failed"))}
    text = progress.summary(counts)
    best = summary.get("best_trial") or {}
    if progress.best is None and best.get(spec.metric) is not None:  # resumed: the best ended under the earlier driver
        text += f"; best {progress.label} {float(best[spec.metric]):.4f} ({best.get('run_name', '?')})"
    champ = summary.get("champion")
    if champ:
        text += f"; champion models:/{champ['name']}@champion is version {champ['version']}"
    say(text)
    hint = out_of_memory_hint(progress.out_of_memory, state.gpus_per_trial or 0.0, spec.name or "NAME")
    if hint:
        say(hint)
    if spec.nested_in:  # `xlrec tune` says where to look once all its sweeps are done
        return
    if state.served_db:  # its own server stops with the sweep: say how to open the store afterwards
        say(
            f"compare the trials: mlflow ui --backend-store-uri sqlite:///{state.served_db}, then "
            f"{ui_url(MLFLOW_UI, experiment_id, parent_id)} (experiment {spec.experiment!r}, parent run "
            f"{spec.name!r}; the sidebar's Model training switch is the view this link opens)"
        )
    else:
        say(
            f"compare the trials: {redact(ui_url(uri, experiment_id, parent_id))} (experiment "
            f"{spec.experiment!r}, parent run {spec.name!r})"
        )
