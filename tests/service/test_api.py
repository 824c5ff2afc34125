"""In-process API tests on the FakeRuntime: routes, the error mapping of design §3, headers, metrics."""

from __future__ import annotations

import asyncio
import base64
import threading

import numpy as np
import pytest

from service.app import begin_shutdown
from service.errors import ERROR_STATUSES
from service.settings import Settings
from tests.service.conftest import serve_in_process, write_fake_bundle


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param"}
    return body["error"]


async def test_embed_shapes_normalization_and_headers(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        r = await client.post("/embed", json={"inputs": ["the movie", "a good film was it"]})
        assert r.status_code == 200
        body = r.json()
        vectors = np.array(body["embeddings"])
        assert vectors.shape == (2, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
        assert body["model"] == "emb" and body["usage"] == {"tokens": 11, "truncated": 0}
        for header in ("x-request-id", "x-queue-time-ms", "x-inference-time-ms"):
            assert header in r.headers
        assert float(r.headers["x-queue-time-ms"]) >= 0

        r = await client.post("/embed", json={"inputs": "the movie", "dimensions": 3, "normalize": True})
        cut = np.array(r.json()["embeddings"][0])
        assert cut.shape == (3,) and abs(np.linalg.norm(cut) - 1) < 1e-6
        # Cut first, then normalize: the direction of the first dims is kept.
        assert np.allclose(cut, vectors[0][:3] / np.linalg.norm(vectors[0][:3]), atol=1e-6)

        raw = (await client.post("/embed", json={"inputs": "the movie", "normalize": False})).json()
        cls = (await client.post("/embed", json={"inputs": "the movie", "pooling": "cls"})).json()
        assert not np.allclose(raw["embeddings"][0], vectors[0]) and not np.allclose(
            cls["embeddings"][0], vectors[0]
        )
        assert (await client.post("/embed", json={"inputs": "x", "dimensions": 9})).status_code == 422


async def test_openai_shape_float_and_base64(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        plain = (await client.post("/v1/embeddings", json={"input": ["a b", "c"], "model": "emb"})).json()
        assert plain["object"] == "list" and plain["model"] == "emb"
        assert [d["index"] for d in plain["data"]] == [0, 1] and plain["data"][0]["object"] == "embedding"
        assert plain["usage"]["prompt_tokens"] == plain["usage"]["total_tokens"] > 0
        b64 = (
            await client.post("/v1/embeddings", json={"input": ["a b", "c"], "encoding_format": "base64"})
        ).json()
        decoded = np.frombuffer(base64.b64decode(b64["data"][1]["embedding"]), dtype="<f4")
        assert np.allclose(decoded, plain["data"][1]["embedding"], atol=1e-7)
    # Errors name the OpenAI request's own field, `input`, and the offending item.
    async with serve_in_process(Settings(models_dir=models_dir, max_items=4)) as (_, client):
        for payload, param in (({"input": ["a"] * 5}, "input"), ({"input": [1, 2]}, "input.0"),
                               ({"input": ["a", ""]}, "input.1")):
            r = await client.post("/v1/embeddings", json={"model": "emb", **payload})
            assert r.status_code == 422 and error_of(r)["param"] == param, r.text


async def test_classify_pairs_top_k_threshold_and_functions(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        r = await client.post("/classify", json={"model": "sent", "inputs": "a good movie"})
        results = r.json()["results"]
        assert len(results) == 1 and [x["label"] for x in results[0]] != []
        scores = [x["score"] for x in results[0]]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-6  # softmax

        pair_list = await client.post("/classify", json={"model": "sent", "inputs": [["a good", "movie"]]})
        pair_obj = await client.post(
            "/classify", json={"model": "sent", "inputs": {"text": "a good", "text_pair": "movie"}}
        )
        single = await client.post("/classify", json={"model": "sent", "inputs": "a good movie"})
        assert pair_list.json()["results"] == pair_obj.json()["results"]
        assert pair_list.json()["results"] != single.json()["results"]  # token types / [SEP] differ
        two = await client.post("/classify", json={"model": "sent", "inputs": ["a good", "movie"]})
        assert len(two.json()["results"]) == 2  # a list of two strings is two texts, not a pair

        top = (
            await client.post("/classify", json={"model": "sent", "inputs": "a good movie", "top_k": 2})
        ).json()
        assert top["results"][0] == results[0][:2] and len(results[0]) == 3
        multi = (await client.post("/classify", json={"model": "tags", "inputs": "the film"})).json()
        m_scores = [x["score"] for x in multi["results"][0]]
        assert all(0 < s < 1 for s in m_scores) and abs(sum(m_scores) - 1) > 1e-3  # sigmoid, not softmax
        cut = min(m_scores) + 1e-9
        kept = (
            await client.post("/classify", json={"model": "tags", "inputs": "the film", "threshold": cut})
        ).json()
        assert len(kept["results"][0]) == len(m_scores) - 1
        none = (
            await client.post("/classify", json={"model": "tags", "inputs": "the film", "function": "none"})
        ).json()
        logits = sorted(x["score"] for x in none["results"][0])
        assert np.allclose(sorted(m_scores), 1 / (1 + np.exp(-np.array(logits))), atol=1e-9)
        bad_pair = await client.post("/classify", json={"model": "sent", "inputs": [["a", "b", "c"]]})
        assert bad_pair.status_code == 422


async def test_tokenize_reports_tokens_offsets_specials(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        body = (await client.post("/tokenize", json={"inputs": "the movie"})).json()
        tokens = body["tokens"][0]
        assert [t["text"] for t in tokens] == ["[CLS]", "the", "movie", "[SEP]"]
        assert [t["special"] for t in tokens] == [True, False, False, True]
        assert (tokens[2]["start"], tokens[2]["end"]) == (4, 9)


async def test_tokenize_offsets_index_the_input_when_the_character_cap_cuts_its_front(tmp_path):
    write_fake_bundle(tmp_path, "emb", "embed", max_length=64)
    text = "the movie was good and the plot was bad"
    async with serve_in_process(Settings(models_dir=tmp_path, max_chars=20)) as (_, client):
        for direction in ("left", "right"):
            body = {"inputs": text, "truncation_direction": direction}
            r = (await client.post("/tokenize", json=body)).json()
            words = [t for t in r["tokens"][0] if not t["special"]]
            assert r["usage"]["truncated"] == 1 and words
            assert all(text[t["start"] : t["end"]] == t["text"] for t in words), (direction, words)
            kept = text[-20:] if direction == "left" else text[:20]
            assert text[words[0]["start"] : words[-1]["end"]].strip() in kept


async def test_normalization_follows_the_bundle_unless_the_request_says(tmp_path):
    """A bundle exported without a Normalize module (a dot-product model) serves raw vectors."""
    from service.manifest import load_manifest, write_manifest

    write_fake_bundle(tmp_path, "unit", "embed")
    raw = write_fake_bundle(tmp_path, "dot", "embed")
    write_manifest(raw, load_manifest(raw).model_copy(update={"normalize": False}))
    async with serve_in_process(Settings(models_dir=tmp_path)) as (_, client):
        async def norm(model: str, **extra) -> float:
            r = await client.post("/embed", json={"model": model, "inputs": "the movie", **extra})
            return float(np.linalg.norm(r.json()["embeddings"][0]))

        openai = await client.post("/v1/embeddings", json={"model": "dot", "input": "the movie"})
        assert abs(await norm("unit") - 1) < 1e-6 and abs(await norm("unit", normalize=False) - 1) > 1e-3
        assert abs(await norm("dot") - 1) > 1e-3 and abs(await norm("dot", normalize=True) - 1) < 1e-6
        assert abs(np.linalg.norm(openai.json()["data"][0]["embedding"]) - await norm("dot")) < 1e-5


async def test_truncation_reported_and_truncate_false_is_422(tmp_path):
    write_fake_bundle(tmp_path, "emb", "embed", max_length=8)
    async with serve_in_process(Settings(models_dir=tmp_path, max_chars=200)) as (app, client):
        long_text = "the movie was good and the plot was great"
        r = await client.post("/embed", json={"inputs": [long_text, "the"]})
        assert r.json()["usage"] == {"tokens": 8 + 3, "truncated": 1}
        left = await client.post("/embed", json={"inputs": long_text, "truncation_direction": "left"})
        assert left.json()["embeddings"] != r.json()["embeddings"][:1]
        r = await client.post("/embed", json={"inputs": ["the", long_text], "truncate": False})
        assert r.status_code == 422 and error_of(r)["param"] == "inputs.1"
        r = await client.post("/embed", json={"inputs": "a" * 201, "truncate": False})
        assert r.status_code == 422 and "characters" in error_of(r)["message"]
        assert (await client.post("/embed", json={"inputs": "the " * 100})).json()["usage"]["truncated"] == 1
        metrics = (await client.get("/metrics")).text
        assert 'berth_truncated_total{model="emb",task="embed"} 3.0' in metrics
        assert 'berth_rejected_total{model="emb",reason="too_long",task="embed"} 2.0' in metrics


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": ""}, 422, "inputs"),
        ({"inputs": ["ok", ""]}, 422, "inputs.1"),  # the item, not just the field
        ({"inputs": ["ok", 1]}, 422, "inputs.1"),  # not "inputs.str", the union alternative tried first
        ({"inputs": "x", "pooling": "sum"}, 422, "pooling"),
        ({"inputs": "x", "unknown": 1}, 422, "unknown"),
        ({"inputs": "x", "model": "nope"}, 404, "model"),
        ({"inputs": "x", "model": "sent"}, 422, "model"),
        ({"inputs": ["x"] * 5}, 422, "inputs"),
    ],
)
async def test_validation_errors_map_to_statuses(models_dir, payload, status, param):
    async with serve_in_process(Settings(models_dir=models_dir, max_items=4)) as (app, client):
        fake = app.state.berth.registry.models["emb"].runtime
        r = await client.post("/embed", json=payload)
        assert r.status_code == status, r.text
        assert error_of(r)["param"] == param
        assert len(fake.batches) == 2  # only the two warm-up batches: nothing reached the runtime


@pytest.mark.parametrize(("batch_size", "batch_tokens"), [(16, 8192), (16, 100), (3, 8192)])
async def test_warm_up_runs_the_largest_batch_the_batcher_can_form(models_dir, batch_size, batch_tokens):
    """The arena must reach its peak before /readyz: the second warm-up batch is max_batch_size rows
    of max_length tokens, cut to what max_batch_tokens holds (at least one row)."""
    settings = Settings(models_dir=models_dir, max_batch_size=batch_size, max_batch_tokens=batch_tokens)
    async with serve_in_process(settings) as (app, _):
        model = app.state.berth.registry.models["emb"]
        length = model.manifest.max_length
        rows = max(1, min(batch_size, batch_tokens // length))
        assert model.runtime.batches[1] == (rows, length)


async def test_malformed_json_is_400_and_unknown_route_404(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        r = await client.post("/embed", content=b'{"inputs": [', headers={"content-type": "application/json"})
        assert r.status_code == 400 and error_of(r)["type"] == "malformed_request"
        r = await client.get("/nope")
        assert r.status_code == 404 and error_of(r)["type"] == "not_found"


async def test_api_key_required_except_health_and_never_logged(models_dir, caplog):
    settings = Settings(models_dir=models_dir, api_key="s3cret-key")
    async with serve_in_process(settings) as (_, client):
        caplog.set_level("INFO", logger="berth.access")
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 401
        wrong = await client.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["type"] == "unauthorized"
        ok = await client.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/models")).status_code == 401
        assert "s3cret-key" not in caplog.text and '"status":401' in caplog.text


async def test_body_limit_413_with_length_and_chunked(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir, max_body_bytes=1000)) as (_, client):
        r = await client.post("/embed", json={"inputs": "x" * 2000})
        assert r.status_code == 413 and error_of(r)["type"] == "payload_too_large"

        async def chunks():
            yield b'{"inputs": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}'

        r = await client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert (await client.post("/embed", json={"inputs": "small"})).status_code == 200


def hold_runtime(model) -> tuple[threading.Event, asyncio.Event]:
    """Make the model's runtime wait at a gate; the asyncio.Event is set once a batch is inside."""
    gate, inside = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    original = model.runtime.run

    def run(inputs, outputs=None):
        loop.call_soon_threadsafe(inside.set)
        gate.wait(10)
        return original(inputs, outputs)

    model.runtime.run = run
    return gate, inside


async def test_overload_is_429_with_retry_after(models_dir):
    # One batch at a time: the held batch occupies the runtime and everything after it queues.
    settings = Settings(models_dir=models_dir, max_queue_tokens=20, max_wait_ms=0, concurrent_batches=1)
    async with serve_in_process(settings) as (app, client):
        model = app.state.berth.registry.models["emb"]
        gate, inside = hold_runtime(model)
        first = asyncio.create_task(client.post("/embed", json={"inputs": "the movie"}))
        await inside.wait()  # the runtime is busy; what follows queues
        queued = [asyncio.create_task(client.post("/embed", json={"inputs": "the plot"})) for _ in range(3)]
        while model.batcher.queued_tokens < 12:
            await asyncio.sleep(0)
        # 12 tokens waiting + 9 > 20: refused at once, before tokens reach the queue.
        r = await client.post("/embed", json={"inputs": "the acting was great and good film"})
        gate.set()
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert error_of(r)["type"] == "overloaded"
        assert {x.status_code for x in await asyncio.gather(first, *queued)} == {200}
        assert (
            await client.post("/embed", json={"inputs": "the acting was great and good film"})
        ).status_code == 200
        assert 'reason="overloaded"' in (await client.get("/metrics")).text


async def test_deadline_is_504(models_dir):
    settings = Settings(models_dir=models_dir, request_timeout_s=0.05, max_wait_ms=0, concurrent_batches=1)
    async with serve_in_process(settings) as (app, client):
        gate, inside = hold_runtime(app.state.berth.registry.models["emb"])
        blocked = asyncio.create_task(client.post("/embed", json={"inputs": "first"}))
        await inside.wait()
        r = await client.post("/embed", json={"inputs": "second"})
        gate.set()
        assert r.status_code == 504 and error_of(r)["type"] == "deadline_exceeded"
        await blocked


async def test_runtime_bug_is_500_with_request_id_only(models_dir, caplog):
    async with serve_in_process(Settings(models_dir=models_dir)) as (app, client):
        app.state.berth.registry.models["emb"].runtime.fail = ZeroDivisionError("secret detail")
        r = await client.post("/embed", json={"inputs": "x"}, headers={"x-request-id": "req-42"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
        err = error_of(r)
        assert "req-42" in err["message"] and "secret detail" not in err["message"]
        assert "ZeroDivisionError" in caplog.text  # the traceback goes to the log
        # Echoed byte for byte, even outside ASCII (it was re-encoded as UTF-8).
        r = await client.post("/embed", json={"inputs": "x"}, headers=[(b"x-request-id", b"caf\xe9")])
        assert r.headers.raw and (b"x-request-id", b"caf\xe9") in [(k.lower(), v) for k, v in r.headers.raw]


async def test_broken_bundle_reported_by_name_others_serve(models_dir):
    (models_dir / "broken").mkdir()
    (models_dir / "broken" / "berth.json").write_text('{"name": "broken", "task": "embed"}')
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and "broken" in ready.json()["failed"]
        models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
        assert models["broken"]["state"] == "failed" and "architecture" in models["broken"]["error"]
        assert models["emb"]["state"] == "ready" and models["emb"]["precision"] == "fp32"
        r = await client.post("/embed", json={"inputs": "x", "model": "broken"})
        assert r.status_code == 503
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 200


async def test_readyz_503_without_models_and_when_default_missing(tmp_path, models_dir):
    async with serve_in_process(Settings(models_dir=tmp_path / "empty")) as (_, client):
        r = await client.get("/readyz")
        assert r.status_code == 503 and "no model" in error_of(r)["message"]
        assert (await client.get("/healthz")).status_code == 200
    async with serve_in_process(Settings(models_dir=models_dir, default_embed_model="gone")) as (_, client):
        assert (await client.get("/readyz")).status_code == 503


async def test_default_model_per_task_from_settings(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir, default_classify_model="tags")) as (
        _,
        client,
    ):
        assert (await client.post("/classify", json={"inputs": "x"})).json()["model"] == "tags"
        assert (await client.get("/models")).json()["defaults"]["classify"] == "tags"
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        assert (await client.post("/classify", json={"inputs": "x"})).json()["model"] == "sent"


async def test_shutdown_flips_readyz_and_refuses_new_work(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (app, client):
        begin_shutdown(app)
        r = await client.get("/readyz")
        assert r.status_code == 503 and error_of(r)["type"] == "shutting_down"
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


async def test_a_request_that_arrived_before_shutdown_is_served(models_dir):
    """Its body was still arriving when shutdown began: it is accepted work, so 200, not 503."""
    async with serve_in_process(Settings(models_dir=models_dir)) as (app, client):
        half_sent, resume = asyncio.Event(), asyncio.Event()

        async def body():
            yield b'{"inputs": '
            half_sent.set()
            await resume.wait()
            yield b'"hello"}'

        pending = asyncio.create_task(
            client.post("/embed", content=body(), headers={"content-type": "application/json"})
        )
        await half_sent.wait()
        await asyncio.sleep(0.01)
        assert app.state.berth.in_flight == 1
        begin_shutdown(app)
        resume.set()
        assert (await pending).status_code == 200
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 503  # arrived after
        assert app.state.berth.in_flight == 0


async def test_every_422_is_counted_as_rejected_invalid_under_its_task(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir, max_items=2)) as (_, client):
        for route, body in (("/embed", {"inputs": ["a", "b", "c"]}),  # too many items
                            ("/embed", {"inputs": "a", "model": "sent"}),  # a model of another task
                            ("/v1/embeddings", {"input": []})):  # refused by the schema
            assert (await client.post(route, json=body)).status_code == 422
        metrics = (await client.get("/metrics")).text
    assert 'berth_rejected_total{model="",reason="invalid",task="embed"} 2.0' in metrics
    assert 'berth_rejected_total{model="sent",reason="invalid",task="embed"} 1.0' in metrics


async def test_metrics_cover_design_section_5(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        await client.post("/embed", json={"inputs": ["a", "the movie was good"]})
        text = (await client.get("/metrics")).text
        for name in (
            "requests_total",
            "items_total",
            "tokens_total",
            "request_duration_seconds",
            "queue_wait_seconds",
            "inference_seconds",
            "tokenize_seconds",
            "batch_size",
            "batch_tokens",
            "batch_padding_ratio",
            "queue_items",
            "queue_tokens",
            "model_info",
            "ready",
        ):
            assert f"berth_{name}" in text, name
        assert 'berth_items_total{model="emb",task="embed"} 2.0' in text
        assert 'berth_model_info{model="emb",precision="fp32",provider="cpu",task="embed"} 1.0' in text
        assert 'berth_requests_total{route="/embed",status="200"} 1.0' in text


async def test_openapi_documents_every_error_status(models_dir):
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        for route in ("/embed", "/v1/embeddings", "/classify", "/tokenize"):
            documented = set(spec["paths"][route]["post"]["responses"])
            assert {str(s) for s in ERROR_STATUSES} <= documented, route
        assert (await client.get("/docs")).status_code == 200


async def test_cors_origins_setting(models_dir):
    settings = Settings(models_dir=models_dir, cors_origins=["https://app.example"])
    async with serve_in_process(settings) as (_, client):
        r = await client.options(
            "/embed", headers={"origin": "https://app.example", "access-control-request-method": "POST"}
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"


async def test_direct_dispatch_answers_exactly_as_fastapi_would(models_dir, monkeypatch):
    """The edge calls a task route directly when its JSON body validates (service/app.py); every
    answer must be the one the FastAPI route gives, and invalid bodies must take FastAPI's path."""
    import service.app

    requests = [
        ("/embed", {"inputs": ["the movie", "a plot twist"], "dimensions": 4}),
        ("/embed", {"inputs": "the movie", "normalize": False, "pooling": "max"}),
        ("/v1/embeddings", {"input": ["the movie"], "model": "emb", "encoding_format": "base64"}),
        ("/classify", {"inputs": [["the movie", "was good"]], "model": "sent", "top_k": 2}),
        ("/classify", {"inputs": "the plot", "model": "tags", "threshold": 0.2}),
        ("/tokenize", {"inputs": "the movie"}),
        ("/embed", {"inputs": []}),  # 422 naming the field
        ("/embed", {"inputs": "x", "model": "nope"}),  # 404 from the route itself
        ("/classify", {"inputs": "x", "model": "emb"}),  # 422: wrong task
    ]
    validated: list[str] = []
    real_validate = service.app.validate_body

    def spy(route, body):
        validated.append(route.model.__name__)
        return real_validate(route, body)

    monkeypatch.setattr("service.app.validate_body", spy)
    async with serve_in_process(Settings(models_dir=models_dir)) as (_, client):
        direct = [await client.post(path, json=body) for path, body in requests]
        assert len(validated) == len(requests)  # each went through the direct dispatch first
        as_text = await client.post(
            "/embed", content=b'{"inputs": "x"}', headers={"content-type": "text/plain"}
        )
        monkeypatch.setattr("service.app.DIRECT_ROUTES", {})
        standard = [await client.post(path, json=body) for path, body in requests]
    assert len(validated) == len(requests)  # no direct dispatch once the table is empty
    for (path, body), d, s in zip(requests, direct, standard, strict=True):
        assert (d.status_code, d.json()) == (s.status_code, s.json()), (path, body)
        assert d.headers["content-type"] == s.headers["content-type"]
    assert [r.status_code for r in direct[-3:]] == [422, 404, 422]
    # Not declared as JSON: FastAPI does not parse it, and neither does the direct dispatch.
    assert as_text.status_code == 422 and "valid dictionary" in error_of(as_text)["message"]
