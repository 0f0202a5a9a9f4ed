"""Per-epoch progress on stderr (stdout stays clean for the final JSON line)."""

from __future__ import annotations

import sys

from xlrec.settings import VAL_SELECTION_KEY, metric_key
from xlrec.training.events import Callback


class ProgressPrinter(Callback):
    def on_train_start(self, trainer) -> None:
        cfg = trainer.cfg
        print(
            f"[xlrec] {cfg.model} on {cfg.dataset}: {trainer.params['total']:,} parameters, "
            f"device {trainer.rt.device_name()}, max_len {cfg.max_len}, seed {cfg.seed}",
            file=sys.stderr,
        )

    def on_epoch_end(self, trainer, record) -> None:
        print(
            f"[xlrec] epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  "
            f"val recall@10 {record[VAL_SELECTION_KEY]:.4f}  ndcg@10 {record[metric_key('ndcg@10', 'val')]:.4f}  "
            f"{record['epoch_time_s']:.2f}s  {record['throughput']:.0f} targets/s",
            file=sys.stderr,
            flush=True,
        )

    def on_train_end(self, trainer, result) -> None:
        t = result.test.metrics
        print(
            f"[xlrec] best epoch {result.best_epoch} ({result.stopped_reason}); test recall@10 "
            f"{t.get('recall@10', 0):.4f}  ndcg@10 {t.get('ndcg@10', 0):.4f}  mrr@10 {t.get('mrr@10', 0):.4f}",
            file=sys.stderr,
        )
