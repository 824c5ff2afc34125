"""Reliability fixtures: fake-runtime bundles of every task, served by uvicorn in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.e2e.conftest import free_port
from tests.service.conftest import FAKE_HIDDEN, fake_factory, write_fake_bundle
from tests.tiny import tiny_tokenizer

KEY = "rel-key-7f3a"
AUTH = {"authorization": f"Bearer {KEY}"}


def error_of(response: httpx.Response) -> dict:
    """The one error body, checked for shape: {"error": {"type", "message", "param"}}."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "message", "param"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture
def all_tasks_dir(tmp_path: Path) -> Path:
    """Fake-runtime bundles for every route: embed, classify, ner, qa."""
    root = tmp_path / "models"
    root.mkdir()
    write_fake_bundle(root, "emb", "embed")
    write_fake_bundle(root, "sent", "classify", labels=["negative", "positive"])
    write_fake_bundle(root, "ents", "ner", labels=["O", "B-PER", "I-PER"])
    write_fake_bundle(root, "reader", "qa")
    return root


@contextlib.contextmanager
def live_app(
    settings: Settings, factory=fake_factory, wait_loaded: bool = True
) -> Iterator[tuple[str, object]]:
    """(base URL, app): the app under a real uvicorn server in a thread (real HTTP, one loop),
    once it listens and (by default) every bundle has loaded or failed."""
    port = free_port()
    app = create_app(settings.model_copy(update={"port": port}), factory)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    registry = app.state.berth.registry
    while not (server.started and (registry.loading_done or not wait_loaded)):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(30)


def embedding_onnx(path: Path, vocab: int, hidden: int = FAKE_HIDDEN, ffn: int = 0, layers: int = 0) -> None:
    """A real, minimal embed graph: token_embeddings = E[input_ids] (then `layers` per-token
    MLPs of width `ffn`, so compute grows with tokens like an encoder's), sentence = their mean."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "E"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    seq = ["batch", "seq"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, seq) for n in names]
    # The mask and token types take part (multiplied in) so the graph keeps all three inputs.
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["h0"]),
        helper.make_node("Add", ["attention_mask", "token_type_ids"], ["m_plus_t"]),
        helper.make_node("Cast", ["m_plus_t"], ["m_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m_float", "axis2"], ["m3"]),
    ]
    h = "h0"
    for k in range(layers):
        scale = 1 / np.sqrt(hidden)
        inits.append(
            numpy_helper.from_array((rng.standard_normal((hidden, ffn)) * scale).astype(np.float32), f"W{k}")
        )
        inits.append(
            numpy_helper.from_array(
                (rng.standard_normal((ffn, hidden)) / np.sqrt(ffn)).astype(np.float32), f"V{k}"
            )
        )
        nodes += [
            helper.make_node("MatMul", [h, f"W{k}"], [f"u{k}"]),
            helper.make_node("Tanh", [f"u{k}"], [f"t{k}"]),
            helper.make_node("MatMul", [f"t{k}", f"V{k}"], [f"h{k + 1}"]),
        ]
        h = f"h{k + 1}"
    nodes += [
        helper.make_node("Mul", [h, "m3"], ["token_embeddings"]),
        helper.make_node("ReduceMean", ["token_embeddings"], ["sentence_embedding"], axes=[1], keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, [*seq, hidden]),
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden]),
    ]
    graph = helper.make_graph(nodes, "tiny-embed", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def real_bundle(root: Path, name: str, **graph: int) -> Path:
    """A bundle served by ONNX Runtime for real, built in milliseconds (no torch export)."""
    path = write_fake_bundle(root, name, "embed")
    if graph.get("hidden", FAKE_HIDDEN) != FAKE_HIDDEN:
        manifest = (path / "berth.json").read_text()
        (path / "berth.json").write_text(
            manifest.replace(f'"hidden_size": {FAKE_HIDDEN}', f'"hidden_size": {graph["hidden"]}')
        )
    embedding_onnx(path / "model.onnx", tiny_tokenizer().get_vocab_size(), **graph)
    return path
