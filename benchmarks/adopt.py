"""Adopt the winners of search sweeps: the best trial of each search, read from its experiment's
export, becomes that model's fixed settings in a grid spec that re-runs them over seeds.

    python benchmarks/adopt.py --base configs/sweeps/ml1m-defaults.yaml --experiment ml1m-tuned \
        --search configs/sweeps/ml1m-search-xlstm.yaml=docs/results/exports/ml1m-search-xlstm.csv ... \
        --out ml1m-tuned.yaml

Searches on datasets the base grid does not run are skipped, and a search without an export leaves
its model at its defaults (said on stdout). The best trial is the finished trial with the highest
best-epoch value of the search's selection metric (validation only, never test); the settings taken
are the ones its space searched (as the trial resolved them: `head_dim` becomes `embedding_dim`)
plus `epochs`. Printed per search: the
winner's run id and its settings, the line to put in xlrec/defaults.yaml (with `chosen_by` naming
the spec and the experiment). Written: `--base` with `models:` turned into a mapping that gives
each searched model its winner as `fixed`, under the new experiment name. With `--top N` the N best
trials each become a cell of the model's grid (listed combinations, each over the base's seeds):
a search of one seed picks its top trials partly by luck, and the seeds' validation mean decides.

Why a tool and not `xlrec sweep`: adopting a default is a research decision that a person commits
(xlrec/defaults.yaml is data in the repository); this only writes the confirmation spec and the
candidate lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlrec.sweeps.space import model_space  # noqa: E402
from xlrec.sweeps.spec_file import load_spec  # noqa: E402


def _value(text: object) -> object:
    """A param as MLflow stored it back to its YAML value; floats to 3 significant digits (the
    confirmation grid runs the rounded value, so what it measures is what a default would ship)."""
    value = yaml.safe_load(str(text)) if isinstance(text, str) else getattr(text, "item", lambda: text)()
    return float(f"{value:.3g}") if isinstance(value, float) else value


def winners(spec_path: str, export: str, top: int = 1) -> tuple[str, str, list[tuple[dict, pd.Series]]]:
    """(model, dataset, [(settings, run row)] of its `top` best finished trials) of one search and its export."""
    spec = load_spec(spec_path)
    if spec.mode != "search":
        raise SystemExit(f"{spec_path} is a {spec.mode} spec: adopt reads search sweeps.")
    runs = pd.read_csv(export)
    model, dataset = spec.model, spec.dataset
    done = runs[(runs["status"] == "FINISHED") & (runs["params.model"] == model)]
    column = f"metrics.best_{spec.metric}"
    if done.empty or column not in done:
        raise SystemExit(f"{export} has no finished {model} trial with {column}: did the search {spec_path} run?")
    keys = [k for k in model_space(spec, model) if k != "head_dim"]
    if "head_dim" in model_space(spec, model):
        keys.append("embedding_dim")
    picked = []
    for _, best in done.sort_values(column, ascending=False).head(top).iterrows():
        picked.append(({k: _value(best[f"params.{k}"]) for k in [*keys, "epochs"] if f"params.{k}" in best}, best))
    return model, dataset, picked


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--search",
        action="append",
        required=True,
        help="SPEC=EXPORT of a search sweep (those of the base's datasets count)",
    )
    ap.add_argument("--base", required=True, help="the grid spec to re-run with the winners")
    ap.add_argument("--experiment", required=True, help="the confirmation grid's experiment")
    ap.add_argument("--out", required=True, help="where to write the confirmation grid spec")
    ap.add_argument(
        "--top", type=int, default=1, help="confirm each search's N best trials (cells of a grid; validation decides)"
    )
    args = ap.parse_args(argv)

    base = yaml.safe_load(Path(args.base).read_text())
    models = base["models"] if isinstance(base["models"], dict) else {m: {} for m in base["models"]}
    chosen = []
    for pair in args.search:
        spec_path, _, export = pair.partition("=")
        spec = load_spec(spec_path)
        if spec.dataset not in base["datasets"]:
            continue  # a search on another dataset than this grid's
        if not Path(export).is_file():
            print(f"# {spec.model} on {spec.dataset}: no export {export}: the grid runs its defaults")
            continue
        model, dataset, picked = winners(spec_path, export, args.top)
        chosen.append(f"{model} on {dataset}: {spec.experiment}")
        for settings, best in picked:
            score = float(best[f"metrics.best_{spec.metric}"])
            print(f"# {model} on {dataset}: run {best['run_id']} ({best['run_name']}), best {spec.metric} {score:.4f}")
            listed = ", ".join(f"{k}: {v}" for k, v in settings.items())
            print(
                f"    {dataset}: {{chosen_by: {Path(spec_path).as_posix()} (experiment {spec.experiment}), {listed}}}"
            )
        entry = dict(models.get(model) or {})
        if len(picked) == 1:
            entry["fixed"] = {**(entry.get("fixed") or {}), **picked[0][0]}
        else:  # listed combinations: one grid cell per trial, each over the base's seeds
            entry["grid"] = [settings for settings, _ in picked]
        models[model] = entry
    base["models"] = models
    base["experiment"] = args.experiment
    base.pop("name", None)
    base["description"] = (
        f"{base.get('description', '').strip()} Re-run with the winners of the searches ({'; '.join(chosen)}), "
        "written by benchmarks/adopt.py."
    ).strip()
    Path(args.out).write_text(yaml.safe_dump(base, sort_keys=False, width=100))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
