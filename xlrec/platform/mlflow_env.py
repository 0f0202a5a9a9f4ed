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
And one logging filter: MLflow's database store logs each failed statement (a locked sqlite file)
with its traceback and every bound parameter; xlrec retries those and says so in one line
(xlrec.platform.tracking.train_run), so the record keeps its first line, without the traceback.
"""

from __future__ import annotations

import logging
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


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or "\n" in str(record.msg):
            text = record.getMessage().replace("The following exception is caught.", "").split("\n")
            record.msg, record.args = " ".join(line.strip() for line in text[:3] if line.strip())[:400], ()
            record.exc_info, record.exc_text = None, None
        return True


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    db_log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _OneLine) for f in db_log.filters):
        db_log.addFilter(_OneLine())
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
