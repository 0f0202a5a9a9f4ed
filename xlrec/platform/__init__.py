"""MLflow tracking, the model registry and reports. Every MLflow call of xlrec lives here."""

from xlrec.platform.mlflow_env import apply_defaults

apply_defaults()  # before any module of this package imports mlflow
