"""The report's sections, each from the collected runs (ReportRuns): what it can show, and a
sentence for what it cannot. Figures and their CSVs are written under `out` as they are made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlrec.platform.report import figures
from xlrec.platform.report.document import Figure, Section, Table
from xlrec.platform.report.runs import ReportRuns
from xlrec.platform.report.significance import Comparison, compare, holm, paired
from xlrec.platform.reports import MISSING, table4, to_markdown
from xlrec.training.metrics import popularity_groups

REFERENCE = "xlstm"  # the model every baseline is tested against (the platform's question)
ALPHA = 0.05
STATS = ("users", "items", "interactions", "avg_len", "sparsity")
USED_METRICS = (
    "test_ndcg_at_10",
    "test_coverage_at_10",
    "best_val_ndcg_at_10",
    "best_val_recall_at_10",
    "avg_epoch_time_s",
    "params_total",
    "cold_users",
    "cold_model_recall_at_10",
    "cold_pop_recall_at_10",
)


class Builder:
    def __init__(self, rr: ReportRuns, out: Path):
        self.rr, self.out = rr, out
        self.cannot: list[str] = []
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "data").mkdir(parents=True, exist_ok=True)
        done = rr.finished.copy()
        done["params.max_len"] = done.get("params.max_len", pd.Series(MISSING, index=done.index)).fillna(MISSING)
        done["params.seed"] = done.get("params.seed", pd.Series(MISSING, index=done.index)).fillna(MISSING)
        for key in USED_METRICS:  # runs of older versions (or hand-logged ones) may lack some
            if f"metrics.{key}" not in done:
                done[f"metrics.{key}"] = np.nan
        self.done = done[done["params.model"].notna()]
        # One run per (dataset, max_len, model, seed): a search has many trials per seed, and the
        # one that represents the model is chosen as everywhere else, on validation (never test).
        order = self.done.sort_values("metrics.best_val_recall_at_10", ascending=False, na_position="last")
        keys = ["params.dataset", "params.max_len", "params.model", "params.seed"]
        self.chosen = order.drop_duplicates(keys).sort_index()
        self.searched = len(self.chosen) < len(self.done)

    # --- helpers ------------------------------------------------------------------------
    def csv(self, df: pd.DataFrame, name: str) -> str:
        df.to_csv(self.out / "data" / name, index=False)
        return name

    def png(self, name: str) -> Path:
        return self.out / "figures" / name

    def per_user(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The per-user test tables of `rows` (runs), with each run's seed."""
        parts = []
        for rid, seed in zip(rows["run_id"], rows["params.seed"]):
            t = self.rr.file(rid, "test_per_user.parquet")
            if t is not None:
                parts.append(t.assign(seed=seed, run_id=rid))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def items(self, dataset: str) -> pd.DataFrame | None:
        for rid in self.chosen.loc[self.chosen["params.dataset"] == dataset, "run_id"]:
            t = self.rr.file(rid, "items.parquet")
            if t is not None:
                return t
        return None

    def cells(self):
        """(dataset, max_len, runs of that cell) for every cell with finished runs."""
        for (dataset, max_len), g in self.chosen.groupby(["params.dataset", "params.max_len"], sort=True):
            yield str(dataset), str(max_len), g

    # --- sections -----------------------------------------------------------------------
    def protocol(self) -> Section:
        d = self.done
        s = Section("Protocol")
        rows = []
        for name, stats in sorted(self.rr.datasets.items()):
            if not stats:
                self.cannot.append(f"{name}: its runs logged no dataset statistics")
                continue
            rows.append({"dataset": name, **{k: _stat(stats.get(k)) for k in STATS}})
            if stats.get("data_warning"):
                s.blocks.append(f"**{name}: {stats['data_warning']}**")
        if rows:
            s.blocks.append(
                Table(
                    pd.DataFrame(rows),
                    "Datasets after preprocessing (Table 1)",
                    self.csv(pd.DataFrame(rows), "datasets.csv"),
                )
            )
        prep = sorted(c for c in d if c.startswith("params.prep."))
        filters = ", ".join(
            f"{c.removeprefix('params.prep.')} {'/'.join(sorted(d[c].dropna().unique()))}" for c in prep
        )
        seen = sorted(d.get("params.exclude_seen", pd.Series(dtype=object)).dropna().unique())
        seen_text = {
            "true": "excluded from the ranking (a user's seen items are not counted as misses)",
            "false": "kept in the ranking (the paper's protocol)",
        }
        seeds = sorted(d["params.seed"].unique(), key=str)
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
            f"Hardware: {', '.join(devices) or 'not recorded'}.",
        ]
        return s

    def table4(self) -> Section:
        s = Section("Table 4: accuracy and cost")
        t = table4(self.rr.runs[self.rr.runs["run_id"].isin(self.chosen["run_id"])]).rename(
            columns={
                "runs": "seeds",
                "params_total": "params",
                "test_recall_at_10": "Recall@10",
                "test_ndcg_at_10": "NDCG@10",
                "test_mrr_at_10": "MRR@10",
                "avg_epoch_time_s": "s/epoch",
                "gpu_peak_allocated_mb": "peak GPU MB",
            }
        )
        csv = self.csv(t, "table4.csv")
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
        if (
            len(self.chosen)
            and self.chosen.groupby(["params.model", "params.dataset", "params.max_len"]).size().max() < 2
        ):
            self.cannot.append("one seed per cell: no error bars (± is over seeds)")
        return s

    def significance(self) -> Section:
        s = Section("Significance")
        s.blocks.append(
            "Paired over test users (pooled over the seeds both models ran): Wilcoxon signed-rank test on per-user "
            "NDCG@10, a bootstrap 95% interval of the mean difference, Holm-corrected per dataset and max_len. "
            f"Each baseline against {REFERENCE}, and the best model (mean NDCG@10) against the rest."
        )
        rows, verdicts = [], []
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
            tested: list[Comparison] = []
            for a, b in pairs:
                x, y = paired(tables[a], tables[b])
                tested.append(compare(a, b, x, y))
            for c in holm(tested):
                verdict = (
                    "no significant difference"
                    if not c.p_holm < ALPHA
                    else (f"{c.a} better" if c.diff > 0 else f"{c.b} better")
                )
                rows.append(
                    {
                        "dataset": dataset,
                        "max_len": max_len,
                        "A vs B": f"{c.a} vs {c.b}",
                        "pairs": c.pairs,
                        "NDCG@10 A": f"{c.mean_a:.4f}",
                        "NDCG@10 B": f"{c.mean_b:.4f}",
                        "A − B": f"{c.diff:+.4f}",
                        "95% CI": f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                        "p": f"{c.p:.2g}",
                        "p (Holm)": f"{c.p_holm:.2g}",
                        "verdict": verdict,
                    }
                )
                if {c.a, c.b} == {"bert4rec", REFERENCE}:
                    verdicts.append(self._paper_claim(dataset, max_len, c))
        if not rows:
            self.cannot.append("fewer than two models with per-user test results in any cell: no significance tests")
            s.blocks.append("No cell has two models with per-user test results.")
            return s
        t = pd.DataFrame(rows)
        s.blocks.append(Table(t, "Paired tests on per-user NDCG@10", self.csv(t, "significance.csv")))
        if REFERENCE not in set(self.chosen["params.model"]):
            self.cannot.append(f"no {REFERENCE} runs: the baselines are not tested against it")
        if not verdicts and REFERENCE in set(self.chosen["params.model"]):
            self.cannot.append("no BERT4Rec runs beside xLSTM: the paper's BERT4Rec conclusion is not checked")
        s.blocks += verdicts
        return s

    @staticmethod
    def _paper_claim(dataset: str, max_len: str, c: Comparison) -> str:
        b4r, xl = (c.mean_a, c.mean_b) if c.a == "bert4rec" else (c.mean_b, c.mean_a)
        diff = b4r - xl
        xl_better = c.p_holm < ALPHA and diff < 0
        holds = "does not hold" if xl_better else "holds"
        how = (
            "xLSTM is significantly better"
            if xl_better
            else ("BERT4Rec is significantly better" if c.p_holm < ALPHA else "the difference is not significant")
        )
        return (
            f"**{dataset}, max_len {max_len}:** the paper's conclusion (BERT4Rec on par with or better than xLSTM) "
            f"{holds} here: NDCG@10 BERT4Rec {b4r:.4f} vs xLSTM {xl:.4f} (difference {diff:+.4f}, Holm p "
            f"{c.p_holm:.2g}); {how}."
        )

    def table6(self) -> Section:
        s = Section("Table 6: parameters per component")
        rows = []
        for (dataset, model), g in self.chosen.groupby(["params.dataset", "params.model"], sort=True):
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

    def training_curves(self) -> Section:
        s = Section("Training curves")
        keys = [
            ("val_ndcg@10", "validation NDCG@10"),
            ("val_recall@10", "validation Recall@10"),
            ("train_loss", "train loss"),
        ]
        for dataset, max_len, g in self.cells():
            parts = []
            for rid, model in zip(g["run_id"], g["params.model"]):
                h = self.rr.file(rid, "history.csv")
                if h is not None and len(h):
                    parts.append(h.assign(model=model))
            if not parts:
                continue
            h = pd.concat(parts, ignore_index=True)
            use = [(k, label) for k, label in keys if k in h]
            agg = h.groupby(["model", "epoch"])[[k for k, _ in use]].agg(["mean", "std", "count"])
            agg.columns = [f"{k}_{stat}" for k, stat in agg.columns]
            agg = agg.reset_index()
            stem = f"curves_{dataset}_L{max_len}"
            png = figures.curves(
                agg, use, f"{dataset}, max_len {max_len}: mean ± std over seeds", self.png(stem + ".png")
            )
            s.blocks.append(
                Figure(
                    png,
                    f"Validation metrics and training loss per epoch, {dataset}, max_len {max_len}",
                    self.csv(agg, stem + ".csv"),
                )
            )
        if not s.blocks:
            self.cannot.append("no history.csv in the runs: no training curves")
        return s

    def cost(self) -> Section:
        s = Section("Accuracy against cost (RQ3)")
        for dataset, g in self.chosen.groupby("params.dataset", sort=True):
            rows = []
            for (model, max_len), c in g.groupby(["params.model", "params.max_len"], sort=True):
                if model == "pop":
                    continue
                rows.append(
                    {
                        "model": model,
                        "max_len": max_len,
                        "label": f"{model} L{max_len}",
                        "ndcg": c["metrics.test_ndcg_at_10"].mean(),
                        "epoch_s": c["metrics.avg_epoch_time_s"].mean(),
                        "params": c["metrics.params_total"].mean(),
                    }
                )
            if not rows:
                continue
            f = pd.DataFrame(rows)
            for col in ("epoch_s", "params"):
                f[f"pareto_{col}"] = figures.pareto_mask(f[col].to_numpy(float), f["ndcg"].to_numpy(float))
            stem = f"cost_{dataset}"
            png = figures.cost_scatter(
                f, [("epoch_s", "seconds per epoch"), ("params", "parameters")], dataset, self.png(stem + ".png")
            )
            front = ", ".join(f.loc[f["pareto_epoch_s"], "label"])
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}: test NDCG@10 against epoch time and parameters; Pareto front (time): {front}",
                    self.csv(f, stem + ".csv"),
                )
            )
        return s

    def popularity(self) -> Section:
        s = Section("Popularity bias, long tail and coverage")
        for dataset, g in self.chosen.groupby("params.dataset", sort=True):
            items = self.items(dataset)
            if items is None:
                self.cannot.append(f"{dataset}: no items.parquet (runs before it was logged): no popularity analysis")
                continue
            n_items = int(items["item_index"].max())
            pop = np.zeros(n_items + 1)
            pop[items["item_index"].to_numpy()] = items["interactions"].to_numpy()
            head, tail = popularity_groups(pop)
            shares, counts = [], {}
            for model, gm in g.groupby("params.model", sort=True):
                t = self.per_user(gm)
                if not len(t):
                    continue
                top = np.stack(t["top10"].map(lambda v: np.asarray(v, dtype=np.int64)).to_numpy())
                top = np.clip(top, 0, n_items)
                ranks, targets = t["rank"].to_numpy(), np.clip(t["target_item"].to_numpy(np.int64), 0, n_items)
                hit = ranks <= 10
                in_tail = tail[targets]
                ndcg_tail = np.where(hit & in_tail, 1 / np.log2(ranks + 1.0), 0.0).sum() / max(1, in_tail.sum())
                rec = np.bincount(top.ravel(), minlength=n_items + 1)
                counts[model] = rec / t["seed"].nunique()  # per seed: one model's lists for the test users
                shares.append(
                    {
                        "model": model,
                        "head share": float(head[top].mean()),
                        "tail share": float(tail[top].mean()),
                        "tail Recall@10": float(hit[in_tail].mean()) if in_tail.any() else float("nan"),
                        "tail NDCG@10": float(ndcg_tail),
                        "coverage@10": float((rec[1:] > 0).mean()),
                        "Gini@10": _gini(rec[1:]),
                        "users": int(len(t) / t["seed"].nunique()),
                    }
                )
                truth = targets
            if not shares:
                continue
            shares.append(
                {
                    "model": "ground truth (test targets)",
                    "head share": float(head[truth].mean()),
                    "tail share": float(tail[truth].mean()),
                }
            )
            f = pd.DataFrame(shares)
            stem = f"popularity_{dataset}"
            png = figures.grouped_bars(
                f,
                "model",
                ["head share", "tail share"],
                "share of top-10 slots",
                f"{dataset}: head (top 20%) and tail (bottom 50%) items",
                self.png(stem + ".png"),
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}: share of recommendation slots on head and tail items against the test targets' shares",
                    self.csv(f, stem + ".csv"),
                )
            )
            shown = f.copy()
            shown["users"] = shown["users"].map(lambda v: MISSING if pd.isna(v) else f"{int(v):,}")
            for c in shown.columns[1:-1]:
                shown[c] = shown[c].map(
                    lambda v: MISSING if pd.isna(v) else (f"{v:.4f}" if isinstance(v, float) else str(v))
                )
            s.blocks.append(
                Table(shown, f"{dataset}: long tail and coverage per model (test users; pooled over seeds)")
            )
            png_tail = figures.grouped_bars(
                f[f["model"] != "ground truth (test targets)"],
                "model",
                ["tail Recall@10", "tail NDCG@10"],
                "on tail targets",
                f"{dataset}: long-tail accuracy",
                self.png(f"longtail_{dataset}.png"),
            )
            s.blocks.append(
                Figure(png_tail, f"{dataset}: Recall@10 and NDCG@10 on test targets that are tail items", stem + ".csv")
            )
            top50 = self._top50(items, counts, int(f["users"].dropna().max()))
            s.blocks.append(
                Table(
                    top50,
                    f"{dataset}: the 50 items most often in top-10 lists (all models), "
                    "% of test users each model shows it to",
                    self.csv(top50, f"top50_{dataset}.csv"),
                )
            )
        return s

    @staticmethod
    def _top50(items: pd.DataFrame, counts: dict[str, np.ndarray], users: int) -> pd.DataFrame:
        total = np.sum(list(counts.values()), axis=0)
        order = np.argsort(-total[1:], kind="stable")[:50] + 1
        by_index = items.set_index("item_index")
        rows = []
        for i in order:
            row: dict[str, str | int] = {"title": str(by_index.at[i, "title"]) if i in by_index.index else str(i)}
            row["times watched"] = int(by_index.at[i, "interactions"]) if i in by_index.index else 0
            row.update({m: f"{100 * c[i] / max(1, users):.1f}%" for m, c in counts.items()})
            rows.append(row)
        return pd.DataFrame(rows)

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
                }
            )
        t = pd.DataFrame(rows)
        s.blocks.append(
            Table(
                t,
                "Users below the cold-start threshold: the model against the popularity fallback",
                self.csv(t, "cold_start.csv"),
            )
        )
        return s

    def sequence_length(self) -> Section:
        s = Section("Sequence length (RQ2, RQ6, RQ9)")
        d = self.chosen[self.chosen["params.model"] != "pop"]
        lens = d.groupby(["params.dataset", "params.model"])["params.max_len"].nunique()
        if len(lens) == 0 or lens.max() < 2:
            self.cannot.append("one max_len per model: no sequence-length figure (run a grid over max_len)")
            return s
        rows = []
        for (dataset, model, max_len), g in d.groupby(["params.dataset", "params.model", "params.max_len"]):
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "max_len": int(max_len) if str(max_len).isdigit() else max_len,
                    "ndcg": g["metrics.test_ndcg_at_10"].mean(),
                    "epoch_s": g["metrics.avg_epoch_time_s"].mean(),
                    "coverage": g["metrics.test_coverage_at_10"].mean(),
                }
            )
        f = pd.DataFrame(rows)
        for dataset, g in f.groupby("dataset"):
            stem = f"seqlen_{dataset}"
            png = figures.lines_by(
                g,
                "max_len",
                [("ndcg", "test NDCG@10"), ("epoch_s", "s/epoch"), ("coverage", "coverage@10")],
                dataset,
                self.png(stem + ".png"),
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}: NDCG@10, epoch time and catalogue coverage against max_len",
                    self.csv(g, stem + ".csv"),
                )
            )
        return s

    def gradients(self) -> Section:
        s = Section("Gradient stability (RQ5)")
        parts = []
        for rid, model, max_len, dataset in zip(
            self.chosen["run_id"],
            self.chosen["params.model"],
            self.chosen["params.max_len"],
            self.chosen["params.dataset"],
        ):
            h = self.rr.file(rid, "history.csv")
            if h is not None and "grad_norm" in h:
                parts.append(h[["epoch", "grad_norm"]].assign(model=f"{model} L{max_len}", dataset=dataset))
        if not parts:
            self.cannot.append("no gradient norms in the runs' histories: no gradient-stability figure")
            return s
        h = pd.concat(parts).groupby(["dataset", "model", "epoch"])["grad_norm"].agg(["mean", "std"]).reset_index()
        for dataset, g in h.groupby("dataset"):
            g = g.rename(columns={"mean": "grad_norm_mean", "std": "grad_norm_std"})
            stem = f"gradnorm_{dataset}"
            png = figures.curves(
                g,
                [("grad_norm", "mean gradient norm per step")],
                f"{dataset}: gradient norm (before clipping)",
                self.png(stem + ".png"),
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}: gradient norm per epoch, per model and max_len (mean ± std over seeds)",
                    self.csv(g, stem + ".csv"),
                )
            )
        return s

    def ablation(self) -> Section:
        s = Section("Architecture ablation (RQ4, RQ13)")
        knobs = ["embedding_dim", "num_blocks", "num_heads"]
        shown = False
        for (dataset, model), g in self.done.groupby(["params.dataset", "params.model"], sort=True):
            cols = [k for k in knobs if f"params.{k}" in g and g[f"params.{k}"].nunique() > 1]
            if not cols or len(g) < 4:
                continue
            f = g[[f"params.{k}" for k in cols] + ["metrics.best_val_ndcg_at_10"]].copy()
            f.columns = [*cols, "val NDCG@10"]
            for k in cols:
                f[k] = pd.to_numeric(f[k], errors="coerce")
            stem = f"ablation_{dataset}_{model}"
            png = figures.ablation(
                f, cols, "val NDCG@10", f"{model} on {dataset}: {len(f)} trials", self.png(stem + ".png")
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{model} on {dataset}: best validation NDCG@10 of each trial against its architecture",
                    self.csv(f, stem + ".csv"),
                )
            )
            imp = _importances(f, cols, "val NDCG@10")
            if imp is not None:
                s.blocks.append(
                    Table(imp, f"{model} on {dataset}: parameter importances (Optuna fANOVA over the finished trials)")
                )
            shown = True
        if not shown:
            self.cannot.append("no model ran with several architectures (a search sweep): no ablation")
        return s

    def qualitative(self) -> Section:
        s = Section("Qualitative: what each model recommends")
        for dataset, g in self.chosen.groupby("params.dataset", sort=True):
            items = self.items(dataset)
            if items is None:
                continue
            title = dict(zip(items["item_index"], items["title"]))
            first_seed = sorted(g["params.seed"].unique(), key=str)[0]
            tables = {
                m: self.per_user(gm[gm["params.seed"] == first_seed]) for m, gm in g.groupby("params.model", sort=True)
            }
            tables = {m: t.set_index("user_index") for m, t in tables.items() if len(t)}
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
                s.blocks.append(
                    Table(
                        pd.DataFrame(rows),
                        f"{dataset}, user {any_t.at[u, 'user_id']} (seed {first_seed}): true next item {target}",
                    )
                )
        self.cannot.append(
            "runs do not log users' histories: the qualitative tables show the target and top-10 lists only"
        )
        return s

    def limits(self) -> Section:
        fixed = [
            "embedding geometry (spectrum, effective rank, anisotropy, hubness) and where models look (attention, "
            "xLSTM gates): runs do not log item embeddings or gate/attention summaries yet",
            "cold start against demographic and genre fallbacks: only the popularity fallback is computed",
            "scaling with dataset size (RQ1): needs ML-1M subsampled by users, not part of these runs",
        ]
        notes = self.rr.notes[:10] + (
            [f"... {len(self.rr.notes) - 10} more unreadable files"] if len(self.rr.notes) > 10 else []
        )
        text = "; ".join(dict.fromkeys([*self.cannot, *fixed, *notes]))
        return Section("What this report cannot show", [f"This report cannot show: {text}."])


def _stat(value: str | None) -> str:
    """A Table-1 statistic as the paper prints it: counts with separators, lengths to 2 decimals."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING if value is None else str(value)
    return f"{int(x):,}" if x.is_integer() else (f"{x:.5f}" if x < 1 else f"{x:.2f}")


def _gini(counts: np.ndarray) -> float:
    from xlrec.training.metrics import gini

    return gini(counts)


def _importances(frame: pd.DataFrame, knobs: list[str], metric: str) -> pd.DataFrame | None:
    """Optuna's fANOVA importances from finished trials, rebuilt as an in-memory study (the
    runs, not the sweep's study database, are what the report reads)."""
    import optuna

    f = frame.dropna()
    if len(f) < 4:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        k: optuna.distributions.CategoricalDistribution(sorted(f[k].unique().tolist())) for k in knobs
    }
    for row in f.itertuples(index=False):
        values = dict(zip(f.columns, row))
        study.add_trial(
            optuna.trial.create_trial(
                params={k: values[k] for k in knobs}, distributions=dists, value=float(values[metric])
            )
        )
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except Exception:  # fANOVA needs variation it cannot find in a handful of trials
        return None
    return pd.DataFrame([{"parameter": k, "importance": f"{v:.3f}"} for k, v in imp.items()])


def build(rr: ReportRuns, out: Path) -> list[Section]:
    b = Builder(rr, out)
    sections = [
        b.protocol(),
        b.table4(),
        b.significance(),
        b.table6(),
        b.training_curves(),
        b.cost(),
        b.popularity(),
        b.cold_start(),
        b.sequence_length(),
        b.gradients(),
        b.ablation(),
        b.qualitative(),
    ]
    return [s for s in sections if s.blocks] + [b.limits()]
