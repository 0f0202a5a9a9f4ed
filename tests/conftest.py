"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# Real datasets shared beside the repository: ../shared/data/<name>/ (e.g. ml-100k/u.data).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared mirror directory with real raw datasets (skips when it is absent)."""
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
