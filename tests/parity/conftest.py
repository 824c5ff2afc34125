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


def _bundles(checkpoint: Path, task: str, root: Path) -> Path:
    from export.bundle import export_bundle
    from export.parity import GateError

    try:
        export_bundle(checkpoint, task, task, root, precisions=("fp32", "int8"), quick_bench=False)
    except GateError:
        # The int8 gate refuses the variant (the weak SQuAD model's QA int8 did at 0.88 agreement):
        # fp32 alone still serves the parity checks; the int8 quality test says it is missing.
        export_bundle(checkpoint, task, task, root, precisions=("fp32",), quick_bench=False)
    return root


@pytest.fixture(scope="session")
def ner_bundles(ner_checkpoint, tmp_path_factory) -> Path:
    """A models dir with bundle `ner` (fp32 + int8) of the fine-tuned checkpoint (a minute or two)."""
    return _bundles(ner_checkpoint, "ner", tmp_path_factory.mktemp("ner-bundles"))


@pytest.fixture(scope="session")
def qa_bundles(qa_checkpoint, tmp_path_factory) -> Path:
    """A models dir with bundle `qa` (fp32 + int8) of the fine-tuned checkpoint."""
    return _bundles(qa_checkpoint, "qa", tmp_path_factory.mktemp("qa-bundles"))


@pytest.fixture(scope="session")
def figures() -> dict:
    """Measured figures, written as JSON at the session's end (BERTH_PARITY_FIGURES, default
    /tmp/berth-parity-figures.json) for docs/ner-qa.md."""
    found: dict = {}
    yield found
    if found:
        import json

        out = Path(os.environ.get("BERTH_PARITY_FIGURES", "/tmp/berth-parity-figures.json"))
        old = json.loads(out.read_text()) if out.is_file() else {}
        out.write_text(json.dumps({**old, **found}, indent=2, default=str))
