"""Seeds stacked into one batched model (xlrec.training.stacked) train what each seed's own
trainer trains: same weights, averages and losses after the same batches, on the CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xlrec.config import resolve_config
from xlrec.data_prep import prepare
from xlrec.errors import ConfigError
from xlrec.experiment import assemble
from xlrec.settings.metrics import VAL_SELECTION_KEY
from xlrec.training.stacked import SeedStack, config_refusal

SMALL = {
    "synthetic_users": 200,
    "synthetic_items": 90,
    "synthetic_mean_len": 25,
    "embedding_dim": 32,
    "max_len": 16,
    "batch_size": 16,
    "lr": 3e-3,
    "dropout": 0.0,  # dropout masks come from one stream for the stack: compared without them
    "ema_decay": 0.9,
    "grad_clip": 0.05,  # small enough that every step clips, each seed by its own norm
    "weight_decay": 1e-4,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))


def _trainers(model: str, seeds, **over):
    cfgs = [resolve_config(model, "synthetic", overrides={**SMALL, "seed": s, **over}) for s in seeds]
    data = prepare("synthetic", cfgs[0].prep)
    exps = [assemble(cfg, data) for cfg in cfgs]
    return exps, [e.trainer() for e in exps]


def _batches(exp, trainer, n):
    ends, starts = exp.windows.epoch(trainer.model.causal, 1, trainer.shuffle_gen)
    bs = trainer.cfg.batch_size
    return [(ends[i : i + bs], starts[i : i + bs]) for i in range(0, n * bs, bs)]


def _weights(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


def _adam(trainer):
    state = trainer.state()["opt"]["state"]
    return [state[i][key] for i in sorted(state) for key in ("exp_avg", "exp_avg_sq", "step")]


def _assert_same(a, b, what):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-4, msg=what)


@pytest.mark.parametrize(
    "model, over",
    [
        ("sasrec", {}),
        ("xlstm", {}),
        # one prefix per target: BERT4Rec masks each window's last item, no drawn masks to differ
        ("bert4rec", {"sample_mode": "prefix"}),
    ],
)
def test_stacked_seeds_train_what_each_seeds_own_step_trains(model, over):
    seeds = (1, 2, 3)
    alone_exps, alone = _trainers(model, seeds, **over)
    stacked_exps, stacked = _trainers(model, seeds, **over)
    for a, s in zip(alone, stacked):
        _assert_same(_weights(a), _weights(s), "the same seed must start from the same weights")
    assert not torch.equal(_weights(alone[0])[0], _weights(alone[1])[0])  # seeds differ
    batches = [_batches(e, t, 6) for e, t in zip(alone_exps, alone)]
    for exp, trainer, own in zip(alone_exps, alone, batches):
        step = trainer._make_step(exp.windows)
        for ends, starts in own:
            step(ends, starts)
    stack = SeedStack(stacked)
    for i in range(4):
        stack.step(stacked_exps[0].windows, [own[i] for own in batches])
    # seed 1 stops: it keeps its weights; the others train on without it
    stack.release(0)
    stopped = _weights(stacked[0])
    for i in range(4, 6):
        stack.step(stacked_exps[0].windows, [own[i] for own in batches[1:]])
    assert stack.size == 2
    _assert_same(_weights(stacked[0]), stopped, "a released seed must not move")
    # the first seed stopped after 4 of the 6 batches its own trainer took: compare it after 4
    first_alone = _trainers(model, seeds[:1], **over)
    exp0, t0 = first_alone[0][0], first_alone[1][0]
    step = t0._make_step(exp0.windows)
    for ends, starts in batches[0][:4]:
        step(ends, starts)
    _assert_same(stopped, _weights(t0), f"{model} seed {seeds[0]} after 4 steps")
    _assert_same(stacked[0].ema, t0.ema, "the released seed's moving average")
    _assert_same(_adam(stacked[0]), _adam(t0), "the released seed's Adam state")
    for k in (1, 2):
        _assert_same(_weights(stacked[k]), _weights(alone[k]), f"{model} seed {seeds[k]} after 6 steps")
        _assert_same(stacked[k].ema, alone[k].ema, f"{model} seed {seeds[k]}'s moving average")
        # what the seed's checkpoint holds: its trainer's Adam state is its slice of the stack's
        _assert_same(_adam(stacked[k]), _adam(alone[k]), f"{model} seed {seeds[k]}'s Adam state")
        for key in ("loss", "norm", "targets"):
            torch.testing.assert_close(stacked[k].accumulators()[key], alone[k].accumulators()[key], rtol=1e-4, atol=0)
    # the averaged weights swap into the seed's own model, as its trainer validates with them
    with stacked[1].averaged_weights():
        _assert_same(_weights(stacked[1]), alone[1].ema, "averaged weights in the model")
    _assert_same(_weights(stacked[1]), _weights(alone[1]), "trained weights back after validation")


def test_a_stack_refuses_families_vmap_cannot_batch_and_mixed_settings():
    _, rnn = _trainers("gru4rec", (1, 2))
    with pytest.raises(ConfigError, match="GRU4Rec.*vmap.*one per process"):
        SeedStack(rnn)
    # decided before training, from a model of the layout on the meta device
    assert "vmap" in config_refusal(rnn[0].cfg, 90)
    _, (xlstm,) = _trainers("xlstm", (1,))
    assert config_refusal(xlstm.cfg, 90) is None  # on a CPU its native kernels batch
    _, mixed = _trainers("sasrec", (1, 2))
    mixed[1].cfg = dataclasses.replace(mixed[1].cfg, lr=1e-2)
    with pytest.raises(ConfigError, match="share every setting but the seed; these differ: lr"):
        SeedStack(mixed)


def test_seeds_in_threads_meet_in_one_stack_and_each_ends_its_own_run():
    """Three seeds train through `train` in threads of one process (as a grouped trial does), every
    step one stacked step; each stops by its own early stopping at its own epoch, leaving the others
    to train on, and trains what its seed trains alone (losses and validation epoch by epoch). The
    stack's arithmetic equals the seed's own to float rounding, not bit for bit, so where a seed's
    validation nearly ties between two epochs its stop may move by an epoch: the stop is checked
    against the seed's own validation history."""
    import threading

    from xlrec.experiment import train
    from xlrec.training.stacked import StackedSteps

    over = {**SMALL, "epochs": 8, "patience": 2, "lr": 1e-2}
    cfgs = [resolve_config("sasrec", "synthetic", overrides={**over, "seed": s}) for s in (1, 2, 3)]
    data = prepare("synthetic", cfgs[0].prep)
    alone = [train(cfg, data) for cfg in cfgs]
    steps = StackedSteps(len(cfgs))
    results, errors = {}, []

    def one(cfg):
        try:
            results[cfg.seed] = train(cfg, data, [steps.member(cfg.seed)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            steps.leave(cfg.seed)

    threads = [threading.Thread(target=one, args=(cfg,)) for cfg in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert steps._stack is not None and steps._stack.size == 0  # every seed left the stack
    assert len({r.epochs_run for r in alone}) > 1, "the seeds should stop at different epochs"
    assert len({results[cfg.seed].epochs_run for cfg in cfgs}) > 1, "the stacked seeds left at one epoch"
    for a, cfg in zip(alone, cfgs):
        s = results[cfg.seed]
        val = [h[VAL_SELECTION_KEY] for h in s.history]
        best = val.index(max(val)) + 1  # its own early stopping: the first best epoch, then `patience` more
        assert (s.best_epoch, s.epochs_run) == (best, min(best + over["patience"], over["epochs"])), cfg.seed
        both = min(s.epochs_run, a.epochs_run)
        losses = [h["train_loss"] for h in s.history[:both]]
        assert losses == pytest.approx([h["train_loss"] for h in a.history[:both]], rel=5e-4), cfg.seed
        own_val = [h[VAL_SELECTION_KEY] for h in a.history[:both]]
        assert val[:both] == pytest.approx(own_val, abs=5e-3), cfg.seed
        if (s.epochs_run, s.best_epoch) == (a.epochs_run, a.best_epoch):  # the same weights are tested
            for key in ("recall@10", "ndcg@10"):
                assert s.test.metrics[key] == pytest.approx(a.test.metrics[key], abs=2e-3), (cfg.seed, key)


def test_the_mlstm_op_batches_seeds_under_vmap_as_the_kernel_runs_each_seed():
    """xlrec.rec_models.mlstm_vmap folds the seed dimension into the kernel's batch (its vmap rule)
    and differentiates through the package's own backward: hidden states and the gradients of every
    input equal those of mlstm_kernels' own Function (forward and hand-written backward) run seed by
    seed (the native family: on a GPU the same op wraps the Triton kernels)."""
    from mlstm_kernels.torch import get_mlstm_kernel

    from xlrec.rec_models.mlstm_vmap import mlstm_chunkwise

    reference = get_mlstm_kernel("chunkwise--native_custbw")
    g = torch.Generator().manual_seed(7)
    K, B, NH, S, D = 3, 2, 2, 32, 8
    shapes = [(K, B, NH, S, D)] * 3 + [(K, B, NH, S)] * 2
    inputs = [torch.randn(s, generator=g).requires_grad_() for s in shapes]
    h = torch.func.vmap(lambda q, k, v, i, f: mlstm_chunkwise(q, k, v, i, f, 16, 1e-6, "native")[0])(*inputs)
    weights = torch.randn(h.shape, generator=g)
    (h * weights).sum().backward()
    for seed in range(K):
        own = [x[seed].detach().clone().requires_grad_() for x in inputs]
        h_own = reference(*own, chunk_size=16, eps=1e-6)
        torch.testing.assert_close(h[seed], h_own, atol=1e-5, rtol=1e-4)
        (h_own * weights[seed]).sum().backward()
        for stacked, alone in zip(inputs, own):
            torch.testing.assert_close(stacked.grad[seed], alone.grad, atol=1e-4, rtol=1e-3)


def test_stacked_bert4rec_draws_each_seeds_masks_at_its_masking_rate():
    """In window mode BERT4Rec's masks come from the stack's stream (vmap's randomness "different"):
    on the same windows the seeds mask different items, each at the masking rate."""
    _, stacked = _trainers("bert4rec", (1, 2, 3), mask_prob=0.3)
    exps, _ = _trainers("bert4rec", (1,), mask_prob=0.3)
    windows = exps[0].windows
    stack = SeedStack(stacked)
    same = _batches(exps[0], stacked[0], 8)
    for batch in same:
        stack.step(windows, [batch] * 3)
    real = sum(int((windows.gather(e, s, False)[:, -windows.targets_per_sample :] != 0).sum()) for e, s in same)
    counts = [int(t.accumulators()["targets"]) for t in stacked]
    assert len(set(counts)) == 3, f"the seeds drew the same masks: {counts} targets"
    for count in counts:  # 0.3 of the real positions, plus the windows that had none and mask their last
        assert 0.27 * real < count < 0.36 * real, (count, real)
    assert all(torch.isfinite(t.accumulators()["loss"]) for t in stacked)


def test_a_cells_seeds_are_checked_to_fit_together(monkeypatch):
    """A grouped or stacked cell's seeds share one process and device: their estimate is the
    dataset once and every run's own arrays once per seed, and a cell that fits one seed at a time
    but not all of them is refused naming the cell."""
    from xlrec.training import footprint

    cfg = resolve_config("sasrec", "synthetic", overrides={**SMALL, "seed": 1})
    shape = footprint.dataset_shape(cfg)
    one, three = footprint.parts(cfg, shape), footprint.parts(cfg, shape, runs=3)
    data = len(footprint.parts(cfg, shape, data_only=True))
    assert [p.bytes for p in three[:data]] == [p.bytes for p in one[:data]]  # the dataset, shared
    for alone, together in zip(one[data:], three[data:], strict=True):
        assert together.bytes == 3 * alone.bytes and together.what.endswith("(x3 seeds)")
    need = sum(p.bytes for p in one)
    monkeypatch.setattr(footprint, "free_bytes", lambda device: (2 * need / footprint.USABLE_SHARE, "the test's GPU"))
    footprint.check_fits(cfg, torch.device("cpu"))  # one seed fits
    with pytest.raises(
        ConfigError, match=r"This cell's 3 seeds in one trial process would need about .* the test's GPU"
    ):
        footprint.check_fits(cfg, torch.device("cpu"), what="This cell's 3 seeds in one trial process", runs=3)


def test_explicit_attention_is_sdpas_arithmetic():
    """A stacked SASRec or BERT4Rec on a GPU attends in plain operators (SDPA's fused kernels fail
    under vmap there): the same outputs and gradients as SDPA, masked positions included."""
    from xlrec.rec_models.sasrec import SelfAttention, attention_mask

    torch.manual_seed(0)
    fused = SelfAttention(32, 4, dropout=0.0)
    explicit = SelfAttention(32, 4, dropout=0.0)
    explicit.load_state_dict(fused.state_dict())
    explicit.explicit = True
    ids = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    x = torch.randn(2, 6, 32)
    outs = []
    for module in (fused, explicit):
        xi = x.clone().requires_grad_()
        y = module(xi, attention_mask(ids, causal=True))
        y.square().sum().backward()
        outs.append((y, xi.grad, module.qkv.weight.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
