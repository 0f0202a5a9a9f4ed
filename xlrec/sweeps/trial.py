"""One sweep trial = one `xlrec train` run inside a Ray Tune trial.

The trial logs to the sweep's tracking server as a child of the sweep's parent run
(set explicitly: Ray's and Optuna's MLflow integrations do not nest), reports validation
Recall@10 and NDCG@10 to Tune every epoch (ASHA decides on the spec's metric), and says in its last report whether
it finished on its own, so the driver can tell pruned trials from completed ones.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from xlrec.device import select_runtime
from xlrec.settings import BEST_VAL_SELECTION_KEY, SELECTION_METRIC, VAL_SELECTION_KEY, metric_key
from xlrec.training.events import Callback
from xlrec.training.footprint import check_fits

METRIC = VAL_SELECTION_KEY  # what each trial reports to Tune: ASHA, Optuna and the best trial read it
CHECKPOINT_FILE = "trainer.pt"
# Where a URI holding credentials reaches a trial (set by the driver in the Ray runtime env).
SECRET_URI_ENV = "XLREC_SWEEP_TRACKING_URI"
SECRET_SOURCE_ENV = "XLREC_SWEEP_SOURCE"


class TuneReporter(Callback):
    def __init__(self, tracker):
        self.tracker = tracker

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        metrics = epoch_report(record, self.tracker)
        # A checkpoint every epoch: a trial retried after a node failure (or a resumed sweep)
        # continues from here, in the same MLflow run.
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(
                {"trainer": trainer.state(), "mlflow_run_id": self.tracker.run_id}, os.path.join(tmp, CHECKPOINT_FILE)
            )
            try:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
            except SystemExit:  # Tune stops the trial here (ASHA pruned it): the run ends KILLED as pruned
                from xlrec.platform.tracking.sweep_tracking import end_pruned

                end_pruned(self.tracker.run_id, int(record["epoch"]))
                raise

    def on_train_end(self, trainer, result) -> None:
        tune.report(result_report(result, self.tracker))


def epoch_report(record: dict[str, float], tracker) -> dict[str, Any]:
    """What a trial tells Tune after an epoch."""
    return {
        METRIC: record[VAL_SELECTION_KEY],
        metric_key("ndcg@10", "val"): record[metric_key("ndcg@10", "val")],
        "epoch": record["epoch"],
        "train_loss": record["train_loss"],
        "epoch_time_s": record["epoch_time_s"],
        "gpu_peak_allocated_mb": record.get("gpu_peak_allocated_mb", 0.0),
        "mlflow_run_id": tracker.run_id,
        "trial_finished": False,
    }


def result_report(result, tracker) -> dict[str, Any]:
    """What a finished run tells Tune: its best validation scores and its test scores."""
    final = {
        METRIC: result.best_val.get(SELECTION_METRIC, 0.0),
        metric_key("ndcg@10", "val"): result.best_val.get("ndcg@10", 0.0),
        "epoch": result.epochs_run,
        "mlflow_run_id": tracker.run_id,
        "trial_finished": True,
        "model_version": tracker.model_version or 0,
    }
    final.update({metric_key(k, "test"): v for k, v in result.test.metrics.items()})
    return final


class IdleCores(Callback):
    """A CPU trial takes its share of the cores no trial holds, from its next epoch on.

    Tune reuses a finished trial's actor, with its CPUs, for the next trial, so CPUs come free
    only when no trial is left to start: at a sweep's end, where the last trials would run on
    their own thread each beside idle cores (docs/results/main-job.md "What the job's settings
    save"). Only on a one-node cluster (the embedded local Ray), where the cluster's free
    CPUs are this machine's; Ray's own way, ResourceChangingScheduler, restarts a trial from its
    checkpoint to change its resources, which costs more than such a tail saves."""

    def __init__(self, own: int):
        self.own = own
        self.previous = own

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        if trainer.rt.is_cuda:
            return
        now, wanted = torch.get_num_threads(), widened_threads(self.own)
        # Narrow at once, widen only on two readings in a row: Ray's view of the free CPUs follows a
        # trial's start by moments, and a wrong reading would oversubscribe the cores for an epoch.
        threads = wanted if wanted <= now else max(now, min(wanted, self.previous))
        self.previous = wanted
        if threads != now:
            torch.set_num_threads(threads)


def widened_threads(own: int) -> int:
    """`own` CPUs' threads plus an equal share, among the running trials, of the free CPUs of a
    one-node cluster (each trial holding `own` CPUs), at most the machine's cores."""
    if sum(1 for node in ray.nodes() if node.get("Alive")) != 1:
        return own
    total, free = ray.cluster_resources().get("CPU", 0.0), ray.available_resources().get("CPU", 0.0)
    running = max(1, round((total - free) / own))
    return min(os.cpu_count() or own, own + int(free // running))


def run_single(spec: dict[str, Any], config: dict[str, Any]) -> None:
    """A trial of one run: a search trial or a grid cell of one seed."""
    from xlrec.data_prep import prepare_config
    from xlrec.experiment import train

    cfg = resolve_trial(spec, config)
    data = prepare_config(cfg)
    trial_id = tune.get_context().get_trial_id()
    saved = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            saved = torch.load(os.path.join(ckpt_dir, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    resume_state, resume_run, done = resume_point(spec, trial_id, saved)
    if done is not None and resume_run is not None:  # finished before the driver died: report it, log nothing twice
        tune.report(final_report(done, resume_run))
        return
    tracker = trial_tracker(spec, cfg, data, config, trial_id, resume_state, resume_run)
    # a failure anywhere in the run (the test evaluation included) reaches the tracker's on_exception
    callbacks: list[Callback] = [tracker, TuneReporter(tracker)]
    if spec.get("threads"):
        callbacks.append(IdleCores(spec["threads"]))
    train(cfg, data, callbacks, resume=resume_state)


def trial_spec(config: dict[str, Any]) -> dict[str, Any]:
    """What the driver gave every trial (`_xlrec`), with the tracking URI's credentials from the
    environment."""
    spec = dict(config["_xlrec"])
    os.environ.pop("MLFLOW_RUN_ID", None)  # an inherited `mlflow run` id must not capture the trial
    # Credentials travel in the environment, never in Tune's (persisted) param space.
    spec["tracking_uri"] = os.environ.get(SECRET_URI_ENV) or spec["tracking_uri"]
    return spec


def resolve_trial(spec: dict[str, Any], config: dict[str, Any]):
    """The run config of one trial (or one seed of a grouped cell): the sweep's fixed settings, the
    model's own, then the trial's; refused (the trial fails with the reason) when it would not fit
    the trial's device (xlrec.training.footprint), before its data or model is built."""
    from xlrec.config import resolve_config
    from xlrec.sweeps.trial_config import trial_overrides

    own = trial_overrides(config)
    model = own.pop("model", spec["model"])
    dataset = own.pop("dataset", spec["dataset"])
    overrides = {**spec["overrides"], **spec.get("per_model", {}).get(model, {}), **own}
    if os.environ.get(SECRET_SOURCE_ENV):
        overrides["source"] = os.environ[SECRET_SOURCE_ENV]
    tuned = spec.get("tuned")
    cfg = resolve_config(model, dataset, overrides=overrides, tuned=tuned)
    check_fits(cfg, select_runtime(cfg.device, cfg.kernel, cfg.amp).device)
    if cfg.data_file:  # a user's file: the rule for its sequences, as `xlrec train` applies it (it only shrinks)
        from xlrec.data_prep import data_shape, prepare_config

        cfg = resolve_config(model, dataset, overrides=overrides, shape=data_shape(prepare_config(cfg)), tuned=tuned)
    if spec.get("threads"):
        cfg.num_threads = spec["threads"]
    return cfg


def resume_point(
    spec: dict[str, Any], key: str, saved: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """Where a run continues: (trainer state, MLflow run, that run's metrics if it already finished).
    `saved` is its checkpoint; without one, a run an earlier attempt opened before its first
    checkpoint (a resumed sweep, a retry) is found by its trial `key`."""
    from xlrec.platform.tracking.sweep_tracking import earlier_attempt, finished_run_metrics
    from xlrec.platform.tracking.train_run import retry_while_down

    uri, wait = spec["tracking_uri"], float(spec.get("overrides", {}).get("store_outage_s", 45.0))
    if saved is not None:
        state, run = saved["trainer"], saved["mlflow_run_id"]
    else:
        state = None
        run = retry_while_down(lambda: earlier_attempt(uri, spec["parent_run_id"], key), "a trial's start", uri, wait)
    done = retry_while_down(lambda: finished_run_metrics(uri, run), "a trial's start", uri, wait) if run else None
    return state, run, done


def trial_tracker(
    spec: dict[str, Any],
    cfg,
    data,
    config: dict[str, Any],
    key: str,
    resume_state: dict[str, Any] | None,
    resume_run: str | None,
    tags: dict[str, str] | None = None,
):
    """The run's MlflowTracker, a child of the sweep's parent run, named after what the trial varies."""
    from xlrec.platform.tracking.train_run import MlflowTracker
    from xlrec.sweeps.naming import trial_label

    # Where this attempt runs; a trial retried after a node failure overwrites these tags in
    # the same run, and says from which epoch's checkpoint it continued.
    where = {
        "xlrec.sweep_run_id": spec["parent_run_id"],
        "xlrec.trial_id": key,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "xlrec.ray_node_id": ray.get_runtime_context().get_node_id(),
        **(tags or {}),
    }
    if resume_state is not None:
        where["xlrec.resumed_from_epoch"] = str(resume_state["epoch"])
    return MlflowTracker(
        data,
        uri=spec["tracking_uri"],
        experiment=spec["experiment"],
        parent_run_id=spec["parent_run_id"],
        run_name=trial_label(cfg.model, config, cfg.dataset if spec.get("multi_dataset") else None),
        tags=where,
        adopt_env_run=False,
        resume_run_id=resume_run,
        check=False,  # a trial waits out a tracking server's restart (store_outage_s) instead
    )


def final_report(metrics: dict, run_id: str) -> dict:
    """The last Tune report of a finished trial, from its MLflow run."""
    report = {
        METRIC: metrics.get(BEST_VAL_SELECTION_KEY, 0.0),
        "val_ndcg_at_10": metrics.get("best_val_ndcg_at_10", 0.0),
        "epoch": int(metrics.get("epochs_run", 0)),
        "mlflow_run_id": run_id,
        "trial_finished": True,
        "model_version": metrics.get("model_version", 0),
    }
    report.update({k: v for k, v in metrics.items() if k.startswith("test_")})
    return report
