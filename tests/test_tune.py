"""`xlrec tune` (xlrec.sweeps.tuning) and the tuned defaults it writes (xlrec.config.defaults):
refusals before anything starts, the budget rule, the window lengths it searches, the defaults
layer that later `train` and `sweep` runs start from, and one real tuning on a local Ray cluster
with its resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import error_line, run_xlrec, summary_of, xlrec_env
from xlrec.config import resolve_config
from xlrec.config.defaults import load_tuned, tuned_dir, write_tuned
from xlrec.errors import ConfigError
from xlrec.sweeps.tuning import TuneRequest, check_request, parse_budget, window_lengths

SMALL = ["--dataset", "synthetic", "--set", "synthetic_users=400", "--set", "synthetic_mean_len=9"]
KEY = "synthetic__synthetic_mean_len-9__synthetic_users-400"  # the data's name: dataset and its prep variant


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800.0), ("1h30m", 5400.0), ("90s", 90.0), ("600", 600.0), ("2h", 7200.0)]
)
def test_budget_reads_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "30 minutes", "-5", "1d"])
def test_budget_refuses_what_is_not_a_duration(text):
    with pytest.raises(ValueError):
        parse_budget(text)


@pytest.mark.parametrize(
    ("p90", "borrowed", "lengths"),
    [(15.0, 50, (20, 30, 50)), (16.0, 200, (20, 40, 200)), (150.0, 200, (150, 200)), (300.0, 200, (200,))],
)
def test_the_window_lengths_searched_come_from_the_data_and_never_exceed_the_borrowed_one(p90, borrowed, lengths):
    assert window_lengths(p90, borrowed) == lengths


def test_the_budget_rule_is_stated_and_split_equally():
    timed = TuneRequest(models=("xlstm", "sasrec", "gru4rec"), budget=1800.0)
    assert "Equal time: 30m00s" in timed.budget_rule() and "10m00s per model" in timed.budget_rule()
    counted = TuneRequest(models=("xlstm", "sasrec"), trials=20, epochs=30)
    assert counted.budget_rule().startswith("Equal trials: 20 per model, each up to 30 epochs")
    check_request(timed)
    check_request(counted)


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (TuneRequest(models=("sasrec", "pop"), trials=4), "'pop' has nothing to tune"),
        (TuneRequest(models=("sasrec", "sasrec"), trials=4), "names a model twice"),
        (TuneRequest(models=("sasrec", "gru4rec")), "Give the search a budget"),
        (TuneRequest(models=("sasrec", "gru4rec", "lstm"), budget=120.0), "--budget 2m00s is too small for 3 models"),
        (TuneRequest(models=("sasrec",), trials=2, seeds=()), "names no seed"),
    ],
)
def test_requests_that_cannot_be_fair_are_refused(request_, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        check_request(request_)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--models", "sasrec,pop", "--trials", "2"], "nothing to tune"),
        (["--models", "sasrec,no-such-model", "--trials", "2"], "no-such-model"),
        (["--models", "sasrec,gru4rec", "--budget", "90s"], "too small for 2 models"),
        (["--models", "sasrec", "--trials", "2", "--set", "synthetic_users=60"], "fewer than 100"),
    ],
)
def test_bad_input_is_one_paragraph_before_anything_starts(tmp_path, isolated_cli, capsys, args, needle):
    """Each refusal: exit 2, one paragraph and no traceback, and no store, Ray results, defaults or report."""
    from xlrec.cli import main

    code = main(["tune", "--dataset", "synthetic", "--set", "synthetic_mean_len=9", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and needle in error_line(err), err[-2000:]
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & {"mlflow.db", "optuna.db", "ray_results", "xlrec-defaults", "xlrec-report"}, left


def test_a_budget_that_is_not_a_duration_is_refused_by_the_parser(capsys):
    from xlrec.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--budget", "ten minutes"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--budget: expected a duration such as 30m" in err and "Traceback" not in err


def test_tuned_defaults_lie_between_the_packaged_ones_and_the_users_flags(tmp_path):
    """A model's tuned entry for this data wins over xlrec/defaults.yaml; --config and flags win over it;
    the same dataset with other preprocessing is another dataset and keeps the packaged defaults."""
    about = {"dataset": "synthetic"}
    path = write_tuned(tmp_path, KEY, {"sasrec": {"chosen_by": "tuning T", "lr": 0.0042, "dropout": 0.45}}, about)
    tuned = load_tuned(tmp_path)
    data = {"synthetic_users": 400, "synthetic_mean_len": 9}
    cfg = resolve_config("sasrec", "synthetic", overrides=data, tuned=tuned)
    assert (cfg.lr, cfg.arch.dropout) == (0.0042, 0.45)
    assert cfg.tuned_defaults == f"{path} (tuning T)"
    flagged = resolve_config("sasrec", "synthetic", overrides={**data, "lr": 0.001}, tuned=tuned)
    assert (flagged.lr, flagged.arch.dropout) == (0.001, 0.45)
    packaged = resolve_config("sasrec", "synthetic", overrides=data)
    other_data = resolve_config("sasrec", "synthetic", overrides={"synthetic_users": 500}, tuned=tuned)
    assert other_data.lr == packaged.lr != 0.0042 and other_data.tuned_defaults is None
    untuned_model = resolve_config("gru4rec", "synthetic", overrides=data, tuned=tuned)
    assert untuned_model.tuned_defaults is None


def test_writing_tuned_defaults_keeps_the_other_models_and_leaves_no_partial_file(tmp_path):
    write_tuned(tmp_path, KEY, {"sasrec": {"chosen_by": "first", "lr": 0.001}}, {"dataset": "synthetic"})
    path = write_tuned(tmp_path, KEY, {"gru4rec": {"chosen_by": "second", "lr": 0.002}}, {"dataset": "synthetic"})
    models = yaml.safe_load(path.read_text())["models"]
    assert models == {"sasrec": {"chosen_by": "first", "lr": 0.001}, "gru4rec": {"chosen_by": "second", "lr": 0.002}}
    assert path.read_text().startswith("# Written by `xlrec tune`")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file beside it


@pytest.mark.parametrize(
    ("text", "needle"), [("models: [1, 2]\n", "no `models` mapping"), ("models: {a: [\n", "cannot be read as YAML")]
)
def test_a_broken_tuned_defaults_file_is_named_with_what_to_do(tmp_path, text, needle):
    (tmp_path / "ml-100k.yaml").write_text(text)
    with pytest.raises(ConfigError, match=needle) as err:
        load_tuned(tmp_path)
    assert str(tmp_path / "ml-100k.yaml") in str(err.value) and "--defaults-dir none" in str(err.value)


def test_the_defaults_directory_follows_the_flag_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XLREC_DEFAULTS_DIR", raising=False)
    assert tuned_dir(None) == tmp_path / "xlrec-defaults"
    monkeypatch.setenv("XLREC_DEFAULTS_DIR", "elsewhere")
    assert tuned_dir(None) == tmp_path / "elsewhere"
    assert tuned_dir("mine") == tmp_path / "mine" and tuned_dir("none") is None and tuned_dir("") is None


def test_train_and_sweep_trials_start_from_the_tuned_defaults(tmp_path, isolated_cli, capsys):
    """`xlrec train` reads ./xlrec-defaults (and says so); a sweep's driver reads it and hands its content
    to the trials, which may run on another host."""
    from xlrec.cli import build_parser
    from xlrec.cli.train import resolve_from_args
    from xlrec.sweeps.preflight import prepare_data
    from xlrec.sweeps.spec import SweepSpec
    from xlrec.sweeps.trial import resolve_trial

    write_tuned(tmp_path / "xlrec-defaults", KEY, {"sasrec": {"chosen_by": "T", "lr": 0.0042}}, {})
    data = ["--synthetic-users", "400", "--synthetic-mean-len", "9"]
    args = build_parser().parse_args(["train", "--model", "sasrec", "--dataset", "synthetic", *data])
    assert resolve_from_args(args).lr == 0.0042
    assert "starts from the tuned defaults in" in capsys.readouterr().err
    off = build_parser().parse_args(
        ["train", "--model", "sasrec", "--dataset", "synthetic", *data, "--defaults-dir", "none"]
    )
    assert resolve_from_args(off).lr != 0.0042

    spec = SweepSpec(mode="grid", models=["sasrec"], datasets=["synthetic"], grid=[{}], seeds=[1])
    spec.overrides = {"synthetic_users": 400, "synthetic_mean_len": 9}
    prepare_data(spec)
    assert spec.tuned[KEY]["models"]["sasrec"]["lr"] == 0.0042
    trial = {"model": "sasrec", "dataset": "synthetic", "overrides": spec.overrides, "tuned": spec.tuned}
    assert resolve_trial(trial, {"cell": {"model": "sasrec", "dataset": "synthetic", "seed": 1}}).lr == 0.0042


# --- one real tuning ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuning(tmp_path_factory):
    """Two models, two trials of one epoch each, the winners over one seed, on a local Ray
    cluster and the default sqlite store; then the same tuning resumed."""
    cwd = tmp_path_factory.mktemp("tune")
    env = xlrec_env(cwd / "cache")
    argv = ["tune", *SMALL, "--models", "gru4rec,sasrec", "--trials", "2", "--epochs", "1", "--grace-period", "1"]
    argv += ["--seeds", "42"]
    first = run_xlrec(argv, env, cwd=cwd, timeout=900)
    again = run_xlrec([*argv, "--resume"], env, cwd=cwd, timeout=900)
    return cwd, first, again


def _runs(cwd: Path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("xlrec-synthetic")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_a_tuning_nests_its_searches_and_confirmation_and_writes_the_winners(tuning):
    cwd, proc, _ = tuning
    summary = summary_of(proc)
    assert proc.stdout.strip().count("\n") == 0  # stdout is the summary line alone (Tune's tables go to stderr)
    client, runs = _runs(cwd)
    by_id = {r.info.run_id: r for r in runs}
    tune_run = by_id[summary["tuning_run_id"]]
    assert tune_run.info.status == "FINISHED" and tune_run.data.tags["xlrec.tune"] == "parent"
    assert tune_run.data.params["budget_rule"].startswith("Equal trials: 2 per model")
    sweeps = {r.info.run_name: r for r in runs if r.data.tags.get("xlrec.sweep") == "parent"}
    name = f"tune-{KEY}"
    assert set(sweeps) == {f"{name}-search-gru4rec", f"{name}-search-sasrec", f"{name}-confirm"}
    assert all(s.data.tags["mlflow.parentRunId"] == tune_run.info.run_id for s in sweeps.values())

    tuned = yaml.safe_load(Path(summary["defaults_file"]).read_text())["models"]
    assert Path(summary["defaults_file"]) == cwd / "xlrec-defaults" / f"{KEY}.yaml"
    for model in ("gru4rec", "sasrec"):
        search = sweeps[f"{name}-search-{model}"]
        trials = [r for r in runs if r.data.tags.get("xlrec.sweep_run_id") == search.info.run_id]
        assert len(trials) == 2 and all(t.data.params["model"] == model for t in trials)
        done = [t for t in trials if t.info.status == "FINISHED"]
        top = max(t.data.metrics["best_val_recall_at_10"] for t in done)  # validation chooses, never test
        best = [t for t in done if t.data.metrics["best_val_recall_at_10"] == top]  # ties: any of them
        entry = tuned[model]
        assert summary["tuning_run_id"] in entry["chosen_by"] and "over seeds 42" in entry["chosen_by"]
        assert any(
            entry["lr"] == pytest.approx(float(t.data.params["lr"]), rel=5e-3)
            and entry["max_len"] == int(t.data.params["max_len"])
            for t in best
        )
        assert entry["max_len"] in (20, 30, 50)
        # the confirmation re-trains exactly the written settings, once per seed
        confirm = sweeps[f"{name}-confirm"].info.run_id
        reruns = [
            r for r in runs if r.data.tags.get("xlrec.sweep_run_id") == confirm and r.data.params["model"] == model
        ]
        assert sorted(int(r.data.params["seed"]) for r in reruns) == [42]
        assert all(r.info.status == "FINISHED" and float(r.data.params["lr"]) == entry["lr"] for r in reruns)
        assert all(int(r.data.params["max_len"]) == entry["max_len"] for r in reruns)

    report = (Path(summary["report"]) / "report.md").read_text()
    assert "## Tuning: the search each model got" in report and "Equal trials: 2 per model" in report
    assert "| gru4rec | " in report and "| sasrec | " in report and "## Table 4" in report
    numbers = (Path(summary["report"]) / "data" / "tuning.csv").read_text().splitlines()
    assert (
        numbers[0].startswith("model,trials_finished,trials_pruned,trials_failed,search_seconds") and len(numbers) == 3
    )
    logged = cwd / "mlartifacts" / tune_run.info.experiment_id / tune_run.info.run_id / "artifacts"
    assert (logged / "tuned-defaults" / f"{KEY}.yaml").read_text() == Path(summary["defaults_file"]).read_text()
    assert (logged / "tuning.csv").is_file()


def test_a_finished_tuning_resumes_without_training_again(tuning):
    cwd, first, again = tuning
    summary = summary_of(again)
    assert summary["tuning_run_id"] == summary_of(first)["tuning_run_id"]
    assert again.stderr.count("its search finished before; kept") == 2
    assert "the confirmation finished before; kept" in again.stderr
    _, runs = _runs(cwd)
    assert sum(1 for r in runs if r.data.tags.get("xlrec.sweep_run_id")) == 2 + 2 + 2  # no new training run
