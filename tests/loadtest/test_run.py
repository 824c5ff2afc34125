"""`python -m loadtest.run` end to end against a stand-in server: reports, rate pacing, CI gate."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from loadtest import run as run_module
from tests.loadtest.conftest import run_loadtest


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("fake_server", [[]], indirect=True)
def test_fixed_rate_run_writes_reports_and_passes(fake_server, tmp_path):
    code, output = run_loadtest(
        fake_server, tmp_path, "--scenario", "embed_bulk", "--users", "4", "--duration", "3s", "--rate", "20"
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "embed_bulk_summary.json").read_text())
    # 20 req/s offered for ~3 s (the first slot starts at once): paced, not flat out
    assert 35 <= summary["requests"] <= 75, summary
    assert summary["texts"] == 32 * summary["requests"] and summary["failures"] == 0
    # the fake server's headers, at their own resolution (locust's stats would round 1.5 to 2)
    assert summary["queue_p50_ms"] == 1.5 and summary["inference_p50_ms"] == 3.0
    assert (tmp_path / "embed_bulk.html").stat().st_size > 1000
    assert "embed_bulk:" in output and "texts/s" in output


@pytest.mark.parametrize("fake_server", [[]], indirect=True)
def test_server_timings_stay_out_of_locust_stats(fake_server, tmp_path):
    code, output = run_loadtest(
        fake_server, tmp_path, "--scenario", "embed_bulk,qa", "--users", "2", "--duration", "2s"
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "embed_bulk+qa_summary.json").read_text())
    stats = _csv_rows(tmp_path / "embed_bulk+qa_stats.csv")
    # only the real requests: one row per scenario, and the Aggregated row counts each request once
    assert {(r["Type"], r["Name"]) for r in stats} == {
        ("POST", "embed_bulk"),
        ("POST", "qa"),
        ("", "Aggregated"),
    }
    aggregated = next(r for r in stats if r["Name"] == "Aggregated")
    assert int(aggregated["Request Count"]) == summary["requests"] > 0
    assert sum(int(r["Request Count"]) for r in stats if r["Type"] == "POST") == summary["requests"]
    # the server timings are still recorded: in their own CSV and in the summary
    timings = _csv_rows(tmp_path / "embed_bulk+qa_server_timing.csv")
    by_key = {(r["name"], r["timing"]): r for r in timings}
    assert set(by_key) == {(n, t) for n in ("embed_bulk", "qa") for t in ("queue", "inference")}
    per_scenario = {r["Name"]: int(r["Request Count"]) for r in stats if r["Type"] == "POST"}
    for (name, timing), row in by_key.items():
        assert int(row["count"]) == per_scenario[name]
        assert float(row["p50_ms"]) == (1.5 if timing == "queue" else 3.0)
    assert summary["queue_p50_ms"] == 1.5 and summary["inference_p50_ms"] == 3.0
    assert {(r["name"], r["timing"]) for r in summary["server_timing"]} == set(by_key)
    assert "server p50 queue 1.5 ms, inference 3.0 ms" in output


@pytest.mark.parametrize("fake_server", [["--fail-every", "4"]], indirect=True)
def test_failures_above_the_limit_fail_the_run(fake_server, tmp_path):
    code, output = run_loadtest(
        fake_server, tmp_path, "--scenario", "classify,qa", "--users", "2", "--duration", "2s"
    )
    assert code == 1, output
    summary = json.loads((tmp_path / "classify+qa_summary.json").read_text())
    assert 0.2 <= summary["failure_ratio"] <= 0.3
    assert summary["violations"] and "failure ratio" in summary["violations"][0]
    assert "threshold broken" in output


def test_unknown_scenario_is_refused(tmp_path):
    code, output = run_loadtest("http://127.0.0.1:9", tmp_path, "--scenario", "embed_fast")
    assert code == 2 and "unknown scenario 'embed_fast'" in output


# --- argument checks: one line naming the option, exit 2, locust never started ---


@pytest.fixture
def no_locust(monkeypatch):
    """Record locust command lines instead of running them."""
    calls = []

    def fake_call(cmd, **kwargs):
        calls.append(cmd)
        return 0

    monkeypatch.setattr(run_module.subprocess, "call", fake_call)
    return calls


@pytest.mark.parametrize(
    ("argv", "option", "words"),
    [
        (["--duration", "0"], "--duration", "> 0"),
        (["--duration", "0s"], "--duration", "> 0"),
        (["--duration", "0h0m0s"], "--duration", "> 0"),
        (["--duration=-5s"], "--duration", "30s"),
        (["--duration", "500ms"], "--duration", "30s"),
        (["--duration", ""], "--duration", "30s"),
        (["--scenario", "mix,qa"], "--scenario", "mix"),
        (["--scenario", "qa,mix"], "--scenario", "mix"),
        (["--scenario", ""], "--scenario", "empty"),
        (["--scenario", " , "], "--scenario", "empty"),
        (["--users", "0"], "--users", ">= 1"),
        (["--users", "-3"], "--users", ">= 1"),
        (["--users", "many"], "--users", "integer"),
        (["--spawn-rate", "-1"], "--spawn-rate", ">= 0"),
        (["--rate", "-5"], "--rate", ">= 0"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(argv, option, words, tmp_path, capsys, no_locust):
    with pytest.raises(SystemExit) as exit_info:
        run_module.main(["--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}" in err and words in err, err
    assert "-r/--spawn-rate" not in err or option == "--spawn-rate"
    assert no_locust == [] and not (tmp_path / "out").exists()


def test_berth_loadtest_refuses_the_same(tmp_path, capsys, no_locust):
    from service.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["loadtest", "--users", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "berth loadtest: error: argument --users" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "locust_duration", "scenario", "label"),
    [
        (["--duration", "2m"], "120s", "embed_interactive", "embed_interactive"),
        (["--duration", "45", "--scenario", "mix"], "45s", "", "mix"),
        (["--duration", "1h30s", "--scenario", " qa , classify,"], "3630s", "qa,classify", "qa+classify"),
    ],
)
def test_good_arguments_reach_locust(argv, locust_duration, scenario, label, tmp_path, no_locust):
    assert run_module.main(["--out", str(tmp_path), "--users", "3", *argv]) == 0
    (cmd,) = no_locust
    assert cmd[cmd.index("-t") + 1] == locust_duration
    assert cmd[cmd.index("--scenario") + 1] == scenario
    assert cmd[cmd.index("-u") + 1] == "3" and cmd[cmd.index("-r") + 1] == "3"
    assert cmd[cmd.index("--csv") + 1] == str(tmp_path / label)


# --- a summary left by an earlier run is never reported as this one's ---


def test_stale_summary_is_not_reported(tmp_path, capsys, monkeypatch):
    stale = tmp_path / "qa_summary.json"
    stale.write_text(
        json.dumps(
            {
                "requests_per_s": 123.0,
                "texts_per_s": 123.0,
                "p50_ms": 1,
                "p95_ms": 2,
                "p99_ms": 3,
                "failures": 0,
                "requests": 999,
                "violations": [],
            }
        )
    )
    (tmp_path / "qa_server_timing.csv").write_text("name,timing\nqa,queue\n")
    monkeypatch.setattr(run_module.subprocess, "call", lambda cmd, **kwargs: 1)  # locust dies at once
    assert run_module.main(["--scenario", "qa", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "123.0 req/s" not in captured.out and "999" not in captured.out
    assert "without a summary" in captured.err
    assert not stale.exists() and not (tmp_path / "qa_server_timing.csv").exists()


# --- the API key ---


def test_api_key_option_defaults_to_the_environment(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(run_module.subprocess, "call", lambda cmd, **kw: seen.append((cmd, kw)) or 0)
    monkeypatch.setenv("BERTH_API_KEY", "from-env")
    parser = argparse.ArgumentParser()
    run_module.add_arguments(parser)
    for argv, expected in (
        (["--out", str(tmp_path)], "from-env"),
        (["--out", str(tmp_path), "--api-key", "flag"], "flag"),
        (["--out", str(tmp_path), "--api-key", ""], ""),
    ):
        seen.clear()
        assert run_module.run(parser.parse_args(argv)) == 0
        ((cmd, kwargs),) = seen
        assert kwargs["env"]["BERTH_LT_API_KEY"] == expected
        assert not any("from-env" in part or "flag" in part for part in cmd)  # not on the command line
    assert "from-env" not in parser.format_help()
