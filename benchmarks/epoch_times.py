"""Per-run epoch times of a sweep, from its sqlite MLflow store: the first epoch (where a compiled
encoder compiles, and CUDA graphs are captured) apart from the steady state after it.

    python benchmarks/epoch_times.py /tmp/sweeps/ml1m-compile/mlflow.db [--by model,compile]

Reads the store file directly (read-only), so it works on the GPU host after the sweep's server is
gone; a report (`xlrec report`) gives the accuracy side.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", help="the sweep's mlflow.db")
    ap.add_argument("--by", default="model,compile,max_len", help="params that name a run's group")
    args = ap.parse_args()
    keys = args.by.split(",")
    con = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    params: dict[str, dict[str, str]] = {}
    for run, key, value in con.execute("select run_uuid, key, value from params"):
        params.setdefault(run, {})[key] = value
    epochs: dict[str, list[float]] = {}
    for run, value in con.execute(
        "select run_uuid, value from metrics where key = 'epoch_time_s' order by run_uuid, step, timestamp"
    ):
        epochs.setdefault(run, []).append(value)
    print("\t".join([*keys, "seed", "epochs", "first_epoch_s", "median_later_s", "total_s"]))
    for run, times in sorted(
        epochs.items(), key=lambda kv: [params.get(kv[0], {}).get(k, "") for k in [*keys, "seed"]]
    ):
        p = params.get(run, {})
        later = statistics.median(times[1:]) if len(times) > 1 else float("nan")
        print(
            "\t".join(
                [
                    *(p.get(k, "?") for k in keys),
                    p.get("seed", "?"),
                    str(len(times)),
                    f"{times[0]:.2f}",
                    f"{later:.3f}",
                    f"{sum(times):.1f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
