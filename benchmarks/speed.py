"""Training/evaluation speed on one GPU, window mode vs the paper's prefix mode.

Measures in ONE process on the same device, per (model, dataset shape): training time
per epoch (every training interaction a target once), throughput (targets/s), peak GPU
memory, the time of a full evaluation of all users, and the same model trained with
`--sample-mode prefix` (the paper's scheme) as the baseline with the speed ratio. Prefix
epochs on large data take minutes, so the baseline runs `--prefix-steps` batches and is
extrapolated to a full epoch (marked as such).

    python benchmarks/speed.py --shapes ml-1m --models xlstm,sasrec,bert4rec,gru4rec --out speed.jsonl
    python benchmarks/speed.py --shipped --shapes ml-1m --source DATA ...  # the real data, shipped defaults
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.device import synchronize
from xlrec.experiment import Experiment, assemble
from xlrec.settings import TrainConfig
from xlrec.training.batches import gather_windows, sample_ends
from xlrec.training.footprint import dataset_shape, parts
from xlrec.training.losses import full_softmax_ce
from xlrec.training.trainer import Trainer

SHAPES = {  # synthetic datasets with the real datasets' shapes
    "ml-1m": {"synthetic_users": 6040, "synthetic_items": 3416, "synthetic_mean_len": 165},
    "ml-10m": {"synthetic_users": 71567, "synthetic_items": 10681, "synthetic_mean_len": 140},
    "ml-20m": {"synthetic_users": 138493, "synthetic_items": 26744, "synthetic_mean_len": 144},
    # ML-20M's users and lengths over a catalogue of a million items: the output layer dominates
    "items-1m": {"synthetic_users": 138493, "synthetic_items": 1_000_000, "synthetic_mean_len": 144},
}
ARCH = {"embedding_dim": 128, "num_heads": 2, "num_blocks": 2, "max_len": 200}


def bench_config(model: str, shape: str, args: argparse.Namespace) -> TrainConfig:
    """The real dataset with its shipped defaults (ml-100k always; others with --shipped), else a
    synthetic dataset of the shape with the tool's fixed architecture and batch."""
    if shape == "ml-100k" or args.shipped:
        return resolve_config(model, shape, overrides={"epochs": args.epochs, "source": args.source})
    over = {**SHAPES[shape], **ARCH, "batch_size": args.batch_size, "epochs": args.epochs}
    return resolve_config(model, "synthetic", overrides=over)


def timed_epoch(trainer: Trainer, exp: Experiment) -> tuple[float, dict]:
    synchronize(trainer.rt)
    t0 = time.perf_counter()
    stats = trainer.train_epoch(exp.windows)
    synchronize(trainer.rt)
    return time.perf_counter() - t0, stats


def prefix_epoch_estimate(trainer: Trainer, exp: Experiment, steps: int) -> tuple[float, int, int]:
    """Seconds for `steps` prefix-mode batches, and the number of batches in a full prefix epoch."""
    cfg, model, opt = trainer.cfg, trainer.model, trainer.opt
    ends_np, starts_np = sample_ends(exp.split, cfg.max_len, "prefix", model.causal)
    total_batches = int(np.ceil(len(ends_np) / cfg.prefix_batch_size))
    dev = trainer.rt.device
    bs = cfg.prefix_batch_size
    steps = min(steps, total_batches - 3)
    order = np.random.default_rng(0).permutation(len(ends_np))[: (steps + 3) * bs]  # shuffled, as in training
    ends = torch.as_tensor(ends_np[order], device=dev)
    starts = torch.as_tensor(starts_np[order], device=dev)
    width = cfg.max_len + 1 if model.causal else cfg.max_len

    def run(first, n):
        for i in range(first * bs, (first + n) * bs, bs):
            w = gather_windows(exp.items, ends[i : i + bs], starts[i : i + bs], width)
            with trainer.rt.autocast():
                h, t = model.training_pairs(w, 1, trainer.generator)
                loss = full_softmax_ce(*model.output_operands(h), t, kernel=trainer.rt.kernel)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(0, 3)  # warm-up
    synchronize(trainer.rt)
    t0 = time.perf_counter()
    run(3, steps)
    synchronize(trainer.rt)
    return (time.perf_counter() - t0), steps, total_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="ml-1m")
    ap.add_argument("--models", default="xlstm")
    ap.add_argument("--batch-size", type=int, default=512, help="window batch")
    ap.add_argument("--prefix-batch-size", type=int, default=128, help="the paper's batch of prefixes")
    ap.add_argument("--prefix-steps", type=int, default=0, help="0 = no prefix baseline")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--source", default=None, help="mirror for the real datasets")
    ap.add_argument(
        "--shipped", action="store_true", help="the real datasets with their shipped defaults (xlrec/defaults.yaml)"
    )
    ap.add_argument("--no-cuda-graph", action="store_true", help="run the training step eagerly")
    ap.add_argument(
        "--compile", action="store_true", help="train through torch.compile'd encoders (the `compile` setting)"
    )
    ap.add_argument("--out", default="speed.jsonl")
    args = ap.parse_args()
    dev_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    with open(args.out, "a") as fh:
        for shape in args.shapes.split(","):
            for model in args.models.split(","):
                cfg = bench_config(model, shape, args)
                cfg.cuda_graph = not args.no_cuda_graph
                cfg.compile = args.compile
                cfg.prefix_batch_size = args.prefix_batch_size  # type: ignore[attr-defined]
                t_data = time.perf_counter()
                data = prepare(cfg.dataset, cfg.prep, cfg.source)
                t_data = time.perf_counter() - t_data
                exp = assemble(cfg, data)
                trainer = exp.trainer()
                if trainer.rt.is_cuda:  # peak over all epochs: a graphed step allocates once, at capture
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(args.epochs):
                    t, stats = timed_epoch(trainer, exp)
                    times.append(t)
                peak = torch.cuda.max_memory_allocated() / 2**20 if trainer.rt.is_cuda else 0.0
                host = ("dataset", "generator")  # the parts that stay in host memory
                on_gpu = [p for p in parts(cfg, dataset_shape(cfg)) if not any(h in p.what for h in host)]
                estimate = sum(p.bytes for p in on_gpu)
                evals = []  # the first call includes kernel selection/compilation; report both
                for _ in range(3):
                    synchronize(trainer.rt)
                    t0 = time.perf_counter()
                    res = exp.evaluate("test")
                    synchronize(trainer.rt)
                    evals.append(time.perf_counter() - t0)
                t_eval = min(evals)
                peak_eval = torch.cuda.max_memory_allocated() / 2**20 if trainer.rt.is_cuda else 0.0
                row = {
                    "device": dev_name,
                    "shape": shape,
                    "model": model,
                    "users": data.seqs.num_users,
                    "items": data.seqs.num_items,
                    "interactions": int(data.seqs.offsets[-1]),
                    "batch_size": cfg.batch_size,
                    "cuda_graph": trainer.graphed,
                    "compile": exp.compiled,
                    "max_len": cfg.max_len,
                    "dim": cfg.arch.embedding_dim,
                    "blocks": getattr(cfg.arch, "num_blocks", None),
                    "shipped_defaults": args.shipped or shape == "ml-100k",
                    "epoch_times_s": [round(x, 4) for x in times],
                    "epoch_s": min(times),
                    "targets": stats["targets"],
                    "throughput": stats["targets"] / min(times),
                    "peak_gpu_mb": round(peak, 1),
                    "peak_gpu_mb_with_eval": round(peak_eval, 1),
                    "footprint_estimate_mb": round(estimate / 2**20),  # xlrec.training.footprint, GPU parts
                    "eval_all_users_s": round(t_eval, 4),
                    "eval_first_call_s": round(evals[0], 4),
                    "test_recall@10": res.metrics["recall@10"],
                    "data_prep_s": round(t_data, 2),
                }
                if args.prefix_steps and model != "bert4rec":
                    t_pre, steps, total = prefix_epoch_estimate(trainer, exp, args.prefix_steps)
                    row.update(
                        {
                            "prefix_steps_timed": steps,
                            "prefix_batches_per_epoch": total,
                            "prefix_epoch_s_extrapolated": round(t_pre / steps * total, 2),
                            "speedup_vs_prefix": round(t_pre / steps * total / min(times), 1),
                        }
                    )
                print(json.dumps(row), flush=True)
                fh.write(json.dumps(row) + "\n")
                del trainer, exp
                torch.cuda.empty_cache() if torch.cuda.is_available() else None


if __name__ == "__main__":
    sys.exit(main())
