"""`python -m loadtest.run` end to end against a stand-in server: reports, rate pacing, CI gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(url: str, out: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--host", url, "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("fake_server", [[]], indirect=True)
def test_fixed_rate_run_writes_reports_and_passes(fake_server, tmp_path):
    code, output = _run(
        fake_server, tmp_path, "--scenario", "embed_bulk", "--users", "4", "--duration", "3s", "--rate", "20"
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "embed_bulk_summary.json").read_text())
    # 20 req/s offered for ~3 s (the first slot starts at once): paced, not flat out
    assert 35 <= summary["requests"] <= 75, summary
    assert summary["texts"] == 32 * summary["requests"] and summary["failures"] == 0
    assert summary["queue_p50_ms"] is not None and summary["inference_p50_ms"] == 3.0
    assert (tmp_path / "embed_bulk.html").stat().st_size > 1000
    stats = (tmp_path / "embed_bulk_stats.csv").read_text()
    assert "POST,embed_bulk," in stats and "server,embed_bulk queue," in stats
    assert "embed_bulk:" in output and "texts/s" in output


@pytest.mark.parametrize("fake_server", [["--fail-every", "4"]], indirect=True)
def test_failures_above_the_limit_fail_the_run(fake_server, tmp_path):
    code, output = _run(
        fake_server, tmp_path, "--scenario", "classify,qa", "--users", "2", "--duration", "2s"
    )
    assert code == 1, output
    summary = json.loads((tmp_path / "classify+qa_summary.json").read_text())
    assert 0.2 <= summary["failure_ratio"] <= 0.3
    assert summary["violations"] and "failure ratio" in summary["violations"][0]
    assert "threshold broken" in output


def test_unknown_scenario_is_refused(tmp_path):
    code, output = _run("http://127.0.0.1:9", tmp_path, "--scenario", "embed_fast")
    assert code == 2 and "unknown scenario 'embed_fast'" in output
