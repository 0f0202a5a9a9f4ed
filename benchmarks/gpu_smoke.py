"""Quick GPU check: each model trains 2 epochs on an ML-1M-shaped synthetic dataset."""

from __future__ import annotations

import json
import sys
import time

import torch

from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.experiment import train
from xlrec.training.events import Callback


class Print(Callback):
    def on_epoch_end(self, tr, r):
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)


ML1M = {"synthetic_users": 6040, "synthetic_items": 3416, "synthetic_mean_len": 165}
models = sys.argv[1].split(",") if len(sys.argv) > 1 else ["xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"]
for model in models:
    try:
        cfg = resolve_config(
            model,
            "synthetic",
            overrides={
                **ML1M,
                "embedding_dim": 128,
                "num_heads": 2,
                "num_blocks": 2,
                "max_len": 200,
                "epochs": 2,
                "patience": 5,
                "device": "cuda",
            },
        )
        data = prepare("synthetic", cfg.prep)
        t = time.perf_counter()
        res = train(cfg, data, [Print()])
        print(model, "OK", round(time.perf_counter() - t, 2), res.test.metrics["recall@10"], flush=True)
    except Exception as exc:  # report and continue with the next model
        import traceback

        traceback.print_exc()
        print(model, "FAILED", repr(exc), flush=True)
print(torch.cuda.get_device_name())
