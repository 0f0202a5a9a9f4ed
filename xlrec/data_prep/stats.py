"""Dataset statistics: the paper's Table 1, and the raw counts checked against published ones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlrec.data_prep.preprocess import Sequences
from xlrec.data_prep.readers import Interactions

# Published raw counts (interactions, users, items) of the official files, before any
# filtering: the GroupLens READMEs (ML-1M: ratings.dat). Steam is left out: its raw
# counts depend on the crawl, and no reference figure is pinned in the reader.
PUBLISHED: dict[str, tuple[str, int, int, int]] = {
    "ml-100k": ("MovieLens-100K", 100_000, 943, 1_682),
    "ml-1m": ("MovieLens-1M", 1_000_209, 6_040, 3_706),
    "ml-10m": ("MovieLens-10M", 10_000_054, 69_878, 10_677),
    "ml-20m": ("MovieLens-20M", 20_000_263, 138_493, 26_744),
}


def table1_stats(seqs: Sequences) -> dict[str, float]:
    users, items, inter = seqs.num_users, seqs.num_items, int(seqs.offsets[-1])
    return {
        "users": users,
        "items": items,
        "interactions": inter,
        "avg_len": inter / users,
        "sparsity": 1.0 - inter / (users * items),
    }


def raw_counts(raw: Interactions) -> dict[str, int]:
    """Interactions, users and items of the raw files, before any filtering, and the exact
    duplicate rows among them (the same user, item, time and rating as an earlier row)."""
    rows = pd.DataFrame({"u": raw.user, "i": raw.item, "t": raw.timestamp, "r": raw.rating})
    return {
        "interactions": len(raw),
        "users": len(np.unique(raw.user)),
        "items": len(np.unique(raw.item)),
        "duplicate_rows": int(rows.duplicated().sum()),
    }


def duplicates_note(source: str, counts: dict[str, int]) -> str | None:
    """A one-line warning when the raw rows hold exact duplicates, else None. They are kept (a user
    may consume an item twice), but an exact repeat, time included, is usually a logging artefact."""
    n = counts.get("duplicate_rows", 0)
    if not n:
        return None
    return (
        f"xlrec: warning: {source} has {n:,} exact duplicate row{'s' * (n != 1)} (the same user, item, time and "
        f"rating as an earlier row); they are kept as repeated interactions. Remove them from the file if they "
        f"are not."
    )


def published_mismatch(name: str, counts: dict[str, int]) -> str | None:
    """A one-line warning when `name`'s raw counts differ from the published ones, else None.

    A copy that is cut short at a line boundary parses cleanly, so this comparison is the
    only sign of it; it is a warning, not an error, because deliberate variants exist
    (e.g. a partial offline copy) and may still be worth running, with a note.
    """
    if name not in PUBLISHED:
        return None
    title, *expected = PUBLISHED[name]
    keys = ("interactions", "users", "items")
    diff = [(k, counts[k], e) for k, e in zip(keys, expected) if counts.get(k) != e]
    if not diff:
        return None
    have = " and ".join(f"{got:,} {k}" for k, got, _ in diff)
    published = " and ".join(f"{e:,} {k}" for k, _, e in diff)
    return (
        f"xlrec: warning: {name} has {have} where the published {title} has {published}; this copy may be "
        f"partial or truncated, so results on it are not comparable with published ones."
    )


def format_stats(name: str, stats: dict[str, float]) -> str:
    header = f"{'Dataset':<12}{'Users':>10}{'Items':>10}{'Interactions':>15}{'Avg. len.':>11}{'Sparsity':>10}"
    row = (
        f"{name:<12}{stats['users']:>10,}{stats['items']:>10,}{stats['interactions']:>15,}"
        f"{stats['avg_len']:>11.2f}{stats['sparsity']:>10.5f}"
    )
    return header + "\n" + row
