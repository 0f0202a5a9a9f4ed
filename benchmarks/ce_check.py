"""GPU check of the output-layer CE: the Triton kernel vs the torch path, and their speed.

python benchmarks/ce_check.py   (on a CUDA machine)
"""

from __future__ import annotations

import json
import time

import torch

from xlrec.training.losses import full_softmax_ce


def run(kernel: str, h, w, t):
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = full_softmax_ce(hh, ww, t, kernel=kernel)
    loss.backward()
    return loss.detach(), hh.grad, ww.grad


def main() -> None:
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
