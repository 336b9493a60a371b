"""Shared test fixtures: cache folders inside the venv, the shared real scenes, GPU skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from foresplat._env import configure_caches

configure_caches()
os.environ.setdefault("OMP_NUM_THREADS", "1")  # two xdist workers on two cores

SHARED_DATA = Path(os.environ.get("FORESPLAT_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the real scenes); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
