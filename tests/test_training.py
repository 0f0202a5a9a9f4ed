"""Short real trainings on CPU: every model learns, runs are deterministic, windows are exact."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from xlrec.config import resolve_config
from xlrec.data_prep import leave_two_out, prepare
from xlrec.experiment import assemble, train
from xlrec.training.batches import gather_windows, num_targets, sample_ends
from xlrec.training.cuda_graph import PAD_END, PAD_START, _CaptureGate
from xlrec.training.losses import full_softmax_ce

SMALL = {
    "synthetic_users": 300,
    "synthetic_items": 120,
    "synthetic_mean_len": 30,
    "embedding_dim": 32,
    "max_len": 20,
    "batch_size": 32,
    "lr": 3e-3,
    "dropout": 0.1,
}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))


def _train(model: str, **over):
    cfg = resolve_config(model, "synthetic", overrides={**SMALL, "epochs": 6, "device": "cpu", **over})
    return train(cfg, prepare("synthetic", cfg.prep))


@pytest.fixture(scope="module")
def pop_recall(tmp_path_factory):
    import os

    os.environ["XLREC_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    return _train("pop").test.metrics["recall@10"]


@pytest.mark.parametrize("model", ["xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"])
def test_each_model_trains_and_beats_pop(model, pop_recall):
    res = _train(model)
    assert res.epochs_run >= 1 and res.best_epoch >= 1
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < losses[0]
    assert res.test.metrics["recall@10"] > 1.5 * pop_recall, (res.test.metrics, pop_recall)
    summary = res.summary()
    json.dumps(summary)
    assert {"recall@10", "mrr@10", "ndcg@10", "coverage@10", "gini@10"} <= set(summary["test"])


def test_xlstm_s_trains_one_epoch():
    res = _train("xlstm-s", epochs=1, num_blocks=2, slstm_at=[1], max_len=10, synthetic_users=60, synthetic_mean_len=12)
    assert res.epochs_run == 1 and np.isfinite(res.history[0]["train_loss"])


def test_adam_beta2_reaches_the_optimizer():
    cfg = resolve_config("sasrec", "synthetic", overrides={**SMALL, "device": "cpu", "adam_beta2": 0.98})
    trainer = assemble(cfg, prepare("synthetic", cfg.prep)).trainer()
    assert trainer.opt.param_groups[0]["betas"] == (0.9, 0.98)


def test_min_epochs_holds_off_early_stopping():
    """With no progress (a negligible learning rate) patience 1 ends the run at epoch 2; with
    min_epochs 4 it ends at epoch 4, and the best epoch is still the best-validation one."""
    frozen = {"lr": 1e-12, "patience": 1, "epochs": 8}
    assert _train("gru4rec", **frozen).epochs_run == 2
    held = _train("gru4rec", **frozen, min_epochs=4)
    assert (held.epochs_run, held.best_epoch, held.stopped_reason) == (4, 1, "early_stopped")


def test_same_seed_same_metrics_and_different_seed_differs():
    a = _train("sasrec", epochs=2, seed=7)
    b = _train("sasrec", epochs=2, seed=7)
    c = _train("sasrec", epochs=2, seed=8)
    assert a.summary()["test"] == b.summary()["test"]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_early_stopping_restores_best_weights():
    res = _train("gru4rec", epochs=40, patience=2, lr=0.05)
    assert res.stopped_reason == "early_stopped"
    assert res.epochs_run == res.best_epoch + 2
    best = max(h["val_recall_at_10"] for h in res.history)
    assert res.best_val["recall@10"] == best


def test_windows_cover_every_training_target_exactly_once():
    cfg = resolve_config("xlstm", "synthetic", overrides=SMALL)
    data = prepare("synthetic", cfg.prep)
    split = leave_two_out(data.seqs, cfg.cold_start_threshold)
    items = torch.as_tensor(data.seqs.items)
    positions = torch.arange(len(items))
    for L in (5, 20):
        ends, starts = sample_ends(split, L, "window", causal=True)
        win = gather_windows(positions + 1, torch.as_tensor(ends), torch.as_tensor(starts), L + 1)  # pos+1, 0 = pad
        inputs, targets = win[:, :-1], win[:, 1:]
        counted = targets[inputs != 0] - 1
        assert len(counted) == num_targets(split, causal=True)
        assert len(torch.unique(counted)) == len(counted)  # each target once
        # no target is a validation/test item, and no window crosses users
        train_mask = np.zeros(len(items), bool)
        for s, e in zip(split.starts, split.train_end):
            train_mask[s + 1 : e] = True
        assert train_mask[counted.numpy()].all() and train_mask.sum() == len(counted)
    ends, _ = sample_ends(split, 20, "prefix", causal=True)
    assert len(ends) == num_targets(split, causal=True)


def test_nan_loss_stops_with_clear_reason():
    from xlrec.training.events import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="loss became"):
        _train("gru4rec", epochs=3, lr=1e37, grad_clip=0.0)


def test_resume_from_checkpoint_continues_identically():
    """Stopping after epoch 2 and resuming from Trainer.state() gives the same run as no stop
    (the weight average, which lives outside the model, included)."""
    import io

    from xlrec.training.events import Callback, StopTraining

    full = _train("sasrec", epochs=4, patience=10, seed=3, ema_decay=0.9)

    class StopAfter2(Callback):
        state = None

        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                buf = io.BytesIO()
                torch.save(trainer.state(), buf)  # as a Tune checkpoint would hold it
                StopAfter2.state = buf.getvalue()
                raise StopTraining("simulated node loss")

    cfg = resolve_config(
        "sasrec",
        "synthetic",
        overrides={**SMALL, "epochs": 4, "patience": 10, "seed": 3, "device": "cpu", "ema_decay": 0.9},
    )
    data = prepare("synthetic", cfg.prep)
    stopped = train(cfg, data, [StopAfter2()])
    assert (stopped.epochs_run, stopped.stopped_reason) == (2, "stopped: simulated node loss")
    res = train(cfg, data, resume=torch.load(io.BytesIO(StopAfter2.state), weights_only=True))
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in full.history]
    assert res.test.metrics == full.test.metrics


def test_weight_average_follows_every_step_and_is_what_validation_and_test_use():
    """ema_decay: the averaged weights follow torch's EMA recurrence over every optimizer step;
    validation, the best-epoch checkpoint and the test use them, while training itself goes on
    from the trained weights."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from xlrec.training.events import Callback

    decay = 0.9
    cfg = resolve_config(
        "sasrec", "synthetic", overrides={**SMALL, "epochs": 3, "patience": 10, "device": "cpu", "ema_decay": decay}
    )
    at_epoch_end: dict[int, tuple[list, list]] = {}  # epoch -> (averaged weights, trained weights)

    class Watch(Callback):
        def on_epoch_end(self, trainer, record):
            at_epoch_end[record["epoch"]] = (
                [t.clone() for t in trainer.ema],
                [p.detach().clone() for p in trainer.model.parameters()],
            )

    experiment = assemble(cfg, prepare("synthetic", cfg.prep))
    trainer = experiment.trainer([Watch()])
    reference = [p.detach().clone() for p in trainer.model.parameters()]  # the average starts at the init
    steps, last_step = 0, []

    def after_step(opt, args, kwargs):
        nonlocal steps, last_step
        steps += 1
        last_step = [p.detach().clone() for p in trainer.model.parameters()]
        for avg, p in zip(reference, last_step):
            avg.lerp_(p, 1 - decay)

    handle = register_optimizer_step_post_hook(after_step)
    try:
        res = experiment.run(trainer)
    finally:
        handle.remove()
    assert steps > 3 * 10  # several steps per epoch
    for avg, ref in zip(trainer.ema, reference):
        torch.testing.assert_close(avg, ref)
    averaged, trained = at_epoch_end[3]
    assert not all(torch.equal(a, t) for a, t in zip(averaged, trained))  # the average is not the weights
    # after validation the model holds the trained weights again (training goes on from them)
    assert all(torch.equal(t, last) for t, last in zip(trained, last_step))
    best_averaged = at_epoch_end[res.best_epoch][0]
    for p, a in zip(trainer.model.parameters(), best_averaged):  # restored: the best epoch's average
        assert torch.equal(p.detach(), a)
    assert experiment.evaluate("val").metrics == res.best_val  # validation scored the averaged weights


def test_bert4rec_fixed_shape_pairs_train_what_the_masked_rows_train_and_ignore_filler_rows():
    """The graphed BERT4Rec step scores every position (target -1 where nothing is masked): with
    the same draws it has the eager path's loss and gradients, and the all-padding rows that pad
    a graphed batch add no target (their forced last-item mask would otherwise train item 0)."""
    cfg = resolve_config("bert4rec", "synthetic", overrides={**SMALL, "epochs": 1, "device": "cpu", "window_stride": 5})
    experiment = assemble(cfg, prepare("synthetic", cfg.prep))
    net = experiment.model
    net.eval()
    ends, starts = sample_ends(experiment.split, cfg.max_len, "window", False, 5)
    ends, starts = torch.as_tensor(ends[:7]), torch.as_tensor(starts[:7])

    def loss_and_grads(e, s, fixed):
        net.zero_grad(set_to_none=True)
        window = experiment.windows.gather(e, s, causal=False)
        hidden, targets = net.training_pairs(window, 5, torch.Generator().manual_seed(3), fixed_shape=fixed)
        loss = full_softmax_ce(*net.output_operands(hidden), targets)
        loss.backward()
        return loss.detach(), int((targets >= 0).sum()), {n: p.grad.clone() for n, p in net.named_parameters()}

    loss, count, grads = loss_and_grads(ends, starts, fixed=False)
    for e, s in [
        (ends, starts),
        (torch.cat([ends, torch.full((5,), PAD_END)]), torch.cat([starts, torch.full((5,), PAD_START)])),
    ]:
        loss_f, count_f, grads_f = loss_and_grads(e, s, fixed=True)
        assert count_f == count >= 7  # at least one target per window
        torch.testing.assert_close(loss_f, loss)
        for name in grads:
            torch.testing.assert_close(grads_f[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("model", ["xlstm", "sasrec", "gru4rec"])
def test_padding_rows_of_a_graphed_batch_change_nothing(model):
    """A CUDA-graphed step pads the epoch's last batch to full size with (PAD_END, PAD_START)
    rows: they must add no target, and leave the loss and every gradient as they were."""
    cfg = resolve_config(model, "synthetic", overrides={**SMALL, "epochs": 1, "device": "cpu", "window_stride": 5})
    experiment = assemble(cfg, prepare("synthetic", cfg.prep))
    net = experiment.model
    net.eval()  # no dropout: both passes see the same network
    ends, starts = sample_ends(experiment.split, cfg.max_len, "window", True, 5)
    ends, starts = torch.as_tensor(ends[:7]), torch.as_tensor(starts[:7])

    def loss_and_grads(e, s):
        net.zero_grad(set_to_none=True)
        window = experiment.windows.gather(e, s, causal=True)
        hidden, targets = net.training_pairs(window, experiment.windows.targets_per_sample)
        loss = full_softmax_ce(*net.output_operands(hidden), targets)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        return loss.detach(), int((targets >= 0).sum()), grads

    pad = torch.full((5,), PAD_END), torch.full((5,), PAD_START)
    loss, count, grads = loss_and_grads(ends, starts)
    loss_p, count_p, grads_p = loss_and_grads(torch.cat([ends, pad[0]]), torch.cat([starts, pad[1]]))
    assert count_p == count > 0
    torch.testing.assert_close(loss_p, loss)
    assert grads_p.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_p[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_compile_is_decided_per_device_and_family():
    """On a GPU the families that compile get compiled encoders. The RNNs (dynamo fails on their
    cuDNN kernel under autocast), xlstm-s (its sLSTM kernels unchecked) and `pop` (nothing to
    train) train eagerly."""
    from xlrec.catalog import models
    from xlrec.device import Runtime, use_compile

    gpu = Runtime(torch.device("cuda"), torch.bfloat16, "triton")
    cpu = Runtime(torch.device("cpu"), None, "native")
    decided = {
        name: use_compile(gpu, True, cls.compilable and cls.trainable)
        for name, cls in ((n, models.model_class(n)) for n in models.BUILTIN)
    }
    assert decided == {
        "xlstm": True,
        "xlstm-s": False,
        "sasrec": True,
        "bert4rec": True,
        "gru4rec": False,
        "lstm": False,
        "pop": False,
    }
    assert not use_compile(cpu, True, True)
    assert not use_compile(gpu, False, True)


def test_a_compiled_training_encoder_trains_what_the_eager_one_trains():
    """`compile` runs the encoder through torch.compile (Inductor) in the training step only: the
    same window gives the eager step's loss and gradients, and evaluation keeps the eager encoder.
    The policy asks for CUDA, so the compilation is requested by hand here, on the CPU."""
    from xlrec.device import select_runtime, use_compile

    cfg = resolve_config("sasrec", "synthetic", overrides={**SMALL, "epochs": 1, "device": "cpu", "compile": True})
    experiment = assemble(cfg, prepare("synthetic", cfg.prep))
    net = experiment.model
    assert cfg.compile and not experiment.compiled and not net.training_compiled  # not on a CPU
    assert not use_compile(select_runtime("cpu", "auto", True), True, net.compilable)
    net.eval()  # no dropout: both passes see the same numbers
    ends, starts = sample_ends(experiment.split, cfg.max_len, "window", True, 5)
    window = experiment.windows.gather(torch.as_tensor(ends[:7]), torch.as_tensor(starts[:7]), causal=True)

    def loss_and_grads():
        net.zero_grad(set_to_none=True)
        hidden, targets = net.training_pairs(window, 5)
        loss = full_softmax_ce(*net.output_operands(hidden), targets)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}

    loss, grads = loss_and_grads()
    torch._dynamo.reset()
    net.compile_training()
    compiled_loss, compiled_grads = loss_and_grads()
    assert net.training_compiled and torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    torch.testing.assert_close(compiled_loss, loss)
    for name in grads:
        torch.testing.assert_close(compiled_grads[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_runs_assembled_by_threads_at_once_get_the_weights_their_seeds_draw_alone():
    # grouped sweep seeds (xlrec.sweeps.trial_group) assemble in threads of one process: each run's
    # weights are the ones its seed draws in a process of its own
    cfgs = [resolve_config("xlstm", "synthetic", overrides={**SMALL, "device": "cpu", "seed": s}) for s in (1, 2, 3, 4)]
    data = prepare("synthetic", cfgs[0].prep)
    alone = [assemble(cfg, data).model.state_dict() for cfg in cfgs]
    together: dict[int, dict] = {}

    def one(cfg) -> None:
        together[cfg.seed] = assemble(cfg, data).model.state_dict()

    threads = [threading.Thread(target=one, args=(cfg,)) for cfg in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cfg, expected in zip(cfgs, alone):
        got = together[cfg.seed]
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not torch.equal(alone[0]["item_embedding.weight"], alone[1]["item_embedding.weight"])


def test_a_capture_waits_for_replays_and_replays_wait_for_a_capture():
    # the gate of runs sharing a process (xlrec.training.cuda_graph): replays together, a capture alone
    gate = _CaptureGate()
    log: list[str] = []
    replaying, captured, release = threading.Event(), threading.Event(), threading.Event()

    def replay(name: str, hold: threading.Event | None) -> None:
        with gate.replaying():
            log.append(f"{name} in")
            if hold is not None:
                replaying.set()
                hold.wait(10)
            log.append(f"{name} out")

    def capture() -> None:
        with gate.capturing():
            log.append("capture in")
            captured.set()
            release.wait(10)
            log.append("capture out")

    first = threading.Thread(target=replay, args=("r1", release))
    first.start()
    replaying.wait(10)
    replay("r2", None)  # a second replay runs beside the first
    cap = threading.Thread(target=capture)
    cap.start()
    assert not captured.wait(0.3)  # the capture waits for r1
    late = threading.Thread(target=replay, args=("r3", None))
    release.set()  # r1 ends; the capture runs and holds until released (already set)
    first.join(10)
    captured.wait(10)
    late.start()
    cap.join(10)
    late.join(10)
    assert log[:4] == ["r1 in", "r2 in", "r2 out", "r1 out"]
    assert log[4:] == ["capture in", "capture out", "r3 in", "r3 out"]
