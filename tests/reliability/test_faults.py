"""Broken bundles are reported by name while the others serve; a failing batch fails only its callers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.registry import ort_runtime_factory
from service.settings import Settings
from tests.reliability.conftest import error_of
from tests.service.conftest import FAKE_HIDDEN, serve_in_process, write_fake_bundle
from tests.tiny import tiny_tokenizer


def embedding_onnx(path: Path, vocab: int, hidden: int = FAKE_HIDDEN) -> None:
    """A real, minimal embed graph: token_embeddings = E[input_ids], sentence = their mean."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "E")
    seq = ["batch", "seq"]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, seq)
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    # The mask and token types take part (multiplied in) so the graph keeps all three inputs.
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["gathered"]),
        helper.make_node("Add", ["attention_mask", "token_type_ids"], ["m_plus_t"]),
        helper.make_node("Cast", ["m_plus_t"], ["m_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m_float", "axis2"], ["m3"]),
        helper.make_node("Mul", ["gathered", "m3"], ["token_embeddings"]),
        helper.make_node("ReduceMean", ["token_embeddings"], ["sentence_embedding"], axes=[1], keepdims=0),
    ]
    axis2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")
    outputs = [
        helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, [*seq, hidden]),
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden]),
    ]
    graph = helper.make_graph(nodes, "tiny-embed", inputs, outputs, initializer=[table, axis2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def real_bundle(root: Path, name: str) -> Path:
    path = write_fake_bundle(root, name, "embed")
    embedding_onnx(path / "model.onnx", tiny_tokenizer().get_vocab_size())
    return path


async def test_corrupt_truncated_missing_onnx_reported_by_name_others_serve(tmp_path):
    real_bundle(tmp_path, "good")
    corrupt = real_bundle(tmp_path, "corrupt")
    (corrupt / "model.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    truncated = real_bundle(tmp_path, "truncated")
    data = (truncated / "model.onnx").read_bytes()
    (truncated / "model.onnx").write_bytes(data[: len(data) // 2])
    missing = real_bundle(tmp_path, "missing")
    (missing / "model.onnx").unlink()
    settings = Settings(models_dir=tmp_path, provider="cpu", precision="fp32")
    async with serve_in_process(settings, ort_runtime_factory) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert set(ready.json()["failed"]) == {"corrupt", "truncated", "missing"}
        assert all(n in ready.json()["reason"] for n in ("corrupt", "truncated", "missing"))
        models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
        assert models["good"]["state"] == "ready"
        for name in ("corrupt", "truncated", "missing"):
            assert models[name]["state"] == "failed" and models[name]["error"], name
            r = await client.post("/embed", json={"inputs": "the movie", "model": name})
            assert r.status_code == 503 and name in error_of(r)["message"]
        assert "model.onnx" in models["missing"]["error"]  # says which file is absent
        r = await client.post("/embed", json={"inputs": ["the movie", "a plot"], "model": "good"})
        assert r.status_code == 200 and np.array(r.json()["embeddings"]).shape == (2, FAKE_HIDDEN)
        assert (await client.post("/embed", json={"inputs": "the movie"})).json()["model"] == "good"


async def test_inference_error_fails_only_its_batch(all_tasks_dir, caplog):
    settings = Settings(models_dir=all_tasks_dir, max_wait_ms=0, access_log=False)
    async with serve_in_process(settings) as (app, client):
        model = app.state.berth.registry.models["emb"]
        gate, inside = threading.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        original = model.runtime.run
        calls = [0]

        def run(inputs, outputs=None):
            calls[0] += 1
            if calls[0] == 1:  # the first batch holds the runtime while the next one queues
                loop.call_soon_threadsafe(inside.set)
                gate.wait(10)
            if calls[0] == 2:
                raise RuntimeError("onnxruntime exploded: /secret/path/model.onnx")
            return original(inputs, outputs)

        model.runtime.run = run

        def post(text: str, rid: str):
            return asyncio.create_task(
                client.post("/embed", json={"inputs": text}, headers={"x-request-id": rid})
            )

        first = post("first one", "r1")
        await inside.wait()
        doomed = [post("second", "r2"), post("third text", "r3")]
        while model.batcher.queued_items < 2:
            await asyncio.sleep(0.001)
        gate.set()
        assert (await first).status_code == 200
        for task, rid in zip(doomed, ("r2", "r3"), strict=True):
            r = await task
            assert r.status_code == 500 and r.headers["x-request-id"] == rid
            err = error_of(r)
            assert err["type"] == "internal_error" and rid in err["message"]
            assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
        after = await client.post("/embed", json={"inputs": "after"})
        assert after.status_code == 200 and calls[0] == 3
        assert "onnxruntime exploded" in caplog.text  # the cause is in the log, with the request id
        assert model.batcher.queued_items == 0
