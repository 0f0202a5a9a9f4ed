"""The serving journey of issue #14, run from the README's own commands.

A real `xlrec train` registers a small model on the real ML-100K (sqlite store in tmp_path);
the README's `<!-- journey: serve -->` block is then run as written, with only the port and
the model name substituted: `mlflow models serve ... --env-manager local` as a real process
(its own process group, stopped afterwards), and the curl line through bash. The served
answer must equal `xlrec recommend --items` for the same history (items, order, titles,
scores to printed precision); every payload form the README mentions must give it; bad
requests must get HTTP 400 with a one-line message and no traceback.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import SHARED_DATA, exec_line, free_port, run_xlrec, wait_for_ping, xlrec_env
from readme_script import journey

pytestmark = [pytest.mark.server, pytest.mark.slow]

README_MODEL, README_PORT = "xlstm-ml-100k", "5001"
MODEL = "gru4rec-ml-100k"  # trained here (GRU4Rec: the fastest family); the README's name is mapped to it
TRAIN = [
    "train",
    "--model",
    "gru4rec",
    "--dataset",
    "ml-100k",
    "--epochs",
    "1",
    "--max-len",
    "20",
    "--embedding-dim",
    "16",
    "--device",
    "cpu",
]
NUM_ITEMS = 1682  # ML-100K's catalogue


def _post(url: str, payload) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _recommend_cli(env: dict, cwd: Path, items: list[str], k: int) -> list[tuple[str, str, str]]:
    """(title, item id, printed score) lines of `xlrec recommend --items`."""
    proc = run_xlrec(
        [
            "recommend",
            "--model-uri",
            f"models:/{MODEL}@champion",
            "--items",
            ",".join(items),
            "--k",
            str(k),
            "--device",
            "cpu",
        ],
        env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return re.findall(r"^\s*\d+\. (.*) \(item (\S+), score (-?[\d.]+)\)$", proc.stdout, re.M)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Train, then run the README's serve journey; yield what it answered. Stops the server."""
    import psutil

    from xlrec.platform.tracking.server import stop_process_group

    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    lines = journey("serve")
    assert any(README_MODEL in line for line in lines) and any(README_PORT in line for line in lines), lines
    work = tmp_path_factory.mktemp("serve")
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    env = xlrec_env(work / "data", mirror=SHARED_DATA, MLFLOW_TRACKING_URI=tracking)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # `mlflow` and `python` of this venv
    proc = run_xlrec(TRAIN, env, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Created version '1' of model '{MODEL}'" in proc.stdout + proc.stderr

    port = str(free_port())
    script = [re.sub(rf"\b{README_PORT}\b", port, line.replace(README_MODEL, MODEL)) for line in lines]
    serve = [line for line in script if "mlflow models serve" in line]
    assert len(serve) == 1 and serve[0].endswith("&"), script
    log = work / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            ["bash", "-c", exec_line(serve[0])],
            env=env,
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(url, server, log)
        assert "Downloading artifacts" not in log.read_text()  # no 100-step progress bar in the log
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        assert any("uvicorn" in " ".join(p.cmdline()) for p in tree), [p.cmdline() for p in tree]
        outputs = []
        for line in script:
            if line in serve:
                continue
            done = subprocess.run(["bash", "-c", line], env=env, cwd=work, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (line, done.stderr)
            outputs.append(done.stdout)
        curl = [line for line in script if line.startswith("curl") and "/invocations" in line]
        assert len(curl) == 1, script
        payload = json.loads(shlex.split(curl[0])[shlex.split(curl[0]).index("-d") + 1])
        yield {
            "url": url,
            "env": env,
            "work": work,
            "tracking": tracking,
            "payload": payload,
            "answer": json.loads(outputs[-1]),
            "log": log,
        }
    finally:
        stop_process_group(server.pid)
        server.wait(timeout=30)
    assert _group_members(server.pid) == [], "processes of the served model left running"
    assert [p.pid for p in tree if _alive(p)] == [], "a process of the served model (uvicorn) outlived it"


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    import os

    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def test_readme_curl_answers_like_recommend(served):
    """The README's curl line, answered by the served champion, equals `xlrec recommend --items`."""
    row = served["payload"]["dataframe_records"][0]
    history, k = [str(x) for x in row["history"]], int(row["k"])
    (pred,) = served["answer"]["predictions"]
    assert len(pred["item_ids"]) == len(pred["titles"]) == len(pred["scores"]) == k
    cli = _recommend_cli(served["env"], served["work"], history, k)
    assert [item for _, item, _ in cli] == pred["item_ids"]
    assert [title for title, _, _ in cli] == pred["titles"]
    assert [score for _, _, score in cli] == [f"{s:.3f}" for s in pred["scores"]]
    assert pred["scores"] == sorted(pred["scores"], reverse=True)
    assert not set(history) & set(pred["item_ids"])  # the model's rule (trained with exclude_seen)


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": [{"history": ["50", "172", "133"], "k": 5}]},
        {"inputs": {"history": ["50", "172", "133"], "k": 5}},
        {"dataframe_records": [{"history": [50, 172, 133], "k": 5}]},  # integer ids
        {"inputs": [{"history": [50, "172", 133], "k": 5, "exclude_seen": True}]},
        {"dataframe_split": {"columns": ["history", "k"], "data": [[["50", "172", "133"], 5]]}},
    ],
    ids=["inputs-records", "inputs-one-row", "integer-ids", "mixed-ids-explicit-rule", "dataframe-split"],
)
def test_payload_forms_give_the_same_answer(served, payload):
    assert served["payload"] == {"dataframe_records": [{"history": ["50", "172", "133"], "k": 5}]}
    status, body = _post(served["url"] + "/invocations", payload)
    assert status == 200, body
    assert body == served["answer"]


def test_default_k_and_several_rows(served):
    status, body = _post(
        served["url"] + "/invocations", {"dataframe_records": [{"history": ["50", "172", "133"]}, {"history": ["1"]}]}
    )
    assert status == 200, body
    first, second = body["predictions"]
    assert len(first["item_ids"]) == len(second["item_ids"]) == 10
    assert first["item_ids"][:5] == served["answer"]["predictions"][0]["item_ids"]
    assert [t for _, t, _ in _recommend_cli(served["env"], served["work"], ["1"], 10)] == second["item_ids"]


def test_exclude_seen_false_ranks_the_history_too(served):
    """The whole catalogue, with and without the history excluded: the same ranking of the
    other items with the same scores, and the history only in the unexcluded one."""
    history = ["50", "172", "133"]
    status, ranked_all = _post(
        served["url"] + "/invocations", {"inputs": [{"history": history, "k": NUM_ITEMS, "exclude_seen": False}]}
    )
    assert status == 200, ranked_all
    status, unseen = _post(served["url"] + "/invocations", {"inputs": [{"history": history, "k": NUM_ITEMS - 3}]})
    assert status == 200, unseen
    everything, rest = ranked_all["predictions"][0], unseen["predictions"][0]
    assert sorted(everything["item_ids"], key=int) == [str(i) for i in range(1, NUM_ITEMS + 1)]
    kept = [(i, s) for i, s in zip(everything["item_ids"], everything["scores"]) if i not in history]
    assert kept == list(zip(rest["item_ids"], rest["scores"]))
    status, body = _post(served["url"] + "/invocations", {"inputs": [{"history": history, "k": NUM_ITEMS}]})
    assert status == 400 and f"Pass k between 1 and {NUM_ITEMS - 3}" in body["message"], body


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"history": ["999999", "50"]}, "Item id(s) 999999 are not in ml-100k's catalogue of this model"),
        ({"history": ["50"], "k": 0}, "k must be at least 1"),
        ({"history": ["50"], "k": 100000}, f"k 100000 is more than the {NUM_ITEMS - 1} items this model can recommend"),
        ({"history": []}, "'history' must be a non-empty list of raw item ids"),
        ({"history": [True]}, "'history' items must be raw item ids as strings or integers"),
        ({"history": [1.5]}, "'history' items must be raw item ids as strings or integers"),
        ({"history": "50,172"}, "'history' must be a non-empty list of raw item ids"),
        ({"history": ["50"], "k": "five"}, "'k' must be a JSON integer (how many items to recommend), got 'five'"),
        ({"history": ["50"], "k": 2.5}, "'k' must be a JSON integer (how many items to recommend), got 2.5"),
        ({"history": ["50"], "k": 2.0}, "'k' must be a JSON integer (how many items to recommend), got 2.0"),
        ({"history": ["50"], "exclude_seen": "no"}, "'exclude_seen' must be a JSON true or false, got 'no'"),
        ({"history": ["50"], "exclude_seen": 0}, "'exclude_seen' must be a JSON true or false, got 0"),
        ({"k": 3}, "'history' must be a non-empty list of raw item ids"),
    ],
    ids=[
        "unknown-id",
        "k-zero",
        "k-too-big",
        "empty",
        "bool-id",
        "float-id",
        "not-a-list",
        "k-text",
        "k-fraction",
        "k-float",
        "exclude-seen-text",
        "exclude-seen-int",
        "no-history",
    ],
)
def test_bad_requests_get_400_with_a_message(served, row, expected):
    """Every value is checked by the model, strictly (MLflow's schema would coerce 2.5 to 2 and "no"
    to a boolean), and answered in one line: MLflow's own wrapper would repeat the request."""
    status, body = _post(served["url"] + "/invocations", {"dataframe_records": [row]})
    assert status == 400, body
    assert body["message"] == expected or body["message"].startswith(expected), body
    assert "\n" not in body["message"] and "Failed to predict data" not in body["message"], body
    assert "stack_trace" not in body and "Traceback" not in json.dumps(body), body


def test_k_given_in_some_rows_only_is_an_integer_in_each(served):
    """pandas holds a column with missing integers as floats: k 5 next to a row without k is still 5."""
    rows = [{"history": ["50", "172", "133"], "k": 5}, {"history": ["1"]}]
    status, body = _post(served["url"] + "/invocations", {"dataframe_records": rows})
    assert status == 200, body
    assert [len(p["item_ids"]) for p in body["predictions"]] == [5, 10]
    got, alone = body["predictions"][0], served["answer"]["predictions"][0]
    assert got["item_ids"] == alone["item_ids"] and got["titles"] == alone["titles"]
    # scored in a batch of two, not alone: float32 sums in another order
    assert got["scores"] == pytest.approx(alone["scores"], rel=1e-5)


def test_a_request_over_the_row_limit_gets_400_and_one_at_the_limit_is_answered(served):
    from xlrec.platform.registry.serving import MAX_ROWS

    rows = [{"history": [str(1 + i % NUM_ITEMS)], "k": 1} for i in range(MAX_ROWS)]
    status, body = _post(served["url"] + "/invocations", {"dataframe_records": rows})
    assert status == 200 and len(body["predictions"]) == MAX_ROWS, str(body)[:500]
    status, body = _post(served["url"] + "/invocations", {"dataframe_records": [*rows, rows[0]]})
    assert status == 400 and body["message"] == (
        f"A request holds at most {MAX_ROWS:,} rows; this one has {MAX_ROWS + 1:,}. Send them in parts."
    ), str(body)[:500]


def test_signature_and_input_example_are_logged(served, tmp_path):
    """The MLflow UI shows how to call the model: the signature, and an example that really works."""
    from mlflow.models import Model

    proc = run_xlrec(
        ["registry", "download", "--name", MODEL, "--alias", "champion", "--dst", str(tmp_path / "m")],
        served["env"],
        cwd=served["work"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = Path(json.loads(proc.stdout.strip().splitlines()[-1])["path"])
    meta = Model.load(str(local / "MLmodel"))
    inputs = {c["name"]: c for c in meta.signature.inputs.to_dict()}
    assert list(inputs) == ["history", "k", "exclude_seen"]
    # every input typed Any (the model checks each value), none required by MLflow's schema (the
    # model's own message says what is missing)
    assert (inputs["history"]["type"], inputs["history"]["required"]) == ("any", False)
    assert (inputs["k"]["type"], inputs["k"]["required"]) == ("any", False)
    assert (inputs["exclude_seen"]["type"], inputs["exclude_seen"]["required"]) == ("any", False)
    assert [c["name"] for c in meta.signature.outputs.to_dict()] == ["item_ids", "titles", "scores"]
    example = json.loads((local / meta.saved_input_example_info["serving_input_path"]).read_text())
    status, body = _post(served["url"] + "/invocations", example)
    assert status == 200, body
    (row,) = example["inputs"]
    assert len(body["predictions"][0]["item_ids"]) == row["k"]


def test_python_load_model_predict_as_documented(served):
    """The README's one-liner in Python (a fresh interpreter, as a user runs it) answers the same."""
    code = (
        "import json, mlflow.pyfunc; "
        f'p = mlflow.pyfunc.load_model("models:/{MODEL}@champion").predict('
        '[{"history": ["50", "172", "133"], "k": 5}]); '
        'print(json.dumps(p.to_dict("records")))'
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=served["env"], cwd=served["work"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == served["answer"]["predictions"]
