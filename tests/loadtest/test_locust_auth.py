"""The locust users authenticate: `--api-key` / BERTH_API_KEY reach the server as a bearer token."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi import Request

from tests.loadtest.conftest import run_loadtest
from tests.loadtest.fake_server import create_app

REPO = Path(__file__).resolve().parents[2]
KEY = "s3cret-lt-key-7f3a"


@pytest.fixture
def auth_server():
    """The stand-in server behind a bearer-token check, in a thread; yields (url, seen headers)."""
    app = create_app(api_key=KEY)  # 401 on task routes without `Authorization: Bearer KEY`
    seen: list[str | None] = []

    @app.middleware("http")
    async def record_key(request: Request, call_next):
        if request.url.path != "/readyz":
            seen.append(request.headers.get("authorization"))
        return await call_next(request)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("auth server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run(url: str, out: Path, *args: str, api_key_env: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BERTH_API_KEY", "BERTH_LT_API_KEY")}
    if api_key_env is not None:
        env["BERTH_API_KEY"] = api_key_env
    return run_loadtest(url, out, "--scenario", "classify", "--users", "2", "--duration", "2s", *args,
                        env=env)


def _assert_key_nowhere(output: str, out: Path) -> None:
    assert KEY not in output
    for path in out.iterdir():
        assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path


def test_key_from_the_environment_is_sent(auth_server, tmp_path):
    url, seen = auth_server
    code, output = _run(url, tmp_path, api_key_env=KEY)
    assert code == 0, output
    summary = json.loads((tmp_path / "classify_summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    assert seen and set(seen) == {f"Bearer {KEY}"}
    _assert_key_nowhere(output, tmp_path)


def test_api_key_option_is_sent(auth_server, tmp_path):
    url, seen = auth_server
    code, output = _run(url, tmp_path, "--api-key", KEY, api_key_env="some-other-key")
    assert code == 0, output
    assert seen and set(seen) == {f"Bearer {KEY}"}
    _assert_key_nowhere(output, tmp_path)


def test_without_a_key_the_run_fails_on_401(auth_server, tmp_path):
    url, seen = auth_server
    code, output = _run(url, tmp_path, api_key_env=None)
    assert code == 1, output
    summary = json.loads((tmp_path / "classify_summary.json").read_text())
    assert summary["failures"] == summary["requests"] > 0
    assert set(seen) == {None}
