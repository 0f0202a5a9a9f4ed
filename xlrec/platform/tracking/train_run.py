"""MLflow tracking of one training run, as a trainer callback: the run's lifecycle.

Backends: see xlrec.platform.tracking.uri. Under `mlflow run` the entry point adopts the run
MLflow created (MLFLOW_RUN_ID) instead of opening an unrelated one. A crashed run ends FAILED
and an interrupted one KILLED, never RUNNING. What a finished run logs (results, artifacts,
the model) is xlrec.platform.tracking.run_outputs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mlflow
from mlflow import MlflowClient

from xlrec.data_prep import PreparedDataset
from xlrec.data_prep import split as split_module
from xlrec.device import energy_source
from xlrec.errors import XlrecError
from xlrec.platform.mlflow_env import quiet_links_for
from xlrec.platform.registry.champion import PromotionResult, retry_on_conflict
from xlrec.platform.tracking import run_lifecycle, run_outputs
from xlrec.platform.tracking.environment import environment_tags
from xlrec.platform.tracking.run_lifecycle import (
    _OPEN,
    HEARTBEAT_TAG,
    close_run,
    end_status,
    process_tags,
    shield_signals,
)
from xlrec.platform.tracking.uri import check_reachable, tracking_uri
from xlrec.redact import redact
from xlrec.settings import VAL_SELECTION_KEY, TrainConfig
from xlrec.training.events import Callback, TrainResult


class TrackingStoreError(XlrecError):
    """The tracking store failed while a run was being logged (server died, database down)."""


T = TypeVar("T")


def _is_store_failure(exc: BaseException) -> bool:
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, requests.RequestException, sqlalchemy.exc.SQLAlchemyError))


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return redact(text if len(text) <= limit else text[:limit] + "...")


def flatten_config(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as flat, stable param names (prep settings as prep.*).

    Strings pass through `redact`: `source` (and any other location) may carry a password,
    and params are stored and shown in the clear.
    """
    flat: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"prep.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            flat[key] = ",".join(map(str, value))
        elif isinstance(value, bool):
            flat[key] = str(value).lower()
        elif value is None:
            flat[key] = ""
        elif isinstance(value, str):
            flat[key] = redact(value)
        else:
            flat[key] = value
    return flat


def retry_while_down(step: Callable[[], T], phase: str, uri: str, outage_s: float) -> T:
    """`step()` (it must be safe to repeat), again every few seconds while the store does not answer,
    for up to `outage_s`: a tracking server restarted under a sweep's trials is down for tens of
    seconds, and one that died for good must still fail them within a minute."""
    down_since = None
    while True:
        try:
            return step()
        except Exception as exc:
            if run_lifecycle.SIGNALLED:
                raise KeyboardInterrupt(run_lifecycle.SIGNALLED) from exc
            if isinstance(exc, XlrecError) or not _is_store_failure(exc):
                raise
            now = time.monotonic()
            if down_since is None:
                down_since = now
                print(
                    f"[xlrec] the tracking store at {redact(uri)} does not answer during {phase} "
                    f"({_short(exc, 160)}); trying again for up to {outage_s:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            if now - down_since > outage_s:
                raise
            time.sleep(2.0)


class MlflowTracker(Callback):
    """Logs params, tags, dataset lineage, per-epoch metrics, results, artifacts and the model."""

    def __init__(
        self,
        data: PreparedDataset,
        *,
        uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        register: bool = True,
        system_metrics: bool = False,
        adopt_env_run: bool = True,
        resume_run_id: str | None = None,
        check: bool = True,
    ):
        """uri: the store (default: see tracking_uri); experiment: default xlrec-<dataset>;
        run_name: default <model>-<dataset>-L<max_len>-s<seed>; parent_run_id: nest under it (its
        experiment then); tags: added to the run's own; register: register and promote the
        model; system_metrics: MLflow's system metrics; adopt_env_run: continue `mlflow run`'s
        MLFLOW_RUN_ID; resume_run_id: continue this run (a trial restored from a checkpoint)."""
        self.data = data
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.extra_tags = dict(tags or {})
        self.register = register
        self.system_metrics = system_metrics
        self.adopt_env_run = adopt_env_run
        self.resume_run_id = resume_run_id
        self.run_id: str | None = None
        self._pending: dict[str, float] = {}  # metrics held back until the first epoch's batch
        self._unsent: list = []  # metric points the store did not take yet (it was down), oldest first
        self._down_since: float | None = None  # when the store stopped answering, if it has
        self._outage_s = 45.0
        self.promotion: PromotionResult | None = None
        self.model_version: int | None = None
        if check:  # `xlrec train` checks before any data work; a sweep's trial waits out an outage instead
            check_reachable(self.uri)

    # --- lifecycle ----------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        self._outage_s = float(getattr(trainer.cfg, "store_outage_s", self._outage_s))
        try:
            self._while_down("setup", lambda: self._start(trainer))
        except BaseException as exc:  # fit() guards only the loop: setup must close the run too
            self._fail(trainer, exc, "setup")

    # --- a store that stops answering ---------------------------------------------
    def _store_down(self, exc: BaseException, phase: str) -> None:
        """`exc` from the store: note when it went down and go on, unless that was store_outage_s ago."""
        if run_lifecycle.SIGNALLED:  # the signal, whatever a library made of its KeyboardInterrupt
            raise KeyboardInterrupt(run_lifecycle.SIGNALLED) from exc
        if not isinstance(exc, Exception) or isinstance(exc, XlrecError) or not _is_store_failure(exc):
            raise exc
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            print(
                f"[xlrec] the tracking store at {redact(self.uri)} does not answer during {phase} "
                f"({_short(exc, 160)}); training goes on and its metrics are kept until it answers, for up to "
                f"{self._outage_s:g} s",
                file=sys.stderr,
                flush=True,
            )
        if now - self._down_since > self._outage_s:
            raise exc

    def _store_up(self) -> None:
        if self._down_since is not None:
            print(
                f"[xlrec] the tracking store answers again after {time.monotonic() - self._down_since:.0f} s; "
                f"the kept metrics are logged",
                file=sys.stderr,
                flush=True,
            )
            self._down_since = None

    def _while_down(self, phase: str, step) -> None:
        """Run `step` (idempotent), again every few seconds while the store does not answer."""
        while True:
            try:
                step()
            except BaseException as exc:
                self._store_down(exc, phase)
                time.sleep(2.0)
                continue
            self._store_up()
            return

    def _start(self, trainer) -> None:
        cfg: TrainConfig = trainer.cfg
        quiet_links_for(self.uri)
        mlflow.set_tracking_uri(self.uri)
        env_run = os.environ.get("MLFLOW_RUN_ID") if self.adopt_env_run else None
        env_run = self.run_id or self.resume_run_id or env_run  # run_id: made by an attempt the store cut off
        active = mlflow.active_run()
        if active is not None and env_run is not None and active.info.run_id == env_run:
            mlflow.end_run()  # the cut-off attempt's, started again below
        owner = process_tags()  # who to ask whether the run is still alive (`xlrec runs reap`)
        if env_run:
            with shield_signals():  # from here on a signal finds the run in _OPEN and closes it
                run = mlflow.start_run(run_id=env_run, log_system_metrics=self.system_metrics or None)
                self.run_id = run.info.run_id
                _OPEN[self.run_id] = self.uri
            mlflow.set_tags(owner)
            if "xlrec.failure_reason" in run.data.tags:  # a resumed run that was reaped or stopped
                MlflowClient().delete_tag(self.run_id, "xlrec.failure_reason")
        else:
            if self.parent_run_id:  # children live in their parent's experiment, or the UI cannot nest them
                experiment_id = MlflowClient().get_run(self.parent_run_id).info.experiment_id
            else:
                experiment_id = mlflow.set_experiment(self.experiment or f"xlrec-{cfg.dataset}").experiment_id
            with shield_signals():  # the run and its owner tags exist together, and _OPEN knows it
                run = mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=self.run_name or f"{cfg.model}-{cfg.dataset}-L{cfg.max_len}-s{cfg.seed}",
                    parent_run_id=self.parent_run_id,
                    tags=owner,
                    log_system_metrics=self.system_metrics or None,
                )
                self.run_id = run.info.run_id
                _OPEN[self.run_id] = self.uri
        params = flatten_config(cfg)
        params.update(
            {
                "resolved_device": str(trainer.rt.device),
                "resolved_kernel": getattr(trainer.model, "kernel", trainer.rt.kernel),  # a model may fall back
                "amp_dtype": str(trainer.rt.amp_dtype).replace("torch.", "") if trainer.rt.amp_dtype else "none",
                "resolved_cuda_graph": trainer.graphed,
                "resolved_compile": getattr(trainer.model, "training_compiled", False),
                "num_users": self.data.seqs.num_users,
                "num_items": self.data.seqs.num_items,
                # the processed data's lineage: Table 4 never puts runs of different data in one cell
                "data_sha256": self.data.content_hash[:16],
                "tie_break": split_module.TIE_BREAK,
            }
        )
        if cfg.split == "temporal":
            t_val, t_test = split_module.temporal_cutoffs(
                self.data.seqs, cfg.temporal_val_quantile, cfg.temporal_test_quantile
            )
            params.update({"resolved_val_cutoff": t_val, "resolved_test_cutoff": t_test})
        if env_run:
            # `mlflow run` already logged the entry point's raw parameters (e.g. embedding_dim=''
            # meaning "dataset default"); MLflow params are immutable, so resolved values that
            # differ are logged as resolved.<key>.
            existing = run.data.params
            params = {
                (k if k not in existing else f"resolved.{k}"): v
                for k, v in params.items()
                if k not in existing or str(existing[k]) != str(v)
            }
        mlflow.log_params(params)
        tags = {"model_family": cfg.model, "dataset": cfg.dataset, **environment_tags(trainer.rt.device_name())}
        tags["xlrec.energy"] = energy_source(trainer.rt) or (
            "not measured: the host exposes no energy counter (NVML on a GPU; RAPL readable on a CPU)"
        )
        if self.parent_run_id:
            tags["xlrec.parent_run_id"] = self.parent_run_id
        tags.update(self.extra_tags)
        mlflow.set_tags(tags)
        self._log_dataset()
        # Only the total as a metric, so every model's run has the same metric keys (comparable
        # side by side); the per-component counts differ by architecture and live in parameters.csv.
        # It is logged with the first epoch, after validation Recall@10: MLflow's compare view
        # colours its parallel-coordinates plot by the first metric a run logged.
        self._pending = {"params_total": float(trainer.params["total"])}

    def _log_dataset(self) -> None:
        d = self.data
        source = redact(str(d.cache_path) if d.cache_path else d.name)
        from mlflow.data.numpy_dataset import from_numpy

        ds = from_numpy(
            {"items": d.seqs.items, "offsets": d.seqs.offsets}, source=source, name=d.name, digest=d.content_hash[:16]
        )
        stat_tags = {k: (f"{v:.6f}" if isinstance(v, float) else str(v)) for k, v in d.stats.items()}
        # Runs of one experiment logging the same dataset at once race on its row (UniqueViolation).
        retry_on_conflict(mlflow.log_input, ds, "training", {"content_sha256": d.content_hash, **stat_tags})
        if d.data_warning:  # raw counts differ from the dataset's published ones (truncated or partial copy)
            mlflow.set_tag("xlrec.data_warning", redact(d.data_warning)[:5000])

    def _active_id(self) -> str:
        """The run's id, once on_train_start has opened it."""
        if self.run_id is None:
            raise RuntimeError("MlflowTracker has no run: on_train_start was not called")
        return self.run_id

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        from mlflow.entities import Metric, RunTag

        if run_lifecycle.SIGNALLED:  # a library swallowed the interrupt it raised: stop here, unlogged and unprinted
            raise KeyboardInterrupt(run_lifecycle.SIGNALLED)
        now = int(time.time() * 1000)
        step = int(record["epoch"])
        first = sorted((k for k in record if k != "epoch"), key=lambda k: k != VAL_SELECTION_KEY)
        self._unsent += [Metric(k, float(record[k]), now, step) for k in first]
        self._unsent += [Metric(k, v, now, 0) for k, v in self._pending.items()]
        self._pending = {}
        try:
            self._send(tags=[RunTag(HEARTBEAT_TAG, f"{now / 1000:.0f}")])
        except Exception as exc:
            try:
                self._store_down(exc, f"epoch {step}")  # kept, sent with a later epoch's
            except Exception:
                err = self._translated(exc, f"epoch {step}")
                if err is exc:
                    raise
                raise err from exc

    def _send(self, tags: list | None = None) -> None:
        """The kept points, in batches the store takes (MLflow's limit is 1,000 per request), each
        removed once sent, so a store that fails half way is never sent a point twice; with a
        heartbeat (`xlrec runs reap --stale-minutes` reads it)."""
        client = MlflowClient()
        with shield_signals():  # an epoch printed is an epoch logged: a signal waits for the request
            while self._unsent or tags:
                batch = self._unsent[:900]
                client.log_batch(self._active_id(), metrics=batch, tags=tags or [])
                del self._unsent[: len(batch)]
                tags = None
        self._store_up()

    def on_exception(self, trainer, exc: BaseException) -> None:
        """End the run FAILED (an error) or KILLED (a signal), once; the store being the failure
        itself is not asked again for long (close_run probes it first)."""
        if self.run_id is None or self.run_id not in _OPEN:
            return
        status, reason = end_status(exc)
        if not close_run(self.run_id, self.uri, status, reason) and isinstance(exc, TrackingStoreError):
            exc.args = (
                f"{exc.args[0]} The run {self.run_id} could not be closed and stays RUNNING until "
                f"`xlrec runs reap --tracking-uri {redact(self.uri)}` marks it FAILED.",
            )

    def on_train_end(self, trainer, result: TrainResult) -> None:
        def finish() -> None:  # each step may run again after the store came back: none logs twice
            self._send()
            run_outputs.log_results(trainer, self.data, result, self._pending)  # pop logs params_total here
            self._pending = {}
            if trainer.model.trainable:  # a version this run registered already is reused
                self.model_version, self.promotion = run_outputs.log_model(
                    self._active_id(), trainer, self.data, result, self.register
                )
            mlflow.set_tag("xlrec.status", result.stopped_reason)
            with shield_signals():
                mlflow.end_run(status="FINISHED")
                _OPEN.pop(self._active_id(), None)

        try:
            self._while_down("logging the results", finish)
        except BaseException as exc:
            self._fail(trainer, exc, "logging the results")

    def _fail(self, trainer, exc: BaseException, phase: str) -> None:
        """Close the run for `exc` and raise it, a failing store as one paragraph."""
        err = self._translated(exc, phase)
        self.on_exception(trainer, err)
        if err is exc:
            raise exc
        raise err from exc

    def _translated(self, exc: BaseException, phase: str) -> BaseException:
        """A failing store as one paragraph (TrackingStoreError); anything else unchanged."""
        if isinstance(exc, XlrecError) or not isinstance(exc, Exception) or not _is_store_failure(exc):
            return exc
        return TrackingStoreError(
            f"The MLflow tracking store at {redact(self.uri)} failed during {phase} ({_short(exc)}). Check that "
            f"the tracking server or database is up, then train again; nothing after that point was logged."
        )
