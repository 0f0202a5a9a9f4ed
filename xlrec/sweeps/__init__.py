"""Sweeps: Ray Tune runs the trials, Optuna searches the architecture, MLflow nests the runs."""
