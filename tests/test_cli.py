"""The command line as a user runs it: statistics, the final JSON line, and clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SHARED_DATA


def run_cli(*args: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "XLREC_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": "", **(env or {})}
    full_env.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "xlrec", *args], capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=600
    )


def test_data_prepare_prints_table1_for_real_ml100k(tmp_path):
    proc = run_cli("data", "prepare", "--dataset", "ml-100k", "--source", str(SHARED_DATA), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.strip().splitlines()[-1].split()
    assert row == ["ml-100k", "943", "1,682", "100,000", "106.04", "0.93695"]
    again = run_cli(
        "data", "prepare", "--dataset", "ml-100k", tmp_path=tmp_path, env={"XLREC_DATA_MIRROR": str(SHARED_DATA)}
    )
    assert again.returncode == 0 and "from cache" in again.stderr


def test_train_prints_one_json_line(tmp_path):
    proc = run_cli(
        "train",
        "--model",
        "gru4rec",
        "--dataset",
        "synthetic",
        "--synthetic-users",
        "80",
        "--synthetic-items",
        "40",
        "--synthetic-mean-len",
        "15",
        "--epochs",
        "2",
        "--embedding-dim",
        "16",
        "--max-len",
        "10",
        "--device",
        "cpu",
        "--no-tracking",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {
        "model",
        "dataset",
        "seed",
        "max_len",
        "params",
        "epochs_run",
        "best_epoch",
        "avg_epoch_time_s",
        "val",
        "test",
    } <= set(summary)
    assert summary["epochs_run"] == 2 and summary["params"] > 0
    assert {"recall@10", "mrr@10", "ndcg@10", "recall@5", "ndcg@20"} <= set(summary["test"])
    assert "epoch   1" in proc.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--model", "nope", "--dataset", "synthetic", "--no-tracking"], "Unknown model 'nope'"),
        (["train", "--model", "xlstm", "--dataset", "ml-5m", "--no-tracking"], "Unknown dataset 'ml-5m'"),
        (["data", "prepare", "--dataset", "ml-1m", "--source", "/nonexistent/mirror"], "has no folder ml-1m"),
        (
            [
                "train",
                "--model",
                "xlstm",
                "--dataset",
                "synthetic",
                "--embedding-dim",
                "30",
                "--num-heads",
                "4",
                "--no-tracking",
            ],
            "divisible",
        ),
        (["train", "--config", "missing.yaml", "--no-tracking"], "missing.yaml does not exist"),
        (
            ["train", "--model", "xlstm", "--dataset", "synthetic", "--device", "cuda", "--no-tracking"],
            "no usable CUDA",
        ),
    ],
)
def test_bad_input_gives_one_paragraph_and_no_traceback(tmp_path, args, needle):
    proc = run_cli(*args, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("xlrec: error: ")
    assert not (tmp_path / "data" / "processed").exists() or not any((tmp_path / "data" / "processed").iterdir())


def test_corrupt_ratings_file_names_file_and_line(tmp_path):
    mirror = tmp_path / "mirror" / "ml-100k"
    mirror.mkdir(parents=True)
    (mirror / "u.data").write_text("1\t10\t5\t100\n2\tten\t3\t101\n")
    proc = run_cli("data", "prepare", "--dataset", "ml-100k", "--source", str(tmp_path / "mirror"), tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "u.data, line 2" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "flags, expected",
    [([], (True, True, False)), (["--no-cuda-graph", "--compile"], (True, False, True))]
    + [(["--exclude-seen=false", "--cuda-graph=true", "--compile=off"], (False, True, False))]
    + [(["--no-exclude-seen", "--no-compile"], (False, True, False))],
)
def test_on_off_switches_resolve_into_the_config(flags, expected):
    """Each switch takes `--NAME`, `--NAME=BOOL` (MLproject's form) and `--no-NAME`; unset keeps the default."""
    from xlrec.cli import build_parser
    from xlrec.cli.train import resolve_from_args

    args = build_parser().parse_args(["train", "--model", "sasrec", "--dataset", "synthetic", *flags])
    cfg = resolve_from_args(args)
    assert (cfg.exclude_seen, cfg.cuda_graph, cfg.compile) == expected


def test_mlproject_entry_points_stay_in_step_with_the_settings():
    """MLproject keeps only the parameters MLflow needs; each one it passes to a setting uses that
    setting's own flag (derived from its field), every command parses with the entry's defaults, and
    a parameter an entry does not declare (MLflow appends it as --NAME VALUE) parses too."""
    import re
    import shlex

    import yaml

    from xlrec.cli import build_parser
    from xlrec.settings import PrepConfig, TrainConfig, settings_of

    flags = {s.name: s.flag for cls in (TrainConfig, PrepConfig) for s in settings_of(cls, skip=("arch", "prep"))}
    flags.update({"embedding_dim": "--embedding-dim", "num_heads": "--num-heads", "num_blocks": "--num-blocks"})
    flags["dropout"] = "--dropout"
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "MLproject").read_text())
    parser = build_parser()
    for name, entry in doc["entry_points"].items():
        params = entry.get("parameters") or {}
        command = " ".join(entry["command"].split())
        assert set(re.findall(r"{(\w+)}", command)) == set(params), name
        for param in params:
            if param in flags and flags[param] is not None:
                assert re.search(rf"{re.escape(flags[param])}[ =]\{{{param}\}}", command), (name, param)
        values = {p: ("models:/m@champion" if "default" not in spec else spec["default"]) for p, spec in params.items()}
        argv = shlex.split(command.format(**{p: shlex.quote(str(v)) for p, v in values.items()}))
        assert argv[:3] == ["python", "-m", "xlrec"], name
        parser.parse_args(argv[3:])
        if name in ("train", "sweep"):  # `-P max_len=64` on an entry without it: MLflow adds --max_len 64
            extra = parser.parse_args([*argv[3:], "--max_len" if name == "train" else "--grace_period", "3"])
            assert getattr(extra, "max_len" if name == "train" else "grace_period") == 3
