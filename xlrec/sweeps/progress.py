"""What a sweep prints while it runs: one line when it starts, one per finished, pruned or
failed trial, a line on the running trials whenever a minute passed without one, one at the end.

Tune runs quietly (verbose=0, worker logs not forwarded), because its own tables are wide and
name trials by id; without these lines a 20-minute sweep printed nothing between Ray's banner
and the final JSON. A Tune `Callback` runs in the driver as results arrive, so the lines come
as trials end, on stderr (stdout keeps only the final JSON line).
"""

from __future__ import annotations

import time

from ray.tune import Callback

from xlrec.platform.tracking.uri import ui_url
from xlrec.redact import redact
from xlrec.settings import VAL_SELECTION_KEY
from xlrec.sweeps.naming import duration, say, settings_text
from xlrec.sweeps.spec import METRICS, SweepSpec
from xlrec.sweeps.state import SweepState
from xlrec.sweeps.trial_config import member_configs, trial_overrides


def _error_line(trial) -> str:
    """The trial's own exception: Tune has just written it beside the trial (pickled, and as
    text whose last `Type: message` line names it); its storage copy is synced later."""
    try:
        import cloudpickle

        with open(trial.pickled_error_file, "rb") as f:
            exc = cloudpickle.load(f)
        cause = getattr(exc, "cause", None)
        cause = cause if isinstance(cause, BaseException) else exc
        return redact(f"{type(cause).__name__}: {cause}").splitlines()[0][:240]
    except Exception:
        pass
    try:
        with open(trial.error_file) as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except Exception:
        lines = []
    for line in reversed(lines):
        head, sep, message = line.partition(": ")
        if sep and " " not in head:  # e.g. xlrec.training.events.TrainingDiverged: Training loss became nan
            return redact(f"{head.rsplit('.', 1)[-1]}: {message}")[:240]
    return "see the trial's run in MLflow for the reason"


# the longest a running sweep stays silent: a line on the running trials comes at least this often
QUIET_S = 60.0


def is_out_of_memory(error: str) -> bool:
    """A trial's error line that says its device ran out of memory (torch's CUDA or host allocator)."""
    return error.startswith(("OutOfMemoryError", "torch.OutOfMemoryError")) or "out of memory" in error.lower()


def out_of_memory_hint(runs: int, gpus_per_trial: float, name: str) -> str | None:
    """What to do when trials sharing GPUs ran out of memory: Ray shares a GPU by fractions of its
    count, not of its memory, so `gpus_per_trial` 0.0625 lets 16 trials onto a card whatever they need."""
    if not runs or not 0 < gpus_per_trial < 1:
        return None
    return (
        f"{runs} run(s) failed out of GPU memory with up to {int(1 / gpus_per_trial)} trials sharing a GPU "
        f"(gpus_per_trial {gpus_per_trial:g}; Ray divides a GPU by count, not by memory): raise gpus_per_trial "
        f"or lower max_concurrent, then `xlrec sweep --name {name} --resume` re-runs the failed trials in their runs"
    )


class SweepProgress(Callback):
    """Prints a progress line per ended trial: outcome, sampled settings, its score, the best so
    far, elapsed time and an estimate of the time left (what the running runs have left at their
    own pace, then a mean run per wave of the runs not started); and, whenever QUIET_S passed
    without a line, one on the running trials (each one's epoch and validation score)."""

    def __init__(
        self,
        total: int,
        concurrency: int = 1,
        metric: str = VAL_SELECTION_KEY,
        runs_per_trial: int = 1,
        budget_s: float | None = None,
    ):
        self.total = total  # runs: trials, or a grouped grid's cells x seeds
        self.budget_s = budget_s  # a search's time budget: it ends then, whatever `total` allows
        self.out_of_memory = 0  # runs whose trial failed for want of GPU (or host) memory
        self.runs_per_trial = runs_per_trial  # the seeds a grouped trial trains (xlrec.sweeps.trial_group)
        self._seeds_done: dict[str, set[int]] = {}
        self.metric, self.label = metric, METRICS[metric]
        self.started = time.monotonic()
        self._start: dict[str, float] = {}
        self._durations: list[float] = []
        # per running run (trial id, seed of a grouped trial or None): [epoch, epochs seen, their seconds]
        self._pace: dict[tuple[str, int | None], list[float]] = {}
        self._epochs_run: dict[str | None, list[int]] = {}  # epochs of each model's finished runs
        self._concurrency = max(1, concurrency)  # what the cluster fits; raised if more are seen running
        self.best: tuple[float, int, str] | None = None  # (score, trial number, settings)
        self.outcomes: dict[str, int] = {"finished": 0, "pruned": 0, "failed": 0}
        self._ended_epochs: dict[str | None, list[int]] = {}  # model -> epochs of its ended runs, pruned too
        self._latest: dict[tuple[str, int | None], tuple[int, float | None]] = {}  # run -> (epoch, score)
        self._said = self.started  # when the last line was printed

    # --- Tune hooks ---------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._start.setdefault(trial.trial_id, time.monotonic())
        running = sum(t.status == "RUNNING" for t in trials)
        self._concurrency = max(self._concurrency, running)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        """An epoch's pace, or a seed of a grouped trial finished: its own line, as a trial's."""
        self._track(trial, result)
        seed = result.get("member_finished")
        if seed is None:
            return
        self._seeds_done.setdefault(trial.trial_id, set()).add(int(seed))
        config, number = self._member(trials, trial, int(seed))
        score = result.get(self.metric)
        if score is not None and (self.best is None or score > self.best[0]):
            self.best = (float(score), number, settings_text(config))
        self._report(trials, trial, number, "finished", score, config)
        self.outcomes["finished"] += 1

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._forget(trial)
        if self._grouped(trial):  # its seeds had their lines as they finished
            return
        result = trial.last_result or {}
        number = self._number(trials, trial)
        score = result.get(self.metric)
        if result.get("trial_finished"):
            outcome, detail = "finished", ""
            if score is not None and (self.best is None or score > self.best[0]):
                self.best = (float(score), number, settings_text(trial.config))
        else:
            outcome, detail = "pruned", f" at epoch {int(result.get('epoch', 0))}"
        self._report(trials, trial, number, outcome + detail, score)
        self.outcomes[outcome] += 1

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._forget(trial)
        error = _error_line(trial)
        runs = 1
        if not self._grouped(trial):
            self._report(trials, trial, self._number(trials, trial), f"failed ({error})", None)
            self.outcomes["failed"] += 1
        else:
            done = self._seeds_done.get(trial.trial_id, set())
            runs = 0
            for seed in (trial.config.get("cell") or {})["seeds"]:
                if seed not in done:
                    config, number = self._member(trials, trial, seed)
                    self._report(trials, trial, number, f"failed ({error})", None, config)
                    self.outcomes["failed"] += 1
                    runs += 1
        if is_out_of_memory(error):
            self.out_of_memory += runs

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        """Tune's loop turns many times a second: a line on the running trials when QUIET_S passed."""
        now = time.monotonic()
        if now - self._said < QUIET_S or not self._latest:
            return
        running = []
        for (tid, seed), (epoch, score) in sorted(self._latest.items(), key=lambda kv: kv[0][0]):
            trial = next((t for t in trials if t.trial_id == tid), None)
            if trial is None or trial.status != "RUNNING":
                continue
            number = self._member(trials, trial, seed)[1] if seed is not None else self._number(trials, trial)
            shown = f" {self.label} {score:.4f}" if score is not None else ""
            running.append(f"trial {number} epoch {epoch}{shown}")
        if not running:
            return
        done = sum(self.outcomes.values())
        parts = ["running: " + ", ".join(running), self._done_text(done), f"elapsed {duration(now - self.started)}"]
        if self.budget_s:
            parts.append(self._budget_text(now))
        elif self._durations and self.total > done:
            parts.append(f"~{duration(self._time_left(trials, None, now, self.total - done))} left")
        say("  ".join(parts))
        self._said = now

    # --- pace -----------------------------------------------------------------------
    def _track(self, trial, result: dict) -> None:
        """A run's epochs and their time; a finished run's epoch count, under its model (runs of
        one model stop after similar numbers of epochs; a grid's models differ by 2-3x)."""
        seed = result.get("member_seed", result.get("member_finished"))
        key = (trial.trial_id, None if seed is None else int(seed))
        if "epoch_time_s" in result:
            pace = self._pace.setdefault(key, [0, 0, 0.0])
            pace[0], pace[1], pace[2] = (
                int(result.get("epoch", pace[0] + 1)),
                pace[1] + 1,
                pace[2] + result["epoch_time_s"],
            )
            self._latest[key] = (int(pace[0]), result.get(self.metric))
        if result.get("member_finished") is not None or (result.get("trial_finished") and not self._grouped(trial)):
            model = trial_overrides(trial.config).get("model")
            self._epochs_run.setdefault(model, []).append(int(result.get("epoch", 0)))
            self._ended_epochs.setdefault(model, []).append(int(result.get("epoch", 0)))
            self._pace.pop(key, None)
            self._latest.pop(key, None)

    def _forget(self, trial) -> None:
        for key in [k for k in self._pace if k[0] == trial.trial_id]:
            if not (trial.last_result or {}).get("trial_finished"):  # pruned or failed at its epoch
                model = trial_overrides(trial.config).get("model")
                self._ended_epochs.setdefault(model, []).append(int(self._pace[key][0]))
            del self._pace[key]
        for key in [k for k in self._latest if k[0] == trial.trial_id]:
            del self._latest[key]

    def _run_left(self, trial, seed: int | None, now: float, mean: float) -> float:
        """A running run's time left, at its own mean epoch time: the mean epochs of the ended runs
        of its model (any model's, if none of its own has ended) that ran longer than it has, less
        its own, at least one. Pruned runs count as what they ran: a run past ASHA's first rungs is
        expected to go as far as the runs that passed them. Before its first epoch, or before any
        run ended: a mean run less its age."""
        pace = self._pace.get((trial.trial_id, seed))
        model = trial_overrides(trial.config).get("model")
        ended = self._ended_epochs.get(model) or [e for runs in self._ended_epochs.values() for e in runs]
        if pace is None or not pace[1] or not ended:
            return max(0.0, mean - (now - self._start.get(trial.trial_id, now)))
        epoch, seen, seconds = pace
        longer = [e for e in ended if e > epoch]
        expected = sum(longer) / len(longer) if longer else epoch + 1
        return max(1.0, expected - epoch) * seconds / seen

    # --- lines --------------------------------------------------------------------
    def _number(self, trials: list, trial) -> int:
        return next((i + 1 for i, t in enumerate(trials) if t is trial or t.trial_id == trial.trial_id), 0)

    @staticmethod
    def _grouped(trial) -> bool:
        return "seeds" in ((trial.config or {}).get("cell") or {})

    def _member(self, trials: list, trial, seed: int) -> tuple[dict, int]:
        """A grouped trial's seed: its trial config and its number among the sweep's runs."""
        members = member_configs(trial.config)
        at = next(i for i, m in enumerate(members) if m["cell"]["seed"] == seed)
        return members[at], (self._number(trials, trial) - 1) * self.runs_per_trial + at + 1

    def _report(
        self, trials: list, trial, number: int, outcome: str, score: float | None, config: dict | None = None
    ) -> None:
        now = time.monotonic()
        self._durations.append(now - self._start.get(trial.trial_id, self.started))
        ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials) if self.runs_per_trial == 1 else 0
        done = max(ended, sum(self.outcomes.values()) + 1)
        of = "" if self.budget_s else f"/{self.total}"
        parts = [f"trial {number}{of} {outcome}", settings_text(config or trial.config)]
        if score is not None:
            parts.append(f"{self.label} {score:.4f}")
        parts.append(f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -")
        parts.append(self._done_text(done))
        parts.append(f"elapsed {duration(now - self.started)}")
        left = self.total - done
        if self.budget_s:
            parts.append(self._budget_text(now))
        elif left > 0:
            parts.append(f"~{duration(self._time_left(trials, trial, now, left))} left")
        say("  ".join(p for p in parts if p))
        self._said = now

    def _done_text(self, done: int) -> str:
        return f"{done} done (at most {self.total})" if self.budget_s else f"{done}/{self.total} done"

    def _budget_text(self, now: float) -> str:
        assert self.budget_s is not None
        return f"time budget: {duration(self.budget_s - (now - self.started))} left"

    def _time_left(self, trials: list, ended, now: float, left: int) -> float:
        """When the last run ends, scheduled as Tune runs them: each running run ends after what it
        has left (`_run_left`), and each run not started yet takes the next free slot of the
        `concurrency` and lasts a mean run. `ended` is the trial whose line this is (Tune still
        calls it running). The mean run is over every started run, the running ones at their
        projected length: the runs that end first are the short (pruned) ones, so a mean over the
        ended runs alone is low until the sweep's end."""
        ended_mean = sum(self._durations) / len(self._durations)
        running: list[float] = []
        projected: list[float] = []
        for t in trials:
            if t.status != "RUNNING" or (t is ended and not self._grouped(t)):
                continue
            age = now - self._start.get(t.trial_id, now)
            if self._grouped(t):
                done = self._seeds_done.get(t.trial_id, set())
                seeds: list[int | None] = [s for s in t.config["cell"]["seeds"] if s not in done]
            else:
                seeds = [None]
            for seed in seeds:
                rest = self._run_left(t, seed, now, ended_mean)
                running.append(rest)
                projected.append(age + rest)
        running = running[:left]
        mean = (sum(self._durations) + sum(projected)) / (len(self._durations) + len(projected))
        slots = sorted(running + [0.0] * max(0, self._concurrency - len(running)))
        for _ in range(left - len(running)):  # runs not started: each on the slot that frees first
            slots[0] += mean
            slots.sort()
        return max(slots, default=0.0)

    def summary(self, counts: dict[str, int] | None = None) -> str:
        """The closing line. `counts` (finished/pruned/failed of the whole sweep, from its results)
        win over this driver's own tallies: a resumed sweep's earlier trials ended under another driver."""
        o = counts or self.outcomes
        text = (
            f"sweep done in {duration(time.monotonic() - self.started)}: {o['finished']} finished, "
            f"{o['pruned']} pruned, {o['failed']} failed"
        )
        if self.best:
            text += f"; best {self.label} {self.best[0]:.4f} (trial {self.best[1]}: {self.best[2]})"
        return text


def start_line(
    spec: SweepSpec, state: SweepState, uri: str, experiment_id: str, parent_id: str, concurrency: int
) -> str:
    """What runs, where, and where to watch it."""
    if spec.mode == "search":
        models = spec.model if len(spec.models) == 1 else f"{'/'.join(spec.models)} (sampled)"
        pruning = "ASHA pruning" if spec.pruning else "no pruning"
        budget = f" within {duration(spec.time_budget_s)}" if spec.time_budget_s else ""
        what = (
            f"{'up to ' if budget else ''}{spec.trials} trials of {models} on {spec.dataset}{budget} (Optuna TPE "
            f"search, {pruning}, {spec.epochs_text()} each)"
        )
    else:
        axes = "".join(
            f", {k} {'/'.join(dict.fromkeys(str(c[k]) for c in spec.grid_cells() if k in c))}" for k in spec.axes()
        )
        what = (
            f"{spec.run_count()} grid trials ({', '.join(spec.models)} on {', '.join(spec.datasets)}{axes}, "
            f"seeds {'/'.join(map(str, spec.seeds))}, {spec.epochs_text()} each)"
        )
    line = (
        f"sweep {spec.name}: {what}, {concurrency} at a time; MLflow experiment {spec.experiment!r}, "
        f"parent run {spec.name!r}: {redact(ui_url(uri, experiment_id, parent_id))}"
    )
    if state.served_db:
        line += " (served only while the sweep runs; the last line says how to open it afterwards)"
    return line
