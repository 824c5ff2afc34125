"""Benchmark pieces: padded batches for the ceiling, the aiohttp client, ratios, the soak's growth."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from loadtest.bench import TaskResult, markdown, ratios
from loadtest.ceiling import padded_batches
from loadtest.client import run_load
from loadtest.procs import parse_client_output
from loadtest.soak import growth_after_warmup


def test_padded_batches_are_length_sorted_and_right_padded():
    ids = [[101, 5, 102], [101, 102], [101, 7, 8, 9, 102], [101, 6, 102]]
    batches = padded_batches(ids, batch_size=2, pad_id=0, with_token_types=True)
    assert [b["input_ids"].shape for b in batches] == [(2, 3), (2, 5)]
    first = batches[0]
    np.testing.assert_array_equal(first["input_ids"], [[101, 102, 0], [101, 5, 102]])
    np.testing.assert_array_equal(first["attention_mask"], [[1, 1, 0], [1, 1, 1]])
    assert first["token_type_ids"].sum() == 0 and first["input_ids"].dtype == np.int64
    assert "token_type_ids" not in padded_batches(ids, 4, 1, with_token_types=False)[0]


@pytest.mark.parametrize("fake_server", [["--delay-ms", "20", "--fail-every", "10"]], indirect=True)
async def test_client_counts_texts_latency_and_errors(fake_server):
    result = await run_load(fake_server, "embed_bulk", concurrency=2, duration=1.0, warmup=0.2)
    # 2 closed-loop clients, ~20 ms per request: ~100 requests in the measured second
    assert 40 <= result["requests"] <= 110, result
    assert result["p50_ms"] >= 20.0
    assert result["errors"] == {"HTTP 429": result["failures"]} and result["failures"] >= 3
    assert result["texts"] == 32 * (result["requests"] - result["failures"])
    assert result["texts_per_s"] == pytest.approx(result["texts"] / 1.0)


def test_client_output_is_the_last_json_line():
    assert parse_client_output('warning: x\n{"texts_per_s": 5}\n') == {"texts_per_s": 5}
    with pytest.raises(ValueError, match="no result"):
        parse_client_output("Traceback ...")


def _result() -> TaskResult:
    r = TaskResult("embed", "minilm", ceiling={"texts_per_s": 1000.0, "variant": "int8"})
    r.service = {
        "interactive": {"texts_per_s": 600.0, "p50_ms": 20.0, "p95_ms": 40.0, "p99_ms": 60.0, "failures": 0},
        "bulk": {"texts_per_s": 800.0, "p50_ms": 150.0, "p95_ms": 200.0, "p99_ms": 250.0, "failures": 0},
    }
    r.naive = {"interactive": {"texts_per_s": 60.0, "p50_ms": 200.0, "p99_ms": 400.0, "failures": 0}}
    return r


def test_ratios_and_table():
    r = _result()
    assert ratios(r, "interactive") == {"service/ceiling": 0.6, "service/naive": 10.0}
    assert ratios(r, "bulk") == {"service/ceiling": 0.8, "service/naive": None}
    env = {"nproc": "2", "cpu": "Test CPU", "loadavg_1m": "0.10", "training_running": "no"}
    table = markdown([r], env, "berth bench", argparse.Namespace(warmup=3.0, duration=20.0))
    assert "2 cores, Test CPU" in table
    row = next(line for line in table.splitlines() if "interactive (16 × 1)" in line)
    assert "| 0.60 | 10.0× |" in row and "20.0 / 40.0 / 60.0" in row
    bulk = next(line for line in table.splitlines() if "bulk (4 × 32)" in line)
    assert "| 0.80 | –× |" in bulk


def test_each_scenario_is_judged_against_the_ceilings_around_it(monkeypatch, tmp_path):
    """Ceiling, interactive, ceiling, bulk, ceiling: each ratio uses the two measurements that
    bracket its own scenario, so a drift of the machine between scenarios does not leak in."""
    import contextlib
    from types import SimpleNamespace

    import loadtest.bench as bench_module
    import loadtest.ceiling as ceiling_module

    speeds = iter([800.0, 900.0, 700.0])
    order: list[str] = []

    def fake_ceiling(bundle_dir, texts):
        order.append("ceiling")
        v = next(speeds)
        return SimpleNamespace(texts_per_s=v, tokens_per_s=v * 20, variant="int8", threads=1, lanes=2,
                               layouts={"2x1": v})

    def fake_client(url, scenario, clients, duration, warmup):
        order.append(scenario)
        v = 425.0 if "interactive" in scenario else 600.0
        return {"texts_per_s": v, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "failures": 0,
                "client_cpu_s": 0.1}

    @contextlib.contextmanager
    def fake_server(cmd, port, log):
        yield "http://127.0.0.1:1", None

    monkeypatch.setattr(ceiling_module, "measure_ceiling", fake_ceiling)
    monkeypatch.setattr(bench_module, "run_client", fake_client)
    monkeypatch.setattr(bench_module, "server", fake_server)
    (tmp_path / "minilm").mkdir()
    args = argparse.Namespace(models_dir=tmp_path, skip="naive", texts=10, duration=1.0, warmup=0.0)
    r = bench_module.bench_task("embed", "minilm", args, ["a text"], tmp_path / "logs")
    assert order == ["ceiling", "embed_interactive", "ceiling", "embed_bulk", "ceiling"]
    assert r.ceilings["interactive"] == {"before": 800.0, "after": 900.0, "texts_per_s": 850.0}
    assert r.ceilings["bulk"] == {"before": 900.0, "after": 700.0, "texts_per_s": 800.0}
    assert ratios(r, "interactive")["service/ceiling"] == pytest.approx(0.5)
    assert ratios(r, "bulk")["service/ceiling"] == pytest.approx(0.75)
    assert r.ceiling["texts_per_s"] == pytest.approx(800.0)  # all three measurements
    env = {"nproc": "2", "cpu": "Test CPU", "loadavg_1m": "0.10", "training_running": "no"}
    table = markdown([r], env, "berth bench", args)
    assert "| 850.0 (800 / 900) |" in next(line for line in table.splitlines() if "interactive (16" in line)


def test_soak_growth_is_measured_after_warmup():
    samples = [
        (0.0, 100.0),
        (30.0, 300.0),
        (60.0, 400.0),
        (120.0, 410.0),
        (180.0, 420.0),
        (240.0, 430.0),
        (300.0, 440.0),
    ]
    base, end, growth = growth_after_warmup(samples, warmup_s=60.0)
    assert base == 400.0 and end == 430.0  # median of the last three samples
    assert growth == pytest.approx(0.075)
    with pytest.raises(ValueError, match="samples after"):
        growth_after_warmup(samples[:3], warmup_s=60.0)


def test_ceiling_runs_the_bundle_the_service_would_load(tiny_checkpoints, tmp_path):
    from export.bundle import export_bundle
    from loadtest.ceiling import measure_ceiling

    bundle = export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path / "out",
                           precisions=("fp32",), quick_bench=False)
    texts = ["a short one", "a somewhat longer sentence about a film", "ok"] * 20
    ceiling = measure_ceiling(Path(bundle), texts, batch_size=8, repeats=2, threads=1)
    assert ceiling.variant == "fp32" and ceiling.threads == 1 and len(ceiling.runs) == 2
    assert ceiling.texts_per_s > 0 and ceiling.tokens_per_s > ceiling.texts_per_s
