"""Serving under load: a registered model served by `mlflow models serve`, then 200 concurrent
one-row requests (throughput, p50 and p99 latency) and one request of 1,000 and of 5,000 rows.

    python benchmarks/serving_load.py --model-uri models:/gru4rec-ml-100k@champion \
        --tracking-uri sqlite:///mlflow.db [--concurrent 200] [--out serving.json]

Without --model-uri it trains a small GRU4Rec on ML-100K first (XLREC_DATA_MIRROR must point at
the data), in a temporary store. Prints one JSON line (and writes it to --out): the figures
RELIABILITY.md quotes, with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _post(url: str, payload: dict) -> tuple[int, float]:
    body = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - t0


def _wait(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow models serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("mlflow models serve did not come up")


def _train(work: Path, env: dict) -> str:
    cmd = [sys.executable, "-m", "xlrec", "train", "--model", "gru4rec", "--dataset", "ml-100k", "--epochs", "3"]
    subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
    return "models:/gru4rec-ml-100k@champion"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--concurrent", type=int, default=200)
    p.add_argument("--port", type=int, default=5055)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xlrec-serving-"))
    env = dict(os.environ, MLFLOW_TRACKING_URI=args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}")
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # the server's own helpers (uvicorn) come from this interpreter's environment, activated or not
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    uri = args.model_uri or _train(work, env)
    serve = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    serve += ["--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*serve, "--port", str(args.port)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its uvicorn workers in its process group, stopped with it
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        _wait(url, server)
        rng = random.Random(0)
        ids = [str(i) for i in range(1, 1683)]

        def one(_: int) -> tuple[int, float]:
            history = rng.sample(ids, rng.randint(3, 30))
            return _post(url + "/invocations", {"dataframe_records": [{"history": history, "k": 10}]})

        _post(url + "/invocations", {"dataframe_records": [{"history": ["50"], "k": 10}]})  # warm
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            results = list(pool.map(one, range(args.concurrent)))
        wall = time.perf_counter() - t0
        latency = np.array([t for _, t in results])
        rows = {}
        for n in (1_000, 5_000):
            payload = {"dataframe_records": [{"history": rng.sample(ids, 20), "k": 10} for _ in range(n)]}
            status, seconds = _post(url + "/invocations", payload)
            rows[str(n)] = {"status": status, "seconds": round(seconds, 3)}
        figures = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "model": uri,
            "concurrent_single_requests": args.concurrent,
            "ok": int(sum(s == 200 for s, _ in results)),
            "throughput_per_s": round(args.concurrent / wall, 1),
            "p50_ms": round(float(np.percentile(latency, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(latency, 99)) * 1000, 1),
            "rows_request": rows,
        }
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    line = json.dumps(figures)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
