"""Model interface, parameter counts (the paper's Tables 4 and 6) and padding invariance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xlrec.catalog.models import BUILTIN
from xlrec.config import resolve_config
from xlrec.errors import ConfigError
from xlrec.rec_models import build_model, parameter_breakdown
from xlrec.rec_models.bert4rec import BERT4RecSettings
from xlrec.rec_models.sasrec import SASRecSettings
from xlrec.rec_models.xlstm import XLSTMSettings
from xlrec.settings import TrainConfig
from xlrec.training.losses import full_softmax_ce

PAPER_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "paper"
# the paper's layouts (configs/paper/*.yaml) as settings fields
SASREC_PAPER = {"num_blocks": 1, "ffn_mult": 4, "norm_first": False, "output_bias": True}
BERT4REC_PAPER = {"num_blocks": 2, "ffn_mult": 1, "norm_first": False, "output_head": True, "output_bias": True}


@pytest.mark.parametrize(
    "num_items,dim,heads,blocks,expected",
    [
        (1682, 64, 2, 1, 269_188),
        (3706, 128, 2, 2, 1_376_904),
        (10677, 256, 8, 4, 8_698_176),
    ],
)
def test_xlstm_parameter_count_matches_paper_table6(num_items, dim, heads, blocks, expected):
    cfg = TrainConfig(arch=XLSTMSettings(embedding_dim=dim, num_heads=heads, num_blocks=blocks))
    counts = parameter_breakdown(build_model("xlstm", num_items, cfg))
    assert counts["total"] == expected
    assert counts["embedding"] == counts["output"] == (num_items + 1) * dim
    assert (
        sum(v for k, v in counts.items() if k.startswith("block_")) + counts["final_norm"]
        == expected - 2 * (num_items + 1) * dim
    )


@pytest.mark.parametrize(
    "name,expected",
    [
        ("sasrec", {32: 269_139, 64: 271_187, 128: 275_283}),
        ("bert4rec", {32: 273_811, 64: 275_859, 128: 279_955}),
    ],
)
def test_paper_layouts_match_table4_parameter_counts(name, expected):
    for max_len, count in expected.items():
        cfg = resolve_config(name, "ml-100k", PAPER_CONFIGS / f"{name}.yaml", {"max_len": max_len})
        assert parameter_breakdown(build_model(name, 1682, cfg))["total"] == count, max_len
    assert resolve_config("sasrec", "ml-100k", PAPER_CONFIGS / "sasrec.yaml").sample_mode == "prefix"


def test_layout_settings_are_refused_for_models_without_them():
    with pytest.raises(ConfigError, match="output_bias, norm_first only shape the sasrec and bert4rec layouts"):
        resolve_config("gru4rec", "ml-100k", overrides={"output_bias": True, "norm_first": False})


@pytest.mark.parametrize("tied", [False, True])
def test_biased_output_layer_reaches_the_fused_loss(tied):
    """output_operands folds the bias into one matrix; loss and gradients equal F.cross_entropy's."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        model="sasrec", max_len=10, arch=SASRecSettings(embedding_dim=16, output_bias=True, tied_output=tied)
    )
    model = build_model("sasrec", 30, cfg)
    with torch.no_grad():
        model.output_bias.normal_()
    hidden = torch.randn(7, 16, requires_grad=True)
    targets = torch.randint(1, 31, (7,))
    wrt = (hidden, model.output_bias, model.output_weight if not tied else model.item_embedding.weight)
    ref = F.cross_entropy(model.score(hidden), targets)
    got = full_softmax_ce(*model.output_operands(hidden), targets)
    torch.testing.assert_close(got, ref)
    for a, b in zip(torch.autograd.grad(got, wrt), torch.autograd.grad(ref, wrt)):
        torch.testing.assert_close(a, b)


def test_bert4rec_last_item_windows():
    cfg = TrainConfig(model="bert4rec", max_len=10, arch=BERT4RecSettings(embedding_dim=16, mask_last_share=1.0))
    model = build_model("bert4rec", 30, cfg)
    window = _batch(30, 10, B=6)
    _, targets = model.training_pairs(window, 10, torch.Generator().manual_seed(0))
    assert torch.equal(targets, window[:, -1])  # each window trains its last item only
    model.mask_last_share = 0.0
    _, targets = model.training_pairs(window, 10, torch.Generator().manual_seed(0))
    assert len(targets) > 6  # cloze masks: about mask_prob of all 60 positions


def _batch(num_items: int, L: int, B: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, num_items + 1, (B, L), generator=g)


@pytest.mark.parametrize(
    "name,layout",
    [
        ("xlstm", {}),
        ("xlstm-s", {}),
        ("sasrec", {}),
        ("bert4rec", {}),
        ("gru4rec", {}),
        ("lstm", {}),
        ("sasrec", SASREC_PAPER),
        ("bert4rec", BERT4REC_PAPER),
    ],
)
def test_left_padding_does_not_change_outputs(name, layout):
    """Outputs at real positions are the same with 0 or 13 extra pads on the left."""
    torch.manual_seed(0)
    L = 12
    cfg = resolve_config(
        name,
        "synthetic",
        overrides={
            "embedding_dim": 16,
            "num_heads": 2,
            "num_blocks": 2 if name == "xlstm-s" else 1,
            "max_len": L + 13,
            "dropout": 0.0,
            "slstm_at": [1],
            **layout,
        },
    )
    model = build_model(name, 40, cfg).eval()
    ids = _batch(40, L)
    padded = torch.cat([torch.zeros(3, 13, dtype=ids.dtype), ids], dim=1)
    with torch.no_grad():
        if name == "bert4rec":  # bidirectional: compare the next-item scores (the [MASK] position)
            a = model.next_item_scores(torch.cat([torch.zeros(3, 1, dtype=ids.dtype), ids], 1)[:, -L - 1 :])
            b = model.next_item_scores(padded)
            # positions differ (absolute position embeddings are anchored at the latest item), so
            # only the pad count changes: outputs must agree
        else:
            a = model.encode(ids)
            b = model.encode(padded)[:, 13:]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_registry_and_unknown_model():
    assert set(BUILTIN) == {"xlstm", "xlstm-s", "sasrec", "bert4rec", "gru4rec", "lstm", "pop"}
    with pytest.raises(ConfigError, match="Unknown model 'nope'"):
        build_model("nope", 10, resolve_config("xlstm"))


@pytest.mark.parametrize("name", ["xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"])
def test_scores_cover_every_item(name):
    cfg = resolve_config(name, "ml-100k", overrides={"embedding_dim": 16, "max_len": 10})
    model = build_model(name, 25, cfg).eval()
    scores = model.next_item_scores(_batch(25, 10))
    assert scores.shape == (3, 26)
    assert torch.isfinite(scores).all()


def test_a_default_stride_longer_than_the_users_max_len_becomes_non_overlapping_windows():
    assert resolve_config("xlstm", "ml-100k").window_stride == 10  # the ML-100K default, for max_len 100
    assert resolve_config("xlstm", "ml-100k", overrides={"max_len": 8}).window_stride == 0
    assert resolve_config("xlstm", "ml-100k", overrides={"max_len": 12}).window_stride == 10
    with pytest.raises(ConfigError, match=r"window_stride must be in \[0, max_len\], got 10"):
        resolve_config("xlstm", "ml-100k", overrides={"max_len": 8, "window_stride": 10})


def test_config_resolution_order(tmp_path):
    cfg = resolve_config("xlstm", "ml-1m")
    assert (cfg.arch.embedding_dim, cfg.arch.num_heads, cfg.arch.num_blocks, cfg.batch_size) == (256, 4, 4, 64)
    assert cfg.prep.min_item_interactions == 5
    f = tmp_path / "c.yaml"
    f.write_text("embedding_dim: 32\nlr: 0.01\nprep:\n  min_rating: 4\n")
    cfg = resolve_config("xlstm", "ml-1m", f, {"lr": 0.5})
    assert (cfg.arch.embedding_dim, cfg.lr, cfg.prep.min_rating) == (32, 0.5, 4)
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        resolve_config("xlstm", "ml-100k", overrides={"bogus": 1})
    with pytest.raises(ConfigError, match="divisible"):
        resolve_config("xlstm", "ml-100k", overrides={"embedding_dim": 30, "num_heads": 4})
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        resolve_config("sasrec", "ml-100k", overrides={"ema_decay": 1.0})
    with pytest.raises(ConfigError, match="adam_beta2 must be in"):
        resolve_config("sasrec", "ml-100k", overrides={"adam_beta2": 1.0})
    with pytest.raises(ConfigError, match="min_epochs must be >= 0"):
        resolve_config("xlstm", "ml-100k", overrides={"min_epochs": -1})
    assert (
        resolve_config("xlstm", "ml-100k").min_epochs,
        resolve_config("sasrec", "ml-100k").min_epochs,
        resolve_config("sasrec", "ml-1m").min_epochs,
    ) == (15, 20, 0)  # ML-100K defaults only


def test_xlstm_cpu_kernel_path_is_chunk_size_invariant():
    """The native chunkwise kernels (the CPU path) give the same outputs for any chunk size,
    i.e. the chunked recurrence matches the (single-chunk) parallel form."""
    from xlrec.rec_models.xlstm import XLSTMRec

    torch.manual_seed(0)
    settings = XLSTMSettings(embedding_dim=32, num_heads=2, num_blocks=2, dropout=0.0)
    a = XLSTMRec(50, settings, max_len=64, chunk_size=16).eval()
    b = XLSTMRec(50, settings, max_len=64, chunk_size=64).eval()
    b.load_state_dict(a.state_dict())
    ids = _batch(50, 64)
    ids[:, :9] = 0
    with torch.no_grad():
        torch.testing.assert_close(a.encode(ids), b.encode(ids), atol=2e-5, rtol=1e-4)


def test_xlstm_heads_too_narrow_for_the_triton_kernels_get_the_native_ones():
    from xlrec.device import mlstm_kernel

    assert mlstm_kernel("triton", 64, 2) == "triton" and mlstm_kernel("triton", 256, 4) == "triton"
    assert mlstm_kernel("triton", 32, 2) == "native" and mlstm_kernel("triton", 64, 4) == "native"
    assert mlstm_kernel("native", 256, 1) == "native"
    cfg = resolve_config("xlstm", "ml-100k", overrides={"embedding_dim": 32, "num_heads": 2})
    model = build_model("xlstm", 25, cfg, kernel="triton")  # built on CPU: no Triton kernel is compiled
    assert (model.kernel, model.chunk_size) == ("native", 50)  # max_len 50: one chunk, no padding


def test_native_xlstm_chunks_divide_max_len_where_they_can_and_give_the_same_scores():
    from xlrec.device import mlstm_chunk_size
    from xlrec.rec_models.xlstm import XLSTMRec

    assert [mlstm_chunk_size("native", n) for n in (50, 200, 128, 32, 37, 67, 8)] == [50, 50, 64, 32, 37, 16, 16]
    assert mlstm_chunk_size("triton", 50) == 64
    cfg = resolve_config("xlstm", "ml-100k", overrides={"embedding_dim": 16, "num_heads": 2})
    torch.manual_seed(0)
    a = XLSTMRec(30, cfg.arch, 50, chunk_size=16).eval()  # pads 50 to 64 on the left
    b = XLSTMRec(30, cfg.arch, 50).eval()
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 31, (4, 50))
    with torch.no_grad():
        assert torch.allclose(a.encode(ids), b.encode(ids), atol=1e-4)


def test_xlstm_head_norms_take_the_two_pass_variance_with_xlstms_outputs_and_gradients():
    """The per-head LayerNorms are swapped for the two-pass form (faster on a CPU): same state
    dict, same outputs and gradients as xlstm's own norm, and the swap survives a deep copy
    (the weight average copies the model)."""
    import copy

    from xlstm.xlstm_large.components import MultiHeadLayerNorm

    from xlrec.rec_models.xlstm import XLSTMRec

    torch.manual_seed(0)
    settings = XLSTMSettings(embedding_dim=32, num_heads=2, num_blocks=2, dropout=0.0)
    model = XLSTMRec(40, settings, max_len=20)
    norms = [m for m in model.modules() if isinstance(m, MultiHeadLayerNorm)]
    assert len(norms) == 2 and all(type(m) is not MultiHeadLayerNorm for m in norms)
    assert all(type(m) is type(norms[0]) for m in copy.deepcopy(model).modules() if isinstance(m, MultiHeadLayerNorm))
    reference = MultiHeadLayerNorm(num_heads=2, head_dim=16)
    reference.load_state_dict(norms[0].state_dict())
    x = (torch.randn(3, 7, 2, 16) * 5 + 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    got, want = norms[0](x), reference(x_ref)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    got.square().sum().backward()
    want.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    assert set(model.state_dict()) == set(XLSTMRec(40, settings, max_len=20).state_dict())


def test_xlstm_runs_the_parallel_form_where_one_native_chunk_holds_the_sequence_with_the_same_outputs():
    """Native kernels with the whole sequence in one chunk run mlstm_kernels' parallel form (faster
    on a CPU); its outputs and gradients are the chunkwise kernel's. Triton, and sequences of
    several chunks, keep the chunkwise kernels."""
    from xlrec.device import mlstm_parallel_form
    from xlrec.rec_models.xlstm import XLSTMRec

    assert mlstm_parallel_form("native", 50, 50) and mlstm_parallel_form("native", 16, 8)
    assert not mlstm_parallel_form("native", 50, 200) and not mlstm_parallel_form("triton", 64, 50)
    settings = XLSTMSettings(embedding_dim=32, num_heads=2, num_blocks=2, dropout=0.0)
    torch.manual_seed(0)
    parallel = XLSTMRec(40, settings, max_len=24)
    chunked = XLSTMRec(40, settings, max_len=24, chunk_size=8)  # three chunks: the chunkwise kernel
    assert parallel.parallel_form and not chunked.parallel_form
    chunked.load_state_dict(parallel.state_dict())
    ids = _batch(40, 24)
    ids[:, :5] = 0
    outputs = [model.encode(ids) for model in (parallel, chunked)]
    torch.testing.assert_close(outputs[0], outputs[1], atol=2e-5, rtol=1e-4)
    for out in outputs:
        out.square().sum().backward()
    for (name, a), b in zip(parallel.named_parameters(), chunked.parameters(), strict=True):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_genre_profile_fallback_ranks_by_genre_overlap_then_popularity():
    """The genre cold-start fallback: a history of comedies ranks comedies first (the more popular
    first), then the rest by popularity; an empty history is the popularity ranking."""
    import numpy as np

    from xlrec.rec_models.pop import GenreProfileRec

    genres = ["", "Comedy", "Comedy|Romance", "Drama", "Action", "Comedy"]
    popularity = np.array([0, 5, 1, 9, 7, 3], dtype=float)
    net = GenreProfileRec(5, genres, popularity)
    scores = net.next_item_scores(torch.tensor([[0, 0, 1], [0, 0, 0]]))
    order = torch.argsort(scores[:, 1:], dim=1, descending=True) + 1
    assert order[0].tolist() == [1, 5, 2, 3, 4]  # the comedies (overlap 1) by popularity, then the rest
    assert order[1].tolist() == [3, 4, 1, 5, 2]  # no profile: popularity
