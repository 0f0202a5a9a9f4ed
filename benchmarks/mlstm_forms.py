"""Training epochs of an xLSTM with its mLSTM run chunkwise or in the parallel (quadratic) form.

The two forms compute the same layer (tests/test_models.py checks outputs and gradients);
xlrec.device.mlstm_parallel_form decides which one a run takes. This measures both on one
device, in one process, at a dataset's shipped xLSTM defaults, each with the run's own
training step (CUDA graph, fused loss), and prints one JSON row per form:

    python benchmarks/mlstm_forms.py --dataset ml-100k --source DATA --epochs 4 --device cuda --out F
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import xlrec.rec_models.xlstm as xlstm_family
from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.device import synchronize
from xlrec.experiment import assemble


def timed_epochs(form: str, args: argparse.Namespace, data) -> dict:
    cfg = resolve_config("xlstm", args.dataset, overrides={"device": args.device, "source": args.source})
    decide = xlstm_family.mlstm_parallel_form
    # the benchmark's one seam: the family asks this function which form to run
    xlstm_family.mlstm_parallel_form = lambda *_: form == "parallel"
    try:
        exp = assemble(cfg, data)
    finally:
        xlstm_family.mlstm_parallel_form = decide
    trainer = exp.trainer()
    times, stats = [], {}
    for _ in range(args.epochs):
        synchronize(trainer.rt)
        t0 = time.perf_counter()
        stats = trainer.train_epoch(exp.windows)
        synchronize(trainer.rt)
        times.append(time.perf_counter() - t0)
    return {
        "device": trainer.rt.device_name(),
        "dataset": args.dataset,
        "form": form,
        "mlstm_kernel": exp.model.kernel,
        "graphed": exp.graphed,
        "max_len": cfg.max_len,
        "epoch_s": [round(t, 4) for t in times],
        "first_epoch_s": round(times[0], 4),
        "median_later_s": round(statistics.median(times[1:]), 4) if len(times) > 1 else None,
        "last_train_loss": stats.get("train_loss"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--source", default=None, help="the offline mirror (e.g. ../shared/data)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--forms", default="chunkwise,parallel")
    ap.add_argument("--out", default=None, help="append the rows to this JSONL file")
    args = ap.parse_args()
    cfg = resolve_config("xlstm", args.dataset, overrides={"source": args.source})
    data = prepare(cfg.dataset, cfg.prep, cfg.source)
    for form in args.forms.split(","):
        row = timed_epochs(form, args, data)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
