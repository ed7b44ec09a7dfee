"""Shared test helpers: where ../shared is, and running scenarios in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skips the test (with the reason) when the data is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (tests read raw data from ../shared beside the repo)")
    return p
