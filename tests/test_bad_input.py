"""Bad input gets one paragraph and exit 2: never a traceback, never a silent acceptance (#13 D).

Most cases run `xlrec.cli.main` in-process (the same code path as the console script, without
paying a Python start per case). Every invocation is small enough that, on code that accepts
the bad value, it finishes quickly and the test fails on the exit code instead of hanging.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xlrec.cli import main
from xlrec.config import resolve_config
from xlrec.errors import ConfigError
from xlrec.settings import TrainConfig

TINY = [
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "60",
    "--synthetic-items",
    "30",
    "--synthetic-mean-len",
    "10",
    "--embedding-dim",
    "8",
    "--max-len",
    "10",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--no-tracking",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))
    for key in ("XLREC_DATA_MIRROR", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)


def refused(capsys, argv: list[str]) -> str:
    """Run the CLI; assert exit 2 with one `xlrec: error:` paragraph and no traceback; return it."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stdout tail: {out[-500:]!r}; stderr tail: {err[-1500:]!r}"
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("xlrec: error: ")]
    assert len(errors) == 1, err
    assert "\n" not in errors[0] and err.rstrip().endswith(errors[0])  # one paragraph, the last thing said
    return errors[0]


def no_processed_entry(tmp_path: Path) -> bool:
    processed = tmp_path / "data" / "processed"
    return not processed.exists() or not any(processed.iterdir())


# --- datasets the metrics cannot score --------------------------------------------------------


@pytest.mark.parametrize("lines", [1, 8])
def test_catalogue_smaller_than_the_largest_k_is_refused_before_training(tmp_path, capsys, lines):
    mirror = tmp_path / "mirror" / "ml-100k"
    mirror.mkdir(parents=True)
    rows = [f"{1 + i // 4}\t{1 + i}\t5\t{100 + i}" for i in range(lines)]  # <= 8 items, users of 4 events
    (mirror / "u.data").write_text("\n".join(rows) + "\n")
    msg = refused(
        capsys,
        [
            "train",
            "--model",
            "gru4rec",
            "--dataset",
            "ml-100k",
            "--source",
            str(mirror.parent),
            "--epochs",
            "1",
            "--embedding-dim",
            "8",
            "--device",
            "cpu",
            "--no-tracking",
            "--cold-start-threshold",
            "3",
        ],
    )
    assert f"has {lines} item(s) after preprocessing, fewer than 20" in msg


def test_synthetic_catalogue_below_k_is_refused(capsys):
    msg = refused(capsys, ["train", "--model", "pop", *TINY, "--synthetic-items", "19"])
    assert "has 19 item(s)" in msg and "fewer than 20" in msg


def test_cold_start_threshold_above_every_user_is_refused(capsys):
    msg = refused(capsys, ["train", "--model", "gru4rec", *TINY, "--cold-start-threshold", "100000"])
    assert "No user of dataset synthetic has at least 100000 interactions" in msg
    assert "Lower --cold-start-threshold to at most" in msg


# --- flags out of range or not finite ---------------------------------------------------------


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--weight-decay", "nan", "'weight_decay' must be a finite number"),
        ("--weight-decay", "-1", "weight_decay must be >= 0"),
        ("--eval-batch-size", "0", "eval_batch_size must be positive"),
        ("--eval-batch-size", "-1", "eval_batch_size must be positive"),
        ("--grad-clip", "nan", "'grad_clip' must be a finite number"),
        ("--grad-clip", "-1", "grad_clip must be >= 0"),
        ("--patience", "-1", "patience must be >= 0"),
        ("--lr", "nan", "'lr' must be a finite number"),
        ("--lr", "inf", "'lr' must be a finite number"),
        ("--dropout", "nan", "'dropout' must be a finite number"),
        ("--adam-beta2", "nan", "'adam_beta2' must be a finite number"),
        ("--ema-decay", "inf", "'ema_decay' must be a finite number"),
        ("--mask-prob", "nan", "'mask_prob' must be a finite number"),
        ("--min-rating", "nan", "'min_rating' must be a finite number or null"),
        ("--user-fraction", "0", "user_fraction must be in (0, 1]"),
        ("--user-fraction", "1.5", "user_fraction must be in (0, 1]"),
        ("--user-fraction", "nan", "'user_fraction' must be a finite number"),
        ("--synthetic-users", "0", "synthetic_users must be positive"),
        ("--synthetic-users", "-5", "synthetic_users must be positive"),
        ("--synthetic-items", "0", "synthetic_items must be positive"),
        ("--synthetic-items", "-1", "synthetic_items must be positive"),
        ("--synthetic-mean-len", "0", "synthetic_mean_len must be positive"),
        ("--seed", "-1", "seed must be in [0, 2**32)"),
        ("--num-threads", "-2", "num_threads must be >= 0"),
        ("--epochs", "0", "epochs must be at least 1 (an untrained model is not registered)"),
    ],
)
def test_out_of_range_flag_is_refused(tmp_path, capsys, flag, value, needle):
    msg = refused(capsys, ["train", "--model", "gru4rec", *TINY, flag, value])
    assert needle in msg
    assert no_processed_entry(tmp_path)


@pytest.mark.parametrize(
    "args, setting",
    [
        (["--embedding-dim", "1000000000"], "Lower embedding_dim (now 1,000,000,000)"),
        (["--max-len", "10000000"], "Lower max_len (now 10,000,000)"),
        (["--synthetic-users", "1000000000000"], "Lower synthetic_users (now 1,000,000,000,000)"),
        (["--synthetic-mean-len", "100000000"], "Lower synthetic_mean_len (now 100,000,000)"),
        (["--batch-size", "100000000", "--max-len", "50"], "Lower batch_size (now 100,000,000)"),
    ],
)
def test_sizes_beyond_the_machine_are_refused_before_anything_is_built(tmp_path, capsys, args, setting):
    """Each size passes its own check; their product is estimated from the settings and the dataset's
    shape (xlrec.training.footprint) and refused in one paragraph naming the setting to lower, before
    any data is generated or read and any model allocated (these asked for 10 GB to 484 TB)."""
    msg = refused(capsys, ["train", "--model", "sasrec", *TINY, *args])
    assert "would need about" in msg and "more than the" in msg and "free in this machine's memory" in msg
    assert setting in msg and "nothing was read or built" in msg
    assert no_processed_entry(tmp_path)
    if "--synthetic-users" in args or "--synthetic-mean-len" in args:  # data alone is checked too
        msg = refused(capsys, ["data", "prepare", "--dataset", "synthetic", *args])
        assert setting in msg


def test_too_few_warm_users_are_refused_before_training(tmp_path, capsys):
    """A dataset of a handful of users trained to Recall@10 1.0 and registered a champion."""
    path = tmp_path / "few.inter"
    rows = [f"u{u}\t{(3 * u + k) % 40 + 1}\t{k}" for u in range(6) for k in range(8)]
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    msg = refused(capsys, ["train", "--model", "gru4rec", "--dataset", str(path), "--epochs", "1", "--no-tracking"])
    assert "has 6 warm user(s)" in msg and "fewer than the 10" in msg


def _dense(tmp_path, users: int, seen_all: int) -> list[str]:
    """`users` users of 6 items each, but the first `seen_all` see all 20 items of the catalogue."""
    path = tmp_path / f"dense{users}-{seen_all}.inter"
    rows = [f"u{u}\t{(u + k) % 20 + 1}\t{k}" for u in range(users) for k in range(20 if u < seen_all else 6)]
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    return ["train", "--model", "gru4rec", "--dataset", str(path), "--epochs", "1", "--no-tracking"]


def test_histories_that_leave_fewer_candidates_than_k_are_refused(tmp_path, capsys):
    msg = refused(capsys, _dense(tmp_path, users=12, seen_all=3))
    assert "leaves 3 of 12 evaluated users (25%) fewer than 10 candidate items" in msg
    assert "--no-exclude-seen" in msg


def test_a_few_such_users_are_named_not_refused(tmp_path, capsys):
    assert main(_dense(tmp_path, users=40, seen_all=1)) == 0
    err = capsys.readouterr().err
    assert "1 evaluated user(s) saw all but fewer than 10 items" in err
    assert main([*_dense(tmp_path, users=12, seen_all=3), "--no-exclude-seen"]) == 0


def test_synthetic_generator_refuses_non_positive_sizes_itself():
    from xlrec.data_prep.synthetic import generate

    for sizes in ((0, 30, 10), (60, -1, 10), (60, 30, 0)):
        with pytest.raises(ConfigError, match="positive sizes"):
            generate(*sizes)


# --- YAML files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,needle",
    [
        ('epochs: "ten"\n', "setting 'epochs' must be an integer, got 'ten' (str)"),
        ("lr: [1]\n", "setting 'lr' must be a finite number (NaN and infinity are not accepted), got [1] (list)"),
        ('exclude_seen: "no"\n', "setting 'exclude_seen' must be true or false, got 'no' (str)"),
        ("exclude_seen: 1\n", "setting 'exclude_seen' must be true or false, got 1 (int)"),
        ("embedding_dim: 16.5\n", "setting 'embedding_dim' must be an integer, got 16.5 (float)"),
        ("lr: .nan\n", "setting 'lr' must be a finite number"),
        ("model: [gru4rec]\n", "setting 'model' must be a string"),
        ("dataset: {a: 1}\n", "setting 'dataset' must be a string"),
        ("prep: {min_rating: high}\n", "setting 'prep.min_rating' must be a finite number or null"),
        ("slstm_at: 0\n", "setting 'slstm_at' must be a list of integers"),
        ("seed: 2024-01-01\n", "setting 'seed' must be an integer"),
        ("null: 3\n", "unknown setting None"),
        ("[[[[" * 300 + "\n", "nested too deeply"),
        ("epochs: [1\n", "not valid YAML"),
    ],
)
def test_yaml_with_wrong_types_is_refused_naming_key_value_and_type(tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    msg = refused(capsys, ["train", "--model", "gru4rec", *TINY, "--config", str(cfg)])
    assert needle in msg
    assert str(cfg) in msg


def test_binary_yaml_is_refused(tmp_path, capsys):
    cfg = tmp_path / "model.yaml"
    cfg.write_bytes(b"epochs: 1\n\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    msg = refused(capsys, ["train", "--model", "gru4rec", *TINY, "--config", str(cfg)])
    assert "is not UTF-8 text" in msg and str(cfg) in msg


def test_strict_booleans_and_yaml11_numbers_still_parse(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text('exclude_seen: "False"\namp: "true"\nlr: 1e-3\nepochs: 3.0\nprep: {min_rating: 4}\n')
    c = resolve_config("gru4rec", "synthetic", cfg)
    assert (c.exclude_seen, c.amp, c.lr, c.epochs, c.prep.min_rating) == (False, True, 0.001, 3, 4.0)
    assert type(c.epochs) is int and type(c.lr) is float and type(c.prep.min_rating) is float


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("embedding_dim", "64", "an integer"),
        ("lr", True, "a finite number"),
        ("lr", float("inf"), "a finite number"),
        ("tied_output", "yes", "true or false"),
        ("scheduler", 1, "a string"),
        ("ffn_mult", 2.5, "an integer or null"),
        ("slstm_at", [0, "1"], "a list of integers"),
        ("prep", {"kcore_iterate": "off"}, "true or false"),
        ("source", ["dir"], "a string"),
        ("device", None, None),
    ],
)
def test_every_field_is_type_checked_against_its_annotation(key, value, expected):
    if expected is None:  # None means "not given": the default stays
        assert resolve_config("gru4rec", "synthetic", overrides={key: value}).device == TrainConfig.device
        return
    with pytest.raises(ConfigError) as err:
        resolve_config("gru4rec", "synthetic", overrides={key: value})
    text = str(err.value)
    assert f"must be {expected}" in text and repr(key) in text.replace("'prep.kcore_iterate'", "'prep'")


# --- sweep arguments, all checked before a server, Ray or data work starts ----------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--trials", "-1"], "--trials must be an integer >= 1, got -1"),
        (["--trials", "0"], "--trials must be an integer >= 1, got 0"),
        (["--models", "foo"], "--models applies to --mode grid only"),
        (["--mode", "grid", "--models", "foo"], "--models: unknown name(s) 'foo'"),
        (["--mode", "grid", "--models", "gru4rec", "--datasets", "ml-5m"], "--datasets: unknown name(s) 'ml-5m'"),
        (["--mode", "grid", "--models", "gru4rec", "--max-lens", "1"], "--max-len must be at least 2"),
        (["--mode", "grid", "--models", "gru4rec", "--seeds", "-3"], "seed must be in [0, 2**32)"),
        (["--model", "nope"], "--model: unknown name(s) 'nope'"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--grace-period", "0"], "--grace-period must be an integer >= 1"),
        (["--epochs", "2", "--grace-period", "5"], "--grace-period (5) cannot exceed --epochs (2)"),
        (["--cpus-per-trial", "nan"], "--cpus-per-trial must be a finite number >= 0"),
        (["--cpus-per-trial", "-1"], "--cpus-per-trial must be a finite number >= 0"),
        (["--gpus-per-trial", "inf"], "--gpus-per-trial must be a finite number >= 0"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial above 1 must be a whole number"),
        (["--cpus-per-trial", "0"], "both 0"),
        (["--max-concurrent", "-1"], "--max-concurrent must be an integer >= 0"),
        (["--max-failures", "-2"], "--max-failures must be -1 (retry forever) or more"),
        (["--seed", "-1"], "--seed must be an integer >= 0"),
        (["--set", "bogus=1"], "unknown setting 'bogus'"),
        (["--set", "lr=nan"], "setting 'lr' must be a finite number"),
        (["--set", "epochs=ten"], "--set epochs=... is not a fixed training setting"),
        (["--set", "model=sasrec"], "use --model (search) or --models (grid)"),
        (["--set", "lr=[1"], "--set lr: cannot read the value"),
        (["--set", "=1"], "--set expects KEY=VALUE"),
        (["--mode", "grid", "--models", "gru4rec", "--set", "max_len=10"], "use --max-lens instead"),
        (["--set", "cold_start_threshold=100000"], "No user of dataset synthetic has at least 100000"),
        (["--set", "synthetic_items=10"], "has 10 item(s) after preprocessing, fewer than 20"),
    ],
)
def test_sweep_arguments_are_checked_before_anything_starts(tmp_path, capsys, args, needle):
    base = [
        "sweep",
        "--dataset",
        "synthetic",
        "--model",
        "gru4rec",
        "--epochs",
        "1",
        "--grace-period",
        "1",
        "--trials",
        "1",
        "--set",
        "synthetic_users=40",
        "--set",
        "synthetic_mean_len=8",
    ]
    if "--mode" in args:
        base = [a for a in base if a not in ("--dataset", "synthetic", "--model", "gru4rec")] + [
            "--datasets",
            "synthetic",
            "--max-lens",
            "8",
            "--seeds",
            "1",
        ]
        if "--models" not in args:
            base += ["--models", "gru4rec"]
    if not any(a.startswith("synthetic_items") for a in args):
        base += ["--set", "synthetic_items=30"]
    # later flags win, so a case's own --epochs/--grace-period replaces the base's
    msg = refused(capsys, [*base, *args])
    assert needle in msg
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "optuna.db", "ray_results", "mlartifacts"))


@pytest.mark.parametrize("value", ["1.5", "inf", "nan", "32,x"])
def test_sweep_integer_lists_are_strict(capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--mode", "grid", "--max-lens", value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "expected comma-separated integers" in err and "Traceback" not in err


@pytest.mark.parametrize("minutes", ["-5", "0", "nan", "inf"])
def test_reap_refuses_a_staleness_that_would_reap_live_runs(capsys, minutes):
    """`--stale-minutes -5` reaped a run that was alive: a run logs an epoch every minute or so."""
    with pytest.raises(SystemExit) as exit_:
        main(["runs", "reap", "--stale-minutes", minutes])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--stale-minutes" in err and "more than 0 minutes" in err and "Traceback" not in err
