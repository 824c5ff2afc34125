"""Shared fixtures. Service tests never need torch; tiny checkpoints import it lazily."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No model hub here: everything loads from local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Factory for cached tiny random checkpoints: tiny_checkpoints(arch, task) -> Path."""
    from tests.tiny import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-checkpoints")
    cache: dict[tuple, Path] = {}

    def get(arch: str = "bert", task: str = "classify", **kwargs) -> Path:
        key = (arch, task, tuple(sorted(kwargs.items())))
        if key not in cache:
            name = "-".join([arch, task] + [f"{k}={v}" for k, v in sorted(kwargs.items())])
            cache[key] = make_tiny_checkpoint(root / name.replace("/", "_"), arch=arch, task=task, **kwargs)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, for slow checks only (users have no ../shared)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository (only benchmarks and slow checks use it)")
    return SHARED_DATA
