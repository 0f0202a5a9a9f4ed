"""`group_seeds`: a grid cell's seeds as threads of one sweep trial (xlrec.sweeps.trial_group), on a
real local Ray, a real `mlflow server`, and the driver's progress lines. A module of its own so that
pytest-xdist (`--dist loadfile`) runs it beside test_sweeps.py, not after it."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import TINY, SweepOutcome, assert_nested_and_closed, isolate_sweep, sweep

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_sweep(tmp_path, monkeypatch)


def test_grouped_seeds_share_a_trial_each_with_its_own_run_and_a_failing_group_fails_alone(tmp_path):
    # resources.group_seeds: each cell's two seeds train in one trial process; with stack_seeds
    # SASRec's as one batched model (xlrec.training.stacked), LSTM's (which vmap cannot batch) as
    # threads. SASRec's group finishes; LSTM's diverges (lr 1e37, no clipping) in both seeds: the
    # sweep still reports.
    spec = tmp_path / "grouped.yaml"
    spec.write_text(
        "mode: grid\n"
        "datasets: [synthetic]\n"
        "models:\n"
        "  sasrec: {}\n"
        "  lstm: {fixed: {lr: 1.0e+37, grad_clip: 0}}\n"
        "seeds: [1, 2]\n"
        "epochs: 3\n"
        "grid: {max_len: [10]}\n"
        "fixed: {embedding_dim: 16}\n"
        "resources: {cpus_per_trial: 0.5, group_seeds: true, stack_seeds: true}\n"
    )
    proc = sweep(tmp_path, "--spec", str(spec), *TINY)
    out = SweepOutcome(tmp_path, proc)
    assert_nested_and_closed(out, 4)
    s = out.summary
    assert (s["trials_done"], s["trials_failed"], s["trials_pruned"]) == (2, 2, 0)
    by_name = {c.info.run_name: c for c in out.children}
    assert set(by_name) == {f"{m} L10 s{seed}" for m in ("sasrec", "lstm") for seed in (1, 2)}
    done = [by_name["sasrec L10 s1"], by_name["sasrec L10 s2"]]
    failed = [by_name["lstm L10 s1"], by_name["lstm L10 s2"]]
    # one trial (one Tune trial id, one process) per cell, each seed under its own key and run
    for group in (done, failed):
        (trial,) = {c.data.tags["xlrec.trial_group"] for c in group}
        assert {c.data.tags["xlrec.trial_id"] for c in group} == {f"{trial}-s1", f"{trial}-s2"}
        assert len({c.data.tags["xlrec.pid"] for c in group}) == 1
        assert all(c.data.tags["xlrec.group_seeds"] == "1,2" for c in group)
    assert done[0].data.tags["xlrec.trial_group"] != failed[0].data.tags["xlrec.trial_group"]
    assert {c.data.tags["xlrec.stacked_seeds"] for c in done} == {"yes"}
    refused = {c.data.tags["xlrec.stacked_seeds"] for c in failed}
    assert refused == {"no: LSTMRec was not checked under vmap (or has no batching rule there)"}
    assert {c.data.params["cuda_graph"] for c in done} == {"false"}  # one eager step for the stack
    for c in done:
        assert c.info.status == "FINISHED" and c.data.metrics["epochs_run"] == 3
        assert int(c.data.tags["xlrec.model_version"]) >= 1  # each seed registered its own model
    # the seeds trained apart: each its own training curve
    histories = [[m.value for m in out.client.get_metric_history(c.info.run_id, "train_loss")] for c in done]
    assert len(histories[0]) == len(histories[1]) == 3 and histories[0] != histories[1]
    for c in failed:
        assert c.info.status == "FAILED"
        assert "Training loss became" in c.data.tags["xlrec.failure_reason"]
    # a row per seed, with the seed's own scores from its run
    trials = out.parent_csv("trials.csv")
    assert len(trials) == 4
    rows = {(r.model, r.seed): r for r in trials.itertuples()}
    for c in done:
        row = rows[("sasrec", int(c.data.params["seed"]))]
        assert row.status == "FINISHED" and row.mlflow_run_id == c.info.run_id
        assert row.val_recall_at_10 == pytest.approx(c.data.metrics["best_val_recall_at_10"])
        assert row.test_recall_at_10 == pytest.approx(c.data.metrics["test_recall_at_10"])
    for seed in (1, 2):
        row = rows[("lstm", seed)]
        assert row.status == "FAILED" and "TrainingDiverged" in row.error
    table4 = out.parent_csv("table4.csv")
    assert list(table4["model"]) == ["sasrec"] and (table4["seeds"] == 2).all()
    # a progress line per seed, numbered among the sweep's four runs
    finished = re.findall(r"^\[xlrec\] trial (\d)/4 finished  sasrec max_len=10 seed=(\d)", proc.stderr, re.M)
    assert sorted(finished) == [("1", "1"), ("2", "2")], proc.stderr[-4000:]
    failed_lines = re.findall(r"^\[xlrec\] trial (\d)/4 failed \(TrainingDiverged", proc.stderr, re.M)
    assert sorted(failed_lines) == ["3", "4"], proc.stderr[-4000:]
    assert "2 finished, 0 pruned, 2 failed" in proc.stderr
    logged = yaml.safe_load((out.artifact_dir(out.parent) / "sweep.yaml").read_text())
    assert logged["resources"]["group_seeds"] is True
    assert out.parent.data.params["resources.group_seeds"] == "True"
    assert logged["resources"]["stack_seeds"] is True


def test_the_time_left_counts_what_running_runs_have_left_not_another_wave(monkeypatch, capsys):
    # the driver's progress lines (xlrec.sweeps.progress), on Tune's own callback hooks with a fake clock
    from types import SimpleNamespace

    from xlrec.sweeps import progress as prog

    clock = [0.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])

    def trial(tid: str, cell: dict) -> SimpleNamespace:
        return SimpleNamespace(trial_id=tid, status="RUNNING", config={"cell": cell}, last_result={})

    # two grouped trials of two seeds each, all four runs at once; a seed ends after 100 s
    p = prog.SweepProgress(total=4, concurrency=4, runs_per_trial=2)
    a = trial("a", {"model": "gru4rec", "max_len": 10, "seeds": [1, 2]})
    b = trial("b", {"model": "lstm", "max_len": 10, "seeds": [1, 2]})
    for t in (a, b):
        p.on_trial_start(0, [a, b], t)
    clock[0] = 100.0
    p.on_trial_result(0, [a, b], a, {"member_finished": 2, "val_recall_at_10": 0.3})
    line = capsys.readouterr().err
    assert "trial 2/4 finished  gru4rec max_len=10 seed=2  val Recall@10 0.3000" in line
    assert "1/4 done" in line and "~0s left" in line, line  # the other three are as old as a mean run
    clock[0] = 130.0
    p.on_trial_result(0, [a, b], b, {"member_finished": 1, "val_recall_at_10": 0.2})
    assert "trial 3/4 finished" in capsys.readouterr().err
    # one at a time, eight runs: after the first (40 s) the second has run 10 s of its 40
    p = prog.SweepProgress(total=8, concurrency=2)
    trials = [trial(str(i), {"model": "gru4rec", "seed": i}) for i in range(8)]
    clock[0] = 0.0
    p.on_trial_start(0, trials[:2], trials[0])
    clock[0] = 30.0
    p.on_trial_start(0, trials[:2], trials[1])
    clock[0] = 40.0
    trials[0].last_result = {"trial_finished": True, "val_recall_at_10": 0.1}
    p.on_trial_complete(0, trials[:2], trials[0])
    line = capsys.readouterr().err
    # 30 s left of the running one, then 6 runs in 3 waves of 40 s: 2m30s (a wave per 2 runs left: 2m40s)
    assert "1/8 done" in line and "~2m30s left" in line, line


def test_the_time_left_follows_each_running_runs_pace_and_its_models_epochs(monkeypatch, capsys):
    """Short runs finish first, so a mean run less a run's age said "~0s left" for minutes of the
    paper grid while BERT4Rec trained on (H200, 2026-12-01); each run's pace does not."""
    from types import SimpleNamespace

    from xlrec.sweeps import progress as prog

    clock = [0.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    a = SimpleNamespace(trial_id="a", status="RUNNING", config={"cell": {"model": "gru4rec", "seeds": [1, 2]}})
    b = SimpleNamespace(trial_id="b", status="RUNNING", config={"cell": {"model": "bert4rec", "seeds": [1, 2]}})
    p = prog.SweepProgress(total=4, concurrency=4, runs_per_trial=2)
    for t in (a, b):
        p.on_trial_start(0, [a, b], t)

    def epochs(trial, seed: int, upto: int, seconds: float) -> None:
        for e in range(1, upto + 1):
            p.on_trial_result(0, [a, b], trial, {"member_seed": seed, "epoch": e, "epoch_time_s": seconds})

    epochs(a, 1, 4, 10.0)
    epochs(a, 2, 10, 10.0)
    epochs(b, 1, 2, 20.0)
    epochs(b, 2, 2, 20.0)
    clock[0] = 100.0
    p.on_trial_result(0, [a, b], a, {"member_finished": 2, "epoch": 10, "val_recall_at_10": 0.3})
    line = capsys.readouterr().err
    # gru4rec seed 1: 6 more of its model's 10 epochs at 10 s; bert4rec (none finished): 8 more at 20 s
    assert "1/4 done" in line and "~2m40s left" in line, line
    epochs(b, 1, 5, 20.0)
    clock[0] = 130.0
    p.on_trial_result(0, [a, b], b, {"member_finished": 1, "epoch": 5, "val_recall_at_10": 0.2})
    line = capsys.readouterr().err
    # bert4rec seed 2: 3 more of its model's 5 at 20 s; gru4rec seed 1: 6 more at 10 s
    assert "2/4 done" in line and "~1m00s left" in line, line
    epochs(a, 1, 12, 10.0)  # past its model's mean: at least one more epoch
    epochs(b, 2, 5, 20.0)
    clock[0] = 200.0
    p.on_trial_result(0, [a, b], b, {"member_finished": 2, "epoch": 5, "val_recall_at_10": 0.2})
    assert "3/4 done" in (line := capsys.readouterr().err) and "~10s left" in line, line


class _NeedsMoreThanArgs(Exception):
    """Like torch._dynamo's BackendCompilerFailed: its __init__ wants more than `args`."""

    def __init__(self, backend: str, inner: Exception):
        self.inner = inner
        super().__init__(f"backend={backend!r} raised: {inner}")


def test_a_trial_error_tune_cannot_copy_reaches_tune_as_its_type_and_message():
    """Ray Tune copies a trial's exception before reporting it; one that cannot be copied used to
    reach the progress line as Tune's TypeError instead of the trial's error."""
    from ray.air._internal.util import skip_exceptions

    from xlrec.sweeps.trainable import tune_raisable

    error = _NeedsMoreThanArgs("inductor", RuntimeError("Unexpected floating ScalarType"))
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        skip_exceptions(error)
    reported = tune_raisable(error)
    assert type(reported) is RuntimeError
    assert str(reported) == "_NeedsMoreThanArgs: backend='inductor' raised: Unexpected floating ScalarType"
    assert str(skip_exceptions(reported)) == str(reported)

    wrapped = ValueError("a setting")
    wrapped.__cause__ = error  # an uncopyable cause fails Tune's copy as well
    assert type(tune_raisable(wrapped)) is RuntimeError
    plain = ValueError("diverged")
    assert tune_raisable(plain) is plain
