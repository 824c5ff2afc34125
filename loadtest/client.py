"""The benchmark's load generator: N keep-alive aiohttp workers in their own process.

    python -m loadtest.client --url http://127.0.0.1:8000 --scenario embed_bulk \
        --concurrency 4 --duration 20 --warmup 3

Prints one JSON line: the Summary of the measured window, the errors by status and the CPU
seconds the client itself used (on a 2-core machine the load generator competes with the
server, so the bench reports what it took). Bodies are built and serialized with orjson before
the clock matters; every response is parsed and its result count checked, so a fast wrong
answer is counted as an error, not as throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import sys
import time
from collections import Counter

import aiohttp
import orjson

from loadtest.scenarios import SCENARIOS, Cursors, Scenario, get_scenario
from loadtest.summary import Summary, histogram_of
from loadtest.texts import TextPools

MAX_REQUESTS = 1_000_000  # hard bound on one run, whatever the duration


def scenario_cycle(spec: str) -> list[Scenario]:
    """The scenarios a worker cycles through: one named, or 'mix' (each by its weight)."""
    if spec == "mix":
        return [s for s in SCENARIOS.values() for _ in range(s.weight)]
    return [get_scenario(spec)]


async def _worker(
    worker: int,
    session: aiohttp.ClientSession,
    url: str,
    scenarios: list[Scenario],
    pools: TextPools,
    window: tuple[float, float],
    record: dict,
    budget: itertools.count,
    headers: dict[str, str],
) -> None:
    cursors = Cursors.for_worker(pools, worker)
    start_measure, stop = window
    for scenario in itertools.cycle(
        scenarios[worker % len(scenarios) :] + scenarios[: worker % len(scenarios)]
    ):
        now = time.perf_counter()
        if now >= stop or next(budget) >= MAX_REQUESTS:
            return
        body = orjson.dumps(scenario.body(cursors))
        t0 = time.perf_counter()
        try:
            async with session.post(url + scenario.path, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raw, status = b"", type(exc).__name__
        t1 = time.perf_counter()
        problem = None if status == 200 else f"HTTP {status}"
        if problem is None:
            try:
                problem = scenario.check(orjson.loads(raw))
            except orjson.JSONDecodeError:
                problem = "not JSON"
        # Counted by when it finished: in a closed loop, completions per second inside the window
        # are the throughput. Counting only requests that also *started* inside it dropped about
        # one request per worker at the edges (8% of a 20 s window at 1.5 s a request, so the
        # slow naive baseline came out lowest and service/naive highest).
        if not start_measure <= t1 <= stop:
            continue
        record["latency_ms"].append((t1 - t0) * 1000.0)
        if problem:
            record["errors"][problem[:80]] += 1
        else:
            record["texts"] += scenario.texts_per_request


def request_headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


async def run_load(
    url: str,
    spec: str,
    concurrency: int,
    duration: float,
    warmup: float,
    pools: TextPools | None = None,
    api_key: str | None = None,
) -> dict:
    """Drive `concurrency` closed-loop workers for warmup + duration seconds; return the result.
    `api_key` is sent as `Authorization: Bearer` (a server with BERTH_API_KEY answers 401 without)."""
    pools = pools or TextPools.load()
    headers = request_headers(api_key)
    scenarios = scenario_cycle(spec)
    record: dict = {"latency_ms": [], "errors": Counter(), "texts": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = time.perf_counter()
        window = (begin + warmup, begin + warmup + duration)
        budget = itertools.count()
        await asyncio.gather(
            *(
                _worker(i, session, url.rstrip("/"), scenarios, pools, window, record, budget, headers)
                for i in range(concurrency)
            )
        )
    summary = Summary.from_histogram(
        spec, histogram_of(record["latency_ms"]), sum(record["errors"].values()), record["texts"], duration
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **summary.to_dict(),
        "errors": dict(record["errors"]),
        "concurrency": concurrency,
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the server")
    parser.add_argument("--scenario", required=True, help=f"{', '.join(SCENARIOS)} or mix")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    # From the environment, not argv: a key on the command line shows in `ps`.
    parser.add_argument("--api-key-env", default="BERTH_API_KEY",
                        help="environment variable holding the API key to send (BERTH_API_KEY)")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env) or None
    result = asyncio.run(
        run_load(args.url, args.scenario, args.concurrency, args.duration, args.warmup, api_key=api_key)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
