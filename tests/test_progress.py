"""The sweep's progress lines on Tune's own callback hooks, driven by a simulated sweep and a fake
clock: a line at least every minute while trials run, and a time-left estimate from the measured
epoch rates that is within 30% of the truth once a third of the trials have ended."""

from __future__ import annotations

import heapq
import re
from types import SimpleNamespace

import pytest

from xlrec.sweeps import progress as prog

# (startup s, seconds per epoch, epochs it runs, pruned?) per trial: a search of 9 trials, 2 at a
# time, up to 8 epochs, ASHA pruning at epochs 2 and 4 (the README's main job has this shape)
TRIALS = [
    (10, 6.0, 8, False),
    (10, 4.0, 2, True),
    (10, 9.0, 8, False),
    (10, 5.0, 2, True),
    (10, 10.0, 8, False),
    (10, 7.0, 4, True),
    (10, 8.0, 8, False),
    (10, 5.0, 2, True),
    (10, 6.0, 8, False),
]


def _simulate(monkeypatch, capsys, trials=TRIALS, at_once=2):
    """Runs the sweep in simulated time; returns [(time, line)] of everything printed, and the end."""
    clock = [0.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    p = prog.SweepProgress(total=len(trials), concurrency=at_once)
    tune_trials = [
        SimpleNamespace(trial_id=str(i), status="PENDING", config={"model": "xlstm", "lr": 0.001 * (i + 1)})
        for i in range(len(trials))
    ]
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, trial)
    order = 0
    free, waiting = at_once, list(range(len(trials)))
    lines: list[tuple[float, str]] = []

    def start(now: float) -> None:
        nonlocal free, order
        while free and waiting:
            i = waiting.pop(0)
            free -= 1
            t = tune_trials[i]
            t.status = "RUNNING"
            p.on_trial_start(0, tune_trials, t)
            startup, per_epoch, epochs, _ = trials[i]
            for e in range(1, epochs + 1):
                order += 1
                heapq.heappush(events, (now + startup + e * per_epoch, order, "epoch", i))

    start(0.0)
    ticks = [float(s) for s in range(0, 2000, 5)]  # Tune's loop turns far more often; 5 s is enough here
    while events:
        when, _, kind, i = heapq.heappop(events)
        for tick in [t for t in ticks if t < when]:
            clock[0] = tick
            p.on_step_end(0, tune_trials)
        ticks = [t for t in ticks if t >= when]
        clock[0] = when
        t = tune_trials[i]
        startup, per_epoch, epochs, pruned = trials[i]
        done_epochs = t.__dict__.setdefault("epochs", 0) + 1
        t.epochs = done_epochs
        result = {"epoch": done_epochs, "epoch_time_s": per_epoch, "val_recall_at_10": 0.01 * done_epochs}
        p.on_trial_result(0, tune_trials, t, result)
        if done_epochs == epochs:
            t.last_result = {"epoch": epochs, "trial_finished": not pruned, "val_recall_at_10": 0.01 * epochs}
            if not pruned:  # a finished run's last report (xlrec.sweeps.trial.result_report); a pruned one has none
                p.on_trial_result(0, tune_trials, t, t.last_result)
            p.on_trial_complete(0, tune_trials, t)
            t.status = "TERMINATED"
            free += 1
            start(when)
        lines += [(when, ln) for ln in capsys.readouterr().err.splitlines()]
    return lines, clock[0]


def _left(line: str) -> float | None:
    m = re.search(r"~(?:(\d+)m)?(\d+)s left", line)
    return None if m is None else int(m[1] or 0) * 60 + int(m[2])


def test_a_line_at_least_every_minute_while_trials_run(monkeypatch, capsys):
    """Trials of 8 epochs of 10 s each and nothing else: epochs but no ended trial for minutes."""
    slow = [(10, 10.0, 8, False)] * 4
    lines, end = _simulate(monkeypatch, capsys, trials=slow, at_once=2)
    stamps = [0.0] + [t for t, _ in lines] + [end]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= prog.QUIET_S + 10  # the loop's 5-s turns
    running = [ln for _, ln in lines if "running:" in ln]
    assert running, lines
    assert re.search(r"running: trial 1 epoch \d val Recall@10 0\.\d{4}, trial 2 epoch \d val Recall@10", running[0])


def test_the_time_left_is_within_30_percent_once_a_third_have_ended(monkeypatch, capsys):
    lines, end = _simulate(monkeypatch, capsys)
    checked = 0
    for when, line in lines:
        done = re.search(r"(\d+)/9 done", line)
        left = _left(line)
        if done is None or left is None or int(done[1]) < 3:
            continue
        truth = end - when
        assert left == pytest.approx(truth, rel=0.30), (line, truth)
        checked += 1
    assert checked >= 5, lines


def test_trials_that_ran_out_of_gpu_memory_get_a_hint_naming_the_share_and_resume(monkeypatch, capsys, tmp_path):
    """Ray shares a GPU by count: at gpus_per_trial 0.0625 sixteen trials may land on one card. The
    sweep counts the runs whose trial failed out of memory (each seed of a grouped trial) and says
    what to change; other failures and whole-GPU trials get no such line."""
    oom = "OutOfMemoryError: CUDA out of memory. Tried to allocate 256.00 MiB. GPU 0 has a total capacity of 79.18 GiB"
    errors = {"1": tmp_path / "e1.txt", "2": tmp_path / "e2.txt", "3": tmp_path / "e3.txt"}
    errors["1"].write_text(f"Traceback ...\n{oom}\n")
    errors["2"].write_text(f"Traceback ...\ntorch.{oom}\n")
    errors["3"].write_text("Traceback ...\nValueError: something else\n")
    p = prog.SweepProgress(total=5, concurrency=3, runs_per_trial=1)
    single = {"model": "xlstm", "lr": 0.001}
    grouped = {"model": "xlstm", "cell": {"seeds": [1, 2, 3]}}
    trials = [
        SimpleNamespace(trial_id=i, status="ERROR", config=c, error_file=str(errors[i]), pickled_error_file="-")
        for i, c in (("1", single), ("2", grouped), ("3", single))
    ]
    monkeypatch.setattr(p, "_member", lambda trials, trial, seed: (dict(trial.config, seed=seed), seed))
    for t in trials:
        p.on_trial_error(0, trials, t)
    err = capsys.readouterr().err
    assert err.count("failed (OutOfMemoryError: CUDA out of memory") == 1 + 3
    assert p.out_of_memory == 4 and p.outcomes["failed"] == 5
    hint = prog.out_of_memory_hint(p.out_of_memory, 0.0625, "grid-xlstm-ml-1m")
    assert hint is not None
    assert "4 run(s) failed out of GPU memory with up to 16 trials sharing a GPU (gpus_per_trial 0.0625" in hint
    assert "xlrec sweep --name grid-xlstm-ml-1m --resume" in hint
    assert prog.out_of_memory_hint(4, 1.0, "x") is None and prog.out_of_memory_hint(0, 0.0625, "x") is None
    assert not prog.is_out_of_memory("ValueError: something else")
