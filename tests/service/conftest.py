"""Service fixtures: hand-built bundles served by the FakeRuntime, and an in-process client."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.manifest import Manifest, Variant, write_manifest
from service.registry import LoadedRuntime
from service.runtime import FakeRuntime
from service.settings import Settings
from tests.tiny import tiny_tokenizer

FAKE_HIDDEN = 8


def write_fake_bundle(
    root: Path,
    name: str,
    task: str = "embed",
    labels: list[str] | None = None,
    problem_type: str | None = None,
    max_length: int = 32,
) -> Path:
    """A bundle directory with a real tokenizer.json and a placeholder ONNX file."""
    path = root / name
    path.mkdir(parents=True)
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    (path / "model.onnx").write_bytes(b"placeholder: the FakeRuntime never reads it")
    extra: dict = {}
    if task == "embed":
        extra = {"pooling": "mean", "normalize": True}
    if task in ("classify", "ner"):
        extra["labels"] = labels or ["negative", "positive"]
    if task == "classify":
        extra["problem_type"] = problem_type or "single_label"
    outputs = {
        "embed": ["token_embeddings", "sentence_embedding"],
        "classify": ["logits"],
        "ner": ["logits"],
        "qa": ["start_logits", "end_logits"],
    }[task]
    manifest = Manifest(
        name=name,
        task=task,
        architecture="bert",
        num_layers=2,
        hidden_size=FAKE_HIDDEN,
        num_heads=2,
        max_length=max_length,
        inputs=["input_ids", "attention_mask", "token_type_ids"],
        outputs=outputs,
        variants={"fp32": Variant(file="model.onnx", precision="fp32", graph="plain", default_for=["cpu"])},
        **extra,
    )
    write_manifest(path, manifest)
    return path


def fake_factory(path: Path, manifest: Manifest, settings: Settings, threads: int) -> LoadedRuntime:
    runtime = FakeRuntime(
        manifest.task, hidden_size=manifest.hidden_size, num_labels=len(manifest.labels or [1])
    )
    return LoadedRuntime(runtime, "fp32", "cpu", "model.onnx")


@contextlib.asynccontextmanager
async def serve_in_process(settings: Settings, factory=fake_factory, wait_loaded: bool = True):
    """Run the app's lifespan and yield (app, client) talking to it in process; by default once
    every bundle has loaded or failed (the lifespan itself returns while they load)."""
    app = create_app(settings, factory)
    async with app.router.lifespan_context(app):
        if wait_loaded:
            await app.state.berth.wait_loaded()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://berth") as client:
            yield app, client


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Fake-runtime bundles: an embedder, a 3-class classifier, a multi-label classifier."""
    root = tmp_path / "models"
    root.mkdir()
    write_fake_bundle(root, "emb", "embed")
    write_fake_bundle(root, "sent", "classify", labels=["negative", "neutral", "positive"])
    write_fake_bundle(root, "tags", "classify", labels=["a", "b", "c"], problem_type="multi_label")
    return root


@pytest.fixture(scope="session")
def tiny_bundles(tiny_checkpoints, tmp_path_factory) -> Path:
    """A models dir of real fp32 bundles exported from tiny random checkpoints (~10 s, once)."""
    from export.bundle import export_bundle

    root = tmp_path_factory.mktemp("tiny-bundles")
    specs = [
        (tiny_checkpoints("bert", "base"), "embed", "emb"),
        (tiny_checkpoints("bert", "classify", labels=("neg", "neu", "pos")), "classify", "sent"),
        (
            tiny_checkpoints(
                "bert", "classify", labels=("a", "b", "c"), problem_type="multi_label_classification"
            ),
            "classify",
            "tags",
        ),
        (tiny_checkpoints("bert", "ner"), "ner", "ents"),
        (tiny_checkpoints("bert", "qa"), "qa", "reader"),
    ]
    for checkpoint, task, name in specs:
        export_bundle(checkpoint, task, name, root, precisions=("fp32",), quick_bench=False)
    return root
