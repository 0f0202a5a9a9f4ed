"""The report's figure sections: training curves, accuracy against cost, popularity bias and
long tail, sequence length, gradient norms, embedding geometry, where models look along a history, and a
search's architecture ablation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlrec.report import figures
from xlrec.report.document import Figure, Section, Table
from xlrec.report.tables import MISSING
from xlrec.report.view import RunsView
from xlrec.settings import SELECTION_METRIC_LABEL, VAL_SELECTION_KEY, metric_key
from xlrec.training.metrics import embedding_geometry, gini, popularity_groups


class FigureSections(RunsView):
    def training_curves(self) -> Section:
        s = Section("Training curves")
        keys = [
            (metric_key("ndcg@10", "val"), "validation NDCG@10"),
            (VAL_SELECTION_KEY, f"validation {SELECTION_METRIC_LABEL}"),
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
        for dataset, g in self.figured.groupby("params.dataset", sort=True):
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
                        # joules per run: NVML's (GPU) or RAPL's (CPU) counter over its epochs
                        "energy_j": c["metrics.energy_j"].mean() if "metrics.energy_j" in c else float("nan"),
                    }
                )
            if not rows:
                continue
            f = pd.DataFrame(rows)
            costs = [("epoch_s", "seconds per epoch"), ("params", "parameters")]
            if f["energy_j"].notna().any():
                costs.append(("energy_j", "joules per run"))
            else:
                self.cannot.append(f"{dataset}: no run measured its energy (no NVML GPU or readable RAPL counter)")
            for col, _ in costs:
                f[f"pareto_{col}"] = figures.pareto_mask(f[col].to_numpy(float), f["ndcg"].to_numpy(float))
            stem = f"cost_{dataset}"
            png = figures.cost_scatter(f, costs, dataset, self.png(stem + ".png"))
            front = ", ".join(f.loc[f["pareto_epoch_s"], "label"])
            against = " and ".join(label for _, label in costs)
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}: test NDCG@10 against {against}; Pareto front (time): {front}",
                    self.csv(f, stem + ".csv"),
                )
            )
        return s

    def popularity(self) -> Section:
        s = Section("Popularity bias, long tail and coverage")
        for dataset, g in self.figured.groupby("params.dataset", sort=True):
            items = self.items(dataset)
            if items is None:
                self.cannot.append(f"{dataset}: no items.parquet (runs before it was logged): no popularity analysis")
                continue
            n_items = int(items["item_index"].max())
            pop = np.zeros(n_items + 1)
            # the training split's counts, as the runs' own head/tail metrics (runs before they
            # were logged: the whole dataset's, which can rank a few items differently)
            count_col = "train_interactions" if "train_interactions" in items else "interactions"
            pop[items["item_index"].to_numpy()] = items[count_col].to_numpy()
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
                        "Gini@10": gini(rec[1:]),
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
            tail_scores = f[f["model"] != "ground truth (test targets)"][["tail Recall@10", "tail NDCG@10"]]
            tail_targets = int(tail[truth].sum())
            if not tail_targets:
                s.blocks.append(f"{dataset}: no test target is a tail item, so there is no long-tail accuracy to show.")
            elif not (tail_scores.fillna(0.0) > 0).to_numpy().any():  # an empty axis says nothing
                s.blocks.append(
                    f"{dataset}: no model ranks any of the {tail_targets:,} tail test targets in its top 10: tail "
                    "Recall@10 and NDCG@10 are 0 for every model (the table above)."
                )
            else:
                png_tail = figures.grouped_bars(
                    f[f["model"] != "ground truth (test targets)"],
                    "model",
                    ["tail Recall@10", "tail NDCG@10"],
                    "on tail targets",
                    f"{dataset}: long-tail accuracy",
                    self.png(f"longtail_{dataset}.png"),
                )
                s.blocks.append(
                    Figure(
                        png_tail, f"{dataset}: Recall@10 and NDCG@10 on test targets that are tail items", stem + ".csv"
                    )
                )
            top50 = self._top50(items, counts, int(f["users"].dropna().max()))
            s.blocks.append(
                Table(
                    top50,
                    f"{dataset}: the 50 items most often in the learned models' top-10 lists, "
                    "% of test users each model shows it to",
                    self.csv(top50, f"top50_{dataset}.csv"),
                )
            )
        return s

    @staticmethod
    def _top50(items: pd.DataFrame, counts: dict[str, np.ndarray], users: int) -> pd.DataFrame:
        # ordered by the learned models: pop shows its same ten items to nearly everyone
        total = np.sum([c for m, c in counts.items() if m != "pop"] or list(counts.values()), axis=0)
        order = np.argsort(-total[1:], kind="stable")[:50] + 1
        by_index = items.set_index("item_index")
        rows = []
        for i in order:
            row: dict[str, str | int] = {"title": str(by_index.at[i, "title"]) if i in by_index.index else str(i)}
            row["times watched"] = int(by_index.at[i, "interactions"]) if i in by_index.index else 0
            row.update({m: f"{100 * c[i] / max(1, users):.1f}%" for m, c in counts.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def sequence_length(self) -> Section:
        s = Section("Sequence length (RQ2, RQ6, RQ9)")
        d = self.figured[self.figured["params.model"] != "pop"]
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

    def scaling(self) -> Section:
        """RQ1: test metrics against the size of a dataset, from runs on shares of its users
        (`prep.user_fraction`, e.g. configs/sweeps/ml1m-scaling.yaml)."""
        s = Section("Scaling with dataset size (RQ1)")
        d = self.chosen[self.chosen["params.model"] != "pop"]
        for base, g in d.groupby("dataset_base", sort=True):
            if g["user_fraction"].nunique() < 2:
                continue
            rows = []
            for (model, share, dataset), c in g.groupby(["params.model", "user_fraction", "params.dataset"]):
                users = self.rr.datasets.get(str(dataset), {}).get("users")
                rows.append(
                    {
                        "model": model,
                        "user share %": round(100 * share, 1),
                        "users": int(float(users)) if users else None,
                        "seeds": len(c),
                        "ndcg": c["metrics.test_ndcg_at_10"].mean(),
                        "ndcg_std": c["metrics.test_ndcg_at_10"].std(),
                        "recall": c["metrics.test_recall_at_10"].mean(),
                    }
                )
            f = pd.DataFrame(rows)
            stem = f"scaling_{base}"
            png = figures.lines_by(
                f,
                "user share %",
                [("ndcg", "test NDCG@10"), ("recall", "test Recall@10")],
                str(base),
                self.png(stem + ".png"),
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{base}: test NDCG@10 and Recall@10 on shares of its users (the same users in every model's "
                    "runs; a smaller share is a subset of a larger one), mean over seeds",
                    self.csv(f, stem + ".csv"),
                )
            )
        if not s.blocks:
            self.cannot.append(
                "one size per dataset: no scaling figure (RQ1; run a grid over prep user_fraction, as "
                "configs/sweeps/ml1m-scaling.yaml does)"
            )
        return s

    def gradients(self) -> Section:
        s = Section("Gradient stability (RQ5)")
        parts = []
        for rid, model, max_len, dataset in zip(
            self.figured["run_id"],
            self.figured["params.model"],
            self.figured["params.max_len"],
            self.figured["params.dataset"],
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

    def embedding_geometry(self) -> Section:
        s = Section("Embedding geometry")
        for dataset, max_len, g in self.cells():
            stats: list[dict] = []
            spectra: list[pd.DataFrame] = []
            points: dict[str, pd.DataFrame] = {}
            items = self.items(dataset)
            for rid, model, seed in zip(g["run_id"], g["params.model"], g["params.seed"]):
                t = self.rr.file(rid, "item_vectors.parquet")
                if t is None or not len(t):
                    continue
                t = t.sort_values("item_index")
                v = t[[c for c in t.columns if c != "item_index"]].to_numpy(np.float64)
                stats.append({"model": model, "seed": seed, **embedding_geometry(v)})
                if model not in points:  # one seed per model in the figures; the table averages all
                    spectra.append(_spectrum(model, v))
                    points[model] = _projection(model, v, t["item_index"], items)
            if not stats:
                continue
            f = pd.DataFrame(stats)
            table = f.groupby("model", sort=True)[
                ["dim", "effective_rank", "top_share", "anisotropy", "hubness"]
            ].mean()
            table.insert(0, "seeds", f.groupby("model", sort=True).size())
            table = table.reset_index()
            stem = f"geometry_{dataset}_L{max_len}"
            shown = table.assign(
                dim=table["dim"].astype(int),
                top_share=table["top_share"].map(lambda x: f"{x:.4f}"),
                anisotropy=table["anisotropy"].map(lambda x: f"{x:.4f}"),
                effective_rank=table["effective_rank"].map(lambda x: f"{x:.2f}"),
                hubness=table["hubness"].map(lambda x: f"{x:.2f}"),
            ).rename(
                columns={
                    "effective_rank": "effective rank",
                    "top_share": "top singular share",
                    "hubness": "hubness (N10 skew)",
                }
            )
            s.blocks.append(
                Table(
                    shown,
                    f"{dataset}, max_len {max_len}: geometry of the items' output vectors, mean over seeds "
                    "(effective rank: exp of the entropy of the normalised singular values; anisotropy: mean "
                    "cosine between two items; hubness: skewness of how often an item is among the others' 10 "
                    "nearest)",
                    self.csv(f, stem + ".csv"),
                )
            )
            spec = pd.concat(spectra, ignore_index=True)
            png = figures.spectra(
                spec, f"{dataset}, max_len {max_len}: singular values", self.png(f"spectrum_{stem}.png")
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}, max_len {max_len}: singular-value spectrum of the items' output vectors "
                    "(one seed per model)",
                    self.csv(spec, f"spectrum_{stem}.csv"),
                )
            )
            proj = pd.concat(list(points.values()), ignore_index=True)
            data = self.csv(proj, f"projection_{stem}.csv")
            views = [(figures.projections, "", "coloured by training interactions")]
            if (proj["genre"] != "").any():  # datasets with item genres (MovieLens)
                views.append(
                    (
                        figures.projections_by_genre,
                        "genre_",
                        "coloured by each item's first listed genre (the eight most frequent; the rest grey)",
                    )
                )
            for draw, kind, colouring in views:
                png = draw(
                    proj,
                    f"{dataset}, max_len {max_len}: first two principal components",
                    self.png(f"projection_{kind}{stem}.png"),
                )
                caption = f"{dataset}, max_len {max_len}: items on their output vectors' first two principal components"
                s.blocks.append(Figure(png, f"{caption}, {colouring} (one seed per model)", data))
        if not s.blocks:
            self.cannot.append("no item_vectors.parquet in the runs (runs before 2026-11-30): no embedding geometry")
        return s

    def where_models_look(self) -> Section:
        """RQ10 from each run's positions.parquet (training.position_profile): the last block's
        attention of the prediction over the history, and xLSTM's gates, by distance from the latest item."""
        s = Section("Where models look (RQ10)")
        without: set[str] = set()  # models with runs but no profile: no attention or gates to read
        for dataset, max_len, g in self.cells():
            parts = []
            for rid, model, seed in zip(g["run_id"], g["params.model"], g["params.seed"]):
                t = self.rr.file(rid, "positions.parquet")
                if t is not None and len(t):
                    parts.append(t.assign(model=model, seed=seed))
                elif model != "pop":
                    without.add(model)
            if not parts:
                continue
            f = pd.concat(parts, ignore_index=True)
            f = f.groupby(["model", "signal", "block", "distance"], sort=True)["value"].agg(["mean", "std", "size"])
            f = f.rename(columns={"mean": "value", "std": "value_std", "size": "seeds"}).reset_index()
            last = f[f["block"] == f.groupby("model")["block"].transform("max")]
            stem = f"positions_{dataset}_L{max_len}"
            png = figures.position_profiles(
                last, f"{dataset}, max_len {max_len}: where the last block looks", self.png(stem + ".png")
            )
            s.blocks.append(
                Figure(
                    png,
                    f"{dataset}, max_len {max_len}: the last block's attention weight of the prediction on each "
                    "earlier position (SASRec, BERT4Rec; BERT4Rec's position 1 is the [MASK] it predicts from) "
                    "and xLSTM's input and forget gates at each position, mean over up to 256 test users and over "
                    "seeds (the CSV has every block)",
                    self.csv(f, stem + ".csv"),
                )
            )
        if not s.blocks:
            self.cannot.append(
                "no positions.parquet in the runs (runs before 2026-11-30, or only RNNs): no attention or gate profiles"
            )
        elif without:
            self.cannot.append(
                f"{', '.join(sorted(without))}: no attention weights or xLSTM gates to read (the position profile "
                "reads those), so no profile of where they look"
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


def _spectrum(model: str, v: np.ndarray) -> pd.DataFrame:
    sv = np.linalg.svd(v, compute_uv=False)
    return pd.DataFrame({"model": model, "index": np.arange(1, sv.size + 1), "share": sv / max(sv.sum(), 1e-12)})


def _projection(model: str, v: np.ndarray, index: pd.Series, items: pd.DataFrame | None) -> pd.DataFrame:
    """The items on the first two principal components of their centred vectors, with popularity."""
    centred = v - v.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    counts = np.zeros(len(v))
    genre = pd.Series("", index=range(len(v)))
    if items is not None:
        by_index = items.set_index("item_index")
        counts = index.map(by_index["interactions"]).fillna(0).to_numpy(float)
        if "genres" in by_index:  # the first genre the dataset lists for the item
            genre = index.map(by_index["genres"]).fillna("").astype(str).str.split("|").str[0]
    return pd.DataFrame(
        {
            "model": model,
            "item_index": index.to_numpy(),
            "pc1": xy[:, 0],
            "pc2": xy[:, 1] if xy.shape[1] > 1 else 0.0,
            "log10_interactions": np.log10(counts + 1),
            "genre": genre.to_numpy(),
        }
    )
