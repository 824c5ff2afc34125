"""Clients that leave: their queued items never reach the model, are counted, and nothing leaks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx

from service.settings import Settings
from tests.reliability.conftest import live_app
from tests.service.conftest import serve_in_process


def gate_runtime(model) -> tuple[threading.Event, threading.Event, list]:
    """Hold the model's runtime at a gate; record the token ids of every batch it runs."""
    gate, inside, seen = threading.Event(), threading.Event(), []
    original = model.runtime.run

    def run(inputs, outputs=None):
        seen.append({int(i) for i in inputs["input_ids"].ravel()})
        inside.set()
        gate.wait(10)
        return original(inputs, outputs)

    model.runtime.run = run
    return gate, inside, seen


def cancelled_count(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if (
            line.startswith("berth_rejected_total{")
            and 'reason="cancelled"' in line
            and 'model="emb"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_cancelled_mid_queue_is_not_computed_and_nothing_leaks(all_tasks_dir):
    # One batch at a time: the gated batch holds the runtime while the others queue.
    settings = Settings(models_dir=all_tasks_dir, max_wait_ms=0, access_log=False, concurrent_batches=1)
    async with serve_in_process(settings) as (app, client):
        model = app.state.berth.registry.models["emb"]
        ids = {w: model.tokenizer.plain.token_to_id(w) for w in ("movie", "paris", "plot", "john")}
        baseline_tasks = len(asyncio.all_tasks())
        gate, inside, seen = gate_runtime(model)
        first = asyncio.create_task(client.post("/embed", json={"inputs": "movie"}))
        await asyncio.to_thread(inside.wait, 10)
        leaving = [asyncio.create_task(client.post("/embed", json={"inputs": w})) for w in ("paris", "plot")]
        staying = asyncio.create_task(client.post("/embed", json={"inputs": "john"}))
        while model.batcher.queued_items < 3:
            await asyncio.sleep(0.001)
        for task in leaving:  # the caller goes away: httpx cancels, which cancels the handler
            task.cancel()
        await asyncio.gather(*leaving, return_exceptions=True)
        assert model.batcher.queued_items == 1  # dropped at once, not when the loop comes by
        gate.set()
        assert (await first).status_code == 200 and (await staying).status_code == 200
        computed = set().union(*seen)
        assert ids["movie"] in computed and ids["john"] in computed
        assert ids["paris"] not in computed and ids["plot"] not in computed
        metrics = (await client.get("/metrics")).text
        assert cancelled_count(metrics) == 2
        assert 'berth_queue_items{model="emb",task="embed"} 0.0' in metrics
        assert 'berth_queue_tokens{model="emb",task="embed"} 0.0' in metrics
        assert model.batcher.queued_items == 0 and model.batcher.queued_tokens == 0
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) <= baseline_tasks  # no handler or watcher task left behind


def test_client_disconnect_over_http_cancels_the_queued_request(all_tasks_dir):
    """A real socket closed while its request waits: uvicorn reports the disconnect, the edge
    cancels the handler, the item is dropped before it runs."""
    # One batch at a time: the gated batch holds the runtime while the others queue.
    settings = Settings(models_dir=all_tasks_dir, max_wait_ms=0, access_log=False, concurrent_batches=1)
    with live_app(settings) as (url, app):
        model = app.state.berth.registry.models["emb"]
        paris = model.tokenizer.plain.token_to_id("paris")
        gate, inside, seen = gate_runtime(model)
        holder = threading.Thread(
            target=lambda: httpx.post(url + "/embed", json={"inputs": "movie"}, timeout=30)
        )
        holder.start()
        assert inside.wait(10)
        host, port = url.removeprefix("http://").split(":")
        body = b'{"inputs": "paris"}'
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            deadline = time.monotonic() + 10
            while model.batcher.queued_items < 1:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        # The socket is closed: the queued item must go without being computed.
        deadline = time.monotonic() + 10
        while model.batcher.queued_items:
            assert time.monotonic() < deadline, "the disconnected request stayed queued"
            time.sleep(0.005)
        gate.set()
        holder.join(30)
        assert httpx.post(url + "/embed", json={"inputs": "john"}, timeout=30).status_code == 200
        assert all(paris not in batch for batch in seen)
        metrics = httpx.get(url + "/metrics").text
        assert cancelled_count(metrics) == 1
        assert 'berth_requests_total{route="/embed",status="499"} 1.0' in metrics
