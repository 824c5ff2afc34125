"""Broken bundles are reported by name while the others serve; a failing batch fails only its callers."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from service.registry import ort_runtime_factory
from service.settings import Settings
from tests.reliability.conftest import error_of, real_bundle
from tests.service.conftest import FAKE_HIDDEN, serve_in_process


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
    # One batch at a time: the gated batch holds the runtime while the others queue.
    settings = Settings(models_dir=all_tasks_dir, max_wait_ms=0, access_log=False, concurrent_batches=1)
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
