#!/usr/bin/env python3
"""The README's MLflow screenshots, from a real sweep's store, in headless Chromium.

    .venv/bin/python scripts/readme_screenshots.py --tracking-uri sqlite:///mlflow.db --out docs

after the README's main job (its store is `mlflow.db` in the clone). Serves the store with an
`mlflow server` on a free loopback port, then, as a user would see them:

- `mlflow-sweep-runs.png`: the experiment in MLflow's training view (the URL xlrec prints,
  `?workflowType=machine_learning`), MLflow's assistant panel closed, the sweep's parent row
  expanded to its nested trial runs;
- `mlflow-sweep-parent.png`: the parent run's page (the best trial's scores, the champion);
- `mlflow-compare.png`: the trials compared (scripts/screenshot_compare.py).

Prints one JSON line: what the browser showed (`training_view`, the trial run names found in the
expanded table, `expanded`), so a test can assert the page and not only the pixels.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot_compare import CHROMIUM_FLAGS, DevTools, compare_url, find_chromium, screenshot_devtools  # noqa: E402

WIDTH, HEIGHT = 1600, 900

# The run-name cells of MLflow's runs table (ag-grid) and the expander a parent row has beside its name.
_ROWS_JS = """
(() => [...document.querySelectorAll('.ag-row')].map(r => r.innerText.split('\\n').map(s => s.trim()).filter(Boolean))
  .filter(cells => cells.length))()
"""
_EXPAND_JS = """
(() => {
  const link = [...document.querySelectorAll('.ag-row a')].find(a => a.innerText.trim() === %(name)s);
  if (!link) return 'no row';
  const cell = link.closest('.ag-cell') || link.parentElement;
  const button = cell.querySelector('button') || (link.closest('.ag-row') || cell).querySelector('button');
  if (!button) return 'no expander';
  button.click();
  return 'clicked';
})()
"""


def _browser(profile: str) -> tuple[subprocess.Popen, DevTools]:
    proc = subprocess.Popen(
        [
            find_chromium(None),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.is_file() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("Chromium did not open its DevTools port")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        page = next(t for t in json.load(resp) if t.get("type") == "page")
    dt = DevTools(page["webSocketDebuggerUrl"])
    dt.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
    return proc, dt


def _shot(dt: DevTools, path: Path) -> None:
    shot = dt.call("Page.captureScreenshot", format="png")
    path.write_bytes(base64.b64decode(shot["data"]))


def capture(
    server_uri: str, experiment_id: str, parent_id: str, parent_name: str, trials: list[str], out: Path
) -> dict:
    """Screenshots of the training view (parent expanded) and the parent's page; what they showed."""
    out.mkdir(parents=True, exist_ok=True)
    view = f"{server_uri}/#/experiments/{experiment_id}?workflowType=machine_learning"
    result: dict = {"training_view": view}
    with tempfile.TemporaryDirectory(prefix="xlrec-chromium-", ignore_cleanup_errors=True) as profile:
        proc, dt = _browser(profile)
        try:
            # Same origin first, so MLflow's assistant panel stays closed (its useLocalStorage keys).
            dt.call("Page.navigate", url=f"{server_uri}/#/")
            dt.wait_for("document.readyState === 'complete'", 30)
            dt.js(
                "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); true"
            )
            dt.call("Page.navigate", url=view)
            name = json.dumps(parent_name)
            result["runs_table"] = bool(
                dt.wait_for(f"[...document.querySelectorAll('.ag-row a')].some(a => a.innerText.trim() === {name})", 60)
            )
            time.sleep(1.0)
            collapsed = "\n".join(" ".join(r) for r in dt.js(_ROWS_JS) or [])
            result["trials_shown_collapsed"] = [t for t in trials if t in collapsed]  # the sweep is one row
            result["expander"] = dt.js(_EXPAND_JS % {"name": name})
            wanted = json.dumps(trials)
            result["expanded"] = bool(
                dt.wait_for(
                    f"(() => {{ const t = document.body.innerText; return {wanted}.every(n => t.includes(n)); }})()", 30
                )
            )
            time.sleep(1.0)
            shown = "\n".join(" ".join(r) for r in dt.js(_ROWS_JS) or [])
            result["trials_shown"] = [t for t in trials if t in shown]
            result["body_has_genai_overview"] = bool(dt.js("document.body.innerText.includes('Token usage')"))
            _shot(dt, out / "mlflow-sweep-runs.png")
            parent_url = f"{server_uri}/#/experiments/{experiment_id}/runs/{parent_id}?workflowType=machine_learning"
            dt.call("Page.navigate", url=parent_url)
            result["parent_page"] = bool(
                dt.wait_for(
                    f"document.body.innerText.includes({name}) && document.body.innerText.includes('Metrics')", 60
                )
            )
            time.sleep(1.5)
            _shot(dt, out / "mlflow-sweep-parent.png")
        finally:
            dt.close()
            proc.terminate()
            proc.wait(timeout=15)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="the main job's store")
    p.add_argument("--experiment", default="xlrec-ml-100k")
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs")
    p.add_argument("--no-compare", action="store_true", help="skip the compare view")
    args = p.parse_args()
    from mlflow import MlflowClient

    from xlrec.platform.tracking.server import MlflowServer

    client = MlflowClient(args.tracking_uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        sys.exit(
            f"readme_screenshots: no experiment {args.experiment!r} at {args.tracking_uri}; run the main job first."
        )
    parents = client.search_runs(
        [exp.experiment_id], "tags.`xlrec.sweep` = 'parent'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not parents:
        sys.exit(f"readme_screenshots: experiment {args.experiment!r} has no sweep; run the main job first.")
    parent = parents[0]
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=200
    )
    trials = sorted(r.info.run_name for r in children)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="xlrec-screens-") as work:
        with MlflowServer(args.tracking_uri, Path(work) / "artifacts") as server:
            result = capture(server.uri, exp.experiment_id, parent.info.run_id, parent.info.run_name, trials, out)
            if not args.no_compare:
                screenshot_devtools(compare_url(server.uri, args.experiment), out / "mlflow-compare.png")
                result["compare_view"] = str(out / "mlflow-compare.png")
    result.update({"parent": parent.info.run_name, "trials": trials})
    print(json.dumps(result))
    return 0 if result["expanded"] and result["parent_page"] else 1


if __name__ == "__main__":
    sys.exit(main())
