"""While bundles load the server already listens: /healthz 200, /readyz 503 "loading", task
routes 503; a stop during loading does not wait for the rest; a second signal forces the exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time

import httpx

from service.settings import Settings
from tests.e2e.conftest import berth_serve
from tests.reliability.conftest import error_of, live_app, real_bundle
from tests.service.conftest import fake_factory, serve_in_process, write_fake_bundle


def gated_factory(gate: threading.Event, slow: set[str]):
    """fake_factory, except that loading a bundle named in `slow` waits for `gate`."""

    def factory(path, manifest, settings, threads):
        if path.name in slow:
            assert gate.wait(30), "the test never opened the gate"
        return fake_factory(path, manifest, settings, threads)

    return factory


def test_health_answers_over_http_while_a_bundle_loads(tmp_path):
    write_fake_bundle(tmp_path, "emb", "embed")
    write_fake_bundle(tmp_path, "sent", "classify", labels=["neg", "pos"])
    gate = threading.Event()
    settings = Settings(models_dir=tmp_path)
    try:
        with live_app(settings, gated_factory(gate, {"emb"}), wait_loaded=False) as (url, _):
            # Before this fix uvicorn bound its socket only after every bundle had loaded: these
            # requests were refused connections (live_app itself would not have come up).
            assert httpx.get(url + "/healthz").status_code == 200
            ready = httpx.get(url + "/readyz")
            assert ready.status_code == 503
            assert "loading (0 of 2 done)" in error_of(ready)["message"]
            models = {m["name"]: m["state"] for m in httpx.get(url + "/models").json()["models"]}
            assert models == {"emb": "loading", "sent": "loading"}
            # No model is known to serve a task yet: 503 "loading", not 404 "no model".
            for path, body in (("/embed", {"inputs": "x"}), ("/classify", {"inputs": "x"}),
                               ("/tokenize", {"inputs": "x"})):
                r = httpx.post(url + path, json=body)
                assert r.status_code == 503 and "loading" in error_of(r)["message"], (path, r.text)
            r = httpx.post(url + "/embed", json={"inputs": "x", "model": "emb"})
            assert r.status_code == 503 and "still loading" in error_of(r)["message"]
            gate.set()
            deadline = time.monotonic() + 10
            while httpx.get(url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.02)
            assert httpx.post(url + "/embed", json={"inputs": "x"}).status_code == 200
            assert httpx.post(url + "/classify", json={"inputs": "x"}).status_code == 200
            assert "berth_ready 1.0" in httpx.get(url + "/metrics").text
    finally:
        gate.set()


async def test_stopping_during_loading_does_not_wait_for_the_other_bundles(tmp_path):
    for name in ("a", "b", "c"):
        write_fake_bundle(tmp_path, name, "embed")
    gate = threading.Event()
    loaded: list[str] = []

    def factory(path, manifest, settings, threads):
        if path.name == "a":
            gate.wait(30)
        loaded.append(path.name)
        return fake_factory(path, manifest, settings, threads)

    try:
        started = time.monotonic()
        async with serve_in_process(Settings(models_dir=tmp_path), factory, wait_loaded=False) as (app, _):
            pass  # stop while "a" is still loading
        stopped_in = time.monotonic() - started
        assert app.state.berth.loading.cancelled()
        assert stopped_in < 5  # did not wait for "a" (the gate opens only below)
    finally:
        gate.set()
    await asyncio.sleep(0.2)  # "a"'s thread ends now; nothing goes on to "b" or "c"
    assert "b" not in loaded and "c" not in loaded


def _slow_loading_models(root):
    """Three real ORT bundles whose warm-up (256 rows × 32 tokens through a wide MLP) takes about
    a second each on an idle 2-core host, so a probe reaches the server while they load."""
    for name in ("slow1", "slow2", "slow3"):
        real_bundle(root, name, hidden=256, ffn=4096, layers=4)
    return {"BERTH_MAX_BATCH_SIZE": "256", "BERTH_SHUTDOWN_GRACE_S": "30"}


def test_berth_serve_listens_during_loading_and_stops_on_sigterm(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    env = _slow_loading_models(models)
    env["BERTH_SHUTDOWN_GRACE_S"] = "0.2"
    with berth_serve(models, tmp_path / "serve.log", wait_for="/healthz", **env) as srv:
        assert httpx.get(srv.url + "/healthz").status_code == 200
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 503 and "loading" in error_of(ready)["message"], ready.text
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(30)
        stopped_in = time.monotonic() - signalled
        log = srv.log
    # A drained stop: exit 0, without loading the remaining bundles first (the one loading when
    # the signal came finishes in its thread; nothing goes on to the next).
    assert code == 0, log
    assert "model slow3 ready" not in log, log
    print(f"\nSIGTERM during loading: exit {code} after {stopped_in:.2f} s")


def test_a_second_sigterm_stops_at_once(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    env = _slow_loading_models(models)  # a grace of 30 s: the first signal alone would wait it out
    with berth_serve(models, tmp_path / "serve.log", wait_for="/healthz", **env) as srv:
        srv.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while httpx.get(srv.url + "/readyz").status_code != 503 or "shutting" not in httpx.get(
            srv.url + "/readyz"
        ).text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            code = srv.proc.wait(10)
        stopped_in = time.monotonic() - signalled
    assert stopped_in < 5, f"the second SIGTERM took {stopped_in:.1f} s"
    assert code == -signal.SIGTERM  # forced: killed by the signal, not a drained exit 0
