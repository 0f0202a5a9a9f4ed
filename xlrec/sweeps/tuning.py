"""`xlrec tune`: every model gets the same search budget on one dataset, then its winner is
confirmed over seeds, written to the dataset's tuned defaults and reported.

Flow: check everything (models tunable, budget, data big enough to validate) before anything
starts; start one tracking server and one Ray for the whole tuning; open the tuning's MLflow run;
then per model one Optuna search sweep (xlrec.sweeps.driver: TPE, ASHA, validation Recall@10 only),
its parent run nested under the tuning's; then one grid sweep re-training each winner over the
seeds; then the tuned defaults file (xlrec.config.defaults.write_tuned) and the report of the
confirmation grid with the tuning's section (xlrec.report.tuning).

The budget rule: `--budget` is wall time for the searches, split equally among the models, and
each model's search runs as many trials as its share holds (a model twice as fast gets about
twice the trials: what a user pays is time, so time is what is equal); `--trials N` gives every
model N trials instead (equal trials, each trial with the same epochs and ASHA rungs). Both
together: equal time, at most N trials each. The confirmation runs outside the budget.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xlrec.errors import ConfigError
from xlrec.redact import redact
from xlrec.settings import SELECTION_METRIC_LABEL, VAL_SELECTION_KEY, setting
from xlrec.sweeps.naming import duration, say
from xlrec.sweeps.spec import SweepSpec, gpu_share

# The learning rate is searched for every model; each family declares the rest beside its settings
# (`search_space` on the model class: xlrec.rec_models).
COMMON_SPACE: dict[str, dict[str, Any]] = {"lr": {"float": [2e-4, 5e-3], "log": True}}
# Less than this per model cannot hold a trial: a worker's start, the data and a few epochs of a
# small model take tens of seconds on a 2-core CPU.
MIN_SECONDS_PER_MODEL = 60.0
# Fewer validation users than this, and one user moves Recall@10 by more than a point: the
# search would rank noise.
MIN_VALIDATION_USERS = 100
# Optuna's fANOVA importances need finished trials that differ; below this many they are noise.
MIN_TRIALS_FOR_IMPORTANCE = 4
# A search with a time budget and no --trials stops on its time; this only bounds Tune's sampler.
TRIALS_CAP = 1000
DEFAULT_MODELS = ("xlstm", "sasrec", "bert4rec", "gru4rec", "lstm")


def parse_budget(text: Any) -> float:
    """`30m`, `1h30m`, `90s`, `600` (seconds) -> seconds."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value)
    if not value or parts is None or not any(parts.groups()):
        raise ValueError("a duration such as 30m, 1h30m, 90s or seconds")
    h, m, s = (int(g or 0) for g in parts.groups())
    return float(h * 3600 + m * 60 + s)


def _models(text: Any) -> tuple[str, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(str(x) for x in text)
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def _seeds(text: Any) -> tuple[int, ...]:
    values = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        return tuple(int(str(x).strip()) for x in values if str(x).strip())
    except ValueError:
        raise ValueError("comma-separated integers") from None


@dataclass
class TuneRequest:
    """What `xlrec tune` is asked: every field is a flag (xlrec.cli.tune)."""

    dataset: str = setting("ml-100k", "the dataset: a name or a file of your own (as --dataset of train)")
    models: tuple[str, ...] = setting(DEFAULT_MODELS, "comma-separated models to tune", parse=_models)
    budget: float | None = setting(
        None, "wall time for the searches, split equally among the models (30m, 1h, 600)", parse=parse_budget
    )
    trials: int | None = setting(None, "trials per model (with --budget: at most this many)", minimum=1)
    epochs: int = setting(50, "the most epochs a trial trains (early stopping and ASHA end most sooner)", minimum=1)
    grace_period: int = setting(3, "ASHA: epochs before a trial may be pruned", minimum=1)
    seeds: tuple[int, ...] = setting((42, 123, 2023), "seeds of the confirmation of each winner", parse=_seeds)
    seed: int = setting(42, "the TPE sampler's seed", minimum=0)
    cpus_per_trial: float = setting(1.0, "CPUs per trial", minimum=0)
    gpus_per_trial: float | str = setting(0.0, "GPUs per trial: a share, or auto", minimum=0, parse=gpu_share)
    max_concurrent: int = setting(0, "bound on trials at once (0 = what the resources allow)", minimum=0)
    experiment: str | None = setting(None, "the MLflow experiment (default xlrec-<dataset>)")
    name: str | None = setting(None, "the tuning's name: its MLflow run's (needed to --resume it)")
    defaults_dir: str | None = setting(
        None, "where the tuned defaults are written (default XLREC_DEFAULTS_DIR or ./xlrec-defaults)"
    )
    report_dir: str | None = setting(None, "the report's folder (default xlrec-report/<name>)")
    tracking_uri: str | None = setting(None, "MLflow server (http://...); default: serve ./mlflow.db locally")
    ray_address: str | None = setting(None, "existing Ray cluster (else RAY_ADDRESS or a local one)")
    storage_path: str | None = setting(None, "Ray Tune results (default ./ray_results)")
    study_storage: str | None = setting(None, "Optuna RDB storage URL (default sqlite:///optuna.db)")
    source: str | None = setting(None, "dataset mirror directory or base URL")
    resume: bool = setting(False, "continue the tuning of this --name: finished searches are kept")
    overrides: dict[str, Any] = field(default_factory=dict)  # --set KEY=VALUE: every trial's

    def budget_rule(self) -> str:
        n = len(self.models)
        if self.budget is not None:
            cap = f", at most {self.trials} trials each" if self.trials else ""
            return (
                f"Equal time: {duration(self.budget)} of searching split equally, {duration(self.budget / n)} per "
                f"model{cap}; a faster model runs more trials in its share. Trials still running when a share "
                f"ends are stopped (counted as pruned)."
            )
        return f"Equal trials: {self.trials} per model, each up to {self.epochs} epochs with the same ASHA rungs."


@dataclass
class _Search:
    model: str
    sweep: str  # the sweep's name
    run_id: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    winner: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)


# --- before anything starts ----------------------------------------------------------------------


def check_request(req: TuneRequest) -> None:
    """The refusals that need no data: models, budget."""
    from xlrec.catalog import models as registry

    if not req.models:
        raise ConfigError("--models names no model; pass e.g. --models xlstm,sasrec,gru4rec.")
    if len(set(req.models)) != len(req.models):
        raise ConfigError(f"--models names a model twice ({', '.join(req.models)}); name each once.")
    for name in req.models:
        entry = registry.get(name)  # an unknown name: its own paragraph, with the known ones
        if not getattr(entry.load(), "trainable", True):
            raise ConfigError(
                f"Model {name!r} has nothing to tune: it trains no parameters (popularity counts). Drop it from "
                f"--models; to compare against it, add it to a grid over the tuned models (`xlrec sweep --mode grid "
                f"--models {name},...`)."
            )
    if req.budget is None and req.trials is None:
        raise ConfigError("Give the search a budget: --budget 30m (equal time per model) or --trials N (per model).")
    if req.budget is not None and req.budget / len(req.models) < MIN_SECONDS_PER_MODEL:
        raise ConfigError(
            f"--budget {duration(req.budget)} is too small for {len(req.models)} models: each model's share would be "
            f"{duration(req.budget / len(req.models))}, and a trial needs at least {duration(MIN_SECONDS_PER_MODEL)} "
            f"(a worker's start, the data, a few epochs). Pass at least "
            f"--budget {duration(MIN_SECONDS_PER_MODEL * len(req.models))}, or fewer --models."
        )
    if not req.seeds:
        raise ConfigError("--seeds names no seed for the confirmation; pass e.g. --seeds 42,123,2023.")


def _space(model: str, lengths: tuple[int, ...] = ()) -> dict[str, dict[str, Any]]:
    """The model's search space: the learning rate, the window length (`lengths`: from the data),
    and its family's declared space (or the built-in one)."""
    from xlrec.catalog import models as registry
    from xlrec.sweeps.space import DEFAULT_SPACE

    declared = getattr(registry.get(model).load(), "search_space", None)
    common = {**COMMON_SPACE, **({"max_len": {"categorical": list(lengths)}} if len(lengths) > 1 else {})}
    return {**common, **(DEFAULT_SPACE if declared is None else declared)}


def window_lengths(len_p90: float, borrowed: int) -> tuple[int, ...]:
    """The max_len values a tuning tries: the 0.9 quantile of the users' lengths and twice it (each rounded
    up to a multiple of 10, at least 10), and the borrowed default; none above the borrowed one. A window
    far longer than most histories is padding that every epoch pays for (ML-1M's 200 on a cut whose
    histories are 16 long)."""

    def up(n: float) -> int:
        return max(10, math.ceil(n / 10) * 10)

    return tuple(sorted({v for v in (up(len_p90), up(2 * len_p90)) if v < borrowed} | {borrowed}))


def _check_data(req: TuneRequest, spec: SweepSpec) -> tuple[int, ...]:
    """After the sweep's own preflight prepared the data: enough users to validate on. Returns the
    window lengths to search (`window_lengths`)."""
    from xlrec.config import resolve_config
    from xlrec.data_prep import data_shape, make_split, prepare_config

    cfg = resolve_config(req.models[0], req.dataset, overrides={**req.overrides, "source": spec.source})
    data = prepare_config(cfg)
    users = len(make_split(data.seqs, cfg).val.users)
    if users < MIN_VALIDATION_USERS:
        raise ConfigError(
            f"Dataset {cfg.dataset} has {users} users with a validation target, fewer than {MIN_VALIDATION_USERS}: "
            f"one user would move validation Recall@10 by over a point, so a search would rank noise. Tune on "
            f"more data (more users, or looser filters), or compare the models with `xlrec sweep --mode grid`."
        )
    return () if "max_len" in req.overrides else window_lengths(data_shape(data).len_p90, cfg.max_len)


# --- the tuning ------------------------------------------------------------------------------------


def _shared(req: TuneRequest, name: str, experiment: str, uri: str | None, parent: str) -> dict[str, Any]:
    """What every sweep of a tuning shares: the data, the resources, where it runs and logs."""
    return {
        "datasets": [req.dataset],
        "overrides": dict(req.overrides),
        "experiment": experiment,
        "epochs": req.epochs,
        "cpus_per_trial": req.cpus_per_trial,
        "gpus_per_trial": req.gpus_per_trial,
        "max_concurrent": req.max_concurrent,
        "tracking_uri": uri,
        "ray_address": req.ray_address,
        "storage_path": req.storage_path,
        "study_storage": req.study_storage,
        "source": req.source,
        "nested_in": parent,
    }


def _search_spec(
    req: TuneRequest,
    model: str,
    name: str,
    experiment: str,
    uri: str | None,
    parent: str,
    lengths: tuple[int, ...] = (),
) -> SweepSpec:
    return SweepSpec(
        mode="search",
        models=[model],
        space=_space(model, lengths),
        name=f"{name}-search-{model}",
        description=f"xlrec tune {name}: the search of {model} on {req.dataset}. {req.budget_rule()}",
        trials=req.trials or TRIALS_CAP,
        time_budget_s=req.budget / len(req.models) if req.budget is not None else None,
        seed=req.seed,
        grace_period=req.grace_period,
        **_shared(req, name, experiment, uri, parent),
    )


def _confirm_spec(
    req: TuneRequest, winners: dict[str, dict[str, Any]], name: str, experiment: str, uri: str, parent: str
) -> SweepSpec:
    seeds = "/".join(map(str, req.seeds))
    return SweepSpec(
        mode="grid",
        models=list(winners),
        seeds=list(req.seeds),
        grid=[{}],
        per_model={m: {"fixed": w} for m, w in winners.items()},
        name=f"{name}-confirm",
        description=f"xlrec tune {name}: each search's winner re-trained over seeds {seeds}.",
        **_shared(req, name, experiment, uri, parent),
    )


def _value(text: str) -> Any:
    """A param as MLflow stored it, back to its value; floats to 3 significant digits (the
    confirmation runs the rounded value, so what it measures is what the defaults file holds)."""
    value = yaml.safe_load(text)
    return float(f"{value:.3g}") if isinstance(value, float) else value


def _winner(spec: SweepSpec, model: str, params: dict[str, str]) -> dict[str, Any]:
    """The settings a search searched, as its best trial resolved them (`head_dim` became `embedding_dim`)."""
    from xlrec.sweeps.space import model_space

    keys = [k for k in model_space(spec, model) if k != "head_dim"]
    if "head_dim" in model_space(spec, model):
        keys.append("embedding_dim")
    return {k: _value(params[k]) for k in keys if k in params}


def _importances(study_name: str, storage: str) -> dict[str, float]:
    """Optuna's fANOVA importances of the search's settings (none below MIN_TRIALS_FOR_IMPORTANCE finished
    trials: over one or two, fANOVA returns equal shares that mean nothing)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        if len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCE:
            return {}
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ).items()
        }
    except Exception:  # fewer than two finished trials, or one value only
        return {}


def run_tuning(req: TuneRequest) -> dict[str, Any]:
    from xlrec.config import resolve_config, tuned_key
    from xlrec.config.defaults import tuned_dir
    from xlrec.platform.tracking.tune_tracking import TuneRecorder
    from xlrec.sweeps.preflight import prepare_data
    from xlrec.sweeps.ray_session import secret_env, start_ray
    from xlrec.sweeps.state import SweepState
    from xlrec.sweeps.stopping import StopSignals, stop_ray
    from xlrec.sweeps.tracking_server import serve_tracking

    check_request(req)
    started = time.monotonic()
    probe = resolve_config(req.models[0], req.dataset, overrides=dict(req.overrides))
    key = tuned_key(probe)
    experiment = req.experiment or f"xlrec-{probe.dataset}"
    name = req.name or f"tune-{key}"
    out_dir = tuned_dir(req.defaults_dir) or tuned_dir(None)
    assert out_dir is not None
    # every model's search checked and the data prepared before anything starts
    for model in req.models:
        first = _search_spec(req, model, name, experiment, req.tracking_uri, "-")  # "-": no tuned defaults
        prepare_data(first)
    lengths = _check_data(req, first)

    state = SweepState.of(first)
    recorder = None
    with StopSignals() as stop, contextlib.ExitStack() as stack:
        try:
            uri, ready = serve_tracking(first, state, stack, None)

            def ray_up() -> None:  # once; a resumed tuning whose sweeps all finished starts no cluster
                start_ray(first, state, stop, secret_env(uri, first.source))

            if not req.resume:
                ray_up()  # while the tracking server comes up
            ready()
            recorder = TuneRecorder(uri)
            resumed = recorder.open(name, experiment, req.resume)
            say(
                f"tune {name}: {', '.join(req.models)} on {probe.dataset}; {req.budget_rule()} Then each winner "
                f"over seeds {'/'.join(map(str, req.seeds))}. MLflow experiment {experiment!r}, run {name!r}"
                + (" (resumed)" if resumed else "")
            )
            recorder.log_params(
                {
                    "dataset": req.dataset,
                    "models": ",".join(req.models),
                    "budget_s": req.budget if req.budget is not None else "none",
                    "trials_per_model": req.trials if req.trials is not None else "budget",
                    "epochs": req.epochs,
                    "seeds": ",".join(map(str, req.seeds)),
                    "metric": VAL_SELECTION_KEY,
                    "budget_rule": req.budget_rule(),
                    **{f"space.{m}": json.dumps(_space(m, lengths)) for m in req.models},
                    **{f"set.{k}": v for k, v in req.overrides.items()},
                }
            )
            recorder.set_tags({"mlflow.note.content": f"xlrec tune {name}. {req.budget_rule()}"})
            searches = [
                _search(req, recorder, m, i, name, experiment, uri, stop, ray_up, lengths)
                for i, m in enumerate(req.models, start=1)
            ]
            winners = {s.model: s.winner for s in searches if s.winner}
            if not winners:
                raise ConfigError(
                    f"No model's search finished a trial on {probe.dataset} (see the searches' trials in MLflow): "
                    f"nothing to confirm. Give the searches more time (--budget) or fewer epochs, and --resume."
                )
            confirm = _confirm(req, recorder, winners, name, experiment, uri, ray_up)
            path, report = _publish(req, recorder, searches, confirm, key, name, experiment, out_dir)
        except BaseException as exc:
            if recorder is not None:
                recorder.abort(exc)
            stop_ray(state)
            raise
        stop_ray(state)
        recorder.end()
    summary = {
        "tuning_run_id": recorder.run_id,
        "experiment": experiment,
        "defaults_file": str(path),
        "report": str(report),
        "seconds": round(time.monotonic() - started, 1),
        "models": {s.model: {"winner": s.winner, **_counts(s.summary)} for s in searches},
    }
    say(
        f"tune {name} done in {duration(time.monotonic() - started)}: tuned defaults in {path} (later `xlrec train` "
        f"and `xlrec sweep` on this data start from them); report {report / 'report.html'}"
    )
    store = f"mlflow ui --backend-store-uri sqlite:///{state.served_db}" if state.served_db else redact(uri)
    say(f"compare: {store}, experiment {experiment!r}, run {name!r} (its searches and the confirmation nest under it)")
    print(json.dumps(summary))
    return summary


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in ("trials_done", "trials_pruned", "trials_failed", "seconds")}


def _search(
    req: TuneRequest, recorder, model: str, i: int, name: str, experiment: str, uri: str, stop, ray_up, lengths
) -> _Search:
    """One model's search: run (or resume, or take the finished one of a resumed tuning) and read its winner."""
    from xlrec.sweeps.driver import run_sweep
    from xlrec.sweeps.tuner import study_storage

    spec = _search_spec(req, model, name, experiment, uri, recorder.run_id, lengths)
    found = recorder.sweep(spec.name)
    result = _Search(model, spec.name or "")
    if found and found[1] == "FINISHED":
        say(f"tune {name}: model {i}/{len(req.models)} {model}: its search finished before; kept")
        run_id = found[0]
        summary = _summary_of(recorder.run(run_id))
    else:
        say(f"tune {name}: model {i}/{len(req.models)} {model}: searching")
        spec.resume = found is not None
        ray_up()
        summary = run_sweep(spec, announce=False)
        stop.install()  # the sweep restored the handlers it replaced
        run_id = summary["parent_run_id"]
        if summary.get("study_name"):
            result.importances = _importances(summary["study_name"], study_storage(spec))
            recorder.log_metrics({f"importance.{k}": v for k, v in result.importances.items()}, run_id=run_id)
        recorder.log_metrics({"seconds": summary["seconds"]}, run_id=run_id)
    result.run_id, result.summary = run_id, summary
    if not result.importances:
        metrics = recorder.run(run_id)["metrics"]
        result.importances = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("importance.")}
    best = (summary.get("best_trial") or {}).get("mlflow_run_id")
    if not best:  # no trial finished within the model's share: the best validation score any trial reached
        reached = [
            (r["metrics"].get(f"best_{VAL_SELECTION_KEY}", r["metrics"].get(VAL_SELECTION_KEY)), r["run_id"])
            for r in recorder.trial_runs(run_id)
        ]
        reached = [(score, rid) for score, rid in reached if score is not None]
        if reached:
            score, best = max(reached)
            summary["best_trial"] = {"mlflow_run_id": best, VAL_SELECTION_KEY: score, "unfinished": True}
            say(
                f"tune {name}: no {model} trial finished within its share; its winner is the trial that reached the "
                f"best {SELECTION_METRIC_LABEL} ({score:.4f}) before it was stopped (the confirmation trains it in "
                f"full). A larger --budget lets trials finish."
            )
    if best:
        result.winner = _winner(spec, model, recorder.run(best)["params"])
        score = summary["best_trial"].get(VAL_SELECTION_KEY)
        recorder.log_metrics({f"{model}.search_best_{VAL_SELECTION_KEY}": float(score)} if score is not None else {})
    recorder.log_metrics(
        {f"{model}.{k}": float(v) for k, v in _counts(summary).items() if v is not None and not math.isnan(float(v))}
    )
    return result


def _summary_of(run: dict[str, Any]) -> dict[str, Any]:
    """A finished search's summary, from its parent run (a resumed tuning does not run it again)."""
    m, tags = run["metrics"], run["tags"]
    best = tags.get("xlrec.best_trial_run_id")
    return {
        "trials_done": int(m.get("trials_done", 0)),
        "trials_pruned": int(m.get("trials_pruned", 0)),
        "trials_failed": int(m.get("trials_failed", 0)),
        "seconds": m.get("seconds"),
        "best_trial": {"mlflow_run_id": best, VAL_SELECTION_KEY: m.get(f"best_{VAL_SELECTION_KEY}")} if best else None,
    }


def _confirm(req: TuneRequest, recorder, winners, name: str, experiment: str, uri: str, ray_up) -> str:
    """The confirmation grid (run, resumed or kept): its parent run id."""
    from xlrec.sweeps.driver import run_sweep

    spec = _confirm_spec(req, winners, name, experiment, uri, recorder.run_id)
    found = recorder.sweep(spec.name)
    if found and found[1] == "FINISHED":
        say(f"tune {name}: the confirmation finished before; kept")
        return found[0]
    say(f"tune {name}: confirming {len(winners)} winner(s) over seeds {'/'.join(map(str, req.seeds))}")
    spec.resume = found is not None
    ray_up()
    return str(run_sweep(spec, announce=False)["parent_run_id"])


def _publish(req, recorder, searches: list[_Search], confirm_id: str, key: str, name: str, experiment: str, out_dir):
    """The tuned defaults file and the report of the confirmation grid, both logged to the tuning's run."""
    from xlrec.config.defaults import write_tuned
    from xlrec.report import publish, tuning
    from xlrec.report.runs import collect

    runs = recorder.trial_runs(confirm_id)
    rows = []
    entries: dict[str, dict[str, Any]] = {}
    for s in searches:
        mine = [r for r in runs if r["params"].get("model") == s.model and r["status"] == "FINISHED"]
        val = [r["metrics"][f"best_{VAL_SELECTION_KEY}"] for r in mine if f"best_{VAL_SELECTION_KEY}" in r["metrics"]]
        test = [r["metrics"]["test_recall_at_10"] for r in mine if "test_recall_at_10" in r["metrics"]]
        c = _counts(s.summary)
        rows.append(
            tuning.ModelSearch(
                s.model,
                int(c["trials_done"] or 0),
                int(c["trials_pruned"] or 0),
                int(c["trials_failed"] or 0),
                float(c["seconds"] or 0.0),
                (s.summary.get("best_trial") or {}).get(VAL_SELECTION_KEY),
                s.winner,
                s.importances,
                val,
                test,
            )
        )
        if s.winner and val:
            mean = sum(val) / len(val)
            entries[s.model] = {
                "chosen_by": (
                    f"xlrec tune {name} (experiment {experiment}, run {recorder.run_id}): best"
                    f"{' (none finished)' if (s.summary.get('best_trial') or {}).get('unfinished') else ''} of "
                    f"{sum(int(c[k] or 0) for k in ('trials_done', 'trials_pruned', 'trials_failed'))} trials in "
                    f"{duration(float(c['seconds'] or 0))}; val {SELECTION_METRIC_LABEL} {mean:.4f} over seeds "
                    f"{'/'.join(map(str, req.seeds))}"
                ),
                **s.winner,
            }
    about = {"dataset": req.dataset, "set": dict(req.overrides)} if req.overrides else {"dataset": req.dataset}
    path = write_tuned(out_dir, key, entries, about)
    recorder.log_artifact(path, "tuned-defaults")
    numbers = tuning.numbers(rows)
    recorder.log_text(numbers.to_csv(index=False), "tuning.csv")
    rr = collect(experiment, confirm_id)
    out = Path(req.report_dir or Path("xlrec-report") / name)
    report = publish.write(rr, out, [tuning.section(rows, req.budget_rule())], {tuning.DATA_FILE: numbers})
    publish.log(rr, report)
    return path, report
