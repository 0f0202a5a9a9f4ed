"""The training loop: read it top to bottom.

One epoch = every training interaction a target once (window mode) or the paper's
one-prefix-per-target scheme. Adam, optional StepLR/cosine schedule, gradient
clipping, an optional moving average of the weights (what validation and test then
score), early stopping on validation Recall@10 with restore of the best weights,
then test and cold-start evaluation. Observers (MLflow logging, progress printing,
Ray/Tune reporting) plug in through `Callback` without touching the loop.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from xlrec.config import TrainConfig
from xlrec.data_prep import PreparedDataset, Split, leave_two_out
from xlrec.data_prep.split import item_popularity
from xlrec.device import (Runtime, resource_usage, select_runtime, start_usage_interval, synchronize,
                          use_cuda_graph)
from xlrec.errors import XlrecError
from xlrec.rec_models import SequentialRecommender, build_model, parameter_breakdown
from xlrec.rec_models.pop import PopRec
from xlrec.training.batches import gather_windows, passes_per_epoch, sample_ends
from xlrec.training.cuda_graph import GraphedStep
from xlrec.training.evaluate import EvalResult, check_evaluable, evaluate
from xlrec.training.losses import full_softmax_ce

MONITOR = "recall@10"


class TrainingDiverged(XlrecError):
    """The loss became NaN or infinite; the run stops with this reason."""


class StopTraining(Exception):
    """Raised by a callback (e.g. a scheduler pruning the trial) to end training early."""


class Callback:
    """Observer hooks; every method is optional."""

    def on_train_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_end(self, trainer: "Trainer", record: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer", result: "TrainResult") -> None: ...
    def on_exception(self, trainer: "Trainer", exc: BaseException) -> None: ...


@dataclass
class TrainResult:
    config: TrainConfig
    params: dict[str, int]
    epochs_run: int
    best_epoch: int
    best_val: dict[str, float]
    test: EvalResult
    cold: dict[str, dict[str, float]]
    history: list[dict[str, float]] = field(default_factory=list)
    total_time_s: float = 0.0
    stopped_reason: str = "completed"

    @property
    def avg_epoch_time_s(self) -> float:
        times = [h["epoch_time_s"] for h in self.history]
        return float(np.mean(times)) if times else 0.0

    def summary(self) -> dict[str, Any]:
        """The one-line JSON that `xlrec train` prints."""
        return {
            "model": self.config.model, "dataset": self.config.dataset, "seed": self.config.seed,
            "max_len": self.config.max_len, "params": self.params["total"], "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch, "avg_epoch_time_s": round(self.avg_epoch_time_s, 4),
            "val": self.best_val, "test": self.test.metrics, "cold_start": self.cold,
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig, data: PreparedDataset, callbacks: list[Callback] | None = None,
                 runtime: Runtime | None = None, model: SequentialRecommender | None = None):
        self.cfg = cfg
        self.data = data
        self.callbacks = list(callbacks or [])
        self.rt = runtime or select_runtime(cfg.device, cfg.kernel, cfg.amp)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        seed_everything(cfg.seed)
        self.split: Split = leave_two_out(data.seqs, cfg.cold_start_threshold)
        check_evaluable(data.name, data.seqs, self.split, cfg.cold_start_threshold)
        self.popularity = item_popularity(data.seqs, self.split)
        dev = self.rt.device
        self.items = torch.as_tensor(data.seqs.items, device=dev)
        self.starts = torch.as_tensor(self.split.starts, device=dev)
        self.model: SequentialRecommender = model or build_model(cfg.model, data.seqs.num_items, cfg, self.rt.kernel)
        if isinstance(self.model, PopRec):
            self.model.set_popularity(self.popularity)
        self.model.to(dev)
        self.params = dict(parameter_breakdown(self.model))
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(cfg.seed)
        self.shuffle_gen = torch.Generator()
        self.shuffle_gen.manual_seed(cfg.seed)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.best_val: dict[str, float] = {}
        self.bad_epochs = 0
        self.opt = self.sched = None
        self.ema: list[torch.Tensor] | None = None  # the averaged weights, aligned with model.parameters()
        self.graphed = use_cuda_graph(self.rt, cfg.cuda_graph, self.model.causal and self.model.graph_capturable,
                                      cfg.sample_mode)
        self._resume: dict[str, Any] | None = None

    # --- helpers ------------------------------------------------------------------
    def _notify(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _optimizer(self):
        # fused Adam on CUDA: one kernel for all parameters (fewer launches per step); a graphed
        # step needs its step count on the device (capturable)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                               betas=(0.9, self.cfg.adam_beta2),
                               fused=self.rt.is_cuda or None, capturable=self.graphed)
        if self.cfg.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.cfg.step_size, gamma=self.cfg.gamma)
        elif self.cfg.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.cfg.epochs))
        else:
            sched = None
        return opt, sched

    def evaluate(self, which: str = "val") -> EvalResult:
        cases = {"val": self.split.val, "test": self.split.test, "cold": self.split.cold_test}[which]
        return evaluate(self.model, self.items, self.starts, cases, self.rt, self.cfg.max_len,
                        self.cfg.exclude_seen, self.popularity if which != "val" else None,
                        self.cfg.eval_batch_size)

    def setup_optimizer(self) -> torch.optim.Optimizer:
        """Optimizer, schedule (restored when resuming) and the training step; before train_epoch()."""
        self.opt, self.sched = opt, sched = self._optimizer()
        if self._resume is not None:
            if self._resume["opt"]:
                opt.load_state_dict(self._resume["opt"])
            if sched is not None and self._resume["sched"]:
                sched.load_state_dict(self._resume["sched"])
            for group in opt.param_groups:  # a graphed run saved its learning rate as a tensor
                group["lr"] = float(group["lr"])
        if self.cfg.ema_decay > 0:
            saved = self._resume.get("ema") if self._resume is not None else None
            self.ema = [t.detach().clone() for t in (saved or self.model.parameters())]
        self._make_step(opt)
        return opt

    def _make_step(self, opt) -> None:
        """Build the per-batch training step (eager, or replayed as a CUDA graph) and the
        device-side accumulators it adds into (fixed addresses: a graph writes to them)."""
        cfg, model, dev = self.cfg, self.model, self.rt.device
        n_tgt = 1 if cfg.sample_mode == "prefix" else (cfg.window_stride or cfg.max_len)
        width = cfg.max_len + 1 if model.causal else cfg.max_len
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        # summed on the device: no host sync per step
        self._acc = {"loss": torch.zeros((), device=dev), "norm": torch.zeros((), device=dev),
                     "targets": torch.zeros((), dtype=torch.long, device=dev)}
        acc = self._acc
        # torch's EMA arithmetic (a foreach lerp) on tensors held here rather than in
        # swa_utils.AveragedModel: its update branches on a device counter, a host sync per step
        # that a CUDA graph cannot capture
        ema, ema_update = self.ema, get_ema_multi_avg_fn(cfg.ema_decay)
        params = [p.detach() for p in model.parameters()]

        def step(ends: torch.Tensor, ustarts: torch.Tensor) -> None:
            window = gather_windows(self.items, ends, ustarts, width)
            opt.zero_grad(set_to_none=True)
            with self.rt.autocast():
                hidden, targets = model.training_pairs(window, n_tgt, self.generator)
                loss = full_softmax_ce(*model.output_operands(hidden), targets, kernel=self.rt.kernel)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if ema is not None:
                ema_update(ema, params, None)
            count = (targets >= 0).sum()  # negative targets are ignored rows (see training_pairs)
            acc["loss"] += loss.detach() * count
            acc["norm"] += norm.detach()
            acc["targets"] += count

        if self.graphed:
            for group in opt.param_groups:  # on the device, so the scheduler's in-place update reaches the graph
                group["lr"] = torch.tensor(float(group["lr"]), device=dev)
            self._step = GraphedStep(step, cfg.batch_size, dev)
        else:
            self._step = step

    def train_epoch(self) -> dict[str, float]:
        """One epoch of training (every training interaction a target once); see setup_optimizer()."""
        cfg, model = self.cfg, self.model
        stride = cfg.window_stride or cfg.max_len
        ends_np, starts_np = sample_ends(self.split, cfg.max_len, cfg.sample_mode, model.causal, stride)
        if cfg.sample_mode == "window":
            reps = passes_per_epoch(model.causal, cfg.mask_prob)
            ends_np, starts_np = np.tile(ends_np, reps), np.tile(starts_np, reps)
        order = torch.randperm(len(ends_np), generator=self.shuffle_gen)
        ends = torch.as_tensor(ends_np, device=self.rt.device)[order.to(self.rt.device)]
        ustarts = torch.as_tensor(starts_np, device=self.rt.device)[order.to(self.rt.device)]
        model.train()
        for value in self._acc.values():
            value.zero_()
        n_batches = 0
        for i in range(0, len(ends), cfg.batch_size):
            self._step(ends[i:i + cfg.batch_size], ustarts[i:i + cfg.batch_size])
            n_batches += 1
        n_targets = int(self._acc["targets"])
        train_loss = float(self._acc["loss"]) / max(1, n_targets)
        if not math.isfinite(train_loss):
            what = "NaN" if math.isnan(train_loss) else "infinite"
            raise TrainingDiverged(
                f"Training loss became {what} at epoch {self.epoch}; the run was stopped. Lower --lr, "
                f"keep gradient clipping on (--grad-clip), or check the data."
            )
        return {"train_loss": train_loss, "grad_norm": float(self._acc["norm"]) / max(1, n_batches),
                "targets": n_targets}

    # --- checkpoints (fault-tolerant sweeps) ------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the current epoch, bit for bit on CPU."""
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict() if self.opt else None,
                "sched": self.sched.state_dict() if self.sched else None, "ema": self.ema, "epoch": self.epoch,
                "best_state": self.best_state, "best_val": self.best_val, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history,
                "shuffle_gen": self.shuffle_gen.get_state(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state` (from `state()`); optimizer state is loaded when fit() creates it."""
        self.model.load_state_dict(state["model"])
        self.epoch, self.best_state, self.best_val = state["epoch"], state["best_state"], state["best_val"]
        self.best_epoch, self.bad_epochs, self.history = state["best_epoch"], state["bad_epochs"], state["history"]
        self.shuffle_gen.set_state(state["shuffle_gen"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self._resume = state

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Inside: the model holds the moving average of its weights (when ema_decay is on),
        copied in place so a captured CUDA graph still finds them; the trained weights return after."""
        if self.ema is None:
            yield
            return
        params = [p.detach() for p in self.model.parameters()]
        trained = [p.clone() for p in params]
        for p, averaged in zip(params, self.ema):
            p.copy_(averaged)
        try:
            yield
        finally:
            for p, weights in zip(params, trained):
                p.copy_(weights)

    # --- the loop -----------------------------------------------------------------
    def _should_stop(self, epoch: int, bad_epochs: int) -> bool:
        """Early stopping: `patience` epochs without a better validation Recall@10, once at least
        `min_epochs` epochs have run."""
        return bad_epochs >= self.cfg.patience and epoch >= self.cfg.min_epochs

    def fit(self) -> TrainResult:
        cfg, model = self.cfg, self.model
        t_start = time.perf_counter()
        self._notify("on_train_start")
        stopped = "completed"
        try:
            if model.trainable and cfg.epochs > 0:
                opt = self.setup_optimizer()
                sched = self.sched
                bad_epochs = self.bad_epochs
                done = self._should_stop(self.epoch, bad_epochs)
                if done:  # resumed after the stopping epoch
                    stopped = "early_stopped"
                first_epoch = self.epoch + 1
                for epoch in range(first_epoch, 0 if done else cfg.epochs + 1):
                    self.epoch = epoch
                    start_usage_interval(self.rt, reset_gpu_peak=epoch == first_epoch)
                    lr = float(opt.param_groups[0]["lr"])
                    t0 = time.perf_counter()
                    stats = self.train_epoch()
                    synchronize(self.rt)
                    train_time = time.perf_counter() - t0
                    with self.averaged_weights():
                        val = self.evaluate("val").metrics
                        improved = val[MONITOR] > self.best_val.get(MONITOR, -1.0)
                        if improved:
                            self.best_state = copy.deepcopy({k: v.detach().clone()
                                                             for k, v in model.state_dict().items()})
                    epoch_time = time.perf_counter() - t0
                    if sched is not None:
                        sched.step()
                    record = {"epoch": epoch, "train_loss": stats["train_loss"], "grad_norm": stats["grad_norm"],
                              "lr": lr, "epoch_time_s": epoch_time, "train_time_s": train_time,
                              "throughput": stats["targets"] / train_time,
                              **{f"val_{k}": v for k, v in val.items()}, **resource_usage(self.rt)}
                    self.history.append(record)
                    if improved:
                        self.best_val, self.best_epoch, bad_epochs = val, epoch, 0
                    else:
                        bad_epochs += 1
                    self.bad_epochs = bad_epochs
                    self._notify("on_epoch_end", record)
                    if self._should_stop(epoch, bad_epochs):
                        stopped = "early_stopped"
                        break
                if self.best_state is not None:
                    model.load_state_dict(self.best_state)
            else:
                self.best_val = self.evaluate("val").metrics
        except StopTraining as exc:
            stopped = f"stopped: {exc}" if str(exc) else "stopped"
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
        except BaseException as exc:
            self._notify("on_exception", exc)
            raise
        test = self.evaluate("test")
        result = TrainResult(config=cfg, params=self.params, epochs_run=len(self.history), best_epoch=self.best_epoch,
                             best_val=self.best_val, test=test, cold=self.cold_start_metrics(),
                             history=self.history, total_time_s=time.perf_counter() - t_start,
                             stopped_reason=stopped)
        self._notify("on_train_end", result)
        return result

    def cold_start_metrics(self) -> dict[str, dict[str, float]]:
        """Cold-start group: the trained model and the `pop` fallback, evaluated separately."""
        if len(self.split.cold_test) == 0:
            return {"users": 0}
        model_res = self.evaluate("cold")
        pop = PopRec(self.data.seqs.num_items, self.cfg, popularity=self.popularity).to(self.rt.device)
        pop_res = evaluate(pop, self.items, self.starts, self.split.cold_test, self.rt, self.cfg.max_len,
                           self.cfg.exclude_seen, None, self.cfg.eval_batch_size)
        keep = ("recall@10", "mrr@10", "ndcg@10")
        return {"users": len(self.split.cold_test),
                "model": {k: model_res.metrics[k] for k in keep}, "pop": {k: pop_res.metrics[k] for k in keep}}
