"""End-to-end fixtures: real tiny bundles and a `berth serve` subprocess on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.service.conftest import tiny_bundles  # noqa: F401  (the same session fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `berth serve`; `url` is its base URL, `log` its combined output so far."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path) -> None:
        self.proc, self.url, self.log_path = proc, url, log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def berth_serve(models_dir: Path, log_path: Path, wait_for: str = "/readyz", **env: str) -> Iterator[Server]:
    """Start `berth serve` in a subprocess, wait for a 200 from `wait_for` (/readyz: every bundle
    loaded; /healthz: listening), stop it with SIGTERM afterwards."""
    port = free_port()
    environ = {**os.environ, "BERTH_PROVIDER": "cpu", "BERTH_PRECISION": "fp32", **env}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(models_dir), "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"berth serve exited with {proc.returncode}:\n{server.log}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + wait_for, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"berth serve not ready after 60 s:\n{server.log}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(tiny_bundles, tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with berth_serve(tiny_bundles, log, BERTH_MAX_WAIT_MS="10", BERTH_API_KEY="e2e-key") as srv:
        yield srv
