"""Prepare a dataset by name: acquire, parse, preprocess, cache, describe.

Processed data is cached as .npz under a key derived from the raw files' SHA-256 and
the preprocessing config, so a second run skips parsing and a changed config never
reuses a stale cache. The cache file is written to a temporary file of its own and
renamed into place, so an interrupted run leaves nothing half-written and a reader never
sees a partial entry; processes preparing the same entry at once take turns (a lock), so
one parses and the others load its result.

The raw counts (interactions, users, items before filtering) are kept with the entry and
compared with the dataset's published ones on every prepare: a mismatch (e.g. a mirror
file cut short at a line boundary, which parses cleanly) prints one warning line and sets
`PreparedDataset.data_warning`, which tracking can record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlrec.catalog.datasets import DATASETS, DataShape, resolve_path, unknown_dataset
from xlrec.data_prep import acquire, synthetic, user_files
from xlrec.data_prep.cache import lock, remove_stale
from xlrec.data_prep.preprocess import Sequences, build_sequences
from xlrec.data_prep.readers import READERS
from xlrec.data_prep.stats import duplicates_note, published_mismatch, raw_counts, table1_stats
from xlrec.errors import DataError
from xlrec.settings import PrepConfig, TrainConfig

CACHE_FORMAT = 5  # 2: raw_counts stored with the sequences; 3: item genres and user groups; 4: duplicates; 5: timed
_COUNT_KEYS = ("interactions", "users", "items", "duplicate_rows")


@dataclass
class PreparedDataset:
    name: str
    seqs: Sequences
    stats: dict
    content_hash: str  # SHA-256 of the processed sequences (dataset lineage)
    cache_path: Path | None
    from_cache: bool
    prep: PrepConfig
    raw_counts: dict[str, int] | None = None  # interactions/users/items before any filtering
    data_warning: str | None = None  # set when raw_counts differ from the dataset's published ones


def data_shape(data: PreparedDataset) -> DataShape:
    """The sequences' shape that the rule for an unseen dataset's defaults reads (xlrec/defaults.yaml `unseen`)."""
    return DataShape.of_lengths(np.diff(data.seqs.offsets).tolist(), data.seqs.num_items)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _prep_key_fields(name: str, prep: PrepConfig) -> dict:
    fields = dataclasses.asdict(prep)  # a user's file keeps the synthetic_* fields out too
    if name != "synthetic":
        fields = {k: v for k, v in fields.items() if not k.startswith("synthetic_")}
    return fields


def _content_hash(seqs: Sequences) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(seqs.items).tobytes())
    h.update(np.ascontiguousarray(seqs.offsets).tobytes())
    return h.hexdigest()


def _save(path: Path, seqs: Sequences, counts: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                items=seqs.items,
                offsets=seqs.offsets,
                timestamps=seqs.timestamps,
                user_ids=seqs.user_ids.astype(str) if seqs.user_ids.dtype == object else seqs.user_ids,
                item_ids=seqs.item_ids.astype(str) if seqs.item_ids.dtype == object else seqs.item_ids,
                titles=np.array(seqs.titles, dtype=str),
                genres=np.array(seqs.genres, dtype=str),
                groups=np.array(seqs.groups, dtype=str),
                raw_counts=np.array([counts[k] for k in _COUNT_KEYS], dtype=np.int64),
                timed=np.array(seqs.timed),
            )
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not land before the bytes (power loss)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> tuple[Sequences, dict[str, int]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            seqs = Sequences(
                items=z["items"],
                offsets=z["offsets"],
                timestamps=z["timestamps"],
                user_ids=z["user_ids"],
                item_ids=z["item_ids"],
                titles=z["titles"].tolist(),
                genres=z["genres"].tolist(),  # a cache from before genres and groups: KeyError, rebuilt
                groups=z["groups"].tolist(),
                timed=bool(z["timed"]),
            )
            counts = dict(zip(_COUNT_KEYS, (int(v) for v in z["raw_counts"])))
            return seqs, counts
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # unreadable cache: rebuild it


@dataclass(frozen=True)
class UserFile:
    """A user's own data file (`--dataset PATH`) and how to read it."""

    path: Path
    columns: str | None = None
    titles: str | None = None

    def key_fields(self) -> dict:
        """The cache key's part: the files' content checksums and the column map (not their paths)."""
        files = {"data": _file_sha256(self.path)}
        if self.titles:
            titles = Path(self.titles).expanduser().absolute()
            files["titles"] = _file_sha256(titles) if titles.is_file() else "missing"
        return {"files": files, "columns": self.columns}


def _build(
    name: str, root: Path | None, prep: PrepConfig, user: UserFile | None = None
) -> tuple[Sequences, dict[str, int]]:
    if user is not None:
        interactions = user_files.read_user_file(user.path, user.columns, user.titles)
        return build_sequences(interactions, prep, source=str(user.path)), raw_counts(interactions)
    if name == "synthetic":
        interactions = synthetic.generate(
            prep.synthetic_users, prep.synthetic_items, prep.synthetic_mean_len, prep.synthetic_seed
        )
    else:
        assert root is not None, "every dataset but synthetic is read from its raw folder"
        try:
            interactions = READERS[name](root)
        except DataError as exc:
            if root != acquire.data_dir() / "raw" / name:
                raise  # a mirror directory: the user's files, never deleted
            # Unpacked from a download: drop it, or every later run would reuse the bad copy.
            removed = acquire.discard(name)
            raise DataError(
                f"{exc} The downloaded copy was removed from the cache "
                f"({', '.join(str(p) for p in removed)}), so the next run fetches it again."
            ) from None
    return build_sequences(interactions, prep, source=str(root or name)), raw_counts(interactions)


def prepare_config(cfg: TrainConfig, source: str | None = None) -> PreparedDataset:
    """The data of a run's config: its named dataset, or its own file (`data_file`)."""
    user = UserFile(Path(cfg.data_file), cfg.columns, cfg.titles_file) if cfg.data_file else None
    return prepare(cfg.dataset, cfg.prep, source if source is not None else cfg.source, user=user)


def prepare(
    name: str, prep: PrepConfig | None = None, source: str | None = None, user: UserFile | None = None
) -> PreparedDataset:
    """Load dataset `name` (or the user's file `user`, named `name`) preprocessed per `prep`, from
    the cache when it is current."""
    prep = prep or PrepConfig()
    if name not in DATASETS and user is None:
        raise unknown_dataset(name)
    key_src: dict = {"dataset": name, "prep": _prep_key_fields(name, prep), "format": CACHE_FORMAT}
    root: Path | None = None
    if user is not None:
        user = UserFile(resolve_path(str(user.path)), user.columns, user.titles)
        key_src.update(user.key_fields())
    elif name != "synthetic":
        root = acquire.raw_dir(name, source)
        key_src["files"] = {str(p.relative_to(root)): _file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    cache = acquire.data_dir() / "processed" / f"{name}-{key}.npz"
    loaded = _load(cache)
    from_cache = loaded is not None
    if loaded is None:
        with lock(cache, f"preparing {name}"):
            loaded = _load(cache)  # another process may have written it while we waited
            from_cache = loaded is not None
            if loaded is None:
                remove_stale(cache.parent, f".{cache.name}.", ".tmp")  # from a killed run
                loaded = _build(name, root, prep, user)
                _save(cache, *loaded)
    seqs, counts = loaded
    notes = [
        None if user is not None else published_mismatch(name, counts),  # no published counts for a file
        duplicates_note(str(user.path) if user is not None else name, counts),
    ]
    warning = " ".join(n for n in notes if n) or None
    if warning:
        print(warning, file=sys.stderr)
    return PreparedDataset(
        name=name,
        seqs=seqs,
        stats=table1_stats(seqs),
        content_hash=_content_hash(seqs),
        cache_path=cache,
        from_cache=from_cache,
        prep=prep,
        raw_counts=counts,
        data_warning=warning,
    )
