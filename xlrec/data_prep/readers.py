"""Raw-file readers, one per dataset format.

Each reader returns an `Interactions` table (user, item, rating, timestamp; raw ids, in
file order) plus item titles. Parsing takes a fast pandas path; when that fails or the
values are off, `_locate_bad_line` re-reads the file line by line so the error names
the file, the line and what is wrong there.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from xlrec.errors import DataError


@dataclass
class Interactions:
    """Raw interactions in original file order (row order is the tie-break for equal times)."""

    user: np.ndarray  # raw user ids (int64 or str objects)
    item: np.ndarray  # raw item ids
    rating: np.ndarray  # float32; 1.0 where the source has no rating
    timestamp: np.ndarray  # int64 seconds
    titles: dict = field(default_factory=dict)  # raw item id -> title
    genres: dict = field(default_factory=dict)  # raw item id -> "Genre|Genre" (MovieLens)
    groups: dict = field(default_factory=dict)  # raw user id -> "gender|age group|occupation" (MovieLens)
    files: list[Path] = field(default_factory=list)  # files read, for the cache key
    # False where the source has no times (line order stands in for them): no temporal split
    timed: bool = True

    def __len__(self) -> int:
        return len(self.user)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(
            f"Missing data file {path} ({what}). Put the dataset's raw files there, or point "
            f"--source / XLREC_DATA_MIRROR at a directory with one folder per dataset."
        )
    if path.stat().st_size == 0:
        raise DataError(f"Data file {path} is empty (line 1). Re-download the dataset or replace the file.")
    return path


def _locate_bad_line(
    path: Path,
    sep: str,
    ncols: int,
    int_cols: tuple[int, ...],
    float_cols: tuple[int, ...],
    skip_header: bool = False,
    encoding: str = "latin-1",
) -> DataError:
    """Scan a delimited file to find the first malformed line; return the error to raise."""
    names = {0: "user id", 1: "item id", 2: "rating", 3: "timestamp"}
    with open(path, encoding=encoding, newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            if skip_header and lineno == 1:
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                return DataError(
                    f"{path}, line {lineno}: empty line. Remove it (or re-download the file) and run again."
                )
            parts = line.split(sep)
            if len(parts) != ncols:
                return DataError(
                    f"{path}, line {lineno}: expected {ncols} columns separated by {sep!r}, found {len(parts)} "
                    f"({line[:80]!r}). The file is corrupt or not in this dataset's format; re-download it."
                )
            for col in int_cols:
                try:
                    int(parts[col])
                except ValueError:
                    return DataError(
                        f"{path}, line {lineno}: {names.get(col, f'column {col + 1}')} {parts[col]!r} is not an "
                        f"integer. Fix or re-download the file."
                    )
            for col in float_cols:
                try:
                    float(parts[col])
                except ValueError:
                    return DataError(
                        f"{path}, line {lineno}: {names.get(col, f'column {col + 1}')} {parts[col]!r} is not a "
                        f"number. Fix or re-download the file."
                    )
    return DataError(f"{path}: could not be parsed. Re-download the file.")


def _read_ratings(path: Path, sep: str, skip_header: bool = False) -> pd.DataFrame:
    """Read a user/item/rating/timestamp file with integer ids; precise errors on bad lines."""
    _require(path, "ratings")
    raw = path.read_bytes()
    c_sep = sep
    if len(sep) > 1:  # pandas' C parser needs a one-character separator
        raw = raw.replace(sep.encode(), b"\t")
        c_sep = "\t"
    try:
        df = pd.read_csv(
            io.BytesIO(raw),
            sep=c_sep,
            header=0 if skip_header else None,
            names=["user", "item", "rating", "timestamp"],
            engine="c",
            dtype={"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"},
            skip_blank_lines=False,
        )
    except (ValueError, pd.errors.ParserError, TypeError, OverflowError):
        raise _locate_bad_line(path, sep, 4, (0, 1, 3), (2,), skip_header) from None
    if df.isna().any().any() or len(df) == 0:
        raise _locate_bad_line(path, sep, 4, (0, 1, 3), (2,), skip_header)
    return df


def _titles_from_delimited(path: Path, sep: str, id_col: int = 0, title_col: int = 1) -> dict:
    if not path.is_file():
        return {}
    titles = {}
    with open(path, "rb") as fh:
        for raw in fh:
            parts = _text(raw).rstrip("\r\n").split(sep)
            if len(parts) > title_col and _is_id(parts[id_col].strip()):
                titles[int(parts[id_col])] = parts[title_col]
    return titles


def _genres_from_delimited(path: Path, sep: str, col: int = 2) -> dict:
    """MovieLens movies.dat: `id::title::Genre|Genre` (genres are labels only: a bad row costs its genres)."""
    if not path.is_file():
        return {}
    genres = {}
    with open(path, "rb") as fh:
        for raw in fh:
            parts = _text(raw).rstrip("\r\n").split(sep)
            if len(parts) > col and _is_id(parts[0].strip()):
                genres[int(parts[0])] = _genre_text(parts[col])
    return genres


def _ml100k_genres(root: Path) -> dict:
    """u.item's 19 genre flags (columns 5-23), named by u.genre (`name|index`)."""
    names: dict[int, str] = {}
    if (root / "u.genre").is_file():
        for line in (root / "u.genre").read_bytes().splitlines():
            name, _, index = _text(line).strip().rpartition("|")
            if name and _is_id(index):
                names[int(index)] = name
    if not names or not (root / "u.item").is_file():
        return {}
    genres = {}
    for raw in (root / "u.item").read_bytes().splitlines():
        parts = _text(raw).split("|")
        if len(parts) >= 5 + len(names) and _is_id(parts[0].strip()):
            flags = parts[5 : 5 + len(names)]
            genres[int(parts[0])] = _genre_text("|".join(names[i] for i, f in enumerate(flags) if f.strip() == "1"))
    return genres


# ML-1M's age groups (users.dat codes: the group's lower bound); ML-100K's exact ages map onto them,
# so a user's demographic group means the same on both
_AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)


def _age_group(age: int) -> int:
    return max(g for g in _AGE_GROUPS if g <= max(age, 1))


def _user_groups(path: Path, sep: str, order: tuple[int, int, int]) -> dict:
    """Each user's demographic group `gender|age group|occupation` from a MovieLens users file;
    `order` gives the gender, age and occupation columns. Groups are labels only: a bad row costs its group."""
    if not path.is_file():
        return {}
    groups = {}
    g, a, o = order
    for raw in path.read_bytes().splitlines():
        parts = _text(raw).strip().split(sep)
        if len(parts) > max(order) and _is_id(parts[0]) and _is_id(parts[a]):
            groups[int(parts[0])] = f"{parts[g].strip()}|{_age_group(int(parts[a]))}|{parts[o].strip()}"
    return groups


def _genre_text(text: str) -> str:
    text = text.strip()
    return "" if text.lower() in ("unknown", "(no genres listed)") else text


def _text(raw: bytes) -> str:
    """A line of a titles file: UTF-8 where it decodes (the SASRec copies of ML-1M are UTF-8),
    else latin-1 (the GroupLens originals), line by line, so neither shows up as mojibake."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _is_id(text) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() then refuses."""
    return isinstance(text, str) and text.isascii() and text.isdigit()


def _frame_to_interactions(
    df: pd.DataFrame, titles: dict, files: list[Path], genres: dict | None = None, groups: dict | None = None
) -> Interactions:
    return Interactions(
        user=df["user"].to_numpy(),
        item=df["item"].to_numpy(),
        rating=df["rating"].to_numpy(np.float32),
        timestamp=df["timestamp"].to_numpy(np.int64),
        titles=titles,
        genres=genres or {},
        groups=groups or {},
        files=files,
    )


def read_ml100k(root: Path) -> Interactions:
    data = root / "u.data"
    df = _read_ratings(data, "\t")
    files = [data] + [p for p in (root / "u.item", root / "u.user") if p.is_file()]
    groups = _user_groups(root / "u.user", "|", (2, 1, 3))  # id|age|gender|occupation|zip
    return _frame_to_interactions(df, _titles_from_delimited(root / "u.item", "|"), files, _ml100k_genres(root), groups)


def read_ml1m(root: Path) -> Interactions:
    data = root / "ratings.dat"
    df = _read_ratings(data, "::")
    files = [data] + [p for p in (root / "movies.dat", root / "users.dat") if p.is_file()]
    movies = root / "movies.dat"
    groups = _user_groups(root / "users.dat", "::", (1, 2, 3))  # id::gender::age::occupation::zip
    return _frame_to_interactions(
        df, _titles_from_delimited(movies, "::"), files, _genres_from_delimited(movies, "::"), groups
    )


def read_ml10m(root: Path) -> Interactions:
    # The archive unpacks into ml-10M100K/; accept the files there or directly in root.
    sub = root / "ml-10M100K"
    base = sub if (sub / "ratings.dat").is_file() else root
    data = base / "ratings.dat"
    df = _read_ratings(data, "::")
    files = [data] + [p for p in (base / "movies.dat",) if p.is_file()]
    movies = base / "movies.dat"
    return _frame_to_interactions(df, _titles_from_delimited(movies, "::"), files, _genres_from_delimited(movies, "::"))


def read_ml20m(root: Path) -> Interactions:
    sub = root / "ml-20m"
    base = sub if (sub / "ratings.csv").is_file() else root
    data = base / "ratings.csv"
    df = _read_ratings(data, ",", skip_header=True)
    titles, genres = {}, {}
    movies = base / "movies.csv"
    if movies.is_file():
        # titles are labels only: an undecodable byte or a malformed row costs a title, never the run
        with open(movies, encoding="utf-8", errors="replace", newline="") as fh:
            try:
                for row in csv.DictReader(fh):
                    if _is_id(row.get("movieId")):
                        titles[int(row["movieId"])] = row.get("title") or ""
                        genres[int(row["movieId"])] = _genre_text(row.get("genres") or "")
            except csv.Error:
                pass
    files = [data] + ([movies] if movies.is_file() else [])
    return _frame_to_interactions(df, titles, files, genres)


STEAM_REVIEWS = "steam_reviews.json.gz"
STEAM_GAMES = "steam_games.json.gz"


def _parse_steam_date(value: str, path: Path, lineno: int) -> int:
    try:
        return int(datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())
    except (TypeError, ValueError):
        raise DataError(
            f"{path}, line {lineno}: date {value!r} is not in YYYY-MM-DD form. Re-download the Steam reviews file."
        ) from None


def read_steam(root: Path) -> Interactions:
    """Steam reviews (Kang & McAuley): gzipped, one Python-literal dict per line."""
    path = _require(root / STEAM_REVIEWS, "Steam reviews")
    users, items, times = [], [], []
    lineno = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = ast.literal_eval(line)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: {[1]: 2}
                    raise DataError(
                        f"{path}, line {lineno}: not a Python dict literal ({line[:80]!r}). Re-download the file."
                    ) from None
                if not isinstance(rec, dict) or not {"username", "product_id", "date"} <= rec.keys():
                    raise DataError(
                        f"{path}, line {lineno}: a review needs the keys 'username', 'product_id' and 'date'. "
                        f"Re-download the Steam reviews file."
                    )
                pid = str(rec["product_id"])
                if not _is_id(pid):
                    raise DataError(
                        f"{path}, line {lineno}: product_id {pid!r} is not an integer. Re-download the file."
                    )
                users.append(str(rec["username"]))
                items.append(int(pid))
                times.append(_parse_steam_date(rec["date"], path, lineno))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}). Re-download it.") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}, line {lineno + 1}: not UTF-8 text ({exc.reason}). Re-download the Steam reviews file."
        ) from None
    if not users:
        raise DataError(f"Data file {path} holds no reviews (line 1). Re-download the Steam reviews file.")
    titles = {}
    games = root / STEAM_GAMES
    if games.is_file():  # titles are labels only: a damaged games file costs titles, never the run
        try:
            with gzip.open(games, "rt", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        rec = ast.literal_eval(line)
                    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                        continue
                    if isinstance(rec, dict) and _is_id(str(rec.get("id", ""))):
                        titles[int(rec["id"])] = str(rec.get("app_name") or rec.get("title") or "")
        except (OSError, EOFError, zlib.error):
            pass
    return Interactions(
        user=np.array(users, dtype=object),
        item=np.array(items, dtype=np.int64),
        rating=np.ones(len(users), np.float32),
        timestamp=np.array(times, dtype=np.int64),
        titles=titles,
        files=[path] + ([games] if games.is_file() else []),
    )


READERS = {
    "ml-100k": read_ml100k,
    "ml-1m": read_ml1m,
    "ml-10m": read_ml10m,
    "ml-20m": read_ml20m,
    "steam": read_steam,
}
