"""After a `xlrec sweep --mode grid` on a GPU host: fetch the parent run's trials table and
Table-4 artifact (files of the embedded MLflow server) and summarise how trials were spread over the GPUs.

    python benchmarks/grid_summary.py SWEEP_JSON_LINE_FILE GPU_UTIL_CSV OUT_DIR
GPU_UTIL_CSV: `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    result = json.loads(Path(sys.argv[1]).read_text().strip().splitlines()[-1])
    out = Path(sys.argv[3])
    parent = result["parent_run_id"]
    # the sweep's embedded server has stopped; its served artifacts are files under the cwd
    for name in ("trials.csv", "table4.md", "table4.csv"):
        found = sorted(Path(".").glob(f"**/{parent}/artifacts/{name}"))
        if not found:
            raise SystemExit(f"{name} of run {parent} not found under {Path.cwd()}")
        shutil.copy(found[0], out / name)
    trials = pd.read_csv(out / "trials.csv")
    print(json.dumps(result))
    print((out / "table4.md").read_text())
    print("trials per CUDA_VISIBLE_DEVICES:", trials["cuda_visible_devices"].astype(str).value_counts().to_dict())
    print("status:", trials["status"].value_counts().to_dict())
    print(
        "gpu_peak_allocated_mb per trial: max",
        trials["gpu_peak_allocated_mb"].max(),
        "mean",
        round(trials["gpu_peak_allocated_mb"].mean(), 1),
    )
    util = pd.read_csv(sys.argv[2], names=["gpu", "util", "mem_mb"], skipinitialspace=True)
    summary = util.groupby("gpu").agg(
        samples=("util", "size"), mean_util=("util", "mean"), max_mem_mb=("mem_mb", "max")
    )
    print("per-GPU utilisation during the sweep (1 s samples):")
    print(summary.round(1).to_string())


if __name__ == "__main__":
    main()
