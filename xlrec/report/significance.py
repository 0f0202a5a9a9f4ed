"""Is one model's lead real? Paired tests over the same test users, seeds as replicates.

Two runs of different models on the same dataset and split score the same test users. The unit
of the tests is the user; the seeds are replicates of training, not more users. Pooling the
user x seed pairs (as this module once did) counts each user once per seed, as if there were
that many times more independent users (pseudo-replication), and leaves the seed-to-seed
variance of training out of every test. So, per comparison of models a and b:

- each user's NDCG@10 is averaged over the seeds both models ran (`paired`), one pair per user;
- the Wilcoxon signed-rank test and the paired t-test over those users (scipy). Users whose
  seed-averaged difference is exactly 0 (mostly both models missing the top-10 in every seed)
  carry no sign: Wilcoxon drops them (zero_method "wilcox", stated, not left to a default) and
  `zero_diffs` counts them; the t-test keeps them;
- a two-level bootstrap 95% interval of the mean difference: each draw resamples the seeds, then
  the users (both with replacement, seeded), so the seeds' spread widens it;
- per seed, the difference of the two models' mean NDCG@10 over the same users (a reader sees
  whether one seed drives the lead), and Welch's t-test over the seed means (n = seeds);
- `adjust`: Holm (family-wise) and Benjamini-Hochberg (false discovery rate) adjusted p-values
  for each of the two paired tests across the comparisons of one table (statsmodels);
- `verdict`: the wording, which follows all of the above (see its docstring).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

NAN = float("nan")


def ndcg_at_10(ranks: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 from the target's 1-based rank (one relevant item: IDCG = 1); the
    formula of xlrec.training.metrics, per user instead of averaged."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def _seed_order(seed: object) -> tuple[int, str]:
    return (len(str(seed)), str(seed))  # 42 before 123, as the protocol lists them


@dataclass(frozen=True)
class Paired:
    """Per-user NDCG@10 of two models over the seeds both ran: users x seeds, NaN where a user
    has no pair in a seed."""

    a: np.ndarray
    b: np.ndarray
    seeds: tuple[str, ...]
    users: np.ndarray  # user_index of each row

    @classmethod
    def from_matrices(cls, a: np.ndarray, b: np.ndarray, seeds: tuple[str, ...] | None = None) -> Paired:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape and a.ndim == 2, "users x seeds, the same for both models"
        seeds = seeds if seeds is not None else tuple(str(s) for s in range(a.shape[1]))
        return cls(a, b, seeds, np.arange(a.shape[0]))


def paired(a: pd.DataFrame, b: pd.DataFrame) -> Paired:
    """Two models' per-user test tables (each the tables of every seed, with a `seed` column)
    paired on (seed, user_index): the seeds and users both have, as users x seeds matrices. A
    user with several test cases (a temporal split's `all` targets) pairs them case by case, in
    their order, and enters with their mean: the user stays the unit."""

    def cases(t: pd.DataFrame) -> pd.DataFrame:
        return t[["seed", "user_index", "rank"]].assign(case=t.groupby(["seed", "user_index"]).cumcount())

    joined = cases(a).merge(cases(b), on=["seed", "user_index", "case"], suffixes=("_a", "_b"))
    joined = joined.assign(
        seed=joined["seed"].astype(str), a=ndcg_at_10(joined["rank_a"]), b=ndcg_at_10(joined["rank_b"])
    )
    if joined.empty:
        return Paired(np.empty((0, 0)), np.empty((0, 0)), (), np.empty(0, dtype=np.int64))
    seeds = tuple(sorted(joined["seed"].unique(), key=_seed_order))
    wide = joined.pivot_table(index="user_index", columns="seed", values=["a", "b"], aggfunc="mean", dropna=False)
    users = wide.index.to_numpy()
    return Paired(
        wide["a"].reindex(columns=list(seeds)).to_numpy(np.float64),
        wide["b"].reindex(columns=list(seeds)).to_numpy(np.float64),
        seeds,
        users,
    )


def bootstrap_ci(
    diffs: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    resample_seeds: bool = True,
    level: float = 0.95,
    chunk: int = 250,
) -> tuple[float, float]:
    """Percentile interval of the mean over users of each user's seed-mean difference.

    `diffs` is users x seeds (NaN where missing). Two-level: each draw resamples the seeds (the
    same draw for every user: seeds are replicates of the whole training) and then the users,
    both with replacement; `resample_seeds=False` is the users-only bootstrap, which treats the
    seeds' mean as fixed and so leaves their variance out."""
    d = np.asarray(diffs, dtype=np.float64)
    n, k = d.shape
    if n == 0 or k == 0:
        return NAN, NAN
    present = ~np.isnan(d)
    filled = np.where(present, d, 0.0)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        weights = rng.multinomial(k, np.full(k, 1.0 / k), size=m).T if resample_seeds else np.ones((k, m))
        num, den = filled @ weights, present @ weights  # n x m: each user's sum and count over drawn seeds
        pick = rng.integers(0, n, size=(m, n))
        cols = np.arange(m)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a draw where a user has no drawn seed
            stats[start : start + m] = np.nanmean(num[pick, cols] / den[pick, cols], axis=1)
    low, high = np.nanquantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    users: int  # users paired (each one pair: its NDCG@10 averaged over the seeds), not user x seed
    seeds: tuple[str, ...]  # the seeds both models ran
    mean_a: float
    mean_b: float
    diff: float  # mean over users of a - b
    ci_low: float  # two-level bootstrap 95% interval of `diff`
    ci_high: float
    zero_diffs: int  # users with a - b == 0: no sign, dropped by Wilcoxon
    p_wilcoxon: float  # two-sided, over users
    p_t: float  # paired t-test, two-sided, over users
    p_welch: float  # Welch's t-test over the seed means (NaN with fewer than 2 seeds)
    diff_per_seed: tuple[float, ...]  # a - b of the mean over the same users, per seed in `seeds`
    p_wilcoxon_holm: float = NAN
    p_wilcoxon_bh: float = NAN
    p_t_holm: float = NAN
    p_t_bh: float = NAN

    def per_seed_text(self) -> str:
        return ", ".join(f"s{s} {d:+.4f}" for s, d in zip(self.seeds, self.diff_per_seed))


def compare(a_name: str, b_name: str, data: Paired, n_boot: int = 2000, seed: int = 0) -> Comparison:
    from scipy.stats import ttest_ind, ttest_rel, wilcoxon

    keep = ~(np.isnan(data.a) | np.isnan(data.b))
    a, b = np.where(keep, data.a, np.nan), np.where(keep, data.b, np.nan)
    has = keep.any(axis=1)
    a, b = a[has], b[has]
    n = len(a)
    if n == 0:
        return Comparison(a_name, b_name, 0, data.seeds, *(NAN,) * 5, 0, NAN, NAN, NAN, ())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xa, xb = np.nanmean(a, axis=1), np.nanmean(b, axis=1)  # each user's mean over the seeds
        seed_a, seed_b = np.nanmean(a, axis=0), np.nanmean(b, axis=0)  # each seed's mean over users
    # Rounded to 1e-12: differences of seed means that are equal (or zero) but summed from other
    # NDCG values can differ in the last bits; Wilcoxon ranks them as the ties (zeros) they are.
    d = np.round(xa - xb, 12)
    zeros = int((d == 0).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on constant samples: handled below
        p_w = float(wilcoxon(d, zero_method="wilcox").pvalue) if zeros < n else 1.0
        p_t = 1.0 if zeros == n else (float(ttest_rel(xa, xb).pvalue) if n > 1 else NAN)
        k = len(data.seeds)
        p_welch = float(ttest_ind(seed_a, seed_b, equal_var=False).pvalue) if k > 1 else NAN
        if k > 1 and np.array_equal(seed_a, seed_b):
            p_welch = 1.0
    low, high = bootstrap_ci(a - b, n_boot=n_boot, seed=seed)
    return Comparison(
        a_name,
        b_name,
        n,
        data.seeds,
        float(xa.mean()),
        float(xb.mean()),
        float((xa - xb).mean()),
        low,
        high,
        zeros,
        p_w,
        p_t,
        p_welch,
        tuple(float(v) for v in seed_a - seed_b),
    )


def _adjusted(p: list[float], method: str) -> list[float]:
    """statsmodels' adjusted p-values over the finite ones (a test that could not run stays NaN)."""
    from statsmodels.stats.multitest import multipletests

    values = np.asarray(p, dtype=np.float64)
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if ok.any():
        out[ok] = multipletests(values[ok], method=method)[1]
    return [float(v) for v in out]


def adjust(comparisons: list[Comparison]) -> list[Comparison]:
    """Holm- and Benjamini-Hochberg-adjusted p-values of both paired tests across `comparisons`
    (the comparisons of one table), in the input order."""
    pw, pt = [c.p_wilcoxon for c in comparisons], [c.p_t for c in comparisons]
    return [
        replace(c, p_wilcoxon_holm=wh, p_wilcoxon_bh=wb, p_t_holm=th, p_t_bh=tb)
        for c, wh, wb, th, tb in zip(
            comparisons,
            _adjusted(pw, "holm"),
            _adjusted(pw, "fdr_bh"),
            _adjusted(pt, "holm"),
            _adjusted(pt, "fdr_bh"),
        )
    ]


@dataclass(frozen=True)
class Verdict:
    kind: str  # "ahead", "none", "disagree", or "untested" (too few users for a test or interval)
    leader: str | None  # the model significantly ahead (kind "ahead")
    short: str  # the table's cell
    text: str  # the sentence, with its numbers


def _p(p: float) -> str:
    return f"{p:.2g}"


def verdict(c: Comparison, alpha: float) -> Verdict:
    """The wording the tests allow, on the Holm-adjusted p-values of both paired tests and the
    two-level interval: "significantly ahead" only when both adjusted p < alpha and the interval
    excludes 0; "no significant difference" only when the interval covers 0 and both adjusted
    p >= alpha; otherwise the tests disagree, and the sentence gives each. Where a test or the
    interval could not be computed (no paired users, one user), nothing is claimed."""
    if any(np.isnan(x) for x in (c.p_wilcoxon_holm, c.p_t_holm, c.ci_low, c.ci_high)):
        return Verdict("untested", None, "not tested", f"not tested ({c.users} paired users)")
    ps = f"Holm p Wilcoxon {_p(c.p_wilcoxon_holm)}, t-test {_p(c.p_t_holm)}"
    ci = f"95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    significant = [p < alpha for p in (c.p_wilcoxon_holm, c.p_t_holm)]
    covers = not (c.ci_low > 0 or c.ci_high < 0)
    if all(significant) and not covers:
        leader = c.a if c.diff > 0 else c.b
        return Verdict(
            "ahead", leader, f"{leader} significantly ahead", f"{leader} is significantly ahead ({ps}; {ci})"
        )
    if not any(significant) and covers:
        return Verdict(
            "none",
            None,
            "no significant difference",
            f"no significant difference ({ps}, each ≥ α {alpha:g}; {ci} covers 0)",
        )
    return Verdict(
        "disagree",
        None,
        "tests disagree",
        f"the tests disagree ({ps}, α {alpha:g}; {ci} {'covers' if covers else 'excludes'} 0)",
    )
