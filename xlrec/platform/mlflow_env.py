"""MLflow's process-wide settings for every xlrec process, applied before mlflow is imported.

Set with `os.environ.setdefault`, so a user who exports one of them keeps their value.
Why each one:
- telemetry off: MLflow's telemetry thread writes `_MLFLOW_TELEMETRY_SESSION_ID` into
  `os.environ` while request threads iterate it; concurrent trainings crashed with
  `MlflowException: ... '_MLFLOW_TELEMETRY_SESSION_ID'` (RELIABILITY.md). xlrec also sends
  nothing anywhere on its users' behalf.
- pickle deserialization off: xlrec never unpickles a model (weights are safetensors and
  the model is rebuilt from its validated config); MLflow's loaders that honour this switch
  refuse pickles in xlrec's processes too.
- artifact progress bars off: `registry download` printed ~50 progress updates on stderr.
- bounded HTTP retries: MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) hang a
  training for 12+ minutes when the tracking server dies; these fail within a minute.
"""

from __future__ import annotations

import os
import sys

DEFAULTS: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "mlflow" in sys.modules:
        # mlflow was imported first (a script that imports it before xlrec): it decided about
        # telemetry at its import, and its config thread may still pop the session variable
        # while another thread iterates os.environ. Drop the client now, on this thread.
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()


def quiet_links_for(uri: str) -> None:
    """MLflow prints 'View run ... at: <tracking URI>/#/...' when a run ends; with credentials
    in the URI that line would show them, so it is switched off for such URIs."""
    from xlrec.redact import redact

    if redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
