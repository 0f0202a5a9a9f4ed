"""A grid cell's seeds trained side by side in one trial process (the spec's `group_seeds`).

Why: without CUDA MPS (a GPU setting we may not change on lent hosts) a GPU runs one process's
kernels at a time, while the kernels of one process's CUDA streams run side by side. The paper's
grid at the ML-1M defaults trains in steps of small kernels (64 windows), which leave most of an
H200 idle; its runs do more per second as threads of one process than as processes
(benchmarks/stacking.py, docs/results/grids.md "Seeds in one process"). Ray Tune runs one trial per
process, so the cell's seeds become one trial and this module runs them: a thread and a CUDA
stream per seed, training through the same `train` as a lone trial.

Each seed stays a run of its own: its own MLflow run (trial key `<trial id>-s<seed>`, tagged with
the group), metrics, logged model and registry version, and its own file in the trial's
checkpoint, from which a retried or resumed trial continues each seed where it was. Tune hears one
trial that reports every seed's epochs (`member_seed`) and finished seeds (`member_finished`, a
progress line each), then a last report naming every seed's run (`member_runs`), from which the
driver's trials table has a row per seed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch
from ray import tune

from xlrec.device import select_runtime, thread_stream
from xlrec.sweeps.trial import (
    METRIC,
    epoch_report,
    final_report,
    resolve_trial,
    result_report,
    resume_point,
    trial_tracker,
)
from xlrec.training.events import Callback
from xlrec.training.footprint import check_fits
from xlrec.training.stacked import StackedSteps, config_refusal


def member_runs_text(runs: dict[int, str]) -> str:
    """`seed=run_id` pairs as one Tune metric (a flat string survives Tune's result handling)."""
    return ",".join(f"{seed}={run}" for seed, run in sorted(runs.items()))


def parse_member_runs(text: str | None) -> dict[int, str]:
    pairs = (item.partition("=") for item in (text or "").split(",") if item)
    return {int(seed): run for seed, _, run in pairs if run}


class Group:
    """What the seeds of one trial share: their runs, their latest states and the one Tune session."""

    def __init__(self, keep: Path):
        self.keep = keep  # each seed's latest trainer state, `seed-<seed>.pt`
        self.lock = threading.Lock()  # one Tune report at a time
        self.runs: dict[int, str] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self.stopping = False  # Tune stopped the trial: the other seeds end too

    def save(self, seed: int, state: dict[str, Any], run_id: str) -> None:
        tmp = self.keep / f"seed-{seed}.pt.tmp"
        torch.save({"trainer": state, "mlflow_run_id": run_id}, tmp)
        os.replace(tmp, self.keep / f"seed-{seed}.pt")

    def report(self, metrics: dict[str, Any], checkpoint: bool = False) -> None:
        with self.lock:
            metrics = {**metrics, "member_runs": member_runs_text(self.runs)}
            try:
                if not checkpoint:
                    tune.report(metrics)
                    return
                with tempfile.TemporaryDirectory() as snap:
                    # hard links: a snapshot of every seed's latest file, which a seed replacing its
                    # file (os.replace, a new inode) while Tune copies this one leaves intact
                    for f in self.keep.glob("seed-*.pt"):
                        try:
                            os.link(f, Path(snap) / f.name)
                        except OSError:
                            shutil.copy2(f, Path(snap) / f.name)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(snap))
            except SystemExit:
                self.stopping = True
                raise


class SeedReporter(Callback):
    """One seed's side of the group's reporting (TuneReporter's, for a run that shares its trial)."""

    def __init__(self, group: Group, seed: int, tracker):
        self.group, self.seed, self.tracker = group, seed, tracker

    def on_train_start(self, trainer) -> None:
        self.group.runs[self.seed] = self.tracker.run_id  # the tracker, before this, opened it

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        if self.group.stopping:
            raise SystemExit("the trial was stopped")  # its run ends KILLED, like the seed Tune stopped
        self.group.save(self.seed, trainer.state(), self.tracker.run_id)
        self.group.report({**epoch_report(record, self.tracker), "member_seed": self.seed}, checkpoint=True)

    def on_train_end(self, trainer, result) -> None:
        final = result_report(result, self.tracker)
        self.group.finals[self.seed] = final
        self.group.report({**final, "trial_finished": False, "member_finished": self.seed})


def run_group(spec: dict[str, Any], config: dict[str, Any]) -> None:
    """Train every seed of the trial's cell at once, one thread each; report the group's end, or
    raise the first seed's error once every seed has stopped (Tune then retries the trial, and the
    finished seeds are not trained again)."""
    from xlrec.data_prep import prepare_config
    from xlrec.experiment import train
    from xlrec.sweeps.trial_config import member_configs

    members = member_configs(config)
    cfgs = [resolve_trial(spec, m) for m in members]  # each seed checked to fit alone
    if len(cfgs) > 1:  # and the cell's seeds together, on one device in one process
        check_fits(
            cfgs[0],
            select_runtime(cfgs[0].device, cfgs[0].kernel, cfgs[0].amp).device,
            what=f"This cell's {len(cfgs)} seeds in one trial process",
            runs=len(cfgs),
        )
    data = prepare_config(cfgs[0])  # one dataset for every seed
    trial_id = tune.get_context().get_trial_id()
    seeds = [cfg.seed for cfg in cfgs]
    group = Group(Path(tempfile.mkdtemp(prefix="xlrec-group-")))
    saved: dict[int, dict[str, Any]] = {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            for f in Path(ckpt_dir).glob("seed-*.pt"):
                seed = int(f.name[len("seed-") : -len(".pt")])
                saved[seed] = torch.load(f, map_location="cpu", weights_only=True)
                shutil.copy2(f, group.keep / f.name)  # the next checkpoint still holds it
    tags = {"xlrec.trial_group": trial_id, "xlrec.group_seeds": ",".join(map(str, seeds))}
    errors: dict[int, BaseException] = {}
    steps = None
    if spec.get("stack_seeds"):
        why = config_refusal(cfgs[0], data.seqs.num_items)
        tags["xlrec.stacked_seeds"] = f"no: {why}" if why else "yes"
        if why:
            print(f"[xlrec] stack_seeds: {why}; its seeds train side by side instead", file=sys.stderr)
        else:
            steps = StackedSteps(len(cfgs))
            for cfg in cfgs:  # a stacked step is one eager step for all seeds
                cfg.cuda_graph = cfg.compile = False

    def one(cfg, member: dict[str, Any]) -> None:
        key = f"{trial_id}-s{cfg.seed}"
        try:
            state, run, done = resume_point(spec, key, saved.get(cfg.seed))
            if done is not None and run is not None:  # finished in an earlier attempt: reported, not trained again
                group.runs[cfg.seed] = run
                group.finals[cfg.seed] = final_report(done, run)
                group.report({**group.finals[cfg.seed], "trial_finished": False, "member_finished": cfg.seed})
                return
            tracker = trial_tracker(spec, cfg, data, member, key, state, run, tags)
            callbacks: list[Callback] = [tracker, SeedReporter(group, cfg.seed, tracker)]
            if steps is not None:  # one stacked step on one stream: no stream per seed
                train(cfg, data, [*callbacks, steps.member(cfg.seed)], resume=state)
                return
            with thread_stream(cfg.device):
                train(cfg, data, callbacks, resume=state)
        except BaseException as exc:  # noqa: BLE001 - handed to the trial's thread below
            errors[cfg.seed] = exc
        finally:
            if steps is not None:
                steps.leave(cfg.seed)  # the others train on without this seed

    threads = [
        threading.Thread(target=one, args=(cfg, member), name=f"xlrec-seed-{cfg.seed}")
        for cfg, member in zip(cfgs, members)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        shutil.rmtree(group.keep, ignore_errors=True)
    if steps is not None and steps.refused:
        print(f"[xlrec] stack_seeds: {steps.refused}; the seeds trained side by side instead", file=sys.stderr)
    if errors:
        # an error before a stop: the stop follows from it (SystemExit only when Tune stopped the trial)
        first = next((e for e in errors.values() if not isinstance(e, SystemExit)), next(iter(errors.values())))
        raise first
    best = max(group.finals.values(), key=lambda f: f.get(METRIC, 0.0))
    with group.lock:
        tune.report({**best, "trial_finished": True, "member_runs": member_runs_text(group.runs)})
