"""The named datasets, and how a --dataset value that is a file of the user's own is named.

The readers of the named datasets live in xlrec.data_prep (one floor up); this module only knows
their names, so config resolution can check a name and pick defaults without reading data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from xlrec.errors import ConfigError, DataError

# every named dataset (xlrec.data_prep.readers.READERS reads each real one; `synthetic` is generated)
DATASETS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "steam", "synthetic")
FORMATS = (".inter", ".txt", ".csv", ".tsv", ".parquet")
ROLES = ("user", "item", "time", "rating", "title_item", "title")
_NAMED_SIZES = {"ml-100k": 100_000, "ml-1m": 1_000_209}  # interactions of the datasets with tuned defaults


@dataclass(frozen=True)
class DataShape:
    """What a prepared dataset's sequences look like: what the rule for an unseen dataset's defaults
    reads (xlrec/defaults.yaml `unseen`)."""

    users: int
    items: int
    interactions: int
    mean_len: float
    len_p90: float  # the 0.9 quantile of the users' sequence lengths

    @classmethod
    def of_lengths(cls, lengths: Sequence[int], items: int) -> DataShape:
        ordered = sorted(int(n) for n in lengths)
        if not ordered:
            return cls(0, items, 0, 0.0, 0.0)
        # the 0.9 quantile, linear between order statistics (numpy's default method)
        pos = 0.9 * (len(ordered) - 1)
        lo, frac = int(pos), pos - int(pos)
        p90 = ordered[lo] + (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo]) * frac
        total = sum(ordered)
        return cls(len(ordered), items, total, total / len(ordered), float(p90))


def unknown_dataset(name: str) -> ConfigError:
    return ConfigError(
        f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}, or pass the path of your own file "
        f"({', '.join(FORMATS)})."
    )


def looks_like_file(value: str) -> bool:
    """A --dataset value meant as a path: an existing file, a path separator or a file extension."""
    return Path(value).is_file() or "/" in value or "\\" in value or Path(value).suffix.lower() in FORMATS


def is_user_file(value: str) -> bool:
    """A --dataset value that names a file of the user's own rather than a named dataset."""
    return value not in DATASETS and looks_like_file(value)


def resolve_path(value: str) -> Path:
    """The absolute path of a user's data file, or a DataError for a missing file or unknown format."""
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise DataError(
            f"Data file {path} does not exist. Pass --dataset with the path of an interaction file "
            f"({', '.join(FORMATS)}) or the name of a known dataset."
        )
    if path.suffix.lower() not in FORMATS:
        raise DataError(
            f"Data file {path} has the extension {path.suffix or '(none)'!r}, which xlrec does not read. "
            f"Use a RecBole .inter, a SASRec .txt (user item per line) or a .csv/.tsv/.parquet file."
        )
    return path


def dataset_name(path: Path, named: Collection[str] = DATASETS) -> str:
    """The file stem in [a-z0-9-] (`My Data.inter` -> `my-data`); `file-` in front of a named dataset's name."""
    name = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "data"
    return f"file-{name}" if name in named else name


def dataset_label(dataset: str) -> str:
    """The name runs use for a --dataset value: a named one's, or a user file's sanitised stem."""
    return dataset_name(Path(dataset)) if is_user_file(dataset) else dataset


def count_rows(path: Path) -> int:
    """The file's size in rows, cheaply: lines of a text file, the row count of a Parquet footer."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # not parquet: reading it reports the problem with the file's name
            return 0
    lines = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            lines += block.count(b"\n")
    return lines


def nearest_defaults(rows: int) -> str:
    """The measured dataset whose tuned defaults a user's dataset starts from.

    Rule: of the datasets with per-model entries in defaults.yaml (ml-100k, ml-1m), the one nearest
    in number of interactions on a log scale; the file's row count stands in for its interactions,
    since defaults are resolved before the data is read. The boundary is their geometric mean (~316k).
    """
    size = math.log(max(rows, 1))
    return min(_NAMED_SIZES, key=lambda name: abs(math.log(_NAMED_SIZES[name]) - size))


def parse_columns(text: str | None) -> dict[str, str]:
    """`user=COL,item=COL[,time=COL][,rating=COL][,title_item=COL,title=COL]` as a role -> column map."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or role not in ROLES or not column:
            raise ConfigError(
                f"--columns {text!r}: {part.strip()!r} is not ROLE=COLUMN with ROLE one of {', '.join(ROLES)}. "
                f"Pass e.g. --columns user=customer,item=product,time=ts."
            )
        out[role] = column
    return out
