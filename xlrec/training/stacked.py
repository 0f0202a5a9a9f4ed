"""Seeds of one configuration trained as one batched model.

K trainers whose configs differ only in the seed hand their models to a `SeedStack`: each
parameter (and buffer, and averaged weight) of the K models becomes one tensor with a leading
dimension K, the encoders run as one call (`torch.func.vmap` over `functional_call`), each seed's
loss is its own fused cross-entropy, each seed's gradient is clipped by its own norm, and one Adam
and one moving average update the stacked tensors. Adam, its L2 weight decay and the average are
elementwise, so this is K separate trainings in arithmetic (`tests/test_stacked.py` checks it
against the trainers' own steps).

Why by hand: torch offers the pieces (`stack_module_state`, `vmap`, `functional_call`), not a
trainer that keeps K runs apart. Why at all: at the paper's ML-1M defaults a step is many small
kernels that leave most of a GPU idle (docs/results/speed.md "Where the time goes"); processes
take turns on a GPU and threads' streams only overlap (docs/results/grids.md), while K seeds in
one step launch each kernel once with K times the work.

Each seed keeps its own module: its parameters and its trainer's averaged weights are views of
the stacked tensors, so the trainer's validation, early stopping, best-state copies and saving
read the seed's current weights without copying. A seed that stops leaves with `release(k)`: its
weights are copied out and the others are restacked, optimizer state included.

Dropout, and BERT4Rec's choice of masked items, draw from one stream for the stack (vmap's
randomness "different": each seed its own masks), so a seed's masks depend on the stack it trained
in; its initial weights and its epochs' order of windows are its own seed's, as in a run of its own.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.optim.swa_utils import get_ema_multi_avg_fn

from xlrec.device import select_runtime
from xlrec.errors import ConfigError
from xlrec.rec_models import SequentialRecommender, build_model
from xlrec.settings import TrainConfig
from xlrec.training.batches import TrainWindows
from xlrec.training.events import Callback
from xlrec.training.losses import full_softmax_ce
from xlrec.training.trainer import Trainer

#: settings that may differ between the seeds of one stack (everything else shapes the step)
PER_SEED = frozenset({"seed", "run_name", "tags"})


def stack_refusal(model: SequentialRecommender) -> str | None:
    """Why `model` cannot be stacked (None: it can)."""
    name = type(model).__name__
    if not model.stackable:
        return f"{name} was not checked under vmap (or has no batching rule there)"
    return None


def config_refusal(cfg: TrainConfig, num_items: int) -> str | None:
    """Why seeds of `cfg` cannot be stacked, decided before anything trains (a model of its layout
    built on the meta device: no memory, no numbers)."""
    kernel = select_runtime(cfg.device, cfg.kernel, cfg.amp).kernel
    with torch.device("meta"):
        model = build_model(cfg.model, num_items, cfg, kernel=kernel)
    return stack_refusal(model)


class _Pairs(nn.Module):
    """The step's forward for one seed: (hidden states, output matrix, targets) of a window batch."""

    def __init__(self, model: SequentialRecommender, num_targets: int):
        super().__init__()
        self.model, self.num_targets = model, num_targets

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # fixed shapes (target -1 where nothing is trained): vmap cannot batch a boolean selection;
        # a family that draws its targets (BERT4Rec's masks) draws them from the stack's stream
        hidden, targets = self.model.training_pairs(window, self.num_targets, fixed_shape=True)
        hidden, weight = self.model.output_operands(hidden)
        return hidden, weight, targets


def _point(module: nn.Module, name: str, tensor: torch.Tensor, parameter: bool) -> None:
    """Make `module`'s parameter or buffer `name` the tensor `tensor` (a view of a stacked one)."""
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if parameter:
        owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor


class SeedStack:
    """The trainers' models trained as one (see the module doc). `trainers`: the same config but
    for the seed, models on one device, not yet trained by their own steps."""

    def __init__(self, trainers: Sequence[Trainer]):
        if not trainers:
            raise ValueError("a SeedStack needs at least one trainer")
        first = trainers[0]
        for t in trainers[1:]:
            differ = sorted(
                k for k in vars(first.cfg) if k not in PER_SEED and getattr(t.cfg, k) != getattr(first.cfg, k)
            )
            if differ:
                raise ConfigError(
                    f"Seeds stacked into one model must share every setting but the seed; these differ: "
                    f"{', '.join(differ)}. Stack runs of one configuration only."
                )
        why = stack_refusal(first.model)
        if why:
            raise ConfigError(f"Cannot stack the seeds of {first.cfg.model}: {why}. Run its seeds one per process.")
        if any(t.graphed for t in trainers):
            raise ConfigError("A stacked step is not captured as a CUDA graph; build the trainers with graphed=False.")
        self.trainers = list(trainers)
        self.rt = first.rt
        cfg = first.cfg
        self.clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        self.ema_update = get_ema_multi_avg_fn(cfg.ema_decay)
        # a copy of the layout: functional_call swaps tensors into it, never into a seed's own model
        self._template = _Pairs(copy.deepcopy(first.model), 1)
        self._template.model._compiled_encode = None  # the copy's compiled encoder would be the original's
        self._template.model.use_vmap_kernels()
        # vmap's embedding backward ignores padding_idx: those rows' gradients are zeroed here
        self._padding_rows = {
            f"{name}.weight": m.padding_idx
            for name, m in first.model.named_modules()
            if isinstance(m, nn.Embedding) and m.padding_idx is not None
        }
        self._restack([t.model for t in self.trainers], [t.ema for t in self.trainers], self._trainer_states())

    def _trainer_states(self) -> list[dict] | None:
        """The trainers' Adam states stacked per parameter (a resumed run has them), else None."""
        per_trainer = []
        for t in self.trainers:
            assert t.opt is not None, "a stacked model has parameters"
            params = t.opt.param_groups[0]["params"]
            per_trainer.append([t.opt.state.get(p, {}) for p in params])
        if not all(st for states in per_trainer for st in states):
            return None
        stacked = []
        for i, first in enumerate(per_trainer[0]):
            stacked.append(
                {
                    key: torch.stack([states[i][key] for states in per_trainer]) if v.dim() > 0 else v.clone()
                    for key, v in first.items()
                }
            )
        return stacked

    def _link(self, k: int, own: bool = False) -> None:
        """Seed k's trainer's optimizer: its model's parameters, and views of (or, `own`, copies of)
        its slice of the stacked Adam state, so the trainer's checkpoints hold what the stack trains."""
        trainer = self.trainers[k]
        assert trainer.opt is not None
        params = list(trainer.model.parameters())
        trainer.opt.param_groups[0]["params"] = params
        trainer.opt.state.clear()
        for p, leaf in zip(params, self.params.values()):
            state = self.opt.state.get(leaf, {})
            trainer.opt.state[p] = {
                key: ((v[k].clone() if own else v[k]) if v.dim() > 0 else (v.clone() if own else v))
                for key, v in state.items()
            }

    @property
    def size(self) -> int:
        return len(self.trainers)

    # --- stacking ---------------------------------------------------------------------
    def _restack(self, models, emas, opt_states: list[dict] | None) -> None:
        """Stack the models' parameters, buffers and averages; point every model at its slice."""
        names = [n for n, _ in models[0].named_parameters()]
        buffers = [n for n, _ in models[0].named_buffers()]
        self.params = {
            n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_() for n in names
        }
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]) for n in buffers}
        self.ema = [torch.stack([e[i] for e in emas]) for i in range(len(names))] if emas[0] is not None else None
        for k, (trainer, model) in enumerate(zip(self.trainers, models)):
            for n in names:
                _point(model, n, self.params[n].detach()[k], parameter=True)
            for n in buffers:
                _point(model, n, self.buffers[n][k], parameter=False)
            if self.ema is not None:
                trainer.ema = [e[k] for e in self.ema]
        cfg, leaves = self.trainers[0].cfg, list(self.params.values())
        self.opt = torch.optim.Adam(
            leaves, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2), fused=self.rt.is_cuda or None
        )
        if opt_states is not None:
            for p, state in zip(leaves, opt_states):
                if state:
                    self.opt.state[p] = state
        self._linked = False  # Adam makes its state at its first step; the trainers are pointed at it after

    def release(self, k: int) -> None:
        """Seed `k` leaves the stack: its model gets weights (and averages) of its own, the others are
        restacked with their optimizer state. Call it before the seed's trainer restores its best state."""
        keep = [i for i in range(self.size) if i != k]
        leaving = self.trainers[k]
        self._link(k, own=True)
        for n, stacked in self.params.items():
            _point(leaving.model, n, stacked.detach()[k].clone(), parameter=True)
        for n, stacked in self.buffers.items():
            _point(leaving.model, n, stacked[k].clone(), parameter=False)
        if self.ema is not None:
            leaving.ema = [e[k].clone() for e in self.ema]
        # the leaving model's parameters train no more, but others may (a restored run); give them grads again
        for p in leaving.model.parameters():
            p.requires_grad_(True)
        own_params = list(leaving.model.parameters())
        assert leaving.opt is not None
        leaving.opt.state = defaultdict(
            dict, {new: leaving.opt.state[old] for new, old in zip(own_params, leaving.opt.param_groups[0]["params"])}
        )
        leaving.opt.param_groups[0]["params"] = own_params
        if not keep:
            self.trainers = []
            return
        index = torch.tensor(keep, device=self.rt.device)
        states = []
        for leaf in self.params.values():
            state = self.opt.state.get(leaf, {})
            states.append(
                {
                    key: (v.index_select(0, index).clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                    for key, v in state.items()
                }
            )
        emas = [[e[i] for e in self.ema] for i in keep] if self.ema is not None else [None] * len(keep)
        models = [self.trainers[i].model for i in keep]
        self.trainers = [self.trainers[i] for i in keep]
        self._restack(models, emas, states)

    # --- the step ---------------------------------------------------------------------
    def step(self, windows: TrainWindows, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One optimizer step of every seed, seed k on `batches[k]` (its ends and starts of windows of
        one size); each trainer's loss, norm and target accumulators are added to as its own step does."""
        if len(batches) != self.size:
            raise ValueError(f"{len(batches)} batches for {self.size} stacked seeds")
        model = self.trainers[0].model
        window = torch.stack([windows.gather(e, s, model.causal) for e, s in batches])
        self._template.num_targets = windows.targets_per_sample
        lr = self.trainers[0].opt.param_groups[0]["lr"] if self.trainers[0].opt else None
        for group in self.opt.param_groups:  # the trainers' schedules (one config: one schedule)
            group["lr"] = float(lr) if lr is not None else group["lr"]
        names = [f"model.{n}" for n in self.params]
        buffer_names = [f"model.{n}" for n in self.buffers]

        def pairs(params, buffers, w):
            state = {**dict(zip(names, params)), **dict(zip(buffer_names, buffers))}
            return functional_call(self._template, state, (w,))

        self.opt.zero_grad(set_to_none=True)
        with self.rt.autocast():
            hidden, weight, targets = vmap(pairs, randomness="different")(
                tuple(self.params.values()), tuple(self.buffers.values()), window
            )
            losses = [
                full_softmax_ce(hidden[k], weight[k], targets[k], kernel=self.rt.kernel) for k in range(self.size)
            ]
        torch.stack(losses).sum().backward()
        for name, row in self._padding_rows.items():
            grad = self.params[name].grad
            if grad is not None:
                grad[:, row] = 0
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        # each seed's norm over all its gradients, as clip_grad_norm_ computes one model's
        norms = torch.stack([g.flatten(1).float().norm(dim=1) for g in grads]).norm(dim=0)
        coef = (self.clip / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
        self.opt.step()
        if not self._linked:
            for i in range(self.size):
                self._link(i)
            self._linked = True
        if self.ema is not None:
            self.ema_update(self.ema, [p.detach() for p in self.params.values()], None)
        for k, trainer in enumerate(self.trainers):
            acc = trainer.accumulators()
            count = (targets[k] >= 0).sum()
            acc["loss"] += losses[k].detach() * count
            acc["norm"] += norms[k].detach()
            acc["targets"] += count


class StackedSteps:
    """Where the seeds of one stack, each training in a thread of its own through its own trainer
    (validation, early stopping, callbacks, its own MLflow run), meet for every optimizer step: the
    last seed to hand in its batch runs the stacked step for all of them. The stack is built at the
    first step, once every seed has joined or left; a seed whose training ends in any way leaves
    (`leave`), the others train on without it. `seeds`: how many seeds will join or leave."""

    def __init__(self, seeds: int):
        self._cond = threading.Condition()
        self._unjoined = seeds
        self._active: dict[int, Trainer] = {}  # seed -> trainer, in joining order
        self._pending: dict[int, tuple[TrainWindows, torch.Tensor, torch.Tensor]] = {}
        self._stack: SeedStack | None = None
        self._round = 0
        self._failed: BaseException | None = None
        self._left: set[int] = set()
        #: why the seeds could not be stacked (then each steps alone, in its own thread)
        self.refused: str | None = None
        self._own_steps: dict[int, Callable[[torch.Tensor, torch.Tensor], None]] = {}

    def member(self, seed: int) -> Callback:
        """The callback that makes seed `seed`'s trainer step through this stack."""
        return _StackMember(self, seed)

    def join(self, seed: int, trainer: Trainer) -> None:
        with self._cond:
            self._unjoined -= 1
            self._active[seed] = trainer
            trainer.train_with(lambda windows, ends, starts: self._step(seed, windows, ends, starts))
            self._cond.notify_all()

    def leave(self, seed: int) -> None:
        """Seed `seed` trains no more (or never started): its weights leave the stack. Idempotent."""
        with self._cond:
            if seed in self._active:
                if self._stack is not None:
                    self._stack.release(self._stack.trainers.index(self._active[seed]))
                del self._active[seed]
                self._pending.pop(seed, None)
            elif seed not in self._left:
                self._unjoined -= 1
            self._left.add(seed)
            if self._ready():
                try:
                    self._run()
                except BaseException as exc:  # noqa: BLE001 - the waiting seeds raise it
                    self._failed = exc
            self._cond.notify_all()

    def _ready(self) -> bool:
        if self.refused is not None:
            return False
        return self._unjoined <= 0 and bool(self._active) and set(self._pending) == set(self._active)

    def _run(self) -> None:
        """The stacked step of every active seed (under the lock; the other seeds are waiting)."""
        if self._stack is None:
            try:
                self._stack = SeedStack(list(self._active.values()))
            except ConfigError as exc:  # e.g. a family vmap cannot batch: its seeds step alone
                self.refused = str(exc)
                return
        order = {id(t): s for s, t in self._active.items()}
        seeds = [order[id(t)] for t in self._stack.trainers]
        windows = self._pending[seeds[0]][0]
        batches = [self._pending[s][1:] for s in seeds]
        self._pending.clear()
        self._round += 1
        self._stack.step(windows, batches)

    def _step(self, seed: int, windows: TrainWindows, ends: torch.Tensor, starts: torch.Tensor) -> None:
        with self._cond:
            if self._failed is not None:
                raise RuntimeError(f"the stacked step failed: {self._failed}") from self._failed
            if self.refused is None:
                self._pending[seed] = (windows, ends, starts)
                waiting_for = self._round
                if self._ready():
                    try:
                        self._run()
                    except BaseException as exc:
                        self._failed = exc
                        raise
                    finally:
                        self._cond.notify_all()
                while self._round == waiting_for and self._failed is None and self.refused is None:
                    self._cond.wait()
                if self._failed is not None and self._round == waiting_for:
                    raise RuntimeError(f"the stacked step failed: {self._failed}") from self._failed
                if self.refused is None:
                    return
            own = self._own_steps.get(seed)
        if own is None:  # this seed's own step from now on (outside the lock: the seeds step in parallel)
            own = self._own_steps[seed] = self._active[seed].own_step(windows)
        own(ends, starts)


class _StackMember(Callback):
    def __init__(self, steps: StackedSteps, seed: int):
        self.steps, self.seed = steps, seed

    def on_train_start(self, trainer: Trainer) -> None:
        self.steps.join(self.seed, trainer)

    def on_train_end(self, trainer: Trainer, result) -> None:
        self.steps.leave(self.seed)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.steps.leave(self.seed)
