"""Dataset statistics: the paper's Table 1, from one function."""

from __future__ import annotations

from xlrec.data_prep.preprocess import Sequences


def table1_stats(seqs: Sequences) -> dict[str, float]:
    users, items, inter = seqs.num_users, seqs.num_items, int(seqs.offsets[-1])
    return {
        "users": users,
        "items": items,
        "interactions": inter,
        "avg_len": inter / users,
        "sparsity": 1.0 - inter / (users * items),
    }


def format_stats(name: str, stats: dict[str, float]) -> str:
    header = f"{'Dataset':<12}{'Users':>10}{'Items':>10}{'Interactions':>15}{'Avg. len.':>11}{'Sparsity':>10}"
    row = (f"{name:<12}{stats['users']:>10,}{stats['items']:>10,}{stats['interactions']:>15,}"
           f"{stats['avg_len']:>11.2f}{stats['sparsity']:>10.5f}")
    return header + "\n" + row
