"""Reliability fixtures: fake-runtime bundles of every task, served by uvicorn in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.e2e.conftest import free_port
from tests.service.conftest import fake_factory, write_fake_bundle

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
def live_app(settings: Settings, factory=fake_factory) -> Iterator[tuple[str, object]]:
    """(base URL, app): the app under a real uvicorn server in a thread (real HTTP, one loop)."""
    port = free_port()
    app = create_app(settings.model_copy(update={"port": port}), factory)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(30)
