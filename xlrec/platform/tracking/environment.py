"""What a run records about the code and machine that produced it: the git state and the
installed versions (a logged model's pip requirements: xlrec.platform.registry.requirements)."""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path

import xlrec

PROJECT_ROOT = Path(xlrec.__file__).resolve().parent


def git_state() -> tuple[str, str]:
    """(commit, "true"/"false" dirty) of the checkout xlrec runs from; "unknown" outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return commit or "unknown", "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def installed_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def environment_tags(device_name: str) -> dict[str, str]:
    """Run tags naming the code (commit, versions) and the machine (host, device, OS)."""
    import torch

    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "mlflow.source.git.commit": commit,
        "version.xlrec": xlrec.__version__,
        "version.torch": torch.__version__,
        "version.xlstm": installed_version("xlstm"),
        "version.mlstm_kernels": installed_version("mlstm-kernels"),
        "host": socket.gethostname(),
        "device_name": device_name,
        "platform": platform.platform(),
    }
