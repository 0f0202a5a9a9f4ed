"""NextItNet plugin tests: need only torch and xlrec importable (the module is imported directly)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from xlrec_nextitnet.model import NextItNet, NextItNetSettings

from xlrec.errors import ConfigError
from xlrec.settings import TrainConfig

N_ITEMS = 30


def make(seed: int = 0, scramble: bool = True, **settings) -> NextItNet:
    """A small model in eval mode; `scramble` draws every parameter (layer-norm biases, the padding
    row) away from its initial value, so pad handling that relies on zero biases would show."""
    torch.manual_seed(seed)
    s = NextItNetSettings(**{"embedding_dim": 16, "num_blocks": 2, "dilations": [1, 2], "dropout": 0.1, **settings})
    s.validate()
    model = NextItNet(N_ITEMS, s, max_len=32)
    if scramble:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
    return model.eval()


def items(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, N_ITEMS + 1, shape, generator=torch.Generator().manual_seed(seed))


def test_shapes():
    model = make()
    ids = items(3, 12)
    ids[1, :5] = 0
    hidden = model.encode(ids)
    assert hidden.shape == (3, 12, 16)
    assert model.next_item_scores(ids).shape == (3, N_ITEMS + 1)
    assert torch.isfinite(hidden).all()
    assert hidden[1, :5].abs().max().item() == 0.0  # pad positions carry nothing


def test_causal():
    model = make(dilations=[1, 2, 4])
    ids = items(4, 24)
    base = model.encode(ids)
    for t in (0, 5, 11, 22):
        changed = ids.clone()
        changed[:, t + 1 :] = items(4, 24 - t - 1, seed=t + 7)
        out = model.encode(changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
        assert (out[:, t + 1 :] - base[:, t + 1 :]).abs().max().item() > 1e-3  # later positions do see them


def test_receptive_field_follows_the_dilations():
    # kernel 2, one block dilated 1 then 2: the state at t reads items t-3..t and nothing earlier
    model = make(kernel_size=2, dilations=[1], num_blocks=1)
    assert model.receptive_field == 4
    ids = items(2, 10)
    base = model.encode(ids)[:, 9]
    for pos, seen in ((6, True), (5, False)):
        changed = ids.clone()
        changed[:, pos] = changed[:, pos] % N_ITEMS + 1
        moved = (model.encode(changed)[:, 9] - base).abs().max().item()
        assert (moved > 1e-4) if seen else (moved == 0.0), (pos, moved)
    # the defaults: [1, 4] x 2 groups, kernel 3 -> dilations 1, 2, 4, 8 twice: 1 + 2 * 2 * 15 = 61
    assert NextItNet(N_ITEMS, NextItNetSettings(), max_len=50).receptive_field == 61


def test_left_padding_is_inert():
    model = make()
    history = items(2, 7)
    scores = [
        model.next_item_scores(torch.cat([torch.zeros(2, pads, dtype=torch.long), history], dim=1))
        for pads in (0, 3, 17)
    ]
    assert scores[0].abs().max().item() > 1.0  # scrambled weights: scores far from 0
    for other in scores[1:]:
        assert torch.allclose(other, scores[0], atol=1e-5, rtol=0)
    # mixed padding in one batch: each row as if alone
    batch = torch.zeros(2, 12, dtype=torch.long)
    batch[0, 5:] = history[0]
    batch[1, 9:] = history[1, 4:]
    alone = model.next_item_scores(history[1:, 4:])
    assert torch.allclose(model.next_item_scores(batch)[1], alone[0], atol=1e-5, rtol=0)
    assert torch.allclose(model.next_item_scores(batch)[0], scores[0][0], atol=1e-5, rtol=0)


def test_parameter_count():
    # embedding (N+1)D; per residual block 2 layer norms (2D each) + 2 convs (k*D*D + D);
    # blocks = num_blocks x len(dilations); final layer norm 2D; untied output (N+1)D, no bias
    n, d, k, groups, dilations = 10, 8, 3, 2, [1, 2]
    model = NextItNet(n, NextItNetSettings(embedding_dim=d, num_blocks=groups, kernel_size=k, dilations=dilations), 16)
    blocks = groups * len(dilations)
    expected = 2 * (n + 1) * d + blocks * (2 * k * d * d + 6 * d) + 2 * d
    assert expected == 1920
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.blocks) == 4
    assert [b.conv2.conv.dilation[0] for b in model.blocks] == [2, 4, 2, 4]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kernel_size": 1}, "kernel_size must be at least 2"),
        ({"dilations": []}, "dilations must name at least one"),
        ({"dilations": [1, 0]}, "dilations must all be positive"),
        ({"num_blocks": 0}, "num_blocks must be positive"),
        ({"embedding_dim": 0}, "embedding_dim must be positive"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ],
)
def test_settings_validation(change, message):
    NextItNetSettings().validate()  # the defaults are valid
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(NextItNetSettings(), **change).validate()
    assert message in str(err.value)


def test_gradients_reach_every_parameter():
    model = make(scramble=False).train()
    window = items(4, 13)
    window[0, :4] = 0
    hidden, targets = model.training_pairs(window, num_targets=12)
    assert hidden.shape == (4 * 12, 16) and targets.shape == (48,)
    loss = torch.nn.functional.cross_entropy(model.score(hidden), targets, ignore_index=-1)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum().item() > 0, name


def test_xlrec_accepts_the_plugin(monkeypatch):
    """xlrec's own checks: registration by name, the settings rules, the defaults file, build_model's
    interface check."""
    from xlrec.catalog import models
    from xlrec.config import resolve_config
    from xlrec.rec_models import build_model

    monkeypatch.setenv("XLREC_MODELS", "nextitnet=xlrec_nextitnet.model:NextItNet")
    assert models.get("nextitnet").load() is NextItNet
    cfg = resolve_config("nextitnet", "ml-1m")
    assert cfg.arch == NextItNetSettings(embedding_dim=64, num_blocks=2, kernel_size=3, dilations=[1, 4, 16])
    assert (cfg.lr, cfg.max_len) == (0.001, 200)
    assert resolve_config("nextitnet", "ml-100k", overrides={"dilations": [1, 2, 4]}).arch.dilations == [1, 2, 4]
    with pytest.raises(ConfigError, match="kernel_size"):
        resolve_config("sasrec", "ml-100k", overrides={"kernel_size": 5})  # exclusive to NextItNet
    model = build_model("nextitnet", N_ITEMS, TrainConfig(model="nextitnet", arch=NextItNetSettings()))
    assert isinstance(model, NextItNet) and model.output.weight.shape == (N_ITEMS + 1, 64)
