"""Parity fixtures: the fine-tuned checkpoints (runs/ner, runs/qa) exported as bundles once a session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.service.conftest import tiny_bundles  # noqa: F401  (the tiny fp32 bundles, shared)


def _checkpoint(task: str) -> Path:
    path = Path(os.environ.get(f"BERTH_{task.upper()}_CHECKPOINT", REPO_ROOT / "runs" / task))
    if not (path / "model.safetensors").exists():
        # Trained, not shipped: `berth train` (runs/train_defaults.sh) writes it.
        pytest.skip(f"no fine-tuned {task} checkpoint at {path} "
                    f"(train it, or set BERTH_{task.upper()}_CHECKPOINT)")
    return path


@pytest.fixture(scope="session")
def ner_checkpoint() -> Path:
    return _checkpoint("ner")


@pytest.fixture(scope="session")
def qa_checkpoint() -> Path:
    return _checkpoint("qa")


@pytest.fixture(scope="session")
def real_bundles(ner_checkpoint, qa_checkpoint, tmp_path_factory) -> Path:
    """fp32 + int8 bundles `ner` and `qa` of the fine-tuned checkpoints (minutes: int8 gates)."""
    from export.bundle import export_bundle

    root = tmp_path_factory.mktemp("real-bundles")
    export_bundle(ner_checkpoint, "ner", "ner", root, precisions=("fp32", "int8"), quick_bench=False)
    export_bundle(qa_checkpoint, "qa", "qa", root, precisions=("fp32", "int8"), quick_bench=False)
    return root
