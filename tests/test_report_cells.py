"""Which runs a report compares with each other: models at their own default max_len meet in one
cell; a swept max_len keeps models apart by length."""

from __future__ import annotations

import pandas as pd

from xlrec.platform.report.document import file_name
from xlrec.platform.report.view import PER_MODEL, comparison_cells, figured_runs


def _runs(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["params.dataset", "params.model", "params.max_len"])


def test_models_at_their_own_defaults_meet_in_one_cell():
    runs = _runs([("ml-100k", "xlstm", "100"), ("ml-100k", "sasrec", "50"), ("ml-100k", "lstm", "200")] * 3)
    assert set(comparison_cells(runs)) == {PER_MODEL}


def test_a_swept_max_len_keeps_each_length_its_own_cell_and_datasets_apart():
    runs = _runs(
        [("ml-100k", m, L) for m in ("xlstm", "sasrec") for L in ("32", "64")]
        + [("ml-1m", "xlstm", "200"), ("ml-1m", "sasrec", "200")]
        + [("steam", "xlstm", "50"), ("steam", "sasrec", "200")]
    )
    cells = comparison_cells(runs).tolist()
    assert cells == ["32", "64", "32", "64", "200", "200", PER_MODEL, PER_MODEL]


def test_shares_of_a_dataset_are_not_drawn_beside_the_whole_dataset():
    runs = pd.DataFrame(
        {
            "params.dataset": ["ml-1m", "ml-1m (10% of users)", "steam (50% of users)"],
            "dataset_base": ["ml-1m", "ml-1m", "steam"],
            "user_fraction": [1.0, 0.1, 0.5],
        }
    )
    assert figured_runs(runs)["params.dataset"].tolist() == ["ml-1m", "steam (50% of users)"]


def test_report_file_names_are_safe_in_markdown_links():
    assert file_name("curves_ml-1m (10% of users)_L200.png") == "curves_ml-1m-10pct-of-users-_L200.png"
    assert file_name("table4.csv") == "table4.csv"
