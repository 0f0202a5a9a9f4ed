"""GPU (Triton kernels, bf16 autocast) vs CPU (native kernels, fp32) on the same seed.

Same initial weights (seed), same batch: compares xLSTM hidden states and next-item
scores, and the test metrics after one identical training epoch on each device.
"""

from __future__ import annotations

import json

import torch

from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.experiment import train
from xlrec.rec_models import build_model


def main() -> None:
    cfg = resolve_config(
        "xlstm",
        "synthetic",
        overrides={
            "synthetic_users": 500,
            "synthetic_items": 300,
            "synthetic_mean_len": 60,
            "max_len": 64,
            "epochs": 1,
            "dropout": 0.0,
        },
    )
    torch.manual_seed(0)
    cpu_model = build_model("xlstm", 300, cfg, kernel="native").eval()
    gpu_model = build_model("xlstm", 300, cfg, kernel="triton").cuda().eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    ids = torch.randint(1, 301, (64, 64))
    ids[:, :20] = 0
    with torch.no_grad():
        a = cpu_model.next_item_scores(ids)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            b = gpu_model.next_item_scores(ids.cuda()).float().cpu()
    diff = (a - b).abs()
    out = {
        "scores_max_abs_diff": diff.max().item(),
        "scores_mean_abs_diff": diff.mean().item(),
        "scores_scale": a.abs().mean().item(),
        "top10_overlap": (
            sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a.topk(10).indices, b.topk(10).indices))
            / (10 * len(a))
        ),
    }
    data = prepare("synthetic", cfg.prep)
    res = {}
    for dev in ("cpu", "cuda"):
        c = resolve_config(
            "xlstm",
            "synthetic",
            overrides={
                **{k: getattr(cfg.prep, k) for k in ("synthetic_users", "synthetic_items", "synthetic_mean_len")},
                "max_len": 64,
                "epochs": 1,
                "dropout": 0.0,
                "device": dev,
            },
        )
        res[dev] = train(c, data).test.metrics
    out.update({f"{dev}_test_recall@10": res[dev]["recall@10"] for dev in res})
    out.update({f"{dev}_test_ndcg@10": res[dev]["ndcg@10"] for dev in res})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
