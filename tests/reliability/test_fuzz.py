"""schemathesis against the service's own OpenAPI document, every route, API key on and off.

Properties checked on every generated request (valid and invalid ones): no 5xx, every error in
the one error body, statuses, content types and 200 bodies as documented. The default run keeps
a few examples per route; the slow variant (`pytest -m slow tests/reliability`) runs many more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.settings import Settings
from tests.reliability.conftest import AUTH, KEY, error_of, live_app
from tests.service.conftest import write_fake_bundle

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Every operation of the OpenAPI document; a new route fails test_every_route_is_fuzzed until added.
OPERATIONS = [
    ("POST", "/embed"),
    ("POST", "/v1/embeddings"),
    ("POST", "/classify"),
    ("POST", "/ner"),
    ("POST", "/qa"),
    ("POST", "/tokenize"),
    ("GET", "/models"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
QUICK, LONG = 6, 200


@pytest.fixture(scope="module", params=[None, KEY], ids=["no-key", "key"])
def served(request, tmp_path_factory) -> Iterator[tuple[str, schemathesis.BaseSchema, str | None]]:
    root = tmp_path_factory.mktemp("fuzz-models")
    write_fake_bundle(root, "emb", "embed")
    write_fake_bundle(root, "sent", "classify", labels=["negative", "positive"])
    write_fake_bundle(root, "ents", "ner", labels=["O", "B-PER", "I-PER"])
    write_fake_bundle(root, "reader", "qa")
    # max_chars small enough that generated long strings also exercise the character cap.
    config = Settings(models_dir=root, api_key=request.param, max_chars=2000, access_log=False)
    with live_app(config) as (url, _):
        spec = httpx.get(url + "/openapi.json", headers=AUTH).json()
        yield url, schemathesis.openapi.from_dict(spec), request.param


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# The server runs in this process: a request that makes it allocate without bound fails here
# instead of taking the machine down (max_answer_len=10**9 once asked for tens of GB).
RSS_LIMIT_MB = 2048


def operation(schema: schemathesis.BaseSchema, method: str, path: str):
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == method and op.path == path:
            return op
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def fuzz(served, method: str, path: str, mode: GenerationMode, examples: int) -> list[int]:
    url, schema, key = served
    statuses: list[int] = []
    with httpx.Client(base_url=url, timeout=30) as client:

        @given(case=operation(schema, method, path).as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case) -> None:
            kwargs = case.as_transport_kwargs(base_url=url)
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
            with_key = client.request(
                kwargs["method"], kwargs["url"], headers={**headers, **AUTH}, **_body(kwargs)
            )
            statuses.append(with_key.status_code)
            assert rss_mb() < RSS_LIMIT_MB, (path, case.body)
            assert with_key.status_code < 500, (path, case.body, with_key.text)
            if with_key.status_code >= 400:
                error_of(with_key)
            if mode is GenerationMode.POSITIVE:
                case.validate_response(with_key, checks=CHECKS)
            if key is not None:  # and without the key: 401 everywhere but health
                bare = client.request(kwargs["method"], kwargs["url"], headers=headers, **_body(kwargs))
                if path in ("/healthz", "/readyz"):
                    assert bare.status_code == 200
                else:
                    assert bare.status_code == 401 and error_of(bare)["type"] == "unauthorized"

        run()
    return statuses


def _body(kwargs: dict) -> dict:
    out = {k: kwargs[k] for k in ("json", "content", "params") if k in kwargs}
    if isinstance(kwargs.get("data"), str | bytes):
        out["content"] = kwargs["data"]  # raw bodies (invalid JSON, other media types)
    elif "data" in kwargs:
        out["data"] = kwargs["data"]
    return out


def test_every_route_is_fuzzed(served):
    documented = {(r.ok().method.upper(), r.ok().path) for r in served[1].get_all_operations()}
    assert documented == set(OPERATIONS)


# Negative cases need something to make invalid: only the POST bodies (the GETs take no input).
CASES = [
    (m, p, mode) for m, p in OPERATIONS for mode in MODES if m == "POST" or mode is GenerationMode.POSITIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_fuzz(served, method, path, mode):
    fuzz(served, method, path, mode, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_fuzz_long(served, method, path, mode):
    statuses = fuzz(served, method, path, mode, LONG)
    if mode is GenerationMode.NEGATIVE and method == "POST":
        assert 422 in statuses  # invalid bodies were generated and refused as such
