"""The evaluation protocols (`split`): the temporal split's known answers (cutoffs, windows, first or
all targets, cold-start cases, ties by file order), its refusals, shuffled training sequences, the
params every run logs, and Table 4 keeping runs of different protocols or data apart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import error_line
from xlrec.cli import main
from xlrec.config import resolve_config
from xlrec.data_prep.preprocess import build_sequences
from xlrec.data_prep.readers import Interactions
from xlrec.data_prep.split import leave_two_out, make_split, shuffled_training_items, temporal, training_positions
from xlrec.errors import ConfigError, DataError
from xlrec.platform.registry.champion import registered_name
from xlrec.report.tables import protocol_note, table4, table4_numbers, with_protocols
from xlrec.settings import PrepConfig

pytestmark = pytest.mark.usefixtures("isolated_cli")


def seqs_of(rows: list[tuple[int, int, int]], timed: bool = True):
    """Sequences of (user, item, time) rows in file order."""
    user, item, ts = (np.array(c, dtype=np.int64) for c in zip(*rows))
    raw = Interactions(user=user, item=item, rating=np.ones(len(user), np.float32), timestamp=ts, timed=timed)
    return build_sequences(raw, PrepConfig())


# Times of four users (items are 10*user + k). All 16 times sorted: 1 1 2 2 3 3 4 5 6 7 7 8 9 9 10 10,
# so the 0.5 quantile (the lower neighbour) is 5 and the 0.75 quantile is 8.
TIMES = {1: [1, 2, 3, 4, 8, 9], 2: [2, 3, 5, 6, 7, 10], 3: [9, 10], 4: [1, 7]}
ROWS = [(u, 10 * u + k, t) for u, ts in TIMES.items() for k, t in enumerate(ts)]


def cases(evalset) -> list[tuple[int, int]]:
    return list(zip(evalset.users.tolist(), evalset.target_pos.tolist()))


def test_temporal_windows_targets_and_cold_cases_have_known_answers():
    seqs = seqs_of(ROWS)
    assert seqs.offsets.tolist() == [0, 6, 12, 14, 16]
    # cold_start_threshold 4: warm users have at least 2 training interactions (users 1 and 2)
    first = temporal(seqs, 0.5, 0.75, "first", cold_threshold=4)
    assert first.cutoffs == (5, 8)
    assert first.train_end.tolist() == [4, 8, 12, 15]  # times < 5: 4, 2, 0 and 1 interactions
    assert cases(first.val) == [(1, 8)]  # user 2's time 5; user 1 has nothing in [5, 8)
    assert cases(first.test) == [(0, 4), (1, 11)]  # user 1's time 8 (its input: times 1-4), user 2's time 10
    # user 3's first test target (time 9) has no earlier interaction: no input, not evaluated
    assert cases(first.cold_test) == []
    every = temporal(seqs, 0.5, 0.75, "all", cold_threshold=4)
    assert cases(every.val) == [(1, 8), (1, 9), (1, 10)]
    assert cases(every.test) == [(0, 4), (0, 5), (1, 11)]
    assert cases(every.cold_test) == [(2, 13)]  # user 3's time 10, after its time 9
    # nobody trains on anything at or after the validation cutoff
    users, pos = training_positions(every)
    assert seqs.timestamps[pos].max() < 5 and len(pos) == 7


def test_equal_times_keep_the_file_order_and_fall_on_one_side_of_a_cutoff():
    # user 1's items 3 and 2 share time 5, written in that order; the 0.5 quantile of 1 1 5 5 6 7 is 5
    rows = [(1, 3, 5), (1, 2, 5), (1, 1, 1), (2, 4, 1), (2, 5, 6), (2, 6, 7)]
    seqs = seqs_of(rows)
    assert seqs.items[seqs.offsets[0] : seqs.offsets[1]].tolist() == [1, 3, 2]  # ids 1..6 are the raw ids here
    split = temporal(seqs, 0.5, 0.9, "first", cold_threshold=3)
    assert split.cutoffs == (5, 6)
    assert split.train_end[0] == 1  # both tied interactions are after the cutoff
    (pos,) = split.val.target_pos[split.val.users == 0]
    assert seqs.items[pos] == 3  # the first of the tie in the file is the first target


def test_make_split_follows_the_settings():
    seqs = seqs_of(ROWS)
    cfg = resolve_config("gru4rec", "synthetic")
    lo = make_split(seqs, cfg)
    assert lo.cutoffs is None and lo.test.target_pos.tolist() == leave_two_out(seqs, 5).test.target_pos.tolist()
    cfg.split, cfg.temporal_val_quantile, cfg.temporal_test_quantile, cfg.cold_start_threshold = (
        "temporal",
        0.5,
        0.75,
        4,
    )
    assert make_split(seqs, cfg).cutoffs == (5, 8)


def test_quantiles_out_of_order_are_refused():
    with pytest.raises(ConfigError, match="0 < val < test < 1"):
        resolve_config("gru4rec", "synthetic", overrides={"temporal_val_quantile": 0.9, "temporal_test_quantile": 0.8})


def test_data_without_times_is_refused_for_the_temporal_split():
    with pytest.raises(DataError, match="needs the interactions' times"):
        temporal(seqs_of(ROWS, timed=False), 0.5, 0.75)


def test_shuffled_training_sequences_permute_each_users_training_part_only():
    seqs = seqs_of(ROWS)
    split = leave_two_out(seqs, 3)
    a = shuffled_training_items(seqs.items, split, seed=1)
    assert np.array_equal(a, shuffled_training_items(seqs.items, split, seed=1))  # seeded
    users, pos = training_positions(split)
    for u in range(seqs.num_users):
        mine = pos[users == u]
        assert sorted(a[mine].tolist()) == sorted(seqs.items[mine].tolist())  # the same items, its own
    held_out = np.setdiff1d(np.arange(len(seqs.items)), pos)
    assert np.array_equal(a[held_out], seqs.items[held_out])  # targets and evaluation inputs keep their order
    orders = {tuple(shuffled_training_items(seqs.items, split, seed=s)[pos]) for s in range(20)}
    assert len(orders) > 1  # it does shuffle


# --- the CLI: refusals and what a run logs --------------------------------------------------------


def write_csv(path, users: int = 60, per_user: int = 20, with_time: bool = True):
    """Users active in overlapping periods: user u's k-th interaction at day u + k."""
    rows = [(f"u{u}", (u * 7 + k) % 40 + 1, 86400 * (u + k)) for u in range(users) for k in range(per_user)]
    frame = pd.DataFrame(rows, columns=["user", "item", "time"])
    (frame if with_time else frame.drop(columns="time")).to_csv(path, index=False)
    return path


TINY = ["--model", "gru4rec", "--embedding-dim", "8", "--max-len", "10", "--device", "cpu", "--epochs", "1"]


def refused(capsys, argv: list[str], tracking_uri: str) -> str:
    code = main(["train", *TINY, "--tracking-uri", tracking_uri, *argv])
    _, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    return error_line(err)


def test_a_run_without_times_or_with_empty_windows_is_refused_before_it_starts(tmp_path, capsys, sqlite_tracking_uri):
    from mlflow import MlflowClient

    line = refused(capsys, ["--dataset", "synthetic", "--split", "temporal"], sqlite_tracking_uri)
    assert "needs the interactions' times" in line and "--split leave_last_two" in line
    untimed = write_csv(tmp_path / "untimed.csv", with_time=False)
    line = refused(capsys, ["--dataset", str(untimed), "--split", "temporal"], sqlite_tracking_uri)
    assert "time=COL" in line
    timed = write_csv(tmp_path / "late.csv")
    # the last 0.5% of times: no warm user has a target in the test window
    argv = ["--dataset", str(timed), "--split", "temporal", "--temporal-test-quantile", "0.995"]
    line = refused(capsys, argv, sqlite_tracking_uri)
    assert "test window (from 1970-03-17 00:00:00 UTC" in line and "--temporal-test-quantile" in line
    assert (
        MlflowClient(sqlite_tracking_uri).search_runs(
            [e.experiment_id for e in MlflowClient(sqlite_tracking_uri).search_experiments()]
        )
        == []
    )  # refused before any run was created


def test_a_temporal_run_logs_its_protocol_data_hash_and_cutoffs(tmp_path, capsys, sqlite_tracking_uri):
    from mlflow import MlflowClient

    path = write_csv(tmp_path / "days.csv")
    argv = ["--dataset", str(path), "--split", "temporal", "--tracking-uri", sqlite_tracking_uri]
    assert main(["train", *TINY, *argv, "--temporal-targets", "all"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    client = MlflowClient(sqlite_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("xlrec-days").experiment_id])
    p = run.data.params
    assert (p["split"], p["temporal_targets"], p["tie_break"]) == ("temporal", "all", "file_order")
    # 1,200 times u + k (days), u < 60, k < 20: the lower 0.8 and 0.9 quantiles are days 57 and 63
    assert (int(p["resolved_val_cutoff"]), int(p["resolved_test_cutoff"])) == (57 * 86400, 63 * 86400)
    assert len(p["data_sha256"]) == 16
    assert client.get_registered_model(registered_name("gru4rec", "days", "temporal")).name == "gru4rec-days-temporal"
    assert summary["test"]["recall@10"] >= 0.0


# --- reports never mix protocols or data ----------------------------------------------------------


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "FINISHED", "params.model": "sasrec", "params.dataset": "ml-1m", "params.max_len": "50"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_table4_puts_other_protocols_and_data_in_rows_of_their_own():
    runs = _runs(
        [
            {"params.seed": "1", "metrics.test_recall_at_10": 0.2, "params.data_sha256": "aaaa1111bbbb2222"},
            {"params.seed": "2", "metrics.test_recall_at_10": 0.4, "params.data_sha256": "aaaa1111bbbb2222"},
            {
                "params.seed": "1",
                "metrics.test_recall_at_10": 0.1,
                "params.split": "temporal",
                "params.temporal_val_quantile": "0.8",
                "params.temporal_test_quantile": "0.9",
                "params.temporal_targets": "first",
                "params.data_sha256": "aaaa1111bbbb2222",
            },
            {"params.seed": "1", "metrics.test_recall_at_10": 0.9, "params.data_sha256": "cccc3333dddd4444"},
            {"params.seed": "1", "metrics.test_recall_at_10": 0.5, "params.shuffle_train_sequences": "true"},
        ]
    )
    numbers = table4_numbers(runs).set_index("dataset")
    assert numbers.loc["ml-1m [data aaaa1111]", "test_recall_at_10_mean"] == pytest.approx(0.3)
    assert numbers.loc["ml-1m [data aaaa1111]", "runs"] == 2
    assert numbers.loc["ml-1m [data cccc3333]", "test_recall_at_10_mean"] == pytest.approx(0.9)
    assert numbers.loc["ml-1m (temporal 0.8/0.9, first targets)", "test_recall_at_10_mean"] == pytest.approx(0.1)
    assert numbers.loc["ml-1m (shuffled training)", "runs"] == 1
    assert len(table4(runs)) == 4
    note = protocol_note(runs)
    assert "temporal 0.8/0.9" in note and "shuffled training" in note and "[data cccc3333]" in note
    # labelling twice changes nothing (the report labels its runs, then Table 4 does)
    once = with_protocols(runs)
    assert with_protocols(once)["params.dataset"].tolist() == once["params.dataset"].tolist()


def test_runs_of_one_protocol_and_data_stay_in_one_row_without_a_note():
    runs = _runs([{"params.seed": str(s), "metrics.test_recall_at_10": 0.1 * s} for s in (1, 2, 3)])
    assert table4_numbers(runs)["dataset"].tolist() == ["ml-1m"] and protocol_note(runs) == ""


def test_a_temporal_model_registers_apart_from_leave_last_two():
    assert registered_name("sasrec", "ml-1m") == "sasrec-ml-1m"
    assert registered_name("sasrec", "ml-1m", "temporal") == "sasrec-ml-1m-temporal"


def test_a_user_with_several_test_cases_is_one_unit_of_the_paired_tests():
    from xlrec.report.significance import paired

    # user 0 has two test cases (a temporal split's `all` targets), user 1 one; two seeds
    a = pd.DataFrame({"seed": [1, 1, 1, 2, 2, 2], "user_index": [0, 0, 1, 0, 0, 1], "rank": [1, 3, 2, 1, 20, 2]})
    b = pd.DataFrame({"seed": [1, 1, 1, 2, 2, 2], "user_index": [0, 0, 1, 0, 0, 1], "rank": [2, 1, 2, 7, 1, 5]})
    p = paired(a, b)
    assert p.users.tolist() == [0, 1] and p.a.shape == (2, 2)  # users x seeds, not cases x seeds

    def ndcg(r):
        return 1 / np.log2(r + 1)

    assert p.a[0].tolist() == pytest.approx([(ndcg(1) + ndcg(3)) / 2, (ndcg(1) + 0.0) / 2])
    assert p.b[0].tolist() == pytest.approx([(ndcg(2) + ndcg(1)) / 2, (ndcg(7) + ndcg(1)) / 2])
    assert p.a[1].tolist() == pytest.approx([ndcg(2), ndcg(2)])
