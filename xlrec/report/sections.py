"""The report's sections in order, each from the collected runs: the protocol, Table 4, the
significance tests, Table 6, cold start and qualitative tables here, the figure sections in
analyses.py, and last what the report cannot show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from xlrec.report.analyses import FigureSections
from xlrec.report.document import Section, Table
from xlrec.report.runs import ReportRuns
from xlrec.report.significance import Comparison, adjust, compare, paired, verdict
from xlrec.report.tables import MISSING, TABLE4_LABELS, protocol_note, table4, table4_numbers, to_markdown
from xlrec.report.view import ALPHA, REFERENCE, STATS

N_BOOT = 2000  # two-level bootstrap draws per comparison


def filtering_text(runs: pd.DataFrame) -> str:
    """The runs' preprocessing (`params.prep.*`) in words, each with the values the runs used
    (`a/b` where they differ); the synthetic generator's settings only where a run used it."""

    def values(key: str) -> list[str]:
        col = f"params.prep.{key}"
        if col not in runs:
            return []
        return sorted(runs[col].dropna().astype(str).unique(), key=lambda v: (_number_or_nan(v), v))

    def shown(key: str) -> str:
        return "/".join(values(key))

    parts = []
    rating = [v for v in values("min_rating") if v not in ("None", "")]
    if values("min_rating"):
        parts.append(f"ratings below {'/'.join(rating)} dropped" if rating else "every rating is an interaction")
    k_core = False
    for key, what in (("min_user_interactions", "users"), ("min_item_interactions", "items")):
        kept = [v for v in values(key) if v not in ("0", "None")]
        if kept:
            parts.append(f"{what} with fewer than {'/'.join(kept)} interactions dropped")
            k_core = True
    if k_core and "True" in values("kcore_iterate"):
        parts.append("repeated until no user or item falls short (a k-core)")
    share = [v for v in values("user_fraction") if _number_or_nan(v) != 1.0]
    if share:
        pct = "/".join(f"{100 * float(v):g}%" for v in values("user_fraction"))
        parts.append(f"a fixed random {pct} of the users kept (each share a dataset of its own)")
    if "synthetic" in set(runs.get("params.dataset", pd.Series(dtype=object)).dropna()) and values("synthetic_users"):
        parts.append(
            f"synthetic data: {shown('synthetic_users')} users, {shown('synthetic_items')} items, mean length "
            f"{shown('synthetic_mean_len')}, generator seed {shown('synthetic_seed')}"
        )
    return "; ".join(parts)


def _number_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


class Builder(FigureSections):
    def protocol(self) -> Section:
        d = self.done
        s = Section("Protocol")
        rows: list[dict] = []
        warnings: dict[str, list[str]] = {}
        for name, stats in sorted(self.rr.datasets.items()):
            if not stats:
                self.cannot.append(f"{name}: its runs logged no dataset statistics")
                continue
            rows.append({"dataset": name, **{k: _stat(stats.get(k)) for k in STATS}})
            if stats.get("data_warning"):  # once per file: shares of a dataset's users carry its warning
                warnings.setdefault(stats["data_warning"], []).append(name)
        s.blocks += [f"**{', '.join(names)}: {text}**" for text, names in warnings.items()]
        if rows:
            s.blocks.append(
                Table(
                    pd.DataFrame(rows),
                    "Datasets after preprocessing (Table 1)",
                    self.csv(pd.DataFrame(rows), "datasets.csv"),
                )
            )
        filters = filtering_text(d)
        seen = sorted(d.get("params.exclude_seen", pd.Series(dtype=object)).dropna().unique())
        seen_text = {
            "true": "excluded from the ranking (a user's seen items are not counted as misses)",
            "false": "kept in the ranking (the paper's protocol)",
        }
        seeds = sorted(d["params.seed"].unique(), key=lambda v: (len(str(v)), str(v)))  # 42 before 123
        devices = sorted(d.get("tags.device_name", pd.Series(dtype=object)).dropna().unique())
        s.blocks += [
            f"Runs: {len(d)} finished of {len(self.rr.runs)} in experiment `{self.rr.experiment}`"
            + (f", sweep parent `{self.rr.parent_id}`" if self.rr.parent_id else "")
            + f"; models {', '.join(sorted(d['params.model'].unique()))}; seeds {', '.join(map(str, seeds))}.",
            "Split: leave-two-out per user (the last interaction is the test target, the one before it the "
            "validation target; users with fewer interactions than the cold-start threshold form the cold-start "
            f"group). Filtering: {filters or 'none recorded'}. Seen items: "
            + ("; ".join(seen_text.get(v, v) for v in seen) or "not recorded")
            + ". Ranking: full ranking over every item.",
            "Selection: each run is tested with the weights of its best validation epoch (validation Recall@10, "
            "early stopping on it); test metrics are never used to choose anything."
            + (
                " Several runs per model and seed (a search): the one with the best validation Recall@10 represents "
                "the model everywhere but the ablation."
                if self.searched
                else ""
            ),
            f"Hardware: {', '.join(devices) or 'not recorded'}." + self._sharing_text(),
        ]
        return s

    def _sharing_text(self) -> str:
        """Epoch times of trials that shared a GPU are not a model's time alone on one: say so."""
        parents = set(self.done.get("tags.xlrec.sweep_run_id", pd.Series(dtype=object)).dropna())
        shared = sorted({v for k, v in self.rr.gpu_sharing.items() if k in parents})
        if not shared:
            return ""
        how = "; ".join(
            f"{g:g} of a GPU per trial, " + (f"up to {n} at once" if n else "as many as fit") for g, n in shared
        )
        return (
            f" The trials shared GPUs ({how}): s/epoch and peak GPU MB compare models under the same sharing, not "
            "each alone on a card (benchmarks/speed.py measures that)."
        )

    def table4(self) -> Section:
        s = Section("Table 4: accuracy and cost")
        chosen = self.rr.runs[self.rr.runs["run_id"].isin(self.chosen["run_id"])]
        t = table4(chosen).rename(columns=TABLE4_LABELS)
        csv = self.csv(table4_numbers(chosen), "table4.csv")  # numbers: the table above is for reading
        md = to_markdown(t, bold=["Recall@10", "NDCG@10", "MRR@10"])
        bolded = pd.DataFrame(
            [r.split(" | ") for r in (ln.strip("| ") for ln in md.splitlines()[2:])], columns=t.columns
        )
        s.blocks.append(
            Table(
                bolded,
                "Test metrics, mean ± std over seeds, at the best validation epoch; best per column in bold",
                csv,
            )
        )
        note = protocol_note(chosen)
        if note:
            s.blocks.append(note)
        if (
            len(self.chosen)
            and self.chosen.groupby(["params.model", "params.dataset", "params.max_len"]).size().max() < 2
        ):
            self.cannot.append("one seed per cell: no error bars (± is over seeds)")
        return s

    def significance(self) -> Section:
        s = Section("Significance")
        s.blocks.append(
            "The unit is the test user; seeds are replicates of training, not more users. Per comparison, each "
            "user's NDCG@10 is averaged over the seeds both models ran (`users` counts users, one pair each), then "
            "tested over users: the Wilcoxon signed-rank test (users whose seed-averaged difference is exactly 0, "
            "mostly both models missing the top-10 in every seed, carry no sign and are dropped: zero_method "
            "'wilcox'; the CSV's `zero_diffs` counts them) and the paired t-test. The 95% interval of the mean "
            f"difference is a two-level bootstrap ({N_BOOT:,} draws, seeded: the seeds resampled, then the users), "
            "so the seed-to-seed variance of training widens it. Both tests' p-values are adjusted across the "
            "comparisons of one dataset and max_len, by Holm (family-wise error) and by Benjamini–Hochberg (false "
            f"discovery rate). α = {ALPHA:g}. Verdict: 'significantly ahead' only when both tests' Holm p < α and "
            "the interval excludes 0; 'no significant difference' only when the interval covers 0 and both Holm "
            f"p ≥ α; otherwise the tests disagree. Each baseline against {REFERENCE}, and the best model (mean "
            "NDCG@10) against the rest."
        )
        rows, shown, per_seed, verdicts = [], [], [], []
        for dataset, max_len, g in self.cells():
            tables = {m: self.per_user(gm) for m, gm in g.groupby("params.model")}
            tables = {m: t for m, t in tables.items() if len(t) and m != "pop"}
            if len(tables) < 2:
                continue
            means = {m: float(g.loc[g["params.model"] == m, "metrics.test_ndcg_at_10"].mean()) for m in tables}
            best = max(means, key=lambda m: means[m])
            pairs = []
            if REFERENCE in tables:
                pairs += [(m, REFERENCE) for m in sorted(tables) if m != REFERENCE]
            pairs += [
                (best, m) for m in sorted(tables) if m != best and (best, m) not in pairs and (m, best) not in pairs
            ]
            tested = [compare(a, b, paired(tables[a], tables[b]), n_boot=N_BOOT) for a, b in pairs]
            for c in adjust(tested):  # Holm and BH across the comparisons of this cell
                v = verdict(c, ALPHA)
                cell = {"dataset": dataset, "max_len": max_len, "A vs B": f"{c.a} vs {c.b}"}
                rows.append(
                    {
                        **cell,
                        "a": c.a,
                        "b": c.b,
                        "users": c.users,
                        "seeds": " ".join(c.seeds),
                        "ndcg_a": c.mean_a,
                        "ndcg_b": c.mean_b,
                        "diff": c.diff,
                        "ci_low": c.ci_low,
                        "ci_high": c.ci_high,
                        "zero_diffs": c.zero_diffs,
                        "p_wilcoxon": c.p_wilcoxon,
                        "p_wilcoxon_holm": c.p_wilcoxon_holm,
                        "p_wilcoxon_bh": c.p_wilcoxon_bh,
                        "p_t": c.p_t,
                        "p_t_holm": c.p_t_holm,
                        "p_t_bh": c.p_t_bh,
                        "p_welch_seed_means": c.p_welch,
                        "diff_per_seed": c.per_seed_text(),
                        "alpha": ALPHA,
                        "verdict": v.short,
                    }
                )
                shown.append(
                    {
                        **cell,
                        "users": c.users,
                        "NDCG@10 A": f"{c.mean_a:.4f}",
                        "NDCG@10 B": f"{c.mean_b:.4f}",
                        "A − B": f"{c.diff:+.4f}",
                        "95% CI": f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                        "p Wilcoxon (Holm, BH)": _ps(c.p_wilcoxon, c.p_wilcoxon_holm, c.p_wilcoxon_bh),
                        "p t-test (Holm, BH)": _ps(c.p_t, c.p_t_holm, c.p_t_bh),
                        "verdict": v.short,
                    }
                )
                per_seed.append(
                    {
                        **cell,
                        "A − B per seed": c.per_seed_text(),
                        "Welch p (seed means)": _g(c.p_welch),
                    }
                )
                if {c.a, c.b} == {"bert4rec", REFERENCE}:
                    verdicts.append(self._paper_claim(dataset, max_len, c))
        if not rows:
            self.cannot.append("fewer than two models with per-user test results in any cell: no significance tests")
            s.blocks.append("No cell has two models with per-user test results.")
            return s
        csv = self.csv(pd.DataFrame(rows), "significance.csv")
        s.blocks.append(
            Table(
                pd.DataFrame(shown),
                "Paired tests over users on per-user NDCG@10 (each user's mean over the seeds both models ran); "
                "p as tested (Holm-adjusted, BH-adjusted)",
                csv,
            )
        )
        s.blocks.append(
            Table(
                pd.DataFrame(per_seed),
                "Seed by seed: A − B of mean NDCG@10 over the same users in each seed (s<seed>), and Welch's t-test "
                "over the seed means (as many values as seeds: little power, shown beside the paired tests)",
                csv,
            )
        )
        if REFERENCE not in set(self.chosen["params.model"]):
            self.cannot.append(f"no {REFERENCE} runs: the baselines are not tested against it")
        if not verdicts and REFERENCE in set(self.chosen["params.model"]):
            self.cannot.append("no BERT4Rec runs beside xLSTM: the paper's BERT4Rec conclusion is not checked")
        s.blocks += verdicts
        return s

    @staticmethod
    def _paper_claim(dataset: str, max_len: str, c: Comparison) -> str:
        b4r, xl = (c.mean_a, c.mean_b) if c.a == "bert4rec" else (c.mean_b, c.mean_a)
        names = {"bert4rec": "BERT4Rec", REFERENCE: "xLSTM"}
        v = verdict(replace(c, a=names[c.a], b=names[c.b]), ALPHA)
        holds = {"ahead": "does not hold" if v.leader == "xLSTM" else "holds", "none": "holds"}.get(
            v.kind, "is not settled"
        )
        return (
            f"**{dataset}, max_len {max_len}:** the paper's conclusion (BERT4Rec on par with or better than xLSTM) "
            f"{holds} here: NDCG@10 BERT4Rec {b4r:.4f} vs xLSTM {xl:.4f} (difference {b4r - xl:+.4f} over "
            f"{c.users:,} users, seeds {', '.join(c.seeds)}); {v.text}."
        )

    def table6(self) -> Section:
        s = Section("Table 6: parameters per component")
        rows = []
        # a share of a dataset's users has the dataset's layout, with fewer item rows: not a row of its own
        for (dataset, model), g in self.figured.groupby(["params.dataset", "params.model"], sort=True):
            params = next(
                (
                    self.rr.file(r, "parameters.csv")
                    for r in g["run_id"]
                    if self.rr.file(r, "parameters.csv") is not None
                ),
                None,
            )
            if params is None:
                continue
            per = params[params["component"] != "total"].groupby("component", sort=False)["count"].sum()
            for comp, n in [*per.items(), ("total", int(per.sum()))]:
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "component": comp,
                        "params": f"{int(n):,}",
                        "fp32 MB": f"{n * 4 / 2**20:.2f}",
                        "bf16 MB": f"{n * 2 / 2**20:.2f}",
                    }
                )
        if not rows:
            self.cannot.append("no parameters.csv in the runs: no Table 6")
            return s
        t = pd.DataFrame(rows)
        s.blocks.append(
            Table(
                t,
                "Trainable parameters per component; weights' memory at 4 and 2 bytes each",
                self.csv(t, "table6.csv"),
            )
        )
        return s

    def cold_start(self) -> Section:
        s = Section("Cold start")
        d = self.chosen
        if not (d["metrics.cold_users"] > 0).any():
            self.cannot.append(
                "no cold-start users in these datasets (every user has at least the threshold's interactions)"
            )
            s.blocks.append("No user falls below the cold-start threshold in these runs.")
            return s
        rows = []
        for (dataset, model), g in d.groupby(["params.dataset", "params.model"], sort=True):
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "cold users": int(g["metrics.cold_users"].iloc[0]),
                    "model Recall@10": f"{g['metrics.cold_model_recall_at_10'].mean():.4f}",
                    "popularity Recall@10": f"{g['metrics.cold_pop_recall_at_10'].mean():.4f}",
                    "genre profile Recall@10": _mean_or_missing(g["metrics.cold_genre_recall_at_10"]),
                    "demographic Recall@10": _mean_or_missing(g["metrics.cold_demographic_recall_at_10"]),
                }
            )
        t = pd.DataFrame(rows)
        for column, lacks in (("genre profile", "item genres"), ("demographic", "user demographics")):
            if (t[f"{column} Recall@10"] == MISSING).all():
                t = t.drop(columns=f"{column} Recall@10")
                self.cannot.append(f"a {column} cold-start fallback (the runs' datasets have no {lacks})")
        s.blocks.append(
            Table(
                t,
                "Users below the cold-start threshold: the model against the fallbacks (popularity; the genre "
                "profile: items ranked by the overlap of their genres with those of the few items seen; "
                "demographic neighbours: the items most watched by users of the same gender, age group and "
                "occupation; popularity breaks ties in both)",
                self.csv(t, "cold_start.csv"),
            )
        )
        return s

    def qualitative(self) -> Section:
        s = Section("Qualitative: what each model recommends")
        s.blocks.append(
            "Each table is a user's test case: the history before the held-out last item, and what each model "
            "ranks next from it (`xlrec recommend --items` with that history gives the same list). "
            "`xlrec recommend --user ID` ranks after the whole history instead, the test item included, so its "
            "list is the user's next recommendation, not this test."
        )
        missing_history = False
        for dataset, g in self.figured.groupby("params.dataset", sort=True):
            items = self.items(dataset)
            if items is None:
                continue
            title = dict(zip(items["item_index"], items["title"]))
            first_seed = sorted(g["params.seed"].unique(), key=str)[0]
            tables = {
                m: self.per_user(gm[gm["params.seed"] == first_seed]) for m, gm in g.groupby("params.model", sort=True)
            }
            # a user's first test case (a temporal split's `all` targets give several)
            tables = {m: t.drop_duplicates("user_index").set_index("user_index") for m, t in tables.items() if len(t)}
            if not tables:
                continue
            users = sorted(set.intersection(*(set(t.index) for t in tables.values())))[:3]
            for u in users:
                any_t = next(iter(tables.values()))
                rows = [
                    {
                        "model": m,
                        "target rank": int(t.at[u, "rank"]),
                        "top-10": "; ".join(title.get(int(i), str(i)) for i in list(t.at[u, "top10"])[:10]),
                    }
                    for m, t in tables.items()
                ]
                target = title.get(int(any_t.at[u, "target_item"]), "?")
                history = any_t.at[u, "history"] if "history" in any_t else None
                seen = (
                    f"; the last {len(history)} items of the history before the test item, oldest first: "
                    + "; ".join(title.get(int(i), str(i)) for i in history)
                    if history is not None and len(history)
                    else ""
                )
                if history is None:
                    missing_history = True
                s.blocks.append(
                    Table(
                        pd.DataFrame(rows),
                        f"{dataset}, user {any_t.at[u, 'user_id']} (seed {first_seed}){seen}; true next item {target}",
                    )
                )
        if missing_history:
            self.cannot.append(
                "runs from before 2026-11-30 do not log users' histories: their qualitative tables show the "
                "target and top-10 lists only"
            )
        return s

    def limits(self) -> Section:
        fixed: list[str] = []
        notes = self.rr.notes[:10] + (
            [f"... {len(self.rr.notes) - 10} more unreadable files"] if len(self.rr.notes) > 10 else []
        )
        text = "; ".join(dict.fromkeys([*self.cannot, *fixed, *notes]))
        return Section("What this report cannot show", [f"This report cannot show: {text}."])


def _g(p: float) -> str:
    return MISSING if p != p else f"{p:.2g}"  # NaN: a test that could not run (Welch with one seed)


def _ps(p: float, holm: float, bh: float) -> str:
    return f"{_g(p)} ({_g(holm)}, {_g(bh)})"


def _mean_or_missing(values: pd.Series) -> str:
    return MISSING if values.isna().all() else f"{values.mean():.4f}"


def _stat(value: str | None) -> str:
    """A Table-1 statistic as the paper prints it: counts with separators, lengths to 2 decimals."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING if value is None else str(value)
    return f"{int(x):,}" if x.is_integer() else (f"{x:.5f}" if x < 1 else f"{x:.2f}")


def build(rr: ReportRuns, out: Path, extra: Sequence[Section] = ()) -> list[Section]:
    """The report's sections; `extra` (e.g. `xlrec tune`'s search budgets) follow the significance tests."""
    b = Builder(rr, out)
    sections = [
        b.protocol(),
        b.table4(),
        b.significance(),
        *extra,
        b.table6(),
        b.training_curves(),
        b.cost(),
        b.popularity(),
        b.cold_start(),
        b.sequence_length(),
        b.scaling(),
        b.gradients(),
        b.embedding_geometry(),
        b.where_models_look(),
        b.ablation(),
        b.qualitative(),
    ]
    return [s for s in sections if s.blocks] + [b.limits()]
