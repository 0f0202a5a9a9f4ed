"""A user's own file as a dataset (`--dataset PATH`): each format read into the exact sequences
(time order, ties by file order), titles, naming, the cache, defaults and one-paragraph errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from xlrec.catalog.datasets import DataShape, nearest_defaults
from xlrec.cli import main
from xlrec.config import resolve_config
from xlrec.config.defaults import shape_defaults
from xlrec.data_prep import UserFile, data_shape, prepare, prepare_config
from xlrec.errors import ConfigError
from xlrec.platform.artifacts import write_config
from xlrec.platform.registry.saved_config import OPTIONAL, config_from_dict

USERS, PER_USER, ITEMS = 40, 10, 30


pytestmark = pytest.mark.usefixtures("isolated_cli")


def _item(u: int, k: int) -> int:
    return (3 * u + k) % ITEMS + 1


def _time(k: int) -> int:
    return 1000 + 10 * min(k, 4) + 10 * max(k - 5, 0)  # steps 4 and 5 share a time


def rows(with_time: bool = True) -> list[tuple[str, int, int]]:
    """(user, item, time) in file order: users interleaved; with times, each user's steps written
    last to first (so time, not the file, orders them; tied steps 4 and 5 keep file order: 5, 4)."""
    steps = range(PER_USER - 1, -1, -1) if with_time else range(PER_USER)
    return [(f"u{u}", _item(u, k), _time(k)) for k in steps for u in range(USERS)]


def expected(with_time: bool = True) -> dict[str, list[int]]:
    """Each user's raw items in the order the model must see them."""
    order = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9] if with_time else list(range(PER_USER))
    return {f"u{u}": [_item(u, k) for k in order] for u in range(USERS)}


def sequences(data) -> dict[str, list]:
    seqs = data.seqs
    out = {}
    for u, raw in enumerate(seqs.user_ids.tolist()):
        ids = seqs.items[seqs.offsets[u] : seqs.offsets[u + 1]]
        out[str(raw)] = seqs.item_ids[ids].tolist()
    return out


def write_inter(path: Path, data: list[tuple[str, int, int]] | None = None) -> Path:
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t4.0\t{t}" for u, i, t in (data or rows())]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table(path: Path, names: tuple[str, str, str]) -> Path:
    frame = pd.DataFrame(rows(), columns=list(names))
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def prepared_via_cli(capsys, argv: list[str]) -> list[str]:
    """Run `xlrec data prepare`; return the stats row's fields."""
    assert main(["data", "prepare", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["Dataset", "Users", "Items", "Interactions", "Avg.", "len.", "Sparsity"]
    return out[1].split()


STATS = ["40", "30", "400", "10.00", "0.66667"]  # 40 users x 10 of 30 items


# --- each format -----------------------------------------------------------------------------------


def test_recbole_inter_file(tmp_path, capsys):
    path = write_inter(tmp_path / "My Data.inter")
    assert prepared_via_cli(capsys, ["--dataset", str(path)]) == ["my-data", *STATS]
    cfg = resolve_config(None, str(path))
    data = prepare_config(cfg)
    assert (cfg.dataset, cfg.data_file, data.from_cache) == ("my-data", str(path), True)
    assert sequences(data) == expected()
    assert data.seqs.timestamps[:6].tolist() == [1000, 1010, 1020, 1030, 1040, 1040]
    (tmp_path / "run.yaml").write_text("dataset: My Data.inter\n")  # a --config file's dataset, relative to the cwd
    assert resolve_config(None, None, tmp_path / "run.yaml") == cfg


def test_sasrec_text_file_keeps_line_order(tmp_path, capsys):
    path = tmp_path / "seqs.txt"
    path.write_text("".join(f"{u}  {i}\n" for u, i, _ in rows(with_time=False)))
    assert prepared_via_cli(capsys, ["--dataset", str(path)]) == ["seqs", *STATS]
    data = prepare("seqs", user=UserFile(path))
    assert sequences(data) == expected(with_time=False)


def test_csv_with_a_column_map_and_titles(tmp_path, capsys):
    path = write_table(tmp_path / "events.csv", ("customer", "product", "when"))
    titles = tmp_path / "titles.csv"
    pd.DataFrame({"pid": range(1, ITEMS + 1), "name": [f"Film, no. {i}" for i in range(1, ITEMS + 1)]}).to_csv(
        titles, index=False
    )
    argv = ["--dataset", str(path), "--columns", "user=customer,item=product,time=when", "--titles", str(titles)]
    assert prepared_via_cli(capsys, argv) == ["events", *STATS]
    cfg = resolve_config(None, str(path), overrides={"columns": argv[3], "titles_file": str(titles)})
    data = prepare_config(cfg)
    assert sequences(data) == expected()
    assert data.seqs.titles[1:4] == [f"Film, no. {int(i)}" for i in data.seqs.item_ids[1:4]]
    assert data.seqs.titles[1] == "Film, no. 1"


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_tsv_and_parquet_with_guessed_columns(tmp_path, capsys, suffix):
    path = write_table(tmp_path / f"ratings{suffix}", ("userId", "movieId", "timestamp"))
    assert prepared_via_cli(capsys, ["--dataset", str(path)]) == ["ratings", *STATS]
    assert sequences(prepare("ratings", user=UserFile(path))) == expected()


def test_a_table_without_time_uses_file_order(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame([(u, i) for u, i, _ in rows(with_time=False)], columns=["user_id", "item_id"]).to_csv(
        path, index=False
    )
    assert sequences(prepare("plain", user=UserFile(path))) == expected(with_time=False)


def test_times_as_iso_8601_epoch_seconds_or_milliseconds_give_one_order(tmp_path):
    """ISO 8601 text (with or without a zone: naive is UTC), epoch seconds and epoch milliseconds of the
    same moments order a user's items the same; equal times keep their file order."""
    seconds = [1601123631, 1601123690, 1601123690, 1601127000]  # the 2nd and 3rd tie
    iso = ["2020-09-26 12:33:51", "2020-09-26T12:34:50Z", "2020-09-26 14:34:50+02:00", "2020-09-26T13:30:00"]
    items = [4, 2, 3, 1]
    orders = []
    for name, times in (("s", seconds), ("ms", [t * 1000 for t in seconds]), ("iso", iso)):
        path = tmp_path / f"{name}.csv"
        pd.DataFrame({"user": "a", "item": list(reversed(items)), "timestamp": list(reversed(times))}).to_csv(
            path, index=False
        )
        data = prepare(name, user=UserFile(path))
        orders.append(sequences(data)["a"])
        assert int(data.seqs.timestamps[-1]) - int(data.seqs.timestamps[0]) == 1601127000 - 1601123631
    assert orders == [[4, 3, 2, 1]] * 3  # reversed in the file: the tied pair keeps file order (3 before 2)


def test_exact_duplicate_rows_are_kept_with_a_warning(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("user,item,timestamp\na,1,10\na,2,20\na,2,20\nb,1,10\nb,1,10\nb,2,30\n")
    data = prepare("dup", user=UserFile(path))
    assert data.raw_counts["duplicate_rows"] == 2 and sequences(data) == {"a": [1, 2, 2], "b": [1, 1, 2]}
    assert "dup.csv has 2 exact duplicate rows" in capsys.readouterr().err
    assert data.data_warning is not None and "exact duplicate rows" in data.data_warning
    assert prepare("dup", user=UserFile(path)).from_cache  # the warning comes from the cache entry too
    assert "2 exact duplicate rows" in capsys.readouterr().err


def test_a_titles_file_with_another_separator_says_which_columns_it_takes(tmp_path, capsys):
    path = write_inter(tmp_path / "d.inter")
    titles = tmp_path / "t.csv"
    titles.write_text("item;title\n1;Heat\n")
    msg = refused(capsys, ["--dataset", str(path), "--titles", str(titles)])
    assert "t.csv, line 1: a titles file has a header line and two columns, the item id and its title" in msg
    assert "1 column: 'item;title'" in msg and "separated by semicolons" in msg


def test_fractional_times_keep_their_order(tmp_path):
    path = tmp_path / "f.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\na\t1\t5.7\na\t2\t5.2\na\t3\t5.2\na\t4\t0.5\n")
    assert sequences(prepare("f", user=UserFile(path))) == {"a": [4, 2, 3, 1]}


# --- naming, cache, defaults, saved configs -------------------------------------------------------


def test_a_named_datasets_name_gets_a_prefix(tmp_path, capsys):
    path = write_table(tmp_path / "ml-100k.csv", ("user", "item", "ts"))
    assert prepared_via_cli(capsys, ["--dataset", str(path)]) == ["file-ml-100k", *STATS]
    assert resolve_config(None, str(path)).dataset == "file-ml-100k"


def test_the_cache_is_reused_and_follows_the_files_content(tmp_path):
    path = write_inter(tmp_path / "d.inter")
    first = prepare("d", user=UserFile(path))
    again = prepare("d", user=UserFile(path))
    assert (first.from_cache, again.from_cache, again.cache_path) == (False, True, first.cache_path)
    write_inter(path, rows()[:-1])  # one interaction less
    changed = prepare("d", user=UserFile(path))
    assert not changed.from_cache and changed.cache_path != first.cache_path
    assert changed.stats["interactions"] == 399
    assert len(list((tmp_path / "cache" / "processed").glob("*.npz"))) == 2
    mapped = prepare("d", user=UserFile(path, columns="user=user_id,item=item_id"))
    assert mapped.cache_path != changed.cache_path  # the column map is part of the key


def test_defaults_come_from_the_nearest_measured_dataset(tmp_path):
    assert [nearest_defaults(n) for n in (400, 100_000, 316_000, 317_000, 5_000_000)] == [
        "ml-100k",
        "ml-100k",
        "ml-100k",
        "ml-1m",
        "ml-1m",
    ]
    small = resolve_config("sasrec", str(write_inter(tmp_path / "d.inter")))
    assert small.defaults_from == "ml-100k"
    assert (small.ema_decay, small.min_epochs) == (0.998, 20)  # sasrec's tuned ml-100k entry
    big = tmp_path / "big.txt"  # sasrec's searched ml-1m entry: dim 256
    big.write_text("1 1\n" * 400_000)
    cfg = resolve_config("sasrec", str(big))
    assert (cfg.defaults_from, cfg.arch.embedding_dim, cfg.prep.min_item_interactions) == ("ml-1m", 256, 5)


# --- defaults for an unseen dataset from its sequences (xlrec/defaults.yaml `unseen`) -----------------


def test_the_shape_of_a_dataset_is_its_users_lengths(tmp_path):
    shape = DataShape.of_lengths([3, 1, 2, 10, 4, 5, 6, 7, 8, 9], items=50)
    # numpy's default (linear) quantile of 1..10 at 0.9 is 9.1
    assert (shape.users, shape.items, shape.interactions, shape.mean_len, round(shape.len_p90, 6)) == (
        10,
        50,
        55,
        5.5,
        9.1,
    )
    data = prepare("d", user=UserFile(write_inter(tmp_path / "d.inter")))
    assert data_shape(data) == DataShape(USERS, ITEMS, USERS * PER_USER, float(PER_USER), float(PER_USER))


def _short_shape(mean: int = 9) -> DataShape:
    # histories of mean-4 .. mean+4 interactions (mean `mean`), 2,000 users: an e-commerce-like log
    return DataShape.of_lengths([mean - 4 + (u % 9) for u in range(2000)], items=5000)


@pytest.mark.parametrize("model", ["xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"])
def test_short_sequences_get_a_short_window_more_dropout_and_patience(tmp_path, model):
    path = str(write_inter(tmp_path / "d.inter"))
    borrowed = resolve_config(model, path)  # ml-100k's entries, searched on histories of ~100
    shaped = resolve_config(model, path, shape=_short_shape())  # lengths 5..13: 0.9 quantile 13
    assert borrowed.defaults_from == shaped.defaults_from == "ml-100k"
    assert shaped.max_len == 20 < borrowed.max_len
    assert shaped.arch.dropout == max(borrowed.arch.dropout, 0.5) and shaped.arch.dropout >= 0.5
    assert shaped.patience == max(borrowed.patience, 10)
    assert shaped.window_stride == (0 if borrowed.window_stride > 20 else borrowed.window_stride)
    # what the rule leaves alone
    assert (shaped.lr, shaped.batch_size, shaped.arch.embedding_dim) == (
        borrowed.lr,
        borrowed.batch_size,
        borrowed.arch.embedding_dim,
    )


def test_a_flag_or_config_file_wins_over_the_rule(tmp_path):
    path = str(write_inter(tmp_path / "d.inter"))
    given = resolve_config("sasrec", path, overrides={"max_len": 30, "dropout": 0.1}, shape=_short_shape())
    assert (given.max_len, given.arch.dropout) == (30, 0.1)


def test_movielens_shaped_data_keeps_the_searched_defaults(tmp_path):
    """ML-100K's and ML-1M's own shapes (943 users, mean 106, 0.9 quantile 244; 6,040 users, mean
    163, 0.9 quantile 400) change nothing: the rule only adapts defaults to shorter or sparser data."""
    movielens = {
        "ml-100k": DataShape(943, 1682, 100_000, 106.04, 244.0),
        "ml-1m": DataShape(6040, 3416, 987_019, 163.4, 400.0),
    }
    for base, shape in movielens.items():
        rows_file = tmp_path / f"{base}.txt"
        rows_file.write_text("1 1\n" * (400_000 if base == "ml-1m" else 400))
        for model in ("xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"):
            borrowed = resolve_config(model, str(rows_file))
            assert borrowed.defaults_from == base
            assert resolve_config(model, str(rows_file), shape=shape) == borrowed, (base, model)
    # and a named dataset is never reshaped, whatever shape is passed
    assert resolve_config("sasrec", "ml-100k", shape=_short_shape()) == resolve_config("sasrec", "ml-100k")


def test_the_rule_reads_its_numbers_from_defaults_yaml():
    # the 0.9 quantile 13 rounds up to 20; a floor of 10; nothing above the base max_len
    assert shape_defaults(_short_shape(), {"max_len": 50, "dropout": 0.2, "patience": 3}, {"max_len", "dropout"}) == {
        "max_len": 20,
        "dropout": 0.5,
    }
    tiny = DataShape.of_lengths([2, 3, 3, 4], items=10)
    assert shape_defaults(tiny, {"max_len": 50}, {"max_len"}) == {"max_len": 10}
    long = DataShape.of_lengths([300] * 10, items=10)
    assert (
        shape_defaults(long, {"max_len": 200, "dropout": 0.2, "patience": 5}, {"max_len", "dropout", "patience"}) == {}
    )


def test_train_on_a_short_file_says_what_the_rule_set(tmp_path, capsys):
    path = write_inter(tmp_path / "Short.inter")
    argv = ["train", "--model", "sasrec", "--dataset", str(path), "--epochs", "1", "--no-tracking", "--device", "cpu"]
    assert main([*argv, "--embedding-dim", "8", "--num-heads", "1", "--num-blocks", "1"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["max_len"] == 10  # the users' 10 interactions: 0.9 quantile 10
    (line,) = [x for x in err.splitlines() if "the rule for an unseen dataset" in x]
    assert "40 users, mean sequence length 10.0" in line and "max_len 50 -> 10" in line and "patience" in line


def test_a_saved_config_says_where_the_data_came_from_and_reads_back(tmp_path):
    path = write_inter(tmp_path / "d.inter")
    cfg = resolve_config("gru4rec", str(path), overrides={"columns": "user=user_id,item=item_id"})
    saved = yaml.safe_load(write_config(tmp_path / "config.yaml", cfg).read_text())
    assert (saved["dataset"], saved["data_file"], saved["columns"], saved["defaults_from"]) == (
        "d",
        str(path),
        "user=user_id,item=item_id",
        "ml-100k",
    )
    assert config_from_dict(saved, "m") == cfg
    assert resolve_config(None, None, tmp_path / "config.yaml") == cfg  # a saved config as --config
    named = resolve_config("gru4rec", "ml-100k").to_dict()
    assert config_from_dict({k: v for k, v in named.items() if k not in OPTIONAL}, "m").data_file is None
    with pytest.raises(ConfigError, match="not a name xlrec gives a file"):
        config_from_dict({**saved, "dataset": "../x"}, "m")


def test_file_settings_need_a_file_and_a_valid_column_map(tmp_path):
    with pytest.raises(ConfigError, match="--columns applies only to --dataset PATH"):
        resolve_config(None, "ml-100k", overrides={"columns": "user=a,item=b"})
    with pytest.raises(ConfigError, match="'who=a' is not ROLE=COLUMN"):
        resolve_config(None, str(write_inter(tmp_path / "d.inter")), overrides={"columns": "who=a"})


def test_train_one_epoch_on_an_inter_file(tmp_path, capsys):
    path = write_inter(tmp_path / "My Data.inter")
    argv = ["train", "--model", "gru4rec", "--dataset", str(path), "--epochs", "1", "--no-tracking"]
    assert main([*argv, "--embedding-dim", "8", "--max-len", "10", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["dataset"], summary["epochs_run"]) == ("my-data", 1)
    assert "dataset my-data, defaults from ml-100k" in err


def test_a_tracked_run_names_its_experiment_and_model_after_the_file(tmp_path, capsys, sqlite_tracking_uri):
    from mlflow import MlflowClient

    path = write_inter(tmp_path / "My Data.inter")
    argv = ["train", "--model", "gru4rec", "--dataset", str(path), "--epochs", "1", "--tracking-uri"]
    assert main([*argv, sqlite_tracking_uri, "--embedding-dim", "8", "--max-len", "10", "--device", "cpu"]) == 0
    capsys.readouterr()
    client = MlflowClient(sqlite_tracking_uri)
    experiment = client.get_experiment_by_name("xlrec-my-data")
    (run,) = client.search_runs([experiment.experiment_id])
    params = run.data.params
    assert (params["dataset"], params["data_file"], params["defaults_from"]) == ("my-data", str(path), "ml-100k")
    assert client.get_registered_model("gru4rec-my-data").latest_versions
    # the saved config.yaml leads evaluation back to the file (named by its path or not at all)
    evaluate = ["evaluate", "--model-uri", "models:/gru4rec-my-data/1", "--tracking-uri", sqlite_tracking_uri]
    assert main([*evaluate, "--device", "cpu", "--dataset", str(path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["dataset"] == "my-data"


# --- malformed files: one paragraph, exit 2, nothing cached ----------------------------------------


def refused(capsys, argv: list[str]) -> str:
    code = main(["data", "prepare", *argv])
    out, err = capsys.readouterr()
    assert code == 2, (out[-500:], err[-1500:])
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("xlrec: error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    return errors[0]


def _inter(text: str) -> str:
    return "user_id:token\titem_id:token\ttimestamp:float\n" + text


@pytest.mark.parametrize(
    "name, content, extra, needles",
    [
        ("nope.inter", None, [], ["nope.inter does not exist"]),
        ("data.xlsx", "a,b\n", [], ["data.xlsx", "'.xlsx'", ".csv/.tsv/.parquet"]),
        ("d.inter", "user_id:token\tname:token\n1\tx\n", [], ["d.inter, line 1", "no item_id column"]),
        ("d.inter", _inter("1\t1\t10\n1\t2\t11\n2\t1\tnoon\n"), [], ["d.inter, line 4", "timestamp 'noon'"]),
        ("d.txt", "1 1\n1 2\n2\n", [], ["d.txt, line 3", "item id is missing"]),
        ("d.txt", "1 1\n1 2 3\n", [], ["d.txt, line 2", "expected 2 fields, found 3"]),
        ("d.csv", "u,i\n1,2\n", ["--columns", "user=u,item=nosuch"], ["d.csv, line 1", "'nosuch'", "Fix --columns"]),
        ("d.csv", "a,b\n1,2\n", [], ["d.csv, line 1", "no user column found", "2 columns: 'a', 'b'", "--columns"]),
        ("d.csv", "user;item\n1;2\n", [], ["d.csv, line 1", "no user column found", "separated by semicolons"]),
        (
            "d.csv",
            "user,item,ts\n1,2,2020-09-26 12:33:51\n1,3,soon\n",
            [],
            ["d.csv, line 3", "timestamp 'soon'", "ISO 8601"],
        ),
        ("d.inter", "", [], ["d.inter is empty (line 1)"]),
        ("d.inter", _inter(""), [], ["d.inter holds no interactions (line 2)"]),
        ("d.parquet", "user,item\n1,2\n", [], ["d.parquet is not a readable Parquet file"]),
    ],
)
def test_a_malformed_file_is_one_paragraph_and_caches_nothing(tmp_path, capsys, name, content, extra, needles):
    if content is not None:
        (tmp_path / name).write_text(content)
    msg = refused(capsys, ["--dataset", str(tmp_path / name), *extra])
    assert all(n in msg for n in needles), msg
    processed = tmp_path / "cache" / "processed"
    assert not processed.exists() or not list(processed.glob("*.npz"))


def test_a_missing_titles_file_is_refused(tmp_path, capsys):
    path = write_inter(tmp_path / "d.inter")
    msg = refused(capsys, ["--dataset", str(path), "--titles", str(tmp_path / "t.csv")])
    assert "Titles file" in msg and "t.csv does not exist" in msg


def test_item_ids_that_are_text_stay_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a x1\na x2\nb x1\n")
    data = prepare("t", user=UserFile(path))
    assert sequences(data) == {"a": ["x1", "x2"], "b": ["x1"]}
    assert data.seqs.titles == ["<pad>", "Item x1", "Item x2"]


# --- a sweep over a user's file ---------------------------------------------------------------------


@pytest.mark.server
def test_a_grid_sweep_over_a_relative_file_path(tmp_path):
    """A spec's dataset may be a file; trials (Ray workers, another folder) get its absolute path,
    and the experiment and runs use its name."""
    from mlflow import MlflowClient

    from helpers import summary_of, sweep

    write_inter(tmp_path / "Clicks.inter")
    proc = sweep(
        tmp_path,
        *("--mode", "grid", "--models", "gru4rec", "--datasets", "Clicks.inter", "--max-lens", "10"),
        *("--seeds", "1", "--epochs", "1", "--cpus-per-trial", "0.5", "--set", "embedding_dim=8"),
        data_dir=tmp_path / "cache",
    )
    summary = summary_of(proc)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(summary["parent_run_id"])
    assert client.get_experiment(parent.info.experiment_id).name == "xlrec-clicks"
    children = [r for r in client.search_runs([parent.info.experiment_id]) if r.info.run_id != parent.info.run_id]
    assert [(c.info.status, c.data.params["dataset"], c.data.params["defaults_from"]) for c in children] == [
        ("FINISHED", "clicks", "ml-100k")
    ]
    assert children[0].data.params["data_file"] == str(tmp_path / "Clicks.inter")
