"""The end of a sweep: close the trial runs Tune stopped, and make the parent run tell the story.

The parent gets the trials table (`trials.csv`), Optuna's plots (search) or Table 4 (grid),
the best finished trial's scores as its own metrics (so the runs list ranks sweeps), tags and
a markdown description naming the best trial and the registry's champion.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from xlrec.redact import redact
from xlrec.report.tables import aggregate_table4, to_markdown
from xlrec.settings import BEST_VAL_SELECTION_KEY
from xlrec.sweeps.spec import METRICS, SweepSpec
from xlrec.sweeps.trial import METRIC
from xlrec.sweeps.trial_config import member_configs, trial_overrides
from xlrec.sweeps.trial_group import parse_member_runs

if TYPE_CHECKING:
    from xlrec.platform.tracking.sweep_tracking import SweepRecorder

# The columns a reader looks at first; the rest follow.
_FIRST = [
    "trial",
    "run_name",
    "status",
    METRIC,
    "val_ndcg_at_10",
    "test_recall_at_10",
    "test_ndcg_at_10",
    "test_mrr_at_10",
    "epochs",
    "embedding_dim",
    "num_heads",
    "num_blocks",
    "lr",
    "dropout",
    "model",
    "dataset",
    "max_len",
    "seed",
]


def _status(res) -> str:
    if res.error is not None:
        return "FAILED"
    return "FINISHED" if (res.metrics or {}).get("trial_finished") else "PRUNED"


def _entries(results, recorder: SweepRecorder):
    """(Tune result, the run's trial config, its MLflow run id, status, Tune's final metrics of it)
    per run: a trial, or each seed of a trial that trained a grid cell's seeds together
    (xlrec.sweeps.trial_group), whose own metrics live in its MLflow run."""
    for res in results:
        m = res.metrics or {}
        members = member_configs(res.config or {})
        if "seeds" not in ((res.config or {}).get("cell") or {}):
            yield res, members[0], m.get("mlflow_run_id"), _status(res), m
            continue
        runs = parse_member_runs(m.get("member_runs"))
        for member in members:
            seed = member["cell"]["seed"]
            run_id = runs.get(seed)
            if run_id is None and m.get("trial_id"):  # opened after the trial's last report
                run_id = recorder.trial_run_id(f"{m['trial_id']}-s{seed}")
            finished = run_id is not None and recorder.run_finished(run_id)
            yield res, member, run_id, "FINISHED" if finished else "FAILED", None


def _table4_markdown(agg: pd.DataFrame) -> str:
    """table4.csv's numbers as the Table 4 a reader scans: mean ± std cells."""
    shown = agg[["model", "dataset", "max_len", "seeds"]].astype(str)
    shown["params"] = agg["params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
    for key, label in (
        ("test_recall_at_10", "Recall@10"),
        ("test_ndcg_at_10", "NDCG@10"),
        ("test_mrr_at_10", "MRR@10"),
    ):
        std = agg[f"{key}_std"].fillna(0.0)
        shown[label] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(agg[f"{key}_mean"], std)]
    shown["s/epoch"] = agg["avg_epoch_time_s"].map(lambda v: f"{v:.2f}")
    return to_markdown(shown)


def trials_table(spec: SweepSpec, results, recorder: SweepRecorder) -> pd.DataFrame:
    """One row per trial run; the trial runs Tune stopped are closed on the way (close_trial)."""
    rows = []
    for number, (res, config, run_id, status, m) in enumerate(_entries(results, recorder), start=1):
        cfg = trial_overrides(config)
        model = cfg.get("model", spec.model)
        fixed = {**base_defaults(spec), **spec.fixed_for(model)}
        reason = ""
        if status == "FAILED":
            reason = failure_reason(res.error) if res.error is not None else "its trial ended before this seed finished"
        if run_id:
            recorder.close_trial(run_id, status, reason)
        tune_metrics = res.metrics or {}
        # "trial_" keeps ids strings: MLflow's CSV preview types 00097008 as the number 97008
        row = {
            "trial": number,
            "trial_id": f"trial_{tune_metrics['trial_id']}" if tune_metrics.get("trial_id") else "",
            "status": status,
            "mlflow_run_id": run_id,
            "run_name": "",
            "model": model,
            "dataset": cfg.get("dataset", spec.dataset),
            "max_len": cfg.get("max_len", fixed.get("max_len")),
            "split": cfg.get("split", fixed.get("split", "leave_last_two")),
            "seed": cfg.get("seed", fixed.get("seed")),
            "embedding_dim": cfg.get("embedding_dim", fixed.get("embedding_dim")),
            "num_heads": cfg.get("num_heads", fixed.get("num_heads")),
            "num_blocks": cfg.get("num_blocks", fixed.get("num_blocks")),
            "lr": cfg.get("lr", fixed.get("lr")),
            "dropout": cfg.get("dropout", fixed.get("dropout")),
            "epochs": m.get("epoch") if m is not None else None,
            METRIC: m.get(METRIC) if m is not None else None,
            "val_ndcg_at_10": m.get("val_ndcg_at_10") if m is not None else None,
            "error": reason[:300],
        }
        row.update({k: cfg[k] for k in spec.axes() if k in cfg and k not in row})
        if run_id:
            run = recorder.trial_run(run_id)
            rm = run.metrics
            row["run_name"] = run.name
            row["cuda_visible_devices"] = run.tags.get("cuda_visible_devices", "")
            for key in ("embedding_dim", "num_heads", "num_blocks", "lr", "dropout"):  # as the trial resolved them
                if row[key] is None and key in run.params:
                    row[key] = yaml.safe_load(run.params[key])
            if m is None:  # a seed of a grouped trial: its scores are its run's
                row.update(
                    {"epochs": rm.get("epochs_run"), METRIC: rm.get(BEST_VAL_SELECTION_KEY)}
                    | {"val_ndcg_at_10": rm.get("best_val_ndcg_at_10")}
                )
                if status == "FAILED" and not row["error"]:
                    row["error"] = run.tags.get("xlrec.failure_reason", "")[:300]
            row.update(
                {
                    "test_recall_at_10": rm.get("test_recall_at_10"),
                    "test_ndcg_at_10": rm.get("test_ndcg_at_10"),
                    "test_mrr_at_10": rm.get("test_mrr_at_10"),
                    "avg_epoch_time_s": rm.get("avg_epoch_time_s"),
                    "gpu_peak_allocated_mb": rm.get("gpu_peak_allocated_mb"),
                    "params_total": rm.get("params_total"),
                }
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table[[c for c in _FIRST if c in table] + [c for c in table if c not in _FIRST]]
    return table


def finish(spec: SweepSpec, results, recorder: SweepRecorder, study_name: str, study_storage: str) -> dict[str, Any]:
    """Mark pruned/failed trial runs; log the trials table, plots or Table 4, the best trial's
    scores and the champion to the parent run; return the sweep's summary."""
    table = trials_table(spec, results, recorder)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        table.to_csv(tmp / "trials.csv", index=False)
        recorder.log_artifact(tmp / "trials.csv")
        if spec.mode == "search":
            for png in optuna_plots(study_name, study_storage, tmp, METRICS[spec.metric]):
                recorder.log_artifact(png, artifact_path="optuna")
        else:
            agg = aggregate_table4(table)
            agg.to_csv(tmp / "table4.csv", index=False)
            (tmp / "table4.md").write_text(_table4_markdown(agg) + "\n")
            recorder.log_artifact(tmp / "table4.csv")
            recorder.log_artifact(tmp / "table4.md")
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    done = table[table["status"] == "FINISHED"]
    best = done.sort_values(spec.metric, ascending=False).head(1).to_dict("records") if len(done) else []
    champion = _champion(recorder, best[0]) if best else None
    metrics = {}
    if best:  # the best trial's scores, under the keys its own run uses: the runs list compares them
        metrics[BEST_VAL_SELECTION_KEY] = float(best[0][METRIC])
        if best[0].get("val_ndcg_at_10") is not None:
            metrics["best_val_ndcg_at_10"] = float(best[0]["val_ndcg_at_10"])
        metrics.update(
            {
                k: float(best[0][k])
                for k in ("test_recall_at_10", "test_ndcg_at_10", "test_mrr_at_10")
                if best[0].get(k) == best[0].get(k) and best[0].get(k) is not None
            }
        )
    metrics.update(
        {
            "trials_done": counts.get("FINISHED", 0),
            "trials_failed": counts.get("FAILED", 0),
            "trials_pruned": counts.get("PRUNED", 0),
        }
    )
    recorder.log_metrics(metrics)
    tags = {}
    if best:
        tags.update(
            {"xlrec.best_trial_run_id": str(best[0]["mlflow_run_id"]), "xlrec.best_trial": str(best[0]["run_name"])}
        )
    if champion:
        tags.update(
            {
                "xlrec.champion_model": champion["name"],
                "xlrec.champion_version": str(champion["version"]),
                "xlrec.champion_uri": champion["uri"],
            }
        )
    recorder.set_tags(tags, description=_description(spec, table, best[0] if best else None, champion))
    return {
        "parent_run_id": recorder.parent_id,
        "mode": spec.mode,
        "trials_done": counts.get("FINISHED", 0),
        "trials_failed": counts.get("FAILED", 0),
        "trials_pruned": counts.get("PRUNED", 0),
        "best_trial": _jsonable(best[0]) if best else None,
        "champion": {"name": champion["name"], "version": champion["version"]} if champion else None,
    }


def _champion(recorder: SweepRecorder, best: dict) -> dict | None:
    from xlrec.platform.registry.champion import ALIAS, registered_name

    name = registered_name(best["model"], best["dataset"], best.get("split") or "leave_last_two")
    found = recorder.champion(name, ALIAS)
    if found is None:
        return None
    return {
        "name": name,
        "version": found.version,
        "uri": f"models:/{name}@{ALIAS}",
        "run_id": found.run_id,
        "is_best_trial": found.run_id == best["mlflow_run_id"],
    }


def _description(spec, table: pd.DataFrame, best: dict | None, champion: dict | None) -> str:
    """The parent run's description (markdown)."""
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    lines = [spec.description, ""] if spec.description else []
    lines += [
        f"**{spec.name}**: {spec.mode} sweep, {len(table)} trials "
        f"({counts.get('FINISHED', 0)} finished, {counts.get('PRUNED', 0)} pruned, "
        f"{counts.get('FAILED', 0)} failed), {spec.epochs_text()} each.",
        "",
    ]
    if best:
        lines.append(
            f"Best trial (by {METRICS[spec.metric]}): **{best['run_name']}** (run `{best['mlflow_run_id']}`): "
            f"val Recall@10 {_num(best[METRIC])}, val NDCG@10 {_num(best.get('val_ndcg_at_10'))}, "
            f"test Recall@10 {_num(best.get('test_recall_at_10'))}, "
            f"NDCG@10 {_num(best.get('test_ndcg_at_10'))}."
        )
    else:
        lines.append("No trial finished: see `trials.csv` for each trial's status and error.")
    if champion:
        which = "this sweep's best trial" if champion["is_best_trial"] else f"run `{champion['run_id']}`"
        lines += [
            "",
            f"Champion: `{champion['uri']}` = version {champion['version']} ({which}); load it with "
            f"`xlrec recommend --model-uri {champion['uri']} --user 1`.",
        ]
    lines += [
        "",
        "Artifacts: `sweep.yaml` (the spec; `xlrec sweep --spec sweep.yaml` runs it again), "
        "`trials.csv` (one row per trial)"
        + (", `optuna/` (Optuna's plots)." if spec.mode == "search" else ", `table4.csv` (mean ± std over seeds)."),
    ]
    return "\n".join(lines)


def _num(value) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.4f}"


def failure_reason(error: BaseException) -> str:
    """The trial's own exception (Ray wraps it in a RayTaskError whose text is a remote traceback)."""
    cause = getattr(error, "cause", None)
    cause = cause if isinstance(cause, BaseException) else error
    return redact(f"{type(cause).__name__}: {cause}")


def base_defaults(spec) -> dict[str, Any]:
    """max_len and seed a search trial inherits when it does not sample them."""
    from xlrec.config import resolve_config

    cfg = resolve_config(spec.model, spec.dataset)
    return {"max_len": cfg.max_len, "seed": cfg.seed}


def _jsonable(row: dict) -> dict:
    return {k: (None if (isinstance(v, float) and v != v) else v) for k, v in row.items()}


def optuna_plots(study_name: str, storage: str, tmp: Path, target: str = "val Recall@10") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    study = optuna.load_study(study_name=study_name, storage=storage)
    pngs = []
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # says nothing to a sweep user
    plots: list[tuple[str, Callable[..., Any]]] = [
        ("optimization_history", ovm.plot_optimization_history),
        ("param_importances", ovm.plot_param_importances),
        ("parallel_coordinate", ovm.plot_parallel_coordinate),
        ("intermediate_values", ovm.plot_intermediate_values),
    ]
    for name, fn in plots:
        try:  # the axis names the metric, not Optuna's generic "Objective Value"
            ax = fn(study) if name == "intermediate_values" else fn(study, target_name=target)
        except Exception as exc:  # e.g. importances need >= 2 completed trials
            print(f"[xlrec] skipped the {name} plot: {exc}", file=sys.stderr)
            continue
        if name == "intermediate_values":
            ax.set_ylabel(f"{target} (per epoch)")
            ax.set_xlabel("epoch")
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(9, 5)
        fig.tight_layout()
        path = tmp / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        pngs.append(path)
    return pngs
