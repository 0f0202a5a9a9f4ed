"""Where a training epoch's GPU time goes: torch.profiler over a few window-mode steps.

    python benchmarks/profile_step.py --shape ml-10m --model xlstm --steps 10
    python benchmarks/profile_step.py --shipped --shape ml-1m --source DATA --model sasrec  # shipped defaults
Prints the kernels by total CUDA time (the table torch.profiler gives), to decide what to
optimise; not a benchmark (profiling adds overhead).
"""

from __future__ import annotations

import argparse

import torch
from speed import bench_config  # same settings as the benchmark
from torch.profiler import ProfilerActivity, profile

from xlrec.data_prep import prepare
from xlrec.experiment import assemble


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="ml-1m")
    ap.add_argument("--model", default="xlstm")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--source", default=None, help="mirror for the real datasets")
    ap.add_argument("--shipped", action="store_true", help="the real dataset with its shipped defaults")
    ap.add_argument("--no-cuda-graph", action="store_true", help="profile the eager step (kernels by name)")
    args = ap.parse_args()
    args.epochs = 1
    cfg = bench_config(args.model, args.shape, args)
    cfg.cuda_graph = not args.no_cuda_graph
    exp = assemble(cfg, prepare(cfg.dataset, cfg.prep, cfg.source))
    trainer = exp.trainer()
    # a shortened epoch: keep only the first few batches' windows
    n = cfg.batch_size * args.steps
    trainer.train_epoch(exp.windows)  # warm-up (compilation, autotuning)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        from xlrec.training import batches

        orig = batches.sample_ends

        def few(*a, **k):
            e, s = orig(*a, **k)
            return e[:n], s[:n]

        batches.sample_ends = few
        trainer.train_epoch(exp.windows)
        batches.sample_ends = orig
        torch.cuda.synchronize()
    print(
        f"# {args.model} {args.shape} batch {cfg.batch_size}, {args.steps} steps, graph {trainer.graphed},"
        f" on {torch.cuda.get_device_name()}"
    )
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
