"""Runs per GPU: many processes (a packed sweep today) against runs sharing a process, one thread
and CUDA stream each.

Without MPS (a GPU setting we may not change on lent hosts) a GPU runs one process's kernels at a
time, time-sliced; kernels of one process's streams run side by side. The paper's grid at the ML-1M
defaults is small kernels at 64 windows per step, which leave most of an H200's SMs idle, so
the question is how much work a GPU does per second in each layout. Every run trains the same
shipped-default model for a fixed number of epochs (validation each epoch, no early stop), each its
own seed; what counts is the time from the first run's first step to the last run's end (imports
and data preparation excluded).

    python benchmarks/stacking.py --model xlstm --source DATA --runs 9 --layouts 9x1,3x3,1x9,1x1
    python benchmarks/stacking.py --model sasrec --source DATA --runs 9 --layouts 1x9 --stacked
        (a process's threads as one batched model, xlrec.training.stacked: eager steps, no CUDA graph)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time


def worker(args: argparse.Namespace) -> None:
    """`--threads` runs in this process, each on a CUDA stream of its own."""
    from xlrec.config import resolve_config
    from xlrec.data_prep import prepare_config
    from xlrec.device import thread_stream
    from xlrec.experiment import assemble
    from xlrec.settings.metrics import VAL_SELECTION_KEY
    from xlrec.training.stacked import StackedSteps

    seeds = [int(s) for s in args.seeds.split(",")]
    cfgs = []
    for seed in seeds:
        over = {"epochs": args.epochs, "patience": args.epochs + 1, "seed": seed, "source": args.source}
        if args.max_len:
            over["max_len"] = args.max_len
        if args.compile:
            over["compile"] = True
        if args.stacked:  # one eager step for the stack
            over["cuda_graph"] = False
        cfgs.append(resolve_config(args.model, args.dataset, overrides=over))
    data = prepare_config(cfgs[0])
    rows: list[dict] = []
    steps = StackedSteps(len(cfgs)) if args.stacked else None

    def one(cfg) -> None:
        stream = contextlib.nullcontext() if steps else thread_stream(cfg.device)
        with stream:  # what a grouped sweep trial does (xlrec.sweeps.trial_group)
            exp = assemble(cfg, data)
            trainer = exp.trainer()
            if steps is not None:
                steps.join(cfg.seed, trainer)
            t0 = time.time()
            try:
                trainer.fit(exp.windows, lambda: exp.evaluate("val").metrics)
            finally:
                if steps is not None:
                    steps.leave(cfg.seed)
            hist = trainer.progress.history
            rows.append(
                {
                    "seed": cfg.seed,
                    "start": t0,
                    "end": time.time(),
                    "epoch_s": [round(h["epoch_time_s"], 3) for h in hist],
                    "val_recall@10": round(hist[-1][VAL_SELECTION_KEY], 4),
                    "stack_refused": steps.refused if steps is not None else None,
                }
            )

    threads = [threading.Thread(target=one, args=(cfg,)) for cfg in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for row in rows:
        print(json.dumps(row), flush=True)


def layout(args: argparse.Namespace, procs: int, threads: int) -> dict:
    seeds = list(range(args.runs))
    groups = [seeds[i : i + threads] for i in range(0, args.runs, threads)][:procs]
    base = [sys.executable, __file__, "--worker", "--model", args.model, "--dataset", args.dataset]
    base += ["--epochs", str(args.epochs), "--max-len", str(args.max_len or 0)]
    base += ["--source", args.source] if args.source else []
    base += ["--compile"] if args.compile else []
    base += ["--stacked"] if args.stacked else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ps = [
        subprocess.Popen(base + ["--seeds", ",".join(str(1000 + s) for s in g)], stdout=subprocess.PIPE, env=env)
        for g in groups
    ]
    outs = [p.communicate()[0].decode() for p in ps]
    if any(p.returncode for p in ps):
        raise SystemExit(f"a worker failed: {[p.returncode for p in ps]}")
    rows = [json.loads(line) for out in outs for line in out.splitlines() if line.startswith("{")]
    if len(rows) != sum(len(g) for g in groups):
        raise SystemExit(f"{sum(len(g) for g in groups) - len(rows)} runs ended without a result (see above)")
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    later = sorted(e for r in rows for e in r["epoch_s"][1:])
    return {
        "layout": f"{procs}x{threads}",
        "processes": procs,
        "threads": threads,
        "stacked": args.stacked,
        "runs": len(rows),
        "epochs_each": args.epochs,
        "wall_s": round(wall, 2),
        "epochs_per_s": round(sum(len(r["epoch_s"]) for r in rows) / wall, 3),
        "median_later_epoch_s": later[len(later) // 2] if later else None,
        "val_recall@10": [r["val_recall@10"] for r in rows],
        # a stack that refused its family trained each seed with its own steps: say so beside the time
        "stack_refused": next((r["stack_refused"] for r in rows if r.get("stack_refused")), None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="xlstm")
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--source", default=None, help="mirror holding the dataset")
    ap.add_argument("--max-len", type=int, default=0, help="0 = the shipped default")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--layouts", default="9x1,3x3,1x9", help="PROCESSESxTHREADS, comma-separated")
    ap.add_argument("--compile", action="store_true", help="every run trains through a torch.compile'd encoder")
    ap.add_argument("--stacked", action="store_true", help="a process's threads train as one batched model")
    ap.add_argument("--out", default=None, help="append the rows to this JSONL file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for spec in args.layouts.split(","):
        procs, threads = map(int, spec.split("x"))
        row = {"device": device, "model": args.model, "dataset": args.dataset, "compile": args.compile}
        row |= layout(args, procs, threads)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
