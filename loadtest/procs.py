"""Subprocesses of the benchmark: servers on free local ports, the load client, RSS sampling."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 600.0) -> None:
    """Poll GET {url}/readyz until 200; fail early if the process died, or if berth says it
    finished loading and still cannot serve (no bundle, a configured default failed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready: {proc.args}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            message = _error_message(exc)
            if exc.code == 503 and message and "loading" not in message:
                raise RuntimeError(f"{url}/readyz: {message}") from None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz not ready after {timeout_s:.0f} s")


def _error_message(exc: urllib.error.HTTPError) -> str | None:
    """berth's error message from a /readyz answer (None for another server's body)."""
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return None


@contextlib.contextmanager
def server(
    cmd: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a server command until the block ends; yields (base URL, process)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def berth_serve(models_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--models-dir",
        str(models_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def client_command(url: str, scenario: str, concurrency: int, duration: float, warmup: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loadtest.client",
        "--url",
        url,
        "--scenario",
        scenario,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]


def parse_client_output(stdout: str) -> dict:
    """The client's result: the last line of its output that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"load client printed no result: {stdout[-500:]!r}")


def run_client(url: str, scenario: str, concurrency: int, duration: float, warmup: float) -> dict:
    """Run the load client in its own process (so it does not share the server's GIL)."""
    proc = subprocess.run(
        client_command(url, scenario, concurrency, duration, warmup),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=warmup + duration + 120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return parse_client_output(proc.stdout)


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")
