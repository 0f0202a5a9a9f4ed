"""The report's significance statistics (xlrec/report/significance.py): the user is the
unit and seeds are replicates. A constructed case where pooling user x seed pairs finds a lead
that the users do not; each test and correction against scipy / statsmodels and known answers;
the two-level bootstrap's coverage and width in simulated designs; the verdict's wording."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_ind, ttest_rel, wilcoxon
from statsmodels.stats.multitest import multipletests

from xlrec.report.significance import (
    Comparison,
    Paired,
    adjust,
    bootstrap_ci,
    compare,
    ndcg_at_10,
    paired,
    verdict,
)

SEEDS = ("7", "42", "123")  # in the order the report lists them


def _long(ranks: np.ndarray, seeds=SEEDS) -> pd.DataFrame:
    """users x seeds ranks as the per-user test tables of every seed, as the report reads them."""
    return pd.concat(
        [
            pd.DataFrame({"seed": s, "user_index": np.arange(len(ranks)), "rank": ranks[:, j]})
            for j, s in enumerate(seeds)
        ],
        ignore_index=True,
    )


def pseudo_replicated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """120 users, 3 seeds. A user's advantage is the user's own: 44 users where A ranks the target
    first and B third to fifth, 29 where it is the other way round, 47 where both miss the top-10,
    in every seed (a seed moves the loser's rank, never the sign). Over users that is 44 against
    29: not significant. Pooled as 360 user x seed pairs it is 132 against 87."""
    n = 120
    wins, losses = np.arange(n) < 44, (np.arange(n) >= 44) & (np.arange(n) < 73)
    a, b = np.full((n, 3), 50), np.full((n, 3), 60)
    for j in range(3):
        a[wins, j], b[wins, j] = 1, 3 + j
        a[losses, j], b[losses, j] = 3 + j, 1
    return _long(a), _long(b)


def test_pooling_the_seeds_finds_a_lead_the_users_do_not():
    a, b = pseudo_replicated()
    # the old test: the user x seed pairs pooled, each a pair of its own
    joined = a.merge(b, on=["seed", "user_index"], suffixes=("_a", "_b"))
    pooled = wilcoxon(ndcg_at_10(joined["rank_a"]), ndcg_at_10(joined["rank_b"]))
    assert len(joined) == 360 and pooled.pvalue < 0.01
    c = adjust([compare("a", "b", paired(a, b))])[0]
    assert c.users == 120 and c.seeds == SEEDS and c.zero_diffs == 47
    assert c.p_wilcoxon > 0.05 and c.p_t > 0.05
    assert pooled.pvalue == pytest.approx(0.00751, abs=5e-5)
    assert c.p_wilcoxon == pytest.approx(0.0792, abs=5e-4)
    assert c.ci_low < 0 < c.ci_high and verdict(c, 0.05).kind == "none"


def test_paired_tables_average_each_user_over_the_seeds_both_models_ran():
    rng = np.random.default_rng(3)
    ranks_a, ranks_b = rng.integers(1, 30, (80, 3)), rng.integers(1, 30, (80, 3))
    a = _long(ranks_a).sample(frac=1.0, random_state=1)  # row order is not the pairing
    b = _long(ranks_b[:, 1:], SEEDS[1:])  # B ran two of A's three seeds
    b = b[~((b["seed"] == "123") & (b["user_index"] == 5))]  # and lacks user 5 in seed 123
    p = paired(a, b)
    assert p.seeds == ("42", "123") and p.a.shape == (80, 2)
    assert np.isnan(p.b[5, 1]) and p.users.tolist() == list(range(80))
    c = compare("a", "b", p)
    # the same by hand: pandas' join and means, scipy's tests
    j = a.merge(b, on=["seed", "user_index"], suffixes=("_a", "_b"))
    j["na"], j["nb"] = ndcg_at_10(j["rank_a"]), ndcg_at_10(j["rank_b"])
    users = j.groupby("user_index")[["na", "nb"]].mean()
    seeds = j.groupby("seed")[["na", "nb"]].mean()
    assert c.users == 80 == len(users)
    assert c.mean_a == pytest.approx(users["na"].mean(), rel=1e-12)
    assert c.diff == pytest.approx((users["na"] - users["nb"]).mean(), rel=1e-12)
    assert c.zero_diffs == int(np.isclose(users["na"], users["nb"], rtol=0, atol=1e-12).sum()) > 0
    expected_w = wilcoxon(users["na"], users["nb"], zero_method="wilcox").pvalue
    assert c.p_wilcoxon == pytest.approx(expected_w, rel=1e-9)
    assert c.p_t == pytest.approx(ttest_rel(users["na"], users["nb"]).pvalue, rel=1e-9)
    assert c.p_welch == pytest.approx(ttest_ind(seeds["na"], seeds["nb"], equal_var=False).pvalue, rel=1e-9)
    assert c.diff_per_seed == pytest.approx([seeds.loc[s, "na"] - seeds.loc[s, "nb"] for s in ("42", "123")], rel=1e-12)
    assert c.per_seed_text() == ", ".join(f"s{s} {seeds.loc[s, 'na'] - seeds.loc[s, 'nb']:+.4f}" for s in ("42", "123"))


def test_known_answers_of_the_tests():
    # Wilcoxon, 10 users all ahead by distinct amounts: exact two-sided p = 2 / 2**10
    d = np.arange(1, 11, dtype=float)[:, None] / 100
    c = compare("a", "b", Paired.from_matrices(d, np.zeros_like(d)))
    assert c.p_wilcoxon == 2 / 1024
    # paired t, differences 1..5: t = 3 / (sqrt(2.5) / sqrt(5)) = 4.2426 on 4 df, p = 0.0132356
    d = np.arange(1, 6, dtype=float)[:, None]
    c = compare("a", "b", Paired.from_matrices(d, np.zeros_like(d)))
    assert c.p_t == pytest.approx(0.0132356, abs=1e-7)
    # Welch over seed means: A's seeds 1, 2, 3, B's 0, 0.5, 1 (users x seeds, two users alike)
    a, b = np.array([[1.0, 2.0, 3.0]] * 2), np.array([[0.0, 0.5, 1.0]] * 2)
    c = compare("a", "b", Paired.from_matrices(a, b))
    assert c.p_welch == pytest.approx(ttest_ind([1, 2, 3], [0, 0.5, 1], equal_var=False).pvalue, rel=1e-12)
    # t = 1.5 / sqrt(1/3 + 1/12) = 2.3238 on Welch-Satterthwaite 2.941 df
    assert c.p_welch == pytest.approx(0.104479, abs=1e-6)
    # nothing differs: p 1, not NaN; one seed: no Welch test
    same = np.array([[0.5], [0.0], [1.0]])
    c = compare("a", "b", Paired.from_matrices(same, same))
    assert (c.p_wilcoxon, c.p_t, c.zero_diffs) == (1.0, 1.0, 3) and np.isnan(c.p_welch)


def _with_p(p_w: float, p_t: float) -> Comparison:
    return Comparison("a", "b", 10, ("1",), 0.0, 0.0, 0.0, -1.0, 1.0, 0, p_w, p_t, float("nan"), (0.0,))


def test_holm_and_benjamini_hochberg_known_answers_and_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005]
    out = adjust([_with_p(x, x / 2) for x in p])
    # by hand: Holm 4*0.005, 3*0.01, max(2*0.03, ...), max(1*0.04, 0.06); BH min over k>=i of p_k*m/k
    assert [c.p_wilcoxon_holm for c in out] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert [c.p_wilcoxon_bh for c in out] == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-15)
    assert [c.p_t_holm for c in out] == pytest.approx([0.015, 0.03, 0.03, 0.01], abs=1e-15)
    rng = np.random.default_rng(0)
    p_w, p_t = rng.uniform(0, 0.2, 7), rng.uniform(0, 0.2, 7)
    out = adjust([_with_p(w, t) for w, t in zip(p_w, p_t)])
    for got, ps, method in (
        ([c.p_wilcoxon_holm for c in out], p_w, "holm"),
        ([c.p_wilcoxon_bh for c in out], p_w, "fdr_bh"),
        ([c.p_t_holm for c in out], p_t, "holm"),
        ([c.p_t_bh for c in out], p_t, "fdr_bh"),
    ):
        assert got == pytest.approx(multipletests(ps, method=method)[1], rel=1e-12)
    # a test that could not run stays NaN and is not counted among the comparisons
    out = adjust([_with_p(0.01, float("nan")), _with_p(0.02, 0.02)])
    assert [c.p_wilcoxon_holm for c in out] == pytest.approx([0.02, 0.02])
    assert np.isnan(out[0].p_t_holm) and out[1].p_t_holm == pytest.approx(0.02)


def _design(rng, n=200, k=10, delta=0.01, seed_sd=0.03, user_sd=0.05, noise=0.03) -> np.ndarray:
    """users x seeds differences: the true difference, a training effect per seed shared by all
    users, a user effect shared by all seeds, and noise."""
    return (
        delta + rng.normal(0, seed_sd, k)[None, :] + rng.normal(0, user_sd, n)[:, None] + rng.normal(0, noise, (n, k))
    )


def test_two_level_bootstrap_covers_the_true_difference_where_the_users_only_one_does_not():
    rng = np.random.default_rng(7)
    two, users_only, ratios = 0, 0, []
    for i in range(100):
        d = _design(rng)
        lo, hi = bootstrap_ci(d, n_boot=400, seed=i)
        lo1, hi1 = bootstrap_ci(d, n_boot=400, seed=i, resample_seeds=False)
        two += lo <= 0.01 <= hi
        users_only += lo1 <= 0.01 <= hi1
        ratios.append((hi - lo) / (hi1 - lo1))
    assert two >= 88 and users_only <= 70
    assert np.median(ratios) > 1.8
    # no seed effect: the two intervals are about as wide
    ratios = []
    for i in range(30):
        d = _design(rng, seed_sd=0.0)
        lo, hi = bootstrap_ci(d, n_boot=400, seed=i)
        lo1, hi1 = bootstrap_ci(d, n_boot=400, seed=i, resample_seeds=False)
        ratios.append((hi - lo) / (hi1 - lo1))
    assert 0.9 < np.median(ratios) < 1.2


def test_the_interval_is_seeded_and_compare_uses_the_two_level_one():
    d = _design(np.random.default_rng(1), k=3)
    assert bootstrap_ci(d, seed=5) == bootstrap_ci(d, seed=5) != bootstrap_ci(d, seed=6)
    c = compare("a", "b", Paired.from_matrices(d, np.zeros_like(d)), seed=5)
    assert (c.ci_low, c.ci_high) == bootstrap_ci(d, seed=5)


def test_one_seed_driving_the_lead_shows_per_seed_and_the_verdict_does_not_call_it_significant():
    rng = np.random.default_rng(11)
    b = rng.uniform(0.0, 0.5, (600, 3))
    a = b + rng.normal(0, 0.02, (600, 3))
    a[:, 0] += 0.03  # seed 7's A trained well; 42 and 123 show no lead
    c = adjust([compare("a", "b", Paired.from_matrices(a, b, SEEDS))])[0]
    assert c.p_wilcoxon_holm < 1e-6 and c.p_t_holm < 1e-6  # over users the lead is plain
    assert c.ci_low < 0 < c.ci_high  # but 3 seeds, one of which carries it
    assert c.diff_per_seed[0] == pytest.approx(0.03, abs=0.005)
    assert max(abs(x) for x in c.diff_per_seed[1:]) < 0.005
    assert c.per_seed_text() == "s7 +0.0299, s42 +0.0008, s123 +0.0005"
    v = verdict(c, 0.05)
    assert v.kind == "disagree" and v.short == "tests disagree" and "covers 0" in v.text


def test_verdict_wording_follows_the_tests():
    base = replace(_with_p(0.5, 0.5), p_wilcoxon_holm=0.5, p_t_holm=0.5, diff=-0.01, ci_low=-0.02, ci_high=0.001)
    v = verdict(base, 0.05)
    assert (v.kind, v.short) == ("none", "no significant difference")
    assert v.text == (
        "no significant difference (Holm p Wilcoxon 0.5, t-test 0.5, each ≥ α 0.05; 95% CI [-0.0200, +0.0010] covers 0)"
    )
    ahead = replace(base, p_wilcoxon_holm=0.001, p_t_holm=0.0004, ci_high=-0.001)
    v = verdict(ahead, 0.05)
    assert (v.kind, v.leader, v.short) == ("ahead", "b", "b significantly ahead")
    assert v.text == "b is significantly ahead (Holm p Wilcoxon 0.001, t-test 0.0004; 95% CI [-0.0200, -0.0010])"
    # the interval excludes 0 but a test does not reject; both reject but the interval covers 0;
    # the tests split; p just at alpha is not below it
    for c in (
        replace(ahead, p_t_holm=0.2),
        replace(ahead, ci_high=0.001),
        replace(base, p_wilcoxon_holm=0.01),
        replace(ahead, p_wilcoxon_holm=0.05),
    ):
        v = verdict(c, 0.05)
        assert v.kind == "disagree" and v.leader is None and v.text.startswith("the tests disagree (Holm p Wilcoxon")
    assert verdict(replace(ahead, p_t_holm=0.2), 0.05).text.endswith("excludes 0)")
    # alpha is the caller's
    assert verdict(replace(ahead, p_wilcoxon_holm=0.02, p_t_holm=0.02), 0.01).kind == "disagree"


def test_models_with_no_users_in_common_are_not_tested():
    a = _long(np.ones((3, 3), dtype=int))
    b = _long(np.ones((3, 3), dtype=int)).assign(user_index=lambda t: t["user_index"] + 10)
    c = adjust([compare("a", "b", paired(a, b))])[0]
    assert (c.users, c.seeds) == (0, ()) and np.isnan(c.p_wilcoxon_holm)
    v = verdict(c, 0.05)
    assert (v.kind, v.short, v.text) == ("untested", "not tested", "not tested (0 paired users)")
