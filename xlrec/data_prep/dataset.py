"""Prepare a dataset by name: acquire, parse, preprocess, cache, describe.

Processed data is cached as .npz under a key derived from the raw files' SHA-256 and
the preprocessing config, so a second run skips parsing and a changed config never
reuses a stale cache. The cache file is written to a temporary name and renamed into
place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlrec.config import PrepConfig
from xlrec.data_prep import acquire, synthetic
from xlrec.data_prep.preprocess import Sequences, build_sequences
from xlrec.data_prep.readers import READERS
from xlrec.data_prep.stats import table1_stats
from xlrec.errors import ConfigError

DATASETS = tuple(READERS) + ("synthetic",)
CACHE_FORMAT = 1


@dataclass
class PreparedDataset:
    name: str
    seqs: Sequences
    stats: dict
    content_hash: str  # SHA-256 of the processed sequences (dataset lineage)
    cache_path: Path | None
    from_cache: bool
    prep: PrepConfig


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _prep_key_fields(name: str, prep: PrepConfig) -> dict:
    fields = dataclasses.asdict(prep)
    if name != "synthetic":
        fields = {k: v for k, v in fields.items() if not k.startswith("synthetic_")}
    return fields


def _content_hash(seqs: Sequences) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(seqs.items).tobytes())
    h.update(np.ascontiguousarray(seqs.offsets).tobytes())
    return h.hexdigest()


def _save(path: Path, seqs: Sequences) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(
                fh, items=seqs.items, offsets=seqs.offsets, timestamps=seqs.timestamps,
                user_ids=seqs.user_ids.astype(str) if seqs.user_ids.dtype == object else seqs.user_ids,
                item_ids=seqs.item_ids.astype(str) if seqs.item_ids.dtype == object else seqs.item_ids,
                titles=np.array(seqs.titles, dtype=str),
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> Sequences | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Sequences(items=z["items"], offsets=z["offsets"], timestamps=z["timestamps"],
                             user_ids=z["user_ids"], item_ids=z["item_ids"], titles=z["titles"].tolist())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # unreadable cache: rebuild it


def prepare(name: str, prep: PrepConfig | None = None, source: str | None = None) -> PreparedDataset:
    """Load dataset `name` preprocessed per `prep`, from the cache when it is current."""
    prep = prep or PrepConfig()
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}.")
    key_src: dict = {"dataset": name, "prep": _prep_key_fields(name, prep), "format": CACHE_FORMAT}
    if name != "synthetic":
        root = acquire.raw_dir(name, source)
        key_src["files"] = {str(p.relative_to(root)): _file_sha256(p)
                            for p in sorted(root.rglob("*")) if p.is_file()}
    else:
        root = None
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    cache = acquire.data_dir() / "processed" / f"{name}-{key}.npz"
    seqs = _load(cache) if cache.is_file() else None
    from_cache = seqs is not None
    if seqs is None:
        if name == "synthetic":
            interactions = synthetic.generate(prep.synthetic_users, prep.synthetic_items,
                                              prep.synthetic_mean_len, prep.synthetic_seed)
        else:
            interactions = READERS[name](root)
        seqs = build_sequences(interactions, prep, source=str(root or name))
        _save(cache, seqs)
    return PreparedDataset(name=name, seqs=seqs, stats=table1_stats(seqs), content_hash=_content_hash(seqs),
                           cache_path=cache, from_cache=from_cache, prep=prep)
