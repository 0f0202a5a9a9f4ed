"""What a finished training run leaves in MLflow: its result metrics, its artifacts (config,
history, curves, parameter table, per-user test ranks, sample predictions, the item table, the
items' output vectors, where the model looks along a history) and its model, logged as xlrec
format 2 and registered (at most one version per run)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient

from xlrec.data_prep import PreparedDataset
from xlrec.platform import artifacts
from xlrec.platform.registry.champion import METRIC_TAG, PromotionResult, promote, registered_name
from xlrec.platform.registry.requirements import pip_requirements
from xlrec.platform.tracking.environment import PROJECT_ROOT
from xlrec.rec_models import parameter_table
from xlrec.settings import SELECTION_METRIC, metric_key
from xlrec.training.events import TrainResult
from xlrec.training.position_profile import COLUMNS, position_profile

_ARTIFACTS = (
    "config.yaml",
    "history.csv",
    "training_curves.png",
    "parameters.csv",
    "test_per_user.parquet",
    "sample_predictions.md",
    "items.parquet",
)


def result_metrics(result: TrainResult) -> dict[str, float]:
    """Test, best-validation and cold-start scores and the run's timing, under MLflow keys."""
    final: dict[str, float] = {metric_key(k, "test"): v for k, v in result.test.metrics.items()}
    final.update({metric_key(k, "best_val"): v for k, v in result.best_val.items()})
    cold = result.cold
    final["cold_users"] = cold.get("users", 0)
    for who in ("model", "pop"):
        for k, v in cold.get(who, {}).items():
            final[metric_key(k, f"cold_{who}")] = v
    final.update(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "total_time_s": result.total_time_s,
            "avg_epoch_time_s": result.avg_epoch_time_s,
        }
    )
    if result.energy_j is not None:
        final["energy_j"] = result.energy_j
    return final


def log_results(trainer, data: PreparedDataset, result: TrainResult, pending: dict[str, float]) -> None:
    """The result metrics (with `pending` ones not logged yet) and the artifacts, to the active run."""
    cfg = trainer.cfg
    mlflow.log_metrics({**result_metrics(result), **pending})
    seqs = data.seqs
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        artifacts.write_config(tmp / "config.yaml", cfg)
        artifacts.write_history(tmp / "history.csv", result.history)
        artifacts.plot_curves(
            tmp / "training_curves.png",
            result.history,
            f"{cfg.model} on {cfg.dataset} (L={cfg.max_len}, seed {cfg.seed})",
        )
        artifacts.write_params_table(tmp / "parameters.csv", parameter_table(trainer.model))
        table = artifacts.per_user_table(
            seqs, result.test.users, result.test.targets, result.test.ranks, result.test.topk, result.test.positions
        )
        table.to_parquet(tmp / "test_per_user.parquet", index=False)
        artifacts.write_sample_predictions(tmp / "sample_predictions.md", seqs, table)
        artifacts.items_table(seqs, result.popularity).to_parquet(tmp / "items.parquet", index=False)
        for name in _ARTIFACTS:
            mlflow.log_artifact(str(tmp / name))
        vectors = getattr(trainer.model, "output_weight", None)  # pop has none
        if vectors is not None:
            weight = vectors.detach().float().cpu().numpy()[: seqs.num_items + 1]
            artifacts.item_vectors_table(weight).to_parquet(tmp / "item_vectors.parquet", index=False)
            mlflow.log_artifact(str(tmp / "item_vectors.parquet"))
        profile = _position_profile(trainer, seqs, result)
        if len(profile):  # attention or gates (RNNs and pop have neither)
            profile.to_parquet(tmp / "positions.parquet", index=False)
            mlflow.log_artifact(str(tmp / "positions.parquet"))


def _position_profile(trainer, seqs, result: TrainResult):
    """Where the trained model looks along the test users' histories (training.position_profile)."""
    model = trainer.model
    if not model.trainable:
        return pd.DataFrame(columns=COLUMNS)
    history = artifacts.test_histories(seqs, result.test.users, result.test.positions, trainer.cfg.max_len)
    with trainer.rt.autocast():
        return position_profile(model, torch.as_tensor(history, device=trainer.rt.device))


def log_model(
    run_id: str, trainer, data: PreparedDataset, result: TrainResult, register: bool
) -> tuple[int | None, PromotionResult | None]:
    """Log the model under a pyfunc flavor (safetensors + config + item map, no pickle) to the
    active run and, with `register`, register and promote it; returns (version, promotion).
    A resumed run that registered already reuses its version."""
    import mlflow.pyfunc

    from xlrec.platform.registry import model_format, serving

    cfg = trainer.cfg
    name = registered_name(cfg.model, cfg.dataset, cfg.split) if register else None
    client = MlflowClient()
    version = _run_version(client, name, run_id) if name else None
    if version is None:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            folder = tmp / "xlrec"  # pyfunc copies it to data/xlrec (model_format.DATA_DIR)
            model_format.write_model_dir(
                folder, trainer.model.state_dict(), cfg, artifacts.write_item_map(tmp / "item_map.json", data.seqs)
            )
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module="xlrec.platform.registry.serving",
                data_path=str(folder),
                code_paths=[str(PROJECT_ROOT)],
                pip_requirements=pip_requirements(),
                signature=serving.signature(),
                input_example=serving.input_example(data.seqs),
                metadata={"xlrec": dict(model_format.FLAVOR)},
                registered_model_name=name,
                await_registration_for=60,
            )
        if name is None:
            return None, None
        version = int(info.registered_model_version)
    assert name is not None  # a version exists only for a registered name
    val = result.best_val.get(SELECTION_METRIC, 0.0)
    for key, value in {
        METRIC_TAG: f"{val:.10f}",
        "seed": str(cfg.seed),
        "run_id": run_id,
        "max_len": str(cfg.max_len),
        "dataset_sha256": data.content_hash,
    }.items():
        client.set_model_version_tag(name, str(version), key, value)
    promotion = promote(client, name, version)
    mlflow.log_metric("model_version", version)
    mlflow.set_tags(
        {"xlrec.registered_model": name, "xlrec.model_version": str(version), "xlrec.promotion": promotion.reason}
    )
    return version, promotion


def _run_version(client: MlflowClient, name: str, run_id: str) -> int | None:
    """The version of `name` this run already registered (a trial resumed after registering)."""
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(int(v.version) for v in found) if found else None
