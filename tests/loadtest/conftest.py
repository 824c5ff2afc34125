"""Fixtures of the load-test tests: the stand-in server in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_server(request):
    """Start tests/loadtest/fake_server.py; param = extra arguments (e.g. failures)."""
    yield from _fake_server(request.param)


@pytest.fixture
def fake_server_keyed():
    """The stand-in server answering 401 without `Authorization: Bearer k-123`."""
    yield from _fake_server(["--api-key", "k-123"])


def _fake_server(extra: list[str]):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.loadtest.fake_server", str(port), *extra], cwd=REPO
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("fake server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_loadtest(url: str, out: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`python -m loadtest.run --host URL --out OUT ARGS...` in a subprocess: (exit code, output)."""
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--host", url, "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr
