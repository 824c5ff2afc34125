"""The compose stack for real (issue 7): build, health, the four tasks, Prometheus, loadtest profile.

Outside the default run: `make test-docker`. Needs Docker; on this machine start it with
`../shared/tools/docker-sandbox.sh up` (the test does so when the script is beside the repo).
The first build trains the default bundles inside the image: allow tens of minutes (more on a
busy machine). For a quicker run over bundles already built on the host:

    BERTH_DEFAULT_MODELS=minilm BERTH_MODELS_HOST_DIR=$PWD/models make test-docker

bakes only `minilm` into the image and serves the host's `models/` through
deploy/compose.models.yml (the volume override users have for the same purpose).
BERTH_DOCKER_NO_BUILD=1 skips the build and tests the `berth:cpu` / `berth:loadtest` images as
they are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO.parent / "shared" / "tools" / "docker-sandbox.sh"
PROJECT = "berthtest"
API = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
# Optional quick mode (see the module docstring): the models volume override and a build argument.
FILES = (
    ["-f", "docker-compose.yml", "-f", "deploy/compose.models.yml"]
    if os.environ.get("BERTH_MODELS_HOST_DIR") else []
)
BUILD_ARGS = (
    ["--build-arg", f"BERTH_DEFAULT_MODELS={os.environ['BERTH_DEFAULT_MODELS']}"]
    if os.environ.get("BERTH_DEFAULT_MODELS") else []
)


def _sh(*cmd: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _compose(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return _sh("docker-compose", "-p", PROJECT, *FILES, *args, timeout=timeout, check=check)


def _post(path: str, body: dict) -> dict:
    request = urllib.request.Request(
        API + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _wait(predicate, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def stack():
    if SANDBOX.is_file():
        _sh("bash", str(SANDBOX), "up", timeout=1800)
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed (run ../shared/tools/docker-sandbox.sh up)")
    try:
        if not os.environ.get("BERTH_DOCKER_NO_BUILD"):  # set: test the images already built
            _compose("build", *BUILD_ARGS, "api", "loadtest", timeout=3600)
        _compose("up", "-d", timeout=600)
        yield
    finally:
        _compose(
            "--profile", "loadtest", "down", "--remove-orphans", "--timeout", "20", timeout=300, check=False
        )


def _api_healthy() -> bool:
    cid = _compose("ps", "-q", "api").stdout.strip()
    status = _sh("docker", "inspect", "-f", "{{.State.Health.Status}}", cid, check=False).stdout.strip()
    return status == "healthy"


def test_stack_serves_the_four_tasks_and_is_scraped(stack):
    _wait(_api_healthy, "api container healthy (/readyz)", 600)
    embed = _post("/embed", {"inputs": ["a warm, funny, engaging film", "a dull film"]})
    assert len(embed["embeddings"]) == 2 and len(embed["embeddings"][0]) == 384
    classify = _post("/classify", {"inputs": "A warm, funny, engaging film."})
    assert classify["results"][0][0]["label"]
    ner = _post("/ner", {"inputs": "EU rejects German call to boycott British lamb."})
    text = "EU rejects German call to boycott British lamb."
    assert all(e["text"] == text[e["start"] : e["end"]] for e in ner["results"][0])
    qa = _post("/qa", {"question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris."})
    assert "answer" in qa["results"][0][0]

    def scraped() -> bool:
        query = urllib.parse.urlencode({"query": "berth_requests_total"})
        try:
            with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query?{query}", timeout=10) as resp:
                result = json.loads(resp.read())["data"]["result"]
        except (urllib.error.URLError, OSError, KeyError):
            return False
        routes = {r["metric"].get("route") for r in result}
        return {"/embed", "/classify", "/ner", "/qa"} <= routes

    _wait(scraped, "Prometheus to return berth_requests_total for the four routes", 120)


def test_runtime_image_has_no_torch_and_runs_as_non_root(stack):
    torch = _sh(
        "docker", "run", "--rm", "--entrypoint", "python", "berth:cpu", "-c", "import torch", check=False
    )
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    transformers = _sh(
        "docker",
        "run",
        "--rm",
        "--entrypoint",
        "python",
        "berth:cpu",
        "-c",
        "import transformers",
        check=False,
    )
    assert transformers.returncode != 0
    uid = _sh("docker", "run", "--rm", "--entrypoint", "id", "berth:cpu", "-u").stdout.strip()
    assert uid != "0"


def test_loadtest_profile_leaves_a_report(stack):
    reports = REPO / "reports"
    (reports / "embed_interactive_summary.json").unlink(missing_ok=True)
    _wait(_api_healthy, "api container healthy (/readyz)", 600)
    run = _sh(
        "env",
        "BERTH_LT_DURATION=10s",
        "BERTH_LT_USERS=4",
        "docker-compose",
        "-p",
        PROJECT,
        *FILES,
        "--profile",
        "loadtest",
        "up",
        "--exit-code-from",
        "loadtest",
        "loadtest",
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    summary = json.loads((reports / "embed_interactive_summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    assert (reports / "embed_interactive.html").is_file() and (
        reports / "embed_interactive_stats.csv"
    ).is_file()


def test_runtime_image_serves_from_a_read_only_filesystem(stack):
    """Issue 9: the container can run with a read-only root filesystem (only /tmp writable)."""
    name = f"{PROJECT}-readonly"
    _sh("docker", "rm", "-f", name, check=False)
    _sh("docker", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--network", "host",
        "-e", "BERTH_PORT=8002", "berth:cpu")
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8002/readyz", timeout=5) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return False

        _wait(ready, "the read-only container's /readyz", 300)
        request = urllib.request.Request(
            "http://127.0.0.1:8002/embed", data=json.dumps({"inputs": "read-only"}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 200 and len(json.loads(resp.read())["embeddings"][0]) == 384
    finally:
        logs = _sh("docker", "logs", name, check=False)
        _sh("docker", "rm", "-f", name, check=False)
    assert "Read-only file system" not in logs.stdout + logs.stderr
