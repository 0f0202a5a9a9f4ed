"""MLflow tracking, the model registry and reports. Every MLflow call of xlrec lives here."""
