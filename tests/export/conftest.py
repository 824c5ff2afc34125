"""Fixtures for export tests: tiny bundles built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="export needs the [train] extra")


@pytest.fixture
def checkpoint_copy(tiny_checkpoints, tmp_path):
    """A writable copy of a tiny checkpoint, for tests that break it on purpose."""

    def copy(arch: str = "bert", task: str = "classify") -> Path:
        dst = tmp_path / f"{arch}-{task}-copy"
        shutil.copytree(tiny_checkpoints(arch, task), dst)
        return dst

    return copy
