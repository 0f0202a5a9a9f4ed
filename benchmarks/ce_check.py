"""GPU check of the output-layer CE: the Triton kernel vs the torch path, and their speed.

python benchmarks/ce_check.py   (on a CUDA machine)
python benchmarks/ce_check.py --catalogue 1000000 --max-logits 26,28,30   (a large catalogue: the
    Triton path alone, its time and peak memory per bound on the logits alive at once, 2**N)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from xlrec.training.losses import full_softmax_ce


def run(kernel: str, h, w, t, max_logits: int | None = None):
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = full_softmax_ce(hh, ww, t, max_logits=max_logits, kernel=kernel)
    loss.backward()
    return loss.detach(), hh.grad, ww.grad


def catalogue(items: int, rows: int, exponents: list[int]) -> None:
    """One training batch's loss over a large catalogue: at 2**26 logits alive a chunk of a 1M-item
    catalogue is 64 rows, and every chunk reads the whole output matrix again."""
    torch.manual_seed(0)
    h = torch.randn(rows, 128, device="cuda") * 0.5
    w = torch.randn(items, 128, device="cuda") * 0.1
    t = torch.randint(0, items, (rows,), device="cuda")
    for e in exponents:
        run("triton", h, w, t, 1 << e)  # warm-up (kernel selection)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        for _ in range(3):
            loss, _, _ = run("triton", h, w, t, 1 << e)
        torch.cuda.synchronize()
        row = {
            "device": torch.cuda.get_device_name(),
            "rows": rows,
            "items": items,
            "max_logits": f"2**{e}",
            "rows_per_chunk": max(1, (1 << e) // items),
            "ms_triton": round((time.perf_counter() - t0) / 3 * 1000, 1),
            "peak_extra_mb": round((torch.cuda.max_memory_allocated() - base) / 2**20),
            "loss": loss.item(),
        }
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogue", type=int, default=0, help="items of a large-catalogue case (0: the standard cases)")
    ap.add_argument("--rows", type=int, default=204_800, help="targets of that case (1024 x 200)")
    ap.add_argument("--max-logits", default="26", help="comma-separated exponents N: 2**N logits alive at once")
    args = ap.parse_args()
    if args.catalogue:
        catalogue(args.catalogue, args.rows, [int(x) for x in args.max_logits.split(",")])
        return
    torch.manual_seed(0)
    out = {"device": torch.cuda.get_device_name()}
    for rows, items in [(4000, 1682), (200_000, 10_681), (150_000, 26_744)]:
        h = torch.randn(rows, 128, device="cuda") * 0.5
        w = torch.randn(items, 128, device="cuda") * 0.1
        t = torch.randint(0, items, (rows,), device="cuda")
        res = {k: run(k, h, w, t) for k in ("native", "triton")}
        (la, gha, gwa), (lb, ghb, gwb) = res["native"], res["triton"]
        row = {
            "rows": rows,
            "items": items,
            "loss_native": la.item(),
            "loss_triton": lb.item(),
            "max_abs_dh": (gha - ghb).abs().max().item(),
            "max_abs_h_grad": gha.abs().max().item(),
            "max_abs_dw": (gwa - gwb).abs().max().item(),
            "max_abs_w_grad": gwa.abs().max().item(),
        }
        for k in ("native", "triton"):
            run(k, h, w, t)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                run(k, h, w, t)
            torch.cuda.synchronize()
            row[f"ms_{k}"] = round((time.perf_counter() - t0) / 5 * 1000, 2)
        out.setdefault("cases", []).append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
