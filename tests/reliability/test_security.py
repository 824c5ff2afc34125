"""API key on every route but health, /metrics opt-out, 413 before parsing, CORS, no file access by name."""

from __future__ import annotations

import builtins
import hmac
import io
import pathlib

import pytest

from service.settings import Settings
from tests.reliability.conftest import AUTH, KEY, error_of
from tests.service.conftest import serve_in_process

GETS = ["/models", "/metrics", "/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"]
POSTS = ["/embed", "/v1/embeddings", "/classify", "/tokenize", "/ner", "/qa"]


async def test_key_required_everywhere_but_health_and_never_logged(all_tasks_dir, caplog):
    caplog.set_level("DEBUG")  # every logger, every level: the key must appear in none
    async with serve_in_process(Settings(models_dir=all_tasks_dir, api_key=KEY)) as (_, client):
        for path in GETS:
            r = await client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert error_of(r)["type"] == "unauthorized"
            assert (await client.get(path, headers=AUTH)).status_code == 200, path
        for path in POSTS:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
                r = await client.post(path, json={"inputs": "x"}, headers=headers)
                assert r.status_code == 401, (path, headers)
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200
        # Unknown routes are 401 too: without the key nothing tells what exists.
        assert (await client.get("/admin")).status_code == 401
        assert (await client.get("/admin", headers=AUTH)).status_code == 404
    assert KEY not in caplog.text and '"status":401' in caplog.text


async def test_metrics_public_setting_opens_only_metrics(all_tasks_dir):
    settings = Settings(models_dir=all_tasks_dir, api_key=KEY, metrics_public=True)
    async with serve_in_process(settings) as (_, client):
        r = await client.get("/metrics")
        assert r.status_code == 200 and "berth_ready" in r.text
        assert (await client.get("/docs")).status_code == 401
        assert (await client.get("/models")).status_code == 401


async def test_key_compare_is_constant_time(all_tasks_dir, monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("service.app.hmac.compare_digest", spy)
    async with serve_in_process(Settings(models_dir=all_tasks_dir, api_key=KEY)) as (_, client):
        assert (await client.get("/models", headers={"authorization": "Bearer x"})).status_code == 401
        assert (await client.get("/models", headers=AUTH)).status_code == 200
    assert [given for given, _ in calls] == [b"Bearer x", AUTH["authorization"].encode()]


async def test_body_limit_is_413_before_parsing(all_tasks_dir, monkeypatch):
    parsed: list[bytes] = []
    import json as stdlib_json

    real_loads = stdlib_json.loads

    def loads(raw, *a, **k):
        if isinstance(raw, bytes) and raw[:2] in (b"{{", b"[[", b'{"'):
            parsed.append(raw[:20])  # request bodies of this test (responses start {"error" / {"model")
        return real_loads(raw, *a, **k)

    import service.app

    real_validate = service.app.validate_body

    def validate(route, raw):  # the edge's direct dispatch parses well-formed bodies itself
        parsed.append(raw[:20])
        return real_validate(route, raw)

    async with serve_in_process(Settings(models_dir=all_tasks_dir, max_body_bytes=1000)) as (_, client):
        monkeypatch.setattr("starlette.requests.json.loads", loads)  # after loading the manifests
        monkeypatch.setattr("service.app.validate_body", validate)
        # Malformed JSON over the limit: 413, not 400, so it was never parsed.
        r = await client.post("/embed", content=b"{" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and error_of(r)["type"] == "payload_too_large"

        async def chunked():  # no Content-Length: counted while reading
            for _ in range(20):
                yield b"[" * 100

        r = await client.post("/embed", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert not [p for p in parsed if p[:2] in (b"{{", b"[[")]
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 200
        assert b'{"inputs"' in [p[:9] for p in parsed]  # the spy does see bodies that get parsed


async def test_cors_only_for_configured_origins(all_tasks_dir):
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    async with serve_in_process(Settings(models_dir=all_tasks_dir)) as (_, client):
        r = await client.options("/embed", headers={"origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in r.headers
        r = await client.post("/embed", json={"inputs": "x"}, headers={"origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    settings = Settings(models_dir=all_tasks_dir, cors_origins=["https://app.example"])
    async with serve_in_process(settings) as (_, client):
        ok = await client.options("/embed", headers={"origin": "https://app.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = await client.options("/embed", headers={"origin": "https://evil.example", **preflight})
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
        r = await client.post("/embed", json={"inputs": "x"}, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = await client.post("/embed", json={"inputs": "x"}, headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"


PATH_LIKE = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "emb/../emb",
    "emb/berth.json",
    "~/.ssh/id_rsa",
    "C:\\Windows\\win.ini",
    "file:///etc/passwd",
    "emb\x00",
    "%2e%2e%2fetc%2fpasswd",
]


@pytest.mark.parametrize("name", PATH_LIKE)
async def test_path_like_model_names_never_touch_files(all_tasks_dir, monkeypatch, name):
    async with serve_in_process(Settings(models_dir=all_tasks_dir)) as (_, client):
        opened: list[str] = []
        real_open, real_io_open, real_path_open = builtins.open, io.open, pathlib.Path.open

        def spy(real):
            def wrapper(file, *a, **k):
                opened.append(str(file))
                return real(file, *a, **k)

            return wrapper

        # Loading is over: from here on, no request may open any file.
        monkeypatch.setattr(builtins, "open", spy(real_open))
        monkeypatch.setattr(io, "open", spy(real_io_open))
        monkeypatch.setattr(pathlib.Path, "open", spy(real_path_open))
        for route, body in (
            ("/embed", {"inputs": "x", "model": name}),
            ("/classify", {"inputs": "x", "model": name}),
            ("/tokenize", {"inputs": "x", "model": name}),
            ("/ner", {"inputs": "x", "model": name}),
            ("/qa", {"question": "q", "context": "c", "model": name}),
            ("/v1/embeddings", {"input": "x", "model": name}),
        ):
            r = await client.post(route, json=body)
            assert r.status_code in (404, 422), (route, name, r.text)
            assert error_of(r)["param"] == "model"
        # As URL paths too (not "." and "..", which clients normalize away, nor a NUL, which
        # they refuse to send).
        probes = [] if name in (".", "..") or "\x00" in name else [name]
        for path in [f"/{n}" for n in probes] + [
            f"/{d}/{n}" for d in ("models", "docs", "static") for n in probes
        ]:
            r = await client.get(path)
            assert r.status_code in (404, 405, 422), (path, r.status_code)
        assert opened == []
