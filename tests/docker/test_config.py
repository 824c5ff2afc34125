"""The deployment files, checked without Docker: compose services, scrape target, dashboard queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose file (installed with the [dev] tools)")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_default_services_and_profiles(compose):
    services = compose["services"]
    # `docker compose up` starts exactly api and prometheus; the rest are a profile away.
    assert {name for name, s in services.items() if not s.get("profiles")} == {"api", "prometheus"}
    assert services["grafana"]["profiles"] == ["grafana"]
    assert services["loadtest"]["profiles"] == ["loadtest"]
    assert services["api-gpu"]["profiles"] == ["gpu"]
    # docker-compose 1.29 needs a version; both need build.network host in this sandbox
    assert compose["version"] == "3.8"
    assert all(s["build"]["network"] == "host" for s in services.values() if "build" in s)


def test_api_service(compose):
    api = compose["services"]["api"]
    assert api["build"]["target"] == "runtime" and api["restart"] == "unless-stopped"
    assert any(str(p).endswith(":8000") for p in api["ports"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["cpus"] and api["mem_limit"]
    gpu = compose["services"]["api-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert compose["services"]["loadtest"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_prometheus_scrapes_api():
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "berth")
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["api:8000"]


def test_dashboard_queries_name_real_metrics():
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/berth.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"berth_[a-z_]+", e)}
    source = (REPO / "service/metrics.py").read_text()
    defined = set(re.findall(r'"(berth_[a-z_]+)"', source))
    assert used <= defined, f"dashboard queries unknown metrics: {sorted(used - defined)}"
    # what issue 7 asks the dashboard to show
    for metric in ("berth_requests_total", "berth_request_duration_seconds", "berth_queue_items",
                   "berth_batch_size", "berth_batch_padding_ratio", "berth_rejected_total"):
        assert metric in used
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == dashboard["panels"][0]["datasource"]["uid"]


def test_runtime_stage_is_torch_free_and_non_root():
    text = (REPO / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime"):]
    assert "train.txt" not in runtime and "whl/cpu" not in runtime
    assert re.search(r"^USER berth$", runtime, re.M)
    assert 'CMD ["berth", "serve", "--host", "0.0.0.0"]' in runtime
    # dependency layer before any source layer
    assert runtime.index("pip install -r /tmp/req/service.txt") < runtime.index("COPY service")
    build = text[text.index("AS build"):text.index("AS runtime")]
    assert "download.pytorch.org/whl/cpu" in build and "python -m export.defaults --models-dir" in build


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_build_stage_copies_only_what_building_bundles_imports(dockerfile):
    """The layer that trains the default models must not depend on the rest of the service (a
    route change would retrain for 25 minutes), yet hold every service module model/ and export/
    import (or the build fails only inside Docker)."""
    text = (REPO / dockerfile).read_text()
    build = text[text.index("AS build"):text.index("AS runtime")]
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", build, re.M):
        copied.update(line.split()[:-1])
    assert "service" not in copied and "loadtest" not in copied
    imported = set()
    for path in [*(REPO / "model").rglob("*.py"), *(REPO / "export").rglob("*.py")]:
        imported.update(re.findall(r"^\s*from (service(?:\.\w+)*) import", path.read_text(), re.M))
    needed = {"service/__init__.py"} | {m.replace(".", "/") + ".py" for m in imported if m != "service"}
    assert needed <= copied, f"build stage lacks {sorted(needed - copied)}"
