"""Deployment artefacts are checked with the real tools, installed from PyPI by the test extra."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ctxcloud"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
