"""One experiment, assembled in one place: data -> split -> model -> runtime -> trainer -> test.

`assemble(cfg, data)` turns a run config and a prepared dataset into what the training loop
and the evaluator work on (RecBole's data_preparation + run_recbole): the runtime, the seeded
random-number generators, the leave-two-out split (refused when it cannot be evaluated), the
training popularity, the flat item tensor on the device, the model (built, or a loaded one),
the `Recommender` that scores it, the training windows and the CUDA-graph decision.
`Experiment.run(trainer)` fits, then scores the test and cold-start cases with the best weights
and hands the `TrainResult` to the callbacks. `train(cfg, data, callbacks, resume)` does both:
`xlrec train`, sweep trials and the benchmarks call it; `xlrec evaluate` assembles around a
loaded model and only evaluates.

It sits above xlrec.training (the loop and the evaluator know nothing of datasets, splits or
the model registry) and below the entry points (cli, platform, sweeps).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from xlrec.data_prep import PreparedDataset, Split, make_split, shuffled_training_items
from xlrec.data_prep.split import item_popularity, training_positions
from xlrec.device import Runtime, eval_batch_size, select_runtime, use_compile, use_cuda_graph
from xlrec.rec_models import SequentialRecommender, build_model
from xlrec.rec_models.pop import DemographicRec, GenreProfileRec, PopRec
from xlrec.settings import TrainConfig
from xlrec.training.batches import TrainWindows
from xlrec.training.evaluate import EvalResult, check_evaluable, evaluate
from xlrec.training.events import Callback, TrainResult
from xlrec.training.recommender import Recommender
from xlrec.training.trainer import Trainer

COLD_METRICS = ("recall@10", "mrr@10", "ndcg@10")


@dataclass
class Experiment:
    cfg: TrainConfig
    data: PreparedDataset
    runtime: Runtime
    split: Split
    popularity: np.ndarray  # training interactions per item id (index 0 = padding)
    items: torch.Tensor  # every user's items back to back, on the device
    starts: torch.Tensor  # each user's first flat position, on the device
    model: SequentialRecommender
    recommender: Recommender
    windows: TrainWindows
    graphed: bool  # the training step replays as a CUDA graph
    compiled: bool = False  # the training step calls the encoder through torch.compile

    def trainer(self, callbacks: list[Callback] | None = None) -> Trainer:
        return Trainer(self.cfg, self.model, self.runtime, callbacks, graphed=self.graphed)

    @property
    def eval_batch(self) -> int:
        return eval_batch_size(self.runtime, self.cfg.eval_batch_size)

    def evaluate(self, which: str = "val") -> EvalResult:
        """Score the split's "val", "test" or "cold" cases (beyond-accuracy metrics except on val)."""
        cases = {"val": self.split.val, "test": self.split.test, "cold": self.split.cold_test}[which]
        return evaluate(
            self.recommender,
            self.items,
            self.starts,
            cases,
            self.popularity if which != "val" else None,
            self.eval_batch,
        )

    def cold_start_metrics(self) -> dict[str, Any]:
        """Cold-start group: the model and the fallbacks a dataset allows (popularity always; the genre
        profile where items have genres, demographic neighbours where users have demographics),
        evaluated separately."""
        cold, seqs = self.split.cold_test, self.data.seqs
        if len(cold) == 0:
            return {"users": 0}
        fallbacks: dict[str, SequentialRecommender] = {"pop": PopRec(seqs.num_items, popularity=self.popularity)}
        if any(seqs.genres):
            fallbacks["genre"] = GenreProfileRec(seqs.num_items, seqs.genres, self.popularity)
        if any(seqs.groups):
            owners, pos = training_positions(self.split)
            fallbacks["demographic"] = DemographicRec(
                seqs.num_items, seqs.groups, owners, seqs.items[pos], self.popularity
            )
        out: dict[str, Any] = {"users": len(cold), "model": self._cold(self.recommender)}
        for name, fallback in fallbacks.items():
            out[name] = self._cold(replace(self.recommender, model=fallback.to(self.runtime.device)))
        return out

    def _cold(self, rec: Recommender) -> dict[str, float]:
        res = evaluate(rec, self.items, self.starts, self.split.cold_test, None, self.eval_batch)
        return {k: res.metrics[k] for k in COLD_METRICS}

    def run(self, trainer: Trainer) -> TrainResult:
        """Fit, then score the test and cold-start cases with the best weights. The callbacks hear
        the start, every epoch, and the result or the failure of any step (the test included)."""
        t_start = time.perf_counter()
        trainer.notify("on_train_start")
        try:
            stopped = trainer.fit(self.windows, lambda: self.evaluate("val").metrics)
            test, cold = self.evaluate("test"), self.cold_start_metrics()
        except BaseException as exc:
            trainer.notify("on_exception", exc)
            raise
        p = trainer.progress
        result = TrainResult(
            config=self.cfg,
            params=trainer.params,
            epochs_run=len(p.history),
            best_epoch=p.best_epoch,
            best_val=p.best_val,
            test=test,
            cold=cold,
            history=p.history,
            total_time_s=time.perf_counter() - t_start,
            stopped_reason=stopped,
            popularity=self.popularity,
        )
        trainer.notify("on_train_end", result)
        return result


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# Runs that share a process (xlrec.sweeps.trial_group) assemble one at a time: seeding the
# process's generators and drawing the model's weights must not interleave with another run's.
_ASSEMBLING = threading.Lock()


def assemble(
    cfg: TrainConfig, data: PreparedDataset, runtime: Runtime | None = None, model: SequentialRecommender | None = None
) -> Experiment:
    """Everything one run of `cfg` on `data` needs, in the order that makes runs reproducible:
    the generators are seeded before the model's weights are drawn. `runtime` and `model`
    replace the selected runtime and the freshly built model (a loaded model to evaluate)."""
    with _ASSEMBLING:
        return _assemble(cfg, data, runtime, model)


def _assemble(
    cfg: TrainConfig, data: PreparedDataset, runtime: Runtime | None, model: SequentialRecommender | None
) -> Experiment:
    rt = runtime or select_runtime(cfg.device, cfg.kernel, cfg.amp)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    split = make_split(data.seqs, cfg)
    check_evaluable(data.name, data.seqs, split, cfg.cold_start_threshold, cfg.exclude_seen)
    popularity = item_popularity(data.seqs, split)
    items = torch.as_tensor(data.seqs.items, device=rt.device)
    if model is None:
        model = build_model(cfg.model, data.seqs.num_items, cfg, rt.kernel)
    if isinstance(model, PopRec):  # the one model fitted by counting: this split's training counts
        model.set_popularity(popularity)
    model.to(rt.device)
    compiled = use_compile(rt, cfg.compile, model.compilable and model.trainable)
    if compiled:
        model.compile_training()
    return Experiment(
        cfg=cfg,
        data=data,
        runtime=rt,
        split=split,
        popularity=popularity,
        items=items,
        starts=torch.as_tensor(split.starts, device=rt.device),
        model=model,
        recommender=Recommender(model, rt, cfg.max_len, cfg.exclude_seen),
        windows=TrainWindows(
            torch.as_tensor(shuffled_training_items(data.seqs.items, split, cfg.seed), device=rt.device)
            if cfg.shuffle_train_sequences
            else items,
            split,
            cfg.max_len,
            cfg.sample_mode,
            cfg.window_stride or cfg.max_len,
        ),
        graphed=use_cuda_graph(rt, cfg.cuda_graph, model.graph_capturable, cfg.sample_mode),
        compiled=compiled,
    )


def train(
    cfg: TrainConfig,
    data: PreparedDataset,
    callbacks: list[Callback] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainResult:
    """Assemble and run one training run; `resume` is a `Trainer.state()` to continue from
    (a sweep trial restarted from its checkpoint)."""
    exp = assemble(cfg, data)
    trainer = exp.trainer(callbacks)
    if resume is not None:
        trainer.load_state(resume)
    return exp.run(trainer)
