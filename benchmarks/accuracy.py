"""Accuracy grid on CPU: models x seeds x protocols on real ML-100K, one process per run.

Runs in parallel worker processes (one torch thread each) and writes one JSON line per
run plus a markdown table of mean +- std over seeds. Hyperparameters come from the
project's defaults (xlrec/defaults.yaml) unless a --set override is given.

    python benchmarks/accuracy.py --models xlstm,sasrec,bert4rec,gru4rec,lstm,pop \
        --seeds 42,123,2023 --protocols paper,exclude --workers 16 --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def run_one(job: dict) -> dict:
    import torch

    if job.get("threads", 1) > 0:
        torch.set_num_threads(job.get("threads", 1))
    from xlrec.config import resolve_config
    from xlrec.data_prep import prepare
    from xlrec.experiment import train

    overrides = {
        "seed": job["seed"],
        "exclude_seen": job["protocol"] == "exclude",
        "device": "cpu",
        **job.get("overrides", {}),
    }
    cfg = resolve_config(job["model"], job["dataset"], overrides=overrides)
    data = prepare(cfg.dataset, cfg.prep, job.get("source"))
    t0 = time.perf_counter()
    res = train(cfg, data)
    out = {**job, **res.summary(), "wall_s": time.perf_counter() - t0}
    return out


def table(rows: list[dict]) -> str:
    import numpy as np

    lines = [
        "| model | protocol | runs | params | test Recall@10 | test NDCG@10 | test MRR@10 | val Recall@10 "
        "| epochs | s/epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({(r["model"], r["protocol"], json.dumps(r.get("overrides", {}), sort_keys=True)) for r in rows})
    for model, protocol, ov in keys:
        rs = [
            r
            for r in rows
            if (r["model"], r["protocol"], json.dumps(r.get("overrides", {}), sort_keys=True)) == (model, protocol, ov)
        ]
        f = lambda k, part="test", rs=rs: np.array([r[part][k] for r in rs])  # noqa: E731
        ms = lambda a: f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0:.4f}"  # noqa: E731
        label = model + ("" if ov == "{}" else f" {ov}")
        lines.append(
            f"| {label} | {protocol} | {len(rs)} | {rs[0]['params']:,} | {ms(f('recall@10'))} | "
            f"{ms(f('ndcg@10'))} | {ms(f('mrr@10'))} | {ms(f('recall@10', 'val'))} | "
            f"{np.mean([r['epochs_run'] for r in rs]):.1f} | "
            f"{np.mean([r['avg_epoch_time_s'] for r in rs]):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="xlstm,sasrec,bert4rec,gru4rec,lstm,pop")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seeds", default="42,123,2023")
    ap.add_argument("--protocols", default="paper,exclude", help="paper = --no-exclude-seen; exclude = default")
    ap.add_argument("--set", action="append", default=[], help='MODEL:json overrides, e.g. sasrec:{"dropout":0.3}')
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (0 = torch's default)")
    ap.add_argument("--source", default=None)
    ap.add_argument("--out", default="accuracy.jsonl")
    args = ap.parse_args()
    variants: dict[str, list[dict]] = {}
    for item in args.set:
        model, _, js = item.partition(":")
        variants.setdefault(model, []).append(json.loads(js))
    jobs = []
    for model in args.models.split(","):
        for ov in variants.get(model, [{}]):
            for protocol in args.protocols.split(","):
                for seed in map(int, args.seeds.split(",")):
                    jobs.append(
                        {
                            "model": model,
                            "dataset": args.dataset,
                            "seed": seed,
                            "protocol": protocol,
                            "overrides": ov,
                            "source": args.source,
                            "threads": args.threads,
                        }
                    )
    print(
        f"{len(jobs)} runs on {args.workers} workers, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )
    rows = []
    with ProcessPoolExecutor(args.workers) as pool, open(args.out, "w") as fh:
        futures = [pool.submit(run_one, j) for j in jobs]
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as exc:  # keep the grid going; report the failure
                print(f"run failed: {exc!r}", file=sys.stderr)
                continue
            rows.append(row)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(
                f"{row['model']:9s} {row['protocol']:8s} seed {row['seed']:5d} {row.get('overrides')} "
                f"val {row['val']['recall@10']:.4f} test {row['test']['recall@10']:.4f} "
                f"({row['epochs_run']} epochs, {row['wall_s']:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    print(table(rows))


if __name__ == "__main__":
    main()
