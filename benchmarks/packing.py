"""Trials/hour with 1, 2, 4 concurrent ML-100K trainings on one GPU (fractional GPUs in a sweep).

Each trial is a full `xlrec train` (to early stop) in its own process, as a Ray trial
with gpus_per_trial = 1/N would run; wall time of the wave gives trials/hour.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def wave(n: int, model: str, source: str | None) -> float:
    cmd = [
        sys.executable,
        "-m",
        "xlrec",
        "train",
        "--model",
        model,
        "--dataset",
        "ml-100k",
        "--device",
        "cuda",
        "--no-tracking",
    ] + (["--source", source] if source else [])
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            cmd + ["--seed", str(42 + i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for i in range(n)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"a trial failed: {[p.returncode for p in procs]}")
    return wall, [json.loads(o.decode().strip().splitlines()[-1])["epochs_run"] for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--model", default="xlstm")
    ap.add_argument("--source", default=None)
    args = ap.parse_args()
    for n in map(int, args.concurrency.split(",")):
        wall, epochs = wave(n, args.model, args.source)
        print(
            json.dumps(
                {
                    "concurrent": n,
                    "wall_s": round(wall, 2),
                    "epochs": epochs,
                    "trials_per_hour": round(n / wall * 3600, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
