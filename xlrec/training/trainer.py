"""The training loop: read it top to bottom.

The trainer receives what it trains (built by `xlrec.experiment.assemble`): the model, the
run config and the runtime; `fit` gets the training windows and a validation function. One
epoch = every training interaction a target once (window mode) or the paper's
one-prefix-per-target scheme. Adam, optional StepLR/cosine schedule, gradient clipping, an
optional moving average of the weights (what validation then scores), early stopping on
validation Recall@10 with restore of the best weights. A model with nothing to optimise
(`pop`) is only validated. `state()`/`load_state()` carry a run across processes (sweep
checkpoints). Observers (MLflow logging, progress printing, Ray/Tune reporting) plug in
through `Callback` (xlrec.training.events); the experiment run notifies start, end and failure,
the loop each epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from xlrec.device import Runtime, resource_usage, start_usage_interval, synchronize
from xlrec.rec_models import SequentialRecommender, parameter_breakdown
from xlrec.settings import SELECTION_METRIC, TrainConfig, metric_key
from xlrec.training.batches import TrainWindows
from xlrec.training.cuda_graph import GraphedStep
from xlrec.training.events import Callback, StopTraining, TrainingDiverged
from xlrec.training.losses import full_softmax_ce


@dataclass
class Progress:
    """Where the loop stands after an epoch (part of `Trainer.state()`, under these keys)."""

    epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_val: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        model: SequentialRecommender,
        runtime: Runtime,
        callbacks: list[Callback] | None = None,
        graphed: bool = False,
    ):
        """`model` already on `runtime`'s device; `graphed`: replay the step as a CUDA graph
        (the policy is xlrec.device.use_cuda_graph)."""
        self.cfg, self.model, self.rt, self.graphed = cfg, model, runtime, graphed
        self.callbacks = list(callbacks or [])
        self.params = dict(parameter_breakdown(model))
        self.generator = torch.Generator(device=runtime.device)  # the model's own draws (BERT4Rec masks)
        self.generator.manual_seed(cfg.seed)
        self.shuffle_gen = torch.Generator()  # the order of each epoch's samples
        self.shuffle_gen.manual_seed(cfg.seed)
        self.progress = Progress()
        self.opt: torch.optim.Optimizer | None = None
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if model.trainable:
            self.opt, self.sched = self._optimizer()
        # the averaged weights, aligned with model.parameters(); the average starts at the init
        self.ema = [p.detach().clone() for p in model.parameters()] if model.trainable and cfg.ema_decay > 0 else None
        self._step: Callable[[torch.Tensor, torch.Tensor], None] | None = None
        self._acc: dict[str, torch.Tensor] = {}
        self._shared_step: Callable[[TrainWindows, torch.Tensor, torch.Tensor], None] | None = None

    def notify(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _optimizer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        # fused Adam on CUDA: one kernel for all parameters (fewer launches per step); a graphed
        # step needs its step count on the device (capturable)
        opt = torch.optim.Adam(
            self.model.parameters(),
            lr=self.cfg.lr,
            weight_decay=self.cfg.weight_decay,
            betas=(0.9, self.cfg.adam_beta2),
            fused=self.rt.is_cuda or None,
            capturable=self.graphed,
        )
        if self.cfg.scheduler == "step":
            sched: torch.optim.lr_scheduler.LRScheduler | None = torch.optim.lr_scheduler.StepLR(
                opt, step_size=self.cfg.step_size, gamma=self.cfg.gamma
            )
        elif self.cfg.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.cfg.epochs))
        else:
            sched = None
        return opt, sched

    # --- the loop -----------------------------------------------------------------
    def fit(self, windows: TrainWindows, validate: Callable[[], dict[str, float]]) -> str:
        """Train on `windows` until `epochs`, early stopping or a callback's StopTraining, scoring
        `validate()` after every epoch; leave the best epoch's weights in the model and return why
        it stopped. With nothing to optimise (or epochs 0) the model is only validated."""
        p = self.progress
        if self.opt is None or self.cfg.epochs == 0:
            p.best_val = validate()
            return "completed"
        stopped, first = "completed", p.epoch + 1
        try:
            while p.epoch < self.cfg.epochs and not self._should_stop():
                self._epoch(windows, validate, reset_gpu_peak=p.epoch + 1 == first)
            if self._should_stop():
                stopped = "early_stopped"
        except StopTraining as exc:
            stopped = f"stopped: {exc}" if str(exc) else "stopped"
        if p.best_state is not None:
            self.model.load_state_dict(p.best_state)
        return stopped

    def _should_stop(self) -> bool:
        """Early stopping: `patience` epochs without a better validation Recall@10, once at least
        `min_epochs` epochs have run."""
        return self.progress.bad_epochs >= self.cfg.patience and self.progress.epoch >= self.cfg.min_epochs

    def _epoch(self, windows: TrainWindows, validate: Callable[[], dict[str, float]], reset_gpu_peak: bool) -> None:
        """One epoch: train, validate (the averaged weights), keep the best, tell the callbacks."""
        p, model, opt = self.progress, self.model, self.opt
        assert opt is not None  # fit() runs epochs only for a model with parameters
        p.epoch += 1
        start_usage_interval(self.rt, reset_gpu_peak=reset_gpu_peak)
        lr = float(opt.param_groups[0]["lr"])
        t0 = time.perf_counter()
        stats = self.train_epoch(windows)
        synchronize(self.rt)
        train_time = time.perf_counter() - t0
        with self.averaged_weights():
            val = validate()
            improved = val[SELECTION_METRIC] > p.best_val.get(SELECTION_METRIC, -1.0)
            if improved:
                p.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        epoch_time = time.perf_counter() - t0
        if self.sched is not None:
            self.sched.step()
        record = {
            "epoch": p.epoch,
            "train_loss": stats["train_loss"],
            "grad_norm": stats["grad_norm"],
            "lr": lr,
            "epoch_time_s": epoch_time,
            "train_time_s": train_time,
            "throughput": stats["targets"] / train_time,
            **{metric_key(k, "val"): v for k, v in val.items()},
            **resource_usage(self.rt),
        }
        p.history.append(record)
        if improved:
            p.best_val, p.best_epoch, p.bad_epochs = val, p.epoch, 0
        else:
            p.bad_epochs += 1
        self.notify("on_epoch_end", record)

    def train_epoch(self, windows: TrainWindows) -> dict[str, float]:
        """One epoch of optimizer steps over `windows` (every training interaction a target once)."""
        cfg, model = self.cfg, self.model
        if self._step is None:
            shared = self._shared_step
            self._step = (
                self._make_step(windows) if shared is None else lambda ends, starts: shared(windows, ends, starts)
            )
        # masked-item models see each window several times per epoch, with fresh masks
        passes = model.passes_per_epoch if windows.mode == "window" else 1
        ends, starts = windows.epoch(model.causal, passes, self.shuffle_gen)
        model.train()
        for value in self._acc.values():
            value.zero_()
        n_batches = 0
        for i in range(0, len(ends), cfg.batch_size):
            self._step(ends[i : i + cfg.batch_size], starts[i : i + cfg.batch_size])
            n_batches += 1
        n_targets = int(self._acc["targets"])
        train_loss = float(self._acc["loss"]) / max(1, n_targets)
        if not math.isfinite(train_loss):
            what = "NaN" if math.isnan(train_loss) else "infinite"
            raise TrainingDiverged(
                f"Training loss became {what} at epoch {self.progress.epoch}; the run was stopped. Lower --lr, "
                f"keep gradient clipping on (--grad-clip), or check the data."
            )
        return {
            "train_loss": train_loss,
            "grad_norm": float(self._acc["norm"]) / max(1, n_batches),
            "targets": n_targets,
        }

    def train_with(self, step: Callable[[TrainWindows, torch.Tensor, torch.Tensor], None]) -> None:
        """Take every optimizer step through `step(windows, ends, starts)` instead of this trainer's own
        (xlrec.training.stacked: the seeds of one stacked model); before training starts."""
        if self._step is not None:
            raise RuntimeError("train_with() must come before training starts")
        self._shared_step = step

    def own_step(self, windows: TrainWindows) -> Callable[[torch.Tensor, torch.Tensor], None]:
        """This trainer's own (eager) step, for a trainer whose `train_with` step gave up stacking."""
        return self._make_step(windows)

    def accumulators(self) -> dict[str, torch.Tensor]:
        """The epoch's summed loss, gradient norm and target count, on the device (no host sync per
        step); a step adds into them (at fixed addresses: a CUDA graph writes to them)."""
        if not self._acc:
            dev = self.rt.device
            self._acc = {
                "loss": torch.zeros((), device=dev),
                "norm": torch.zeros((), device=dev),
                "targets": torch.zeros((), dtype=torch.long, device=dev),
            }
        return self._acc

    def _make_step(self, windows: TrainWindows) -> Callable[[torch.Tensor, torch.Tensor], None]:
        """The per-batch training step (eager, or replayed as a CUDA graph) and the device-side
        accumulators it adds into (fixed addresses: a graph writes to them)."""
        cfg, model, opt, dev = self.cfg, self.model, self.opt, self.rt.device
        assert opt is not None, "a model without parameters has no training step"
        n_tgt = windows.targets_per_sample
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        acc = self.accumulators()
        # torch's EMA arithmetic (a foreach lerp) on tensors held here rather than in
        # swa_utils.AveragedModel: its update branches on a device counter, a host sync per step
        # that a CUDA graph cannot capture
        ema, ema_update = self.ema, get_ema_multi_avg_fn(cfg.ema_decay)
        params = [p.detach() for p in model.parameters()]

        def step(ends: torch.Tensor, starts: torch.Tensor) -> None:
            window = windows.gather(ends, starts, model.causal)
            opt.zero_grad(set_to_none=True)
            with self.rt.autocast():
                # graphed: the model's draws come from the default CUDA generator, which a graph
                # replays with fresh numbers (the trainer's own generator is not registered with it)
                gen = None if self.graphed else self.generator
                hidden, targets = model.training_pairs(window, n_tgt, gen, fixed_shape=self.graphed)
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

        if not self.graphed:
            return step
        for group in opt.param_groups:  # on the device, so the scheduler's in-place update reaches the graph
            group["lr"] = torch.tensor(float(group["lr"]), device=dev)
        return GraphedStep(step, cfg.batch_size, dev, seed=cfg.seed)

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

    # --- checkpoints (fault-tolerant sweeps) ------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the current epoch, bit for bit on CPU; plain
        tensors and containers only (sweep checkpoints are read with weights_only=True)."""
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict() if self.opt else None,
            "sched": self.sched.state_dict() if self.sched else None,
            "ema": self.ema,
            **vars(self.progress),
            "shuffle_gen": self.shuffle_gen.get_state(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from `state()` of a run with the same config; before the first training step
        (a captured CUDA graph holds the optimizer's tensors)."""
        if self._step is not None:
            raise RuntimeError("load_state() must come before training starts")
        self.model.load_state_dict(state["model"])
        if self.opt is not None and state["opt"]:
            self.opt.load_state_dict(state["opt"])
            for group in self.opt.param_groups:  # a graphed run saved its learning rate as a tensor
                group["lr"] = float(group["lr"])
        if self.sched is not None and state["sched"]:
            self.sched.load_state_dict(state["sched"])
        if self.ema is not None:
            for averaged, saved in zip(self.ema, state["ema"] or list(self.model.parameters())):
                averaged.copy_(saved.detach())
        self.progress = Progress(**{f.name: state[f.name] for f in fields(Progress)})
        self.shuffle_gen.set_state(state["shuffle_gen"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
