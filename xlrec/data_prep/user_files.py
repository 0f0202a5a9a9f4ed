"""A user's own interaction file (`--dataset PATH`): RecBole .inter, SASRec .txt, CSV/TSV/Parquet.

Each format becomes the same `Interactions` table the named datasets' readers return, so
preprocessing, caching and statistics are shared. Rows keep their file order (the tie-break for
equal times); a file without times uses its line order as time. Parsing is one pandas pass over
the file as text; a bad value is then located by its row, so the error names the file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from xlrec.catalog.datasets import parse_columns
from xlrec.data_prep.readers import Interactions
from xlrec.errors import DataError

# column names tried, in order, when --columns does not name a role
GUESSES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId"),
    "item": ("item", "item_id", "itemId", "movieId"),
    "time": ("timestamp", "time", "ts"),
    "rating": ("rating",),
}
INTER_FIELDS = {"user_id": "user", "item_id": "item", "timestamp": "time", "rating": "rating"}


def read_user_file(path: Path, columns: str | None = None, titles_file: str | None = None) -> Interactions:
    """Interactions of a user's file in file order, with titles from `titles_file` when given."""
    if path.stat().st_size == 0:
        raise DataError(f"Data file {path} is empty (line 1). Pass a file with one interaction per line.")
    roles = parse_columns(columns)
    suffix = path.suffix.lower()
    if suffix == ".inter":
        frame, first = _read_inter(path), 2
    elif suffix == ".txt":
        frame, first = _read_sasrec(path), 1
    else:
        frame, first = _read_table(path, roles), 2
    if len(frame) == 0:
        raise DataError(f"Data file {path} holds no interactions (line {first}). Add rows after the header.")
    inter = _interactions(frame, path, first)
    if titles_file:
        inter.titles = read_titles(Path(titles_file).expanduser().absolute(), roles, inter.item.dtype != object)
        inter.files.append(Path(titles_file).expanduser().absolute())
    return inter


def _read_text(path: Path, sep: str, header: int | None, names: list | None = None) -> pd.DataFrame:
    """Every field as text, blank and short lines kept (as empty strings) so row i is line i + offset."""
    try:
        return pd.read_csv(
            path,
            sep=sep,
            header=header,
            names=names,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE if sep != "," else csv.QUOTE_MINIMAL,
            encoding="utf-8",
            engine="c",
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        where = f", line {match.group(2)}: expected {match.group(1)} fields, found {match.group(3)}" if match else ""
        raise DataError(
            f"{path}{where}. Every line needs the same fields as the first one, separated by {sep!r}; fix the line."
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Save it as UTF-8.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"Data file {path} is empty (line 1). Pass a file with one interaction per line.") from None


def _read_inter(path: Path) -> pd.DataFrame:
    """RecBole atomic file: a `name:type` header; the columns are found by name."""
    frame = _read_text(path, "\t", header=0)
    found = {}
    for col in frame.columns:
        name = str(col).split(":", 1)[0].strip()
        if name in INTER_FIELDS:
            found[INTER_FIELDS[name]] = col
    missing = [f for f, role in INTER_FIELDS.items() if role in ("user", "item") and role not in found]
    if missing:
        raise DataError(
            f"{path}, line 1: the header has no {' or '.join(missing)} column (it has "
            f"{', '.join(map(str, frame.columns))}). A RecBole .inter header names its tab-separated "
            f"columns like user_id:token, item_id:token, timestamp:float."
        )
    return frame[list(found.values())].set_axis(list(found), axis=1)


def _read_sasrec(path: Path) -> pd.DataFrame:
    """SASRec text: `user item` per line, each user's lines in time order."""
    return _read_text(path, r"\s+", header=None, names=["user", "item"])


def _read_table(path: Path, roles: dict[str, str]) -> pd.DataFrame:
    frame = _load_table(path)
    chosen = {}
    for role in ("user", "item", "time", "rating"):
        if role in roles:
            if roles[role] not in frame.columns:
                raise DataError(
                    f"{path}, line 1: --columns names {role}={roles[role]}, but the file has no column "
                    f"{roles[role]!r} (it has {', '.join(map(str, frame.columns))}). Fix --columns."
                )
            chosen[role] = roles[role]
        else:
            guess = next((c for c in GUESSES[role] if c in frame.columns), None)
            if guess is not None:
                chosen[role] = guess
            elif role in ("user", "item"):
                raise DataError(
                    f"{path}, line 1: no {role} column found (tried {', '.join(GUESSES[role])}; the file has "
                    f"{_columns_found(frame)}). Pass --columns user=COL,item=COL[,time=COL][,rating=COL]."
                    + _separator_hint(path, frame)
                )
    return frame[list(chosen.values())].set_axis(list(chosen), axis=1)


def _load_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() != ".parquet":
        return _read_text(path, "\t" if path.suffix.lower() == ".tsv" else ",", header=0)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise DataError(
            f"{path} is not a readable Parquet file ({str(exc).splitlines()[0][:120]}). Write it with "
            f"pandas.DataFrame.to_parquet, or use a .csv/.tsv file."
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _interactions(frame: pd.DataFrame, path: Path, first: int) -> Interactions:
    """The Interactions of a role-named frame; row i is file line i + first."""
    rows = len(frame)
    user = _ids(frame["user"], "user id", path, first)
    item = _ids(frame["item"], "item id", path, first)
    if "time" in frame:
        timestamp = _as_int_times(_times(frame["time"], path, first))
    else:
        timestamp = np.arange(rows, dtype=np.int64)  # line order is time order
    rating = _numbers(frame["rating"], "rating", path, first) if "rating" in frame else np.ones(rows)
    return Interactions(
        user=user,
        item=item,
        rating=rating.astype(np.float32),
        timestamp=timestamp,
        titles={},
        files=[path],
        timed="time" in frame,
    )


def _ids(column: pd.Series, what: str, path: Path, first: int) -> np.ndarray:
    """Raw ids: int64 when every id is a plain integer, else text; an empty id names its line."""
    if column.dtype.kind in "iu":
        return column.to_numpy(np.int64)
    text = column.astype(str).str.strip()
    bad = (text == "") | column.isna().to_numpy()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + first
        raise DataError(
            f"{path}, line {line}: the {what} is missing (an empty or short line). Give every line a user and an item."
        )
    if text.str.fullmatch(r"0|-?[1-9][0-9]{0,17}").all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def _numbers(column: pd.Series, what: str, path: Path, first: int) -> np.ndarray:
    """A numeric column as float64; the first non-number names its line."""
    if column.dtype.kind == "M":  # parquet datetimes: seconds since the epoch
        return column.astype("datetime64[s]").astype(np.int64).to_numpy(np.float64)
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}, line {row + first}: {what} {str(column.iloc[row])[:40]!r} is not a number. "
            f"Give {what}s as numbers (e.g. Unix seconds for times) and run again."
        )
    return values


# epoch numbers at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)
_MILLISECONDS = 1e11
TIME_FORMATS = "Unix epoch seconds or milliseconds, or ISO 8601 date-times such as 2020-09-26 12:33:51"


def _times(column: pd.Series, path: Path, first: int) -> np.ndarray:
    """A time column as seconds since the epoch (float64): epoch seconds, epoch milliseconds
    (values from 1e11 on; a column is in one unit) or ISO 8601 text (time zones honoured, naive
    times read as UTC); the first value that is none of these names its line."""
    if column.dtype.kind == "M":  # parquet datetimes
        return column.astype("datetime64[ms]").astype(np.int64).to_numpy(np.float64) / 1000.0
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    if np.isfinite(numbers).all():
        return numbers / 1000.0 if np.nanmax(np.abs(numbers)) >= _MILLISECONDS else numbers
    text = column.astype(str).str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy() if np.isfinite(numbers).sum() == 0 else ~np.isfinite(numbers)
    if not bad.any():
        return parsed.astype("datetime64[ms, UTC]").astype(np.int64).to_numpy(np.float64) / 1000.0
    row = int(np.flatnonzero(bad)[0])
    raise DataError(
        f"{path}, line {row + first}: timestamp {str(column.iloc[row])[:40]!r} is not a time xlrec reads. Give "
        f"times as {TIME_FORMATS} (one form for the whole column) and run again."
    )


def _as_int_times(times: np.ndarray) -> np.ndarray:
    """Whole seconds as int64; fractional times are replaced by their rank, which keeps order and ties."""
    if np.all(times == np.floor(times)):
        return times.astype(np.int64)
    return np.unique(times, return_inverse=True)[1].astype(np.int64)


def _columns_found(frame: pd.DataFrame) -> str:
    cols = list(map(str, frame.columns))
    return (
        f"{len(cols)} column{'s' * (len(cols) != 1)}: "
        + ", ".join(repr(c) for c in cols[:8])
        + (", ..." * (len(cols) > 8))
    )


def _separator_hint(path: Path, frame: pd.DataFrame) -> str:
    """What a one-column header with another separator inside it means."""
    if len(frame.columns) != 1:
        return ""
    header = str(frame.columns[0])
    for sep, name in ((";", "semicolons"), ("|", "bars"), ("\t", "tabs"), (",", "commas")):
        if sep in header:
            return (
                f" Its header {header[:60]!r} looks separated by {name}, which xlrec does not read in a "
                f"{path.suffix or 'file'}: use commas in .csv and tabs in .tsv."
            )
    return ""


def read_titles(path: Path, roles: dict[str, str], int_ids: bool) -> dict:
    """Item id -> title from a CSV/TSV side file (`title_item=`/`title=` columns, else the first two)."""
    if not path.is_file():
        raise DataError(f"Titles file {path} does not exist. Pass --titles with a CSV/TSV of item ids and titles.")
    sep = "\t" if path.suffix.lower() in (".tsv", ".inter") else ","
    frame = _read_text(path, sep, header=0)
    cols = [roles.get("title_item"), roles.get("title")]
    defaults = list(frame.columns[:2])
    if len(defaults) < 2 and None in cols:
        raise DataError(
            f"{path}, line 1: a titles file has a header line and two columns, the item id and its title, "
            f"separated by {'tabs' if sep == chr(9) else 'commas'} (.csv: commas, .tsv: tabs); --columns "
            f"title_item=COL,title=COL names them in a file with more. This one has {_columns_found(frame)}."
            + _separator_hint(path, frame)
        )
    cols = [c or d for c, d in zip(cols, defaults)]
    for col in cols:
        if col not in frame.columns:
            raise DataError(
                f"{path}, line 1: --columns names {col!r}, which the titles file does not have "
                f"(it has {', '.join(map(str, frame.columns))}). Fix --columns."
            )
    ids = frame[cols[0]].astype(str).str.strip()
    keys = [int(i) if int_ids and re.fullmatch(r"-?\d{1,18}", i) else i for i in ids]
    return dict(zip(keys, frame[cols[1]].astype(str)))
