"""Loading models never runs code from the model (issue #13, "Trust").

Against a real `mlflow server` (PostgreSQL, served artifacts, no auth): an attacker registers a
model in the old pickle layout whose `data/model.pth` runs code when unpickled and points the
`champion` alias at it with a plain HTTP POST. `evaluate`, `recommend` and `registry download`
must refuse it with one paragraph and never run it. Plus crafted models in the new format
(configs and weights that do not fit), the model URI forms, `registry download` destinations,
temp folders, idempotent registration, and a round trip of a real trained model.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file, save_file

from helpers import run_xlrec, xlrec_env
from xlrec.cli import main as xlrec_main
from xlrec.device import select_runtime
from xlrec.errors import XlrecError
from xlrec.platform.registry import model_format
from xlrec.platform.registry.loading import download_model, load_model, parse_model_uri

pytestmark = pytest.mark.server

TINY = [
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "80",
    "--synthetic-items",
    "40",
    "--synthetic-mean-len",
    "15",
    "--epochs",
    "1",
    "--embedding-dim",
    "16",
    "--max-len",
    "10",
    "--device",
    "cpu",
]


class RunsCode:
    """Unpickling this object runs `code` (what a crafted model.pth does)."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("xlrec: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def client(mlflow_server):
    mlflow.set_tracking_uri(mlflow_server)
    return MlflowClient(mlflow_server)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return xlrec_env(tmp_path_factory.mktemp("data"), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def trained(client, env, mlflow_server, tmp_path_factory):
    """A real `xlrec train` of a tiny SASRec, registered in the new format."""
    experiment = f"safety-{uuid.uuid4().hex[:8]}"
    proc = run_xlrec(
        ["train", "--model", "sasrec", *TINY, "--experiment", experiment, "--tracking-uri", mlflow_server],
        env,
        cwd=tmp_path_factory.mktemp("train"),
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])[0]
    name, version = run.data.tags["xlrec.registered_model"], run.data.tags["xlrec.model_version"]
    clean = tmp_path_factory.mktemp("clean") / "model"
    download_model(f"models:/{name}/{version}", clean)
    return {"run": run, "name": name, "version": version, "uri": f"models:/{name}/{version}", "dir": clean}


def _set_alias_over_rest(server: str, name: str, alias: str, version: str) -> None:
    """What an attacker does: one unauthenticated POST."""
    body = json.dumps({"name": name, "alias": alias, "version": version}).encode()
    req = urllib.request.Request(
        f"{server}/api/2.0/mlflow/registered-models/alias",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


@pytest.fixture(scope="module")
def crafted(client, trained, mlflow_server, tmp_path_factory):
    """A registered model whose champion is an old-format (pytorch flavor) pickle that writes a marker."""
    import mlflow.pytorch

    work = tmp_path_factory.mktemp("attack")
    marker = work / "PWNED"
    model_dir = work / "model"
    extra = work / "extra"
    extra.mkdir()
    shutil.copy(trained["dir"] / model_format.DATA_DIR / "config.yaml", extra / "config.yaml")
    shutil.copy(trained["dir"] / model_format.DATA_DIR / "item_map.json", extra / "item_map.json")
    # The genuine old layout (what xlrec logged before), then its pickle swapped for the payload.
    mlflow.pytorch.save_model(
        torch.nn.Linear(2, 2),
        str(model_dir),
        serialization_format="pickle",
        extra_files=[str(extra / "config.yaml"), str(extra / "item_map.json")],
        pip_requirements=["torch"],
    )
    pth = model_dir / "data" / "model.pth"
    assert pth.is_file() and "pytorch" in yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]
    torch.save(RunsCode(f"open({str(marker)!r}, 'w').write('code ran')"), str(pth))

    name = f"victim-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(f"attacker-{uuid.uuid4().hex[:8]}"))
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    evil = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_terminated(run.info.run_id)
    _set_alias_over_rest(mlflow_server, name, "champion", evil.version)
    assert client.get_model_version_by_alias(name, "champion").version == evil.version
    # the payload is live: loading it the old way runs it
    assert not marker.exists()
    torch.load(str(pth), weights_only=False)
    assert marker.read_text() == "code ran"
    marker.unlink()
    return {"name": name, "marker": marker, "run_id": run.info.run_id, "work": work}


# --- the attack -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "recommend", "download"])
def test_old_pickle_champion_is_refused_without_running_it(command, crafted, env, mlflow_server, tmp_path):
    uri = f"models:/{crafted['name']}@champion"
    args = {
        "evaluate": ["evaluate", "--model-uri", uri, "--device", "cpu"],
        "recommend": ["recommend", "--model-uri", uri, "--items", "1,2", "--device", "cpu"],
        "download": [
            "registry",
            "download",
            "--name",
            crafted["name"],
            "--alias",
            "champion",
            "--dst",
            str(tmp_path / "dl"),
        ],
    }[command]
    # MLflow's own pickle switch on (a user may export it): the refusal must be xlrec's, not MLflow's
    run_env = {**env, "TMPDIR": str(tmp_path), "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    proc = run_xlrec([*args, "--tracking-uri", mlflow_server], run_env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    msg = _error_line(proc.stderr)
    assert "saved by an older xlrec as a pickle" in msg and "unpickling" in msg
    assert f"runs:/{crafted['run_id']}/config.yaml" in msg and "xlrec train --config" in msg
    assert not crafted["marker"].exists(), "the model's pickle ran"
    assert proc.stdout.strip() == ""
    assert sorted(p.name for p in tmp_path.iterdir() if "xlrec" in p.name or p.name == "dl") == []


# --- crafted models in the new format ---------------------------------------------------------------


def _copy_model(trained, dst: Path) -> Path:
    shutil.copytree(trained["dir"], dst)
    return dst / model_format.DATA_DIR


def _edit_config(data: Path, **changes) -> None:
    cfg = yaml.safe_load((data / "config.yaml").read_text())
    cfg["prep"] = {**cfg.get("prep", {}), **changes.pop("prep", {})}
    cfg.update(changes)
    (data / "config.yaml").write_text(yaml.safe_dump(cfg))


CPU = select_runtime("cpu", "auto", False)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"embedding_dim": 10**9}, "embedding_dim = 1000000000, outside xlrec's limit"),
        ({"embedding_dim": 4096, "num_blocks": 64, "num_heads": 2}, "would need about 217.2 GiB of memory"),
        ({"model": "evil"}, "trained with model 'evil', which is not registered in this environment"),
        ({"model": "os:system"}, "trained with model 'os:system', which is not registered in this environment"),
        ({"no_such_setting": 1}, "unknown setting(s) ['no_such_setting']"),
        ({"max_len": "50"}, "sets max_len to '50', which is not of type int"),
        ({"dropout": 2.0}, "dropout must be in [0, 1)"),
        ({"prep": {"synthetic_users": 10**12}}, "synthetic_users = 1000000000000, outside"),
        # each size within its cap, their product far beyond any machine: refused before data or model
        (
            {"dataset": "synthetic", "prep": {"synthetic_users": 10**7, "synthetic_mean_len": 10**5}},
            "would need about 181.9 TiB of memory",
        ),
    ],
)
def test_crafted_config_is_refused_before_building(changes, expected, trained, tmp_path):
    data = _copy_model(trained, tmp_path / "m")
    _edit_config(data, **changes)
    with pytest.raises(XlrecError) as err:
        load_model(str(tmp_path / "m"), CPU)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_an_item_map_past_its_cap_is_refused_by_size_and_a_nested_one_as_damaged(trained, tmp_path, monkeypatch):
    """Sizes are checked before a file is parsed (an 11M-entry map took 44 s and 1.4 GB to read
    before its item cap refused it); JSON nested past Python's recursion limit is damage, not a crash."""
    data = _copy_model(trained, tmp_path / "m")
    real = (data / "item_map.json").stat().st_size
    monkeypatch.setattr(model_format, "MAX_ITEM_MAP_BYTES", real - 1)
    parsed = []
    monkeypatch.setattr(model_format.json, "loads", lambda text: parsed.append(1))
    with pytest.raises(XlrecError, match=rf"item_map.json of .* is {real:,} bytes, over xlrec's limit"):
        load_model(str(tmp_path / "m"), CPU)
    assert parsed == []  # never read
    monkeypatch.undo()
    data = _copy_model(trained, tmp_path / "n")
    (data / "item_map.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(XlrecError, match="is not a map of item ids and titles; the model is damaged"):
        load_model(str(tmp_path / "n"), CPU)


def test_crafted_huge_config_through_the_cli(trained, env, tmp_path):
    data = _copy_model(trained, tmp_path / "m")
    _edit_config(data, embedding_dim=2**40)
    # code shipped inside the model directory is never imported either
    (tmp_path / "m" / "code" / "xlrec" / "__init__.py").write_text(
        f"open({str(tmp_path / 'PWNED')!r}, 'w').write('code ran')\n"
    )
    proc = run_xlrec(
        ["recommend", "--model-uri", str(tmp_path / "m"), "--items", "1", "--device", "cpu"], env, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "outside xlrec's limit" in _error_line(proc.stderr)
    assert not (tmp_path / "PWNED").exists()


def test_weights_that_do_not_fit_the_config_are_refused(trained, tmp_path):
    data = _copy_model(trained, tmp_path / "m")
    tensors = load_file(str(data / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.dim() == 2)
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    save_file(tensors, str(data / "model.safetensors"))
    with pytest.raises(XlrecError, match=rf"Tensor '{re.escape(name)}' in model.safetensors .* has shape "):
        load_model(str(tmp_path / "m"), CPU)

    data = _copy_model(trained, tmp_path / "m2")
    tensors = load_file(str(data / "model.safetensors"))
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, str(data / "model.safetensors"))
    with pytest.raises(XlrecError, match=rf"missing tensors: \['{re.escape(dropped)}'\]"):
        load_model(str(tmp_path / "m2"), CPU)

    data = _copy_model(trained, tmp_path / "m3")
    (data / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(XlrecError, match="not a valid safetensors file"):
        load_model(str(tmp_path / "m3"), CPU)


def test_a_directory_without_the_xlrec_flavor_is_refused(trained, tmp_path):
    _copy_model(trained, tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    mlmodel["metadata"]["xlrec"]["format_version"] = 3
    (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(XlrecError, match="uses xlrec model format 3"):
        load_model(str(tmp_path / "m"), CPU)
    del mlmodel["metadata"]
    (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(XlrecError, match="has no xlrec flavor entry"):
        load_model(str(tmp_path / "m"), CPU)


# --- model URI forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "/etc/passwd",
        "/no/such/dir",
        "file:///etc",
        "s3://bucket/model",
        "http://127.0.0.1:1/model",
        "models:/name",
        "models:/name/latest",
        "runs:/abc",
        "runs:/abc/../../x",
        "mlflow-artifacts:/x",
        "",
    ],
)
def test_model_uri_forms_refused(uri):
    with pytest.raises(XlrecError) as err:
        parse_model_uri(uri)
    msg = str(err.value)
    assert "models:/NAME@ALIAS" in msg and "models:/NAME/VERSION" in msg and "runs:/RUN_ID/PATH" in msg
    assert "xlrec registry download" in msg and "\n" not in msg


def test_model_uri_forms_accepted(tmp_path):
    assert parse_model_uri("models:/sasrec-ml-100k@champion").local_dir is None
    assert parse_model_uri("models:/sasrec-ml-100k/3").local_dir is None
    assert parse_model_uri("runs:/0123abcd/model").run_id == "0123abcd"
    assert parse_model_uri(str(tmp_path)).local_dir == tmp_path


def test_etc_passwd_through_the_cli(env, tmp_path):
    proc = run_xlrec(["evaluate", "--model-uri", "/etc/passwd", "--device", "cpu"], env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not one xlrec accepts" in _error_line(proc.stderr)


# --- registry download destinations ---------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if "xlrec-download" in p.name)


def test_download_into_a_non_empty_directory_is_refused(trained, tmp_path, capsys):
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "MLmodel").write_text("my own file")
    code = xlrec_main(
        [
            "registry",
            "download",
            "--name",
            trained["name"],
            "--version",
            trained["version"],
            "--dst",
            str(dst),
            "--tracking-uri",
            mlflow.get_tracking_uri(),
        ]
    )
    assert code == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in dst.iterdir()] == ["MLmodel"] and (dst / "MLmodel").read_text() == "my own file"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "where, expected", [("file", "is an existing file"), ("under_file", "is a file, not a directory")]
)
def test_download_onto_or_under_a_file_is_refused(where, expected, trained, tmp_path):
    (tmp_path / "f").write_text("keep")
    dst = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    with pytest.raises(XlrecError, match=expected):
        download_model(trained["uri"], dst)
    assert (tmp_path / "f").read_text() == "keep"
    assert _leftovers(tmp_path) == []


def test_download_to_a_read_only_filesystem_is_refused(trained, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        with pytest.raises(XlrecError, match="Read-only file system"):
            download_model(trained["uri"], ro / "a" / "b")
        with pytest.raises(XlrecError, match="Read-only file system"):
            download_model(trained["uri"], ro / "dl")
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_download_into_an_empty_directory_and_new_parents(trained, tmp_path, capsys):
    dst = tmp_path / "empty"
    dst.mkdir()
    code = xlrec_main(
        [
            "registry",
            "download",
            "--name",
            trained["name"],
            "--version",
            trained["version"],
            "--dst",
            str(dst),
            "--tracking-uri",
            mlflow.get_tracking_uri(),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["path"] == str(dst) and out["run_id"] == trained["run"].info.run_id
    assert Path(out["config"]) == dst / "data" / "xlrec" / "config.yaml" and Path(out["item_map"]).is_file()
    assert (dst / "MLmodel").is_file() and Path(out["weights"]).is_file()
    assert _leftovers(tmp_path) == []
    path, data, _ = download_model(trained["uri"], tmp_path / "new" / "deeper" / "dl")
    assert (data / "model.safetensors").read_bytes() == Path(out["weights"]).read_bytes()


def test_registry_list_shows_the_full_metric_tag(trained, client, capsys):
    assert xlrec_main(["registry", "list", "--tracking-uri", mlflow.get_tracking_uri()]) == 0
    tag = client.get_model_version(trained["name"], trained["version"]).tags["val_recall_at_10"]
    assert len(tag) == 12  # f"{x:.10f}"
    line = next(ln for ln in capsys.readouterr().out.splitlines() if trained["run"].info.run_id in ln)
    assert f"val_recall_at_10={tag} " in line


# --- round trip of a real model --------------------------------------------------------------------------


def test_round_trip_evaluate_and_recommend_reproduce_the_run(
    trained, client, env, mlflow_server, tmp_path, monkeypatch
):
    """The new format gives the training run's own numbers: evaluate's test metrics equal the logged
    ones, and recommend's top-10 for a user's test history equals the run's logged per-user top-10.
    Neither leaves a temporary model copy behind (TMPDIR is listed afterwards)."""
    run = trained["run"]
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run_env = {**env, "TMPDIR": str(tmpdir)}
    proc = run_xlrec(
        ["evaluate", "--model-uri", trained["uri"], "--device", "cpu", "--tracking-uri", mlflow_server],
        run_env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["run_id"] == run.info.run_id
    for k, v in out["test"].items():
        assert v == run.data.metrics[f"test_{k.replace('@', '_at_')}"], k

    # a user's history before the test target, and what the run logged as its top-10
    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="test_per_user.parquet", dst_path=str(tmp_path / "art")
        )
    )
    monkeypatch.setenv("XLREC_DATA_DIR", env["XLREC_DATA_DIR"])
    from xlrec.data_prep import prepare

    loaded = load_model(str(trained["dir"]), CPU)
    seqs = prepare(loaded.config.dataset, loaded.config.prep).seqs
    row = table.iloc[0]
    start, end = seqs.offsets[row.user_index], seqs.offsets[row.user_index + 1]
    history = [str(seqs.item_ids[i]) for i in seqs.items[start : end - 1]]
    expected = [str(seqs.item_ids[i]) for i in row.top10]
    proc = run_xlrec(
        [
            "recommend",
            "--model-uri",
            trained["uri"],
            "--items",
            ",".join(history),
            "--device",
            "cpu",
            "--tracking-uri",
            mlflow_server,
        ],
        run_env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = re.findall(r"\(item (\S+), score (-?[\d.]+)\)", proc.stdout)
    assert [item for item, _ in got] == expected
    assert all(np.isfinite(float(s)) for _, s in got)
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("xlrec") or (p / "MLmodel").exists()] == []

    # the pyfunc entry point (what `mlflow models serve` loads) answers the same
    pyfunc = mlflow.pyfunc.load_model(str(trained["dir"]))
    pred = pyfunc.predict(pd.DataFrame({"history": [history], "k": [10]}))
    assert list(pred["item_ids"][0]) == expected
    assert len(pred["titles"][0]) == 10 and len(pred["scores"][0]) == 10


def test_recommend_k_and_items_limits(trained, tmp_path, capsys):
    loaded = load_model(str(trained["dir"]), CPU)
    num_items = len(loaded.item_ids) - 1
    base = ["recommend", "--model-uri", str(trained["dir"]), "--device", "cpu"]
    cases = [
        (["--items", ","], "names no item"),
        (["--items", "1", "--k", "-3"], "--k must be at least 1"),
        (["--items", "1", "--k", "0"], "--k must be at least 1"),
        (["--items", "1,2,1", "--k", "100000"], f"between 1 and {num_items - 2}"),
        (["--items", "1,2,1", "--k", str(num_items - 1)], f"between 1 and {num_items - 2}"),
    ]
    for extra, expected in cases:
        assert xlrec_main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert expected in err, (extra, err)
    # exactly the whole unseen catalogue: no padding, no seen item, no -inf score
    assert xlrec_main([*base, "--items", "1,2,1", "--k", str(num_items - 2)]) == 0
    got = re.findall(r"\(item (\S+), score (\S+)\)", capsys.readouterr().out)
    assert len(got) == num_items - 2
    assert {item for item, _ in got} == set(loaded.item_ids[1:]) - {"1", "2"}
    assert all(np.isfinite(float(s)) for _, s in got)


# --- registration and checkpoints -------------------------------------------------------------------------


@pytest.fixture
def keep_tracking_uri():
    """The tracker sets the process-wide tracking URI; other tests here use the server's."""
    previous = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(previous)


def test_a_resumed_run_registers_one_version(tmp_path, monkeypatch, keep_tracking_uri):
    """A sweep trial resumed in the same MLflow run (MlflowTracker(resume_run_id=...)) reuses its version."""
    from xlrec.config import resolve_config
    from xlrec.data_prep import prepare
    from xlrec.experiment import train
    from xlrec.platform.tracking.train_run import MlflowTracker

    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(
        "gru4rec",
        "synthetic",
        overrides={
            "epochs": 1,
            "embedding_dim": 8,
            "max_len": 8,
            "device": "cpu",
            "synthetic_users": 60,
            "synthetic_items": 30,
            "synthetic_mean_len": 12,
        },
    )
    data = prepare(cfg.dataset, cfg.prep)
    first = MlflowTracker(data, uri=uri, experiment="resume")
    train(cfg, data, [first])
    again = MlflowTracker(data, uri=uri, experiment="resume", resume_run_id=first.run_id)
    train(cfg, data, [again])
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='gru4rec-synthetic'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", first.run_id)]
    assert first.model_version == again.model_version == 1
    assert client.get_run(first.run_id).data.tags["xlrec.model_version"] == "1"


@pytest.mark.parametrize("scheduler, ema", [("cosine", 0.9), ("step", 0.0)])
def test_trainer_checkpoint_loads_weights_only(scheduler, ema, tmp_path, monkeypatch):
    """Sweep checkpoints are read with torch.load(weights_only=True): Trainer.state() must be plain data."""
    from xlrec.config import resolve_config
    from xlrec.data_prep import prepare
    from xlrec.experiment import assemble

    monkeypatch.setenv("XLREC_DATA_DIR", str(tmp_path / "data"))
    cfg = resolve_config(
        "sasrec",
        "synthetic",
        overrides={
            "epochs": 1,
            "embedding_dim": 8,
            "max_len": 8,
            "device": "cpu",
            "synthetic_users": 60,
            "synthetic_items": 30,
            "synthetic_mean_len": 12,
            "scheduler": scheduler,
            "ema_decay": ema,
        },
    )
    data = prepare(cfg.dataset, cfg.prep)
    experiment = assemble(cfg, data)
    trainer = experiment.trainer()
    experiment.run(trainer)
    buf = io.BytesIO()
    torch.save({"trainer": trainer.state(), "mlflow_run_id": "x"}, buf)
    buf.seek(0)
    state = torch.load(buf, map_location="cpu", weights_only=True)["trainer"]
    assert state["epoch"] == 1 and len(state["history"]) == 1
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(state["model"][k], v)
    buf = io.BytesIO()
    torch.save({"trainer": RunsCode(f"open({str(tmp_path / 'PWNED')!r}, 'w')")}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(buf, map_location="cpu", weights_only=True)
    assert not (tmp_path / "PWNED").exists()
    assert os.listdir(tmp_path) == ["data"]
