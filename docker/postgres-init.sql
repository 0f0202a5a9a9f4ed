-- Runs once, on an empty data volume (postgres image's /docker-entrypoint-initdb.d). POSTGRES_DB
-- (mlflow) already exists: MLflow's backend store. Beside it, the Optuna studies of every sweep
-- (xlrec sweep --study-storage) and the basic-auth app's users, all owned by POSTGRES_USER.
CREATE DATABASE optuna;
CREATE DATABASE mlflow_auth;
