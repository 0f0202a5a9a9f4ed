"""What a run says to its observers: the callback hooks, the result, and the two ways a run
ends early. Kept apart from the loop so observers (MLflow tracking, progress lines, Ray Tune
reports) depend on this small interface, not on the trainer's internals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xlrec.errors import XlrecError
from xlrec.settings import TrainConfig
from xlrec.training.evaluate import EvalResult

if TYPE_CHECKING:
    from xlrec.training.trainer import Trainer


class TrainingDiverged(XlrecError):
    """The loss became NaN or infinite; the run stops with this reason."""


class StopTraining(Exception):
    """Raised by a callback (e.g. a scheduler pruning the trial) to end training early."""


class Callback:
    """Observer hooks of one run; every method is optional. `trainer` offers cfg, model, rt,
    params, graphed and state()."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...
    def on_exception(self, trainer: Trainer, exc: BaseException) -> None: ...


@dataclass
class TrainResult:
    """What one run produced (xlrec.experiment builds it); `on_train_end` receives it."""

    config: TrainConfig
    params: dict[str, int]
    epochs_run: int
    best_epoch: int
    best_val: dict[str, float]
    test: EvalResult
    cold: dict[str, Any]  # {"users": n, "model": metrics, "pop": metrics}
    history: list[dict[str, float]] = field(default_factory=list)
    total_time_s: float = 0.0
    stopped_reason: str = "completed"
    # training interactions per item id (index 0 = padding): what head, tail and popularity mean
    popularity: np.ndarray | None = None

    @property
    def energy_j(self) -> float | None:
        """Joules the run's device used over its epochs (validation included), where it was read."""
        readings = [h["energy_j"] for h in self.history if "energy_j" in h]
        return float(sum(readings)) if readings and len(readings) == len(self.history) else None

    @property
    def avg_epoch_time_s(self) -> float:
        times = [h["epoch_time_s"] for h in self.history]
        return float(np.mean(times)) if times else 0.0

    def summary(self) -> dict[str, Any]:
        """The one-line JSON that `xlrec train` prints."""
        return {
            "model": self.config.model,
            "dataset": self.config.dataset,
            "seed": self.config.seed,
            "max_len": self.config.max_len,
            "params": self.params["total"],
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "avg_epoch_time_s": round(self.avg_epoch_time_s, 4),
            **({"energy_j": round(self.energy_j, 1)} if self.energy_j is not None else {}),
            "val": self.best_val,
            "test": self.test.metrics,
            "cold_start": self.cold,
        }
