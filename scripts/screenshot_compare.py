#!/usr/bin/env python3
"""Screenshot MLflow's run-comparison page for an experiment, with headless Chromium.

    python scripts/screenshot_compare.py --tracking-uri http://127.0.0.1:5000 \
        --experiment xlrec-ml-100k --output docs/mlflow-compare.png

opens `<uri>/#/compare-runs?runs=[...]&experiments=[...]` (the MLflow 3.x UI route for
comparing runs: params, metrics and plots side by side) for the experiment's most recent
runs and writes a PNG. Nothing to install beyond the project's environment and Debian's
`chromium` package (`apt-get install -y chromium`).

`--demo` makes the whole picture from scratch: it starts a throwaway `mlflow server`
(PostgreSQL-backed, as in tests/mlflow_server.py; SQLite when PostgreSQL is not running),
trains two models for a few epochs on ML-100K with `xlrec train` (data from
XLREC_DATA_MIRROR or --source), screenshots the comparison, and stops the server again:

    XLREC_DATA_MIRROR=../shared/data python scripts/screenshot_compare.py --demo --output docs/mlflow-compare.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_chromium(explicit: str | None = None) -> str:
    for cand in [explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]:
        if cand and (path := shutil.which(cand)):
            return path
    sys.exit(
        "screenshot_compare: no Chromium found; install it with `apt-get install -y chromium` or pass --chromium PATH."
    )


def compare_url(tracking_uri: str, experiment: str, run_ids: list[str] | None = None, max_runs: int = 5) -> str:
    """The UI URL comparing the experiment's latest finished runs (or the given ones)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"screenshot_compare: experiment {experiment!r} not found at {tracking_uri}.")
    if not run_ids:
        runs = client.search_runs(
            [exp.experiment_id],
            "attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=max_runs,
        )
        run_ids = [r.info.run_id for r in runs]
    if len(run_ids) < 2:
        sys.exit(
            f"screenshot_compare: experiment {experiment!r} has {len(run_ids)} finished run(s); "
            f"comparing needs at least 2."
        )
    # Same format as the UI's own Routes.getCompareRunPageRoute(runUuids, experimentIds).
    query = (
        f"runs={urllib.parse.quote(json.dumps(run_ids, separators=(',', ':')))}"
        f"&experiments={urllib.parse.quote(json.dumps([exp.experiment_id]))}"
    )
    return f"{tracking_uri.rstrip('/')}/#/compare-runs?{query}"


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def screenshot_flags(
    url: str, output: Path, chromium: str | None = None, width: int = 1600, height: int = 1400, budget_ms: int = 15000
) -> Path:
    """Plain `chromium --screenshot`: the page as it first renders, one viewport high."""
    output = _fresh(output)
    with tempfile.TemporaryDirectory(prefix="xlrec-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [
            find_chromium(chromium),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={output}",
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if not output.is_file():
        sys.exit(f"screenshot_compare: Chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return output


def _fresh(output: Path) -> Path:
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        output.unlink()
    return output


class DevTools:
    """The few Chrome DevTools Protocol calls needed, over a stdlib WebSocket (RFC 6455)."""

    def __init__(self, ws_url: str, timeout: float = 60.0):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.next_id = 0

    def _send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        header = bytearray([0x81])  # FIN + text frame; client frames are masked
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes(header) + mask + masked)

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0x9, 0xA):  # ping/pong: not used by Chromium here
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def call(self, method: str, **params):
        self.next_id += 1
        msg_id = self.next_id
        self._send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.js(expression):
                    return True
            except RuntimeError:
                pass
            time.sleep(interval)
        return False

    def close(self) -> None:
        self.sock.close()


# Run in the page once the comparison has rendered. Parameters: only those that differ.
# Metrics: the UI shows them in a virtualised 300px grid (a few rows at a time, alphabetical),
# so scroll it to the test-set ranking metrics. Returns the bottom (page px) of the Metrics section.
_TIDY_JS = """
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const sw = [...document.querySelectorAll('[role=switch]')];
  if (sw.length && sw[0].getAttribute('aria-checked') !== 'true') sw[0].click();  // Parameters: Show diff only
  await sleep(800);
  // The metric names and the values are two synchronised grids of equal height.
  const grids = [...document.querySelectorAll('[role=grid]')].filter(g => g.scrollHeight > g.clientHeight);
  const names = grids.find(g => /best_epoch|avg_epoch_time_s|epochs_run|test_|val_/.test(g.textContent));
  const pair = names ? grids.filter(g => g.scrollHeight === names.scrollHeight) : [];
  const scrollTo = async top => {
    for (const g of pair.slice().reverse()) { g.scrollTop = top; g.dispatchEvent(new Event('scroll')); }
    await sleep(150);
  };
  const findCell = () => [...names.querySelectorAll('*')].find(e => [...e.childNodes].some(
      n => n.nodeType === Node.TEXT_NODE && n.textContent.trim() === %(target)s));
  let found = false;
  const grid = names;
  if (names) {
    await scrollTo(0);
    for (let top = 0; top <= names.scrollHeight && !found; top += Math.max(40, names.clientHeight / 3)) {
      await scrollTo(top);
      const cell = findCell();
      if (cell) {
        let row = cell;
        while (row.parentElement && row.parentElement !== names.firstElementChild) row = row.parentElement;
        await scrollTo(row.offsetTop);
        found = true;
      }
    }
  }
  await sleep(500);
  const main = document.querySelector('main') || document.scrollingElement;
  const section = grid ? grid.closest('.du-bois-light-collapse-item, [class*=collapse-item]') : null;
  const bottom = section ? section.getBoundingClientRect().bottom + main.scrollTop : main.scrollHeight;
  return {found, bottom: Math.ceil(bottom), full: main.scrollHeight};
})()
"""


def _click(dt: DevTools, element_js: str) -> None:
    """A real mouse click (pressed + released) at the centre of the element `element_js` evaluates to."""
    x, y = dt.js(
        f"(() => {{ const r = ({element_js}).getBoundingClientRect(); "
        f"return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        dt.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    time.sleep(0.3)


def _key(dt: DevTools, key: str, code: int) -> None:
    for kind in ("keyDown", "keyUp"):
        dt.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)
    time.sleep(0.3)


def _plot_metric(dt: DevTools, metric: str) -> None:
    """Colour the parallel-coordinates plot by `metric` instead of the UI's first metric."""
    select = "document.querySelectorAll('.du-bois-light-select-multiple')[1]"
    if not dt.js(f"!!{select}"):
        raise RuntimeError("no metric selector on the page")
    while dt.js(f"!!{select}.querySelector('.du-bois-light-select-selection-item-remove')"):
        _click(dt, f"{select}.querySelector('.du-bois-light-select-selection-item-remove')")
    _click(dt, f"{select}.querySelector('.du-bois-light-select-selector')")
    dt.call("Input.insertText", text=metric)
    time.sleep(0.5)
    _key(dt, "Enter", 13)
    _key(dt, "Escape", 27)
    _click(dt, "document.querySelector('h2, [class*=title]') || document.body")
    time.sleep(1.0)


def screenshot_devtools(
    url: str,
    output: Path,
    chromium: str | None = None,
    width: int = 1600,
    height: int = 1400,
    max_height: int = 5000,
    wait_s: float = 60.0,
    metric: str = "test_ndcg_at_10",
) -> Path:
    """Drive Chromium over DevTools: the comparison with MLflow's assistant side panel closed, only
    the differing params, the metrics grid scrolled to `metric`, cut below the Metrics section."""
    output = _fresh(output)
    origin = url.split("#", 1)[0].rstrip("/")
    with tempfile.TemporaryDirectory(prefix="xlrec-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                find_chromium(chromium),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            dt = DevTools(pages[0]["webSocketDebuggerUrl"])
            try:

                def viewport(h: int) -> None:
                    dt.call(
                        "Emulation.setDeviceMetricsOverride", width=width, height=h, deviceScaleFactor=1, mobile=False
                    )

                viewport(height)
                # Same origin first, to keep MLflow's assistant panel from opening over the page
                # (the UI's useLocalStorage keys are `<key>_v<version>`, JSON-encoded).
                dt.call("Page.navigate", url=origin + "/#/")
                dt.wait_for("document.readyState === 'complete'", 30)
                dt.js(
                    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                    "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); true"
                )
                dt.call("Page.navigate", url=url)
                ok = dt.wait_for(
                    "document.body.innerText.includes('Comparing') && "
                    "document.body.innerText.includes('best_epoch') && "
                    "document.querySelectorAll('.js-plotly-plot, svg.main-svg').length > 0",
                    wait_s,
                )
                if not ok:
                    print(
                        "screenshot_compare: the comparison did not finish loading; capturing anyway", file=sys.stderr
                    )
                time.sleep(1.0)
                try:
                    _plot_metric(dt, metric.replace("ndcg", "recall"))
                except (RuntimeError, TypeError) as exc:
                    print(f"screenshot_compare: could not pick the plot's metric ({exc})", file=sys.stderr)
                first = dt.js(_TIDY_JS % {"target": json.dumps(metric)}) or {}
                # A viewport as tall as the page, so nothing scrolls; the grid keeps its position.
                viewport(min(max_height, max(height, int(first.get("full", height)) + 40)))
                time.sleep(1.5)
                info = dt.js(_TIDY_JS % {"target": json.dumps(metric)}) or {}
                if not info.get("found"):
                    print(f"screenshot_compare: metric {metric!r} not found in the metrics grid", file=sys.stderr)
                bottom = min(max_height, max(height // 2, int(info.get("bottom", height)) + 24))
                shot = dt.call(
                    "Page.captureScreenshot",
                    format="png",
                    clip={"x": 0, "y": 0, "width": width, "height": bottom, "scale": 1},
                )
                output.write_bytes(base64.b64decode(shot["data"]))
            finally:
                dt.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
    return output


def screenshot(
    url: str,
    output: Path,
    chromium: str | None = None,
    width: int = 1600,
    height: int = 1400,
    budget_ms: int = 15000,
    mode: str = "devtools",
) -> Path:
    if mode == "flags":
        return screenshot_flags(url, output, chromium, width, height, budget_ms)
    return screenshot_devtools(url, output, chromium, width, height)


def _demo(args) -> None:
    """Throwaway server + two short real trainings, then the screenshot."""
    sys.path.insert(0, str(ROOT / "tests"))
    from mlflow_server import MlflowServer, PostgresMlflowServer, xlrec_env

    work = Path(tempfile.mkdtemp(prefix="xlrec-compare-demo-"))
    try:
        server = PostgresMlflowServer(work / "server")
    except RuntimeError as exc:  # no PostgreSQL: the embedded SQLite backend behind the same server
        print(f"({exc}; using SQLite)", file=sys.stderr)
        server = MlflowServer(f"sqlite:///{work / 'mlflow.db'}", work / "server" / "artifacts")
    mirror = args.source or os.environ.get("XLREC_DATA_MIRROR")
    env = xlrec_env(work / "data", mirror)
    with server:
        print(f"mlflow server at {server.uri}", file=sys.stderr)
        for model in args.models.split(","):
            cmd = [
                sys.executable,
                "-m",
                "xlrec",
                "train",
                "--model",
                model,
                "--dataset",
                "ml-100k",
                "--epochs",
                str(args.epochs),
                "--max-len",
                "50",
                "--embedding-dim",
                "64",
                "--batch-size",
                "128",
                "--device",
                "cpu",
                "--experiment",
                args.experiment,
                "--tracking-uri",
                server.uri,
            ]
            print("$ " + " ".join(cmd[1:]), file=sys.stderr)
            subprocess.run(cmd, env=env, cwd=work, check=True)
        url = compare_url(server.uri, args.experiment, max_runs=args.max_runs)
        print(url, file=sys.stderr)
        out = screenshot(url, args.output, args.chromium, args.width, args.height, args.budget_ms, args.mode)
    shutil.rmtree(work, ignore_errors=True)
    print(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", help="http(s) URI of a running mlflow server (its UI is screenshotted)")
    p.add_argument("--experiment", default="xlrec-ml-100k")
    p.add_argument("--runs", default=None, help="comma-separated run ids (default: latest finished runs)")
    p.add_argument("--max-runs", type=int, default=5)
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "mlflow-compare.png")
    p.add_argument("--chromium", default=None, help="Chromium binary (default: chromium on PATH)")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1400)
    p.add_argument("--budget-ms", type=int, default=15000, help="flags mode: Chromium --virtual-time-budget")
    p.add_argument(
        "--mode",
        choices=["devtools", "flags"],
        default="devtools",
        help="devtools: drive Chromium (assistant panel closed, differing params, full tables); "
        "flags: plain `chromium --headless --screenshot` of the first viewport",
    )
    p.add_argument("--demo", action="store_true", help="start a throwaway server and train two runs first")
    p.add_argument("--models", default="xlstm,sasrec", help="--demo: models to train")
    p.add_argument("--epochs", type=int, default=3, help="--demo: epochs per run")
    p.add_argument("--source", default=None, help="--demo: ML-100K mirror directory (else XLREC_DATA_MIRROR)")
    args = p.parse_args(argv)
    if args.demo:
        _demo(args)
        return 0
    if not args.tracking_uri or not args.tracking_uri.startswith(("http://", "https://")):
        p.error("--tracking-uri must be the http(s) URI of a running mlflow server (or use --demo)")
    runs = [r for r in (args.runs or "").split(",") if r]
    url = compare_url(args.tracking_uri, args.experiment, runs or None, args.max_runs)
    print(url, file=sys.stderr)
    print(screenshot(url, args.output, args.chromium, args.width, args.height, args.budget_ms, args.mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
