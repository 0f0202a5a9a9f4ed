"""Sweep spec files: what they run (cells, search space, flags on top) and how a bad one is refused
(the line named, nothing started). The sweeps themselves run in test_sweeps.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from xlrec.cli import main
from xlrec.cli.sweep import spec_from_args
from xlrec.sweeps.checks import check_spec
from xlrec.sweeps.naming import trial_label
from xlrec.sweeps.space import define_space, model_space
from xlrec.sweeps.spec_file import load_spec, spec_yaml
from xlrec.sweeps.trial_config import member_configs

REPO = Path(__file__).resolve().parents[1]

GRID = """\
description: does the weight average help, per model?
experiment: ema-check
mode: grid
datasets: [synthetic]
models:
  sasrec:
    fixed: {dropout: 0.2}
    grid: {ema_decay: [0.0, 0.99]}
  gru4rec:
seeds: [1, 2]
epochs: 3
fixed: {exclude_seen: false, synthetic_users: 40}
grid: {max_len: [8, 16]}
resources: {cpus_per_trial: 0.5, max_concurrent: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_grid_spec_runs_every_combination_once(tmp_path):
    spec = load_spec(write(tmp_path, GRID))
    check_spec(spec)
    cells = spec.grid_cells()
    # sasrec: 2 max_len x 2 ema_decay x 2 seeds; gru4rec: 2 max_len x 2 seeds
    assert len(cells) == 12
    assert cells[0] == {"model": "sasrec", "dataset": "synthetic", "max_len": 8, "ema_decay": 0.0, "seed": 1}
    assert sum(c["model"] == "gru4rec" for c in cells) == 4 and all("ema_decay" not in c for c in cells[8:])
    assert spec.axes() == ["max_len", "ema_decay"]
    assert spec.fixed_for("sasrec") == {"exclude_seen": False, "synthetic_users": 40, "dropout": 0.2}
    assert spec.fixed_for("gru4rec") == {"exclude_seen": False, "synthetic_users": 40}
    assert (spec.experiment, spec.cpus_per_trial, spec.max_concurrent, spec.epochs) == ("ema-check", 0.5, 2, 3)
    assert trial_label("sasrec", {"cell": cells[3]}) == "sasrec L8 ema_decay=0.99 s2"


def test_listed_combinations_run_as_listed(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            """\
            models: [xlstm]
            seeds: [42]
            grid:
              - {lr: 0.001, ema_decay: 0.99}
              - {lr: 0.002}
            """,
        )
    )
    assert spec.mode == "grid"
    assert [(c.get("lr"), c.get("ema_decay")) for c in spec.grid_cells()] == [(0.001, 0.99), (0.002, None)]


def test_the_logged_spec_reads_back_to_the_same_sweep(tmp_path):
    spec = load_spec(write(tmp_path, GRID))
    again = load_spec(write(tmp_path, spec_yaml(spec)))
    assert again.grid_cells() == spec.grid_cells()
    for field in ("models", "datasets", "seeds", "overrides", "per_model", "epochs", "metric", "experiment"):
        assert getattr(again, field) == getattr(spec, field), field


def test_grouped_seeds_make_one_trial_per_cell_whose_members_are_the_cells_seeds(tmp_path):
    spec = load_spec(write(tmp_path, GRID.replace("max_concurrent: 2}", "max_concurrent: 2, group_seeds: true}")))
    check_spec(spec)
    cells, trials = spec.grid_cells(), spec.trial_cells()
    assert (len(cells), len(trials), spec.runs_per_trial) == (12, 6, 2)
    # the models take turns, so that Ray's GPU-by-GPU packing mixes them
    assert [t["model"] for t in trials] == ["sasrec", "gru4rec", "sasrec", "gru4rec", "sasrec", "sasrec"]
    assert trials[0] == {"model": "sasrec", "dataset": "synthetic", "max_len": 8, "ema_decay": 0.0, "seeds": [1, 2]}
    members = [m for t in trials for m in member_configs({"cell": t})]
    assert sorted(map(repr, (m["cell"] for m in members))) == sorted(map(repr, cells))  # every run once
    assert trial_label("sasrec", members[1]) == "sasrec L8 ema_decay=0 s2"
    again = load_spec(write(tmp_path, spec_yaml(spec)))
    assert again.group_seeds and again.trial_cells() == trials
    plain = load_spec(write(tmp_path, GRID)).trial_cells()  # off: a trial per cell and seed
    assert len(plain) == 12 and sorted(map(repr, plain)) == sorted(map(repr, cells))
    assert [c["model"] for c in plain[:4]] == ["sasrec", "gru4rec", "sasrec", "gru4rec"]


def test_group_seeds_on_a_search_is_refused_from_the_command_line(capsys):
    code = main(["sweep", "--mode", "search", "--model", "gru4rec", "--dataset", "synthetic", "--group-seeds"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("xlrec: error: ")]
    assert len(lines) == 1 and "--group-seeds applies to --mode grid" in lines[0], err


SEARCH = """\
datasets: [synthetic]
models: [xlstm, gru4rec]
seeds: [7]
search:
  trials: 5
  sampler_seed: 3
  space:
    num_heads: {categorical: [1, 2]}
    head_dim: {categorical: [8, 16]}
    lr: {float: [1.0e-4, 1.0e-2], log: true}
    num_blocks: {int: [1, 2]}
metric: val_ndcg_at_10
pruning: {enabled: false}
"""


def test_a_search_spec_samples_the_model_then_its_own_space(tmp_path):
    spec = load_spec(write(tmp_path, SEARCH))
    check_spec(spec)
    assert (spec.mode, spec.trials, spec.seed, spec.metric, spec.pruning) == ("search", 5, 3, "val_ndcg_at_10", False)
    assert spec.overrides == {"seed": 7}  # one training seed for every trial
    # gru4rec has no heads: no width helper either
    assert set(model_space(spec, "gru4rec")) == {"lr", "num_blocks"}
    assert set(model_space(spec, "xlstm")) == {"num_heads", "head_dim", "lr", "num_blocks"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        derived = define_space(trial, spec)
        seen.add(trial.params["model"])
        if trial.params["model"] == "xlstm":
            assert derived == {"embedding_dim": trial.params["num_heads"] * trial.params["head_dim"]}
        else:
            assert derived is None and set(trial.params) == {"model", "lr", "num_blocks"}
    assert seen == {"xlstm", "gru4rec"}


def test_flags_given_with_a_spec_override_it(tmp_path):
    from xlrec.cli import build_parser

    path = write(tmp_path, GRID)
    args = build_parser().parse_args(
        ["sweep", "--spec", str(path), "--epochs", "1", "--max-lens", "4", "--set", "lr=0.01"]
    )
    spec = spec_from_args(args)
    assert spec.epochs == 1
    assert {c["max_len"] for c in spec.grid_cells()} == {4}
    assert spec.overrides["lr"] == 0.01 and spec.overrides["exclude_seen"] is False
    assert len(spec.grid_cells()) == 6  # sasrec 1 x 2 ema x 2 seeds + gru4rec 2 seeds


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models: [xlstm]\ngrdi: {max_len: [8]}\n", "line 2: unknown key 'grdi' in the spec"),
        ("models: [xlstm]\nfixed:\n  lr: 0.001\n  dropuot: 0.1\n", "line 4: unknown setting 'dropuot' in fixed"),
        ("models: [xlstm]\nfixed: {lr: fast}\n", "line 2:"),
        ("models: [xlstm]\nfixed: {seed: 3}\n", "line 2: 'seed' in fixed: the sweep sets it through 'seeds'"),
        ("models: [xlstm]\ngrid:\n  max_len: 8\n", "line 3: grid axis 'max_len' needs a non-empty list"),
        ("models: [xlstm]\nmodels: [sasrec]\n", "line 2: 'models' is given twice (first on line 1)"),
        ("search:\n  trials: 0\n", "line 2: 'trials' must be an integer >= 1"),
        ("search:\n  space:\n    lr: {float: [0.01, 0.001]}\n", "line 3: 'lr': float needs [low, high]"),
        ("search:\n  space:\n    lr: {uniform: [0.001, 0.01]}\n", "line 3: 'lr': write one of"),
        ("search:\n  space:\n    epochs: {int: [1, 5]}\n", "line 3: cannot search 'epochs'"),
        ("seeds: [1, 2]\nsearch: {trials: 2}\n", "line 1: a search trains each sampled setting once"),
        ("mode: grid\nsearch: {trials: 2}\n", "line 2: a 'search' section needs mode: search"),
        ("metric: test_recall_at_10\n", "line 1: 'metric' must be one of val_recall_at_10, val_ndcg_at_10"),
        ("models: [xlstm\n", "is not valid YAML"),
        ("- xlstm\n", "line 1: a spec is a mapping"),
        ("models:\n  xlstm:\n    fixd: {lr: 0.1}\n", "line 3: unknown key 'fixd' in xlstm"),
        ("search: {trials: 2}\nresources: {group_seeds: true}\n", "line 2: 'group_seeds' applies to a grid"),
        ("models: [xlstm]\nresources:\n  group_seeds: 1\n", "line 3: 'group_seeds' must be true or false"),
        ("resources:\n  gpus_per_trial: half\n", "line 2: 'gpus_per_trial' must be a number or auto, got 'half'"),
    ],
)
def test_a_bad_spec_is_refused_naming_its_line(tmp_path, capsys, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = main(["sweep", "--spec", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("xlrec: error: ")]
    assert len(lines) == 1 and needle in lines[0], err
    assert str(path) in lines[0] or "nothing was started" in lines[0]
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "optuna.db", "ray_results"))


def test_a_cell_that_cannot_run_is_named_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))
    path = write(
        tmp_path,
        """\
        datasets: [synthetic]
        models: [gru4rec]
        seeds: [1]
        grid: {max_len: [8, 32], window_stride: [16]}
        """,
    )
    code = main(["sweep", "--spec", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "the trial model=gru4rec dataset=synthetic max_len=8 window_stride=16 seed=1 cannot run" in err
    assert "window_stride must be in [0, max_len]" in err
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "optuna.db", "ray_results"))


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_spec_reads_and_checks(path, monkeypatch):
    # a spec of the example plugin's model checks where the plugin is available, as after its install
    monkeypatch.syspath_prepend(str(REPO / "examples" / "plugin-model"))
    monkeypatch.setenv("XLREC_MODELS", "nextitnet=xlrec_nextitnet.model:NextItNet")
    spec = load_spec(path)
    check_spec(spec)
    assert spec.description and spec.experiment, "a committed spec says what it answers and where its runs live"


def test_every_tuned_default_names_committed_specs():
    import re

    import yaml

    defaults = yaml.safe_load((REPO / "xlrec" / "defaults.yaml").read_text())
    named = 0
    for model, per_dataset in defaults["models"].items():
        chosen = per_dataset.get("ml-100k", {}).get("chosen_by", "")
        if "paper Table 3" in chosen and "configs/sweeps" not in chosen:
            continue  # taken from the paper as it stands
        specs = re.findall(r"[\w-]+\.yaml", chosen)
        assert specs, f"{model} on ml-100k: chosen_by names no spec: {chosen!r}"
        for name in specs:
            assert (REPO / "configs" / "sweeps" / name).is_file(), f"{model}: {name} is not in configs/sweeps"
            named += 1
    assert named >= 10
    for model in ("xlstm", "sasrec", "bert4rec", "gru4rec", "lstm"):  # searched on ML-1M: spec and runs committed
        chosen = defaults["models"][model]["ml-1m"]["chosen_by"]
        for name in re.findall(r"configs/sweeps/([\w-]+\.yaml)", chosen):
            assert (REPO / "configs" / "sweeps" / name).is_file(), f"{model} on ml-1m: {name} is not committed"
        experiments = re.findall(r"\(experiment ([\w-]+)", chosen) + re.findall(r"experiment ([\w-]+) \(", chosen)
        assert experiments, f"{model} on ml-1m: chosen_by names no experiment: {chosen!r}"
        for name in experiments:
            assert (REPO / "docs" / "results" / "exports" / f"{name}.csv").is_file(), f"{model}: no export of {name}"


def test_every_results_table_regenerates_identically_from_its_committed_export():
    """The report tables of the docs/results pages are what `xlrec report --from-csv` prints from the
    exports beside them; BENCHMARKS.md, their index, holds none."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.pop(0)
    assert not tables.blocks((REPO / "BENCHMARKS.md").read_text()), "BENCHMARKS.md is an index: tables go in pages"
    found = [(page, args, table) for page in tables.pages() for args, table in tables.blocks(page.read_text())]
    assert len(found) >= 20
    for page, args, table in found:
        assert "docs/results/exports/" in args, f"{page.name}: an export beside the pages: {args}"
        assert tables.render(args) == table, f"{page.name}: xlrec report {args}"


def test_the_results_pages_link_only_to_committed_files():
    """BENCHMARKS.md and the docs/results pages cite specs, exports and raw data by path: each exists."""
    import re

    pages = [REPO / "BENCHMARKS.md", *sorted((REPO / "docs" / "results").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not link.startswith("http"):
                assert (page.parent / link).exists(), f"{page.name}: {link}"
        cited = r"(?:configs/sweeps|docs/results/(?:data|exports))/[a-z0-9][a-z0-9_.-]*\.(?:yaml|csv|jsonl?|txt|tsv)"
        for path in re.findall(cited, text):  # NAME.yaml in a command's usage is a placeholder
            assert (REPO / path).is_file(), f"{page.name}: {path}"
    assert not [p for p in (REPO / "benchmarks").rglob("*") if p.suffix in {".yaml", ".csv", ".jsonl", ".json", ".tsv"}]


def test_the_readme_spec_example_is_a_valid_spec(tmp_path):
    import re

    readme = (REPO / "README.md").read_text()
    example = re.search(r"## Sweeps\n.*?```yaml\n(.*?)```", readme, re.S)
    assert example, "README's Sweeps section shows a spec"
    spec = load_spec(write(tmp_path, example.group(1)))
    check_spec(spec)
    assert len(spec.grid_cells()) == (3 + 2) * 3
