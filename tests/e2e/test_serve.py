"""`berth serve` in a subprocess on a free port, exercised over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
import time

import httpx
import numpy as np

from tests.e2e.conftest import berth_serve

AUTH = {"authorization": "Bearer e2e-key"}
WORDS = ["the", "a", "movie", "film", "plot", "good", "bad", "great", "john", "paris", "went", "visited"]


def texts(n: int, seed: int, longest: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) for _ in range(n)]


def test_every_route_over_http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
        assert {"emb", "sent", "tags"} <= set(models) and models["sent"]["labels"] == ["neg", "neu", "pos"]
        r = c.post("/embed", json={"inputs": ["the movie", "a good film"]})
        assert r.status_code == 200 and len(r.json()["embeddings"]) == 2
        assert {"x-request-id", "x-queue-time-ms", "x-inference-time-ms"} <= set(r.headers)
        assert (
            c.post("/v1/embeddings", json={"input": "the movie", "model": "emb"}).json()["object"] == "list"
        )
        results = c.post(
            "/classify", json={"inputs": [["a good", "movie"]], "model": "tags", "top_k": 2}
        ).json()
        assert len(results["results"][0]) == 2
        assert c.post("/tokenize", json={"inputs": "the movie"}).json()["tokens"][0][1]["text"] == "the"
        text = "john smith went to paris"
        entities = c.post("/ner", json={"inputs": text, "aggregation": "none", "ignore_labels": []}).json()
        assert all(text[e["start"] : e["end"]] == e["text"] for e in entities["results"][0])
        answers = c.post("/qa", json={"question": "where did john go", "context": text, "top_k": 2}).json()
        assert all(text[a["start"] : a["end"]] == a["answer"] for a in answers["results"][0])
        metrics = c.get("/metrics").text
        assert 'berth_requests_total{route="/embed",status="200"}' in metrics
        assert (
            c.get("/docs").status_code == 200 and "/v1/embeddings" in c.get("/openapi.json").json()["paths"]
        )
        # Errors keep their one body over the wire too.
        assert c.post("/embed", json={"inputs": []}).json()["error"]["param"] == "inputs"
        assert httpx.post(server.url + "/embed", json={"inputs": "x"}).status_code == 401
    # JSON-lines access log: one object per request, with its id. A request's line is written
    # after its response has gone out, so the last one may land a moment after the client has it.
    deadline = time.monotonic() + 10
    while True:
        access = [json.loads(line) for line in server.log.splitlines() if line.startswith('{"ts"')]
        embeds = [entry for entry in access if entry["path"] == "/embed"]
        if {e["status"] for e in embeds} >= {200, 401, 422} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert embeds and all(e["request_id"] and e["method"] == "POST" for e in embeds)
    assert {e["status"] for e in embeds} >= {200, 401, 422}
    assert "e2e-key" not in server.log


def test_openai_client_float_and_base64(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="e2e-key")
    sentences = ["the movie was good", "paris"]
    floats = client.embeddings.create(model="emb", input=sentences, encoding_format="float")
    b64 = client.embeddings.create(model="emb", input=sentences, encoding_format="base64")
    default = client.embeddings.create(model="emb", input=sentences)  # the client asks for base64 itself
    direct = httpx.post(
        server.url + "/embed", json={"inputs": sentences, "model": "emb"}, headers=AUTH
    ).json()
    want = np.array(direct["embeddings"])
    for response in (floats, default):
        got = np.array([d.embedding for d in response.data])
        assert np.abs(got - want).max() < 1e-6
    raw = b64.data[0].embedding
    got0 = np.frombuffer(base64.b64decode(raw), "<f4") if isinstance(raw, str) else np.array(raw)
    assert np.abs(got0 - want[0]).max() < 1e-6
    assert floats.usage.prompt_tokens > 0 and floats.model == "emb"
    cut = client.embeddings.create(model="emb", input="the movie", dimensions=8, encoding_format="float")
    assert len(cut.data[0].embedding) == 8


def test_batching_invariance_over_http(server):
    """One text alone vs inside concurrent mixed-length batches: fp32 max abs diff ≤ 1e-5."""
    probe = "john visited paris and the film was good"
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        alone = np.array(c.post("/embed", json={"inputs": probe}).json()["embeddings"][0])

    async def burst() -> list[np.ndarray]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as c:
            calls = [c.post("/embed", json={"inputs": texts(3, seed=i) + [probe]}) for i in range(24)]
            responses = await asyncio.gather(*calls)
        return [np.array(r.json()["embeddings"][-1]) for r in responses]

    worst = max(np.abs(v - alone).max() for v in asyncio.run(burst()))
    assert worst <= 1e-5


def test_overload_only_200_or_429_and_usable_after(tiny_bundles, tmp_path):
    """64 concurrent clients against a small queue budget: 200s and 429s only, each 200 correct."""
    payloads = [texts(4, seed=100 + i, longest=30) for i in range(64)]
    log = tmp_path / "serve.log"
    with berth_serve(tiny_bundles, log, BERTH_MAX_QUEUE_TOKENS="200", BERTH_MAX_BATCH_SIZE="8") as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            reference = {}
            for p in payloads:
                for text, vector in zip(
                    p, c.post("/embed", json={"inputs": p}).json()["embeddings"], strict=True
                ):
                    reference[text] = np.array(vector)

        async def client(payload: list[str]) -> httpx.Response:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                return await c.post("/embed", json={"inputs": payload})

        async def burst() -> list[httpx.Response]:
            return await asyncio.wait_for(asyncio.gather(*(client(p) for p in payloads)), 120)

        responses = asyncio.run(burst())
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429} and 429 in statuses and 200 in statuses
        for payload, r in zip(payloads, responses, strict=True):
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                continue
            for text, vector in zip(payload, r.json()["embeddings"], strict=True):
                assert np.abs(np.array(vector) - reference[text]).max() <= 1e-5
        after = httpx.post(srv.url + "/embed", json={"inputs": payloads[0]}, timeout=10)
        assert after.status_code == 200
        assert httpx.get(srv.url + "/readyz").status_code == 200


def test_sigterm_finishes_accepted_work_then_exits_zero(tiny_bundles, tmp_path):
    log = tmp_path / "serve.log"
    with berth_serve(tiny_bundles, log, BERTH_MAX_BATCH_SIZE="1", BERTH_MAX_WAIT_MS="0") as srv:
        result: dict[str, httpx.Response] = {}
        big = texts(256, seed=7, longest=60)

        def call() -> None:
            result["r"] = httpx.post(srv.url + "/embed", json={"inputs": big}, timeout=60)

        worker = threading.Thread(target=call)
        worker.start()
        # Signal once the request is in (its tokens are queued), not after a guessed delay.
        while "berth_queue_items" not in (m := httpx.get(srv.url + "/metrics").text) or all(
            line.endswith(" 0.0") for line in m.splitlines() if line.startswith("berth_queue_items{")
        ):
            if "r" in result:
                break
        code = srv.terminate()
        worker.join(60)
    assert code == 0
    assert result["r"].status_code == 200 and len(result["r"].json()["embeddings"]) == 256
