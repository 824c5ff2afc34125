"""Locust scenarios for berth: closed-loop and fixed-rate users, server timings, CI thresholds.

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 -u 16 -t 30s \
        --scenario embed_interactive ClosedLoopUser

Scenarios (`--scenario` or BERTH_LT_SCENARIO, comma-separated; empty = weighted mix of all):
embed_interactive, embed_bulk, classify, classify_bulk, ner_documents, qa (loadtest/scenarios.py).
User classes: `ClosedLoopUser` sends its next request as soon as the last one returns;
`FixedRateUser` paces requests so all users together offer `--target-rps` (an open model as
long as there are enough users to absorb the latency; late starts are counted and reported).
Requests carry `Authorization: Bearer <key>` when BERTH_LT_API_KEY (set by `loadtest.run
--api-key`) or, without it, BERTH_API_KEY is non-empty.
The server's `x-queue-time-ms` / `x-inference-time-ms` headers are recorded per scenario beside
locust's stats, not as locust requests (locust's tables and "Aggregated" row hold the client
requests only): their p50 goes into the summary, and with `--csv PREFIX` the per-scenario
percentiles into PREFIX_server_timing.csv (and the summary file's "server_timing").
At exit, the failure ratio and p95 are checked against `--max-fail-ratio` / `--max-p95-ms` and
the process exit code is set, so a run can gate CI. Single-process runs only (the text and
timing counters are per process).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import os
import time
from pathlib import Path

from locust import FastHttpUser, constant, events, stats, task

from loadtest.scenarios import SCENARIOS, Cursors, Scenario, get_scenario
from loadtest.summary import Summary, Thresholds, exit_code, percentile
from loadtest.texts import DATA_DIR, TextPools

SERVER_TIMINGS = (("x-queue-time-ms", "queue"), ("x-inference-time-ms", "inference"))
_worker_ids = itertools.count()
_counters = {"texts": 0, "late_starts": 0}
# (scenario name, "queue" | "inference") -> {ms at 0.1 ms resolution: count}
_server_timing: dict[tuple[str, str], dict[float, int]] = {}


def _api_key() -> str:
    """The key the users send: loadtest.run's BERTH_LT_API_KEY (even empty), else BERTH_API_KEY."""
    key = os.environ.get("BERTH_LT_API_KEY")
    return os.environ.get("BERTH_API_KEY", "") if key is None else key


def _record_server_timing(name: str, timing: str, header: str) -> None:
    try:
        value = float(header)
    except ValueError:
        return
    if not math.isfinite(value) or value < 0:
        return
    histogram = _server_timing.setdefault((name, timing), {})
    key = round(value, 1)
    histogram[key] = histogram.get(key, 0) + 1


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    group = parser.add_argument_group("berth")
    group.add_argument(
        "--scenario",
        env_var="BERTH_LT_SCENARIO",
        default="",
        help=f"comma-separated scenarios ({', '.join(SCENARIOS)}); empty: weighted mix",
    )
    group.add_argument(
        "--target-rps",
        type=float,
        env_var="BERTH_LT_TARGET_RPS",
        default=10.0,
        help="FixedRateUser: requests/s offered by all users together",
    )
    group.add_argument(
        "--max-fail-ratio",
        type=float,
        env_var="BERTH_LT_MAX_FAIL_RATIO",
        default=0.01,
        help="exit code 1 when the failure ratio is above this",
    )
    group.add_argument(
        "--max-p95-ms",
        type=float,
        env_var="BERTH_LT_MAX_P95_MS",
        default=None,
        help="exit code 1 when the p95 latency (ms) is above this",
    )
    group.add_argument(
        "--data-dir",
        env_var="BERTH_LT_DATA_DIR",
        default=str(DATA_DIR),
        help="folder with sst/, conll2003/, squad/ (default: the repository's data/)",
    )
    group.add_argument(
        "--summary-file",
        env_var="BERTH_LT_SUMMARY_FILE",
        default="",
        help="write the run summary as JSON here",
    )


@functools.cache
def _pools(data_dir: str) -> TextPools:
    return TextPools.load(Path(data_dir))


@functools.cache
def _selected(spec: str) -> tuple[Scenario, ...]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:  # the mix: each scenario repeated by its weight
        return tuple(s for s in SCENARIOS.values() for _ in range(s.weight))
    return tuple(get_scenario(n) for n in names)


class BerthUser(FastHttpUser):
    """Sends the selected scenarios' requests and checks every answer."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.worker = next(_worker_ids)
        self.cursors = Cursors.for_worker(_pools(options.data_dir), self.worker)
        self.scenarios = itertools.cycle(_selected(options.scenario))
        key = _api_key()
        self.headers = {"Authorization": f"Bearer {key}"} if key else None

    @task
    def request(self) -> None:
        scenario = next(self.scenarios)
        body = scenario.body(self.cursors)
        with self.client.post(
            scenario.path, json=body, name=scenario.name, headers=self.headers, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                problem = scenario.check(resp.json())
            except ValueError:
                problem = "response is not JSON"
            if problem:
                resp.failure(problem)
                return
            _counters["texts"] += scenario.texts_per_request
            for header, timing in SERVER_TIMINGS:
                value = resp.headers.get(header)
                if value is not None:
                    _record_server_timing(scenario.name, timing, value)


class ClosedLoopUser(BerthUser):
    """The next request leaves as soon as the previous answer arrives (N users = N in flight)."""

    wait_time = constant(0)


class FixedRateUser(BerthUser):
    """Paced requests: every user starts one each users/target_rps seconds."""

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
        interval = users / max(options.target_rps, 1e-6)
        now = time.monotonic()
        start = getattr(self, "_next_start", now)
        if start < now - interval:  # the answer came back after the next slot: the rate slips
            _counters["late_starts"] += 1
            start = now
        self._next_start = start + interval
        return max(0.0, start - now)


def summarize(environment) -> Summary:
    """The run's summary: client latencies from locust's stats, server timings from the headers."""
    latency: dict[float, int] = {}
    queue: dict[float, int] = {}
    inference: dict[float, int] = {}
    failures = 0
    names = []
    for (name, _method), entry in environment.stats.entries.items():
        failures += entry.num_failures
        names.append(name)
        for value, count in entry.response_times.items():
            latency[value] = latency.get(value, 0) + count
    for (_name, timing), histogram in _server_timing.items():
        target = queue if timing == "queue" else inference
        for value, count in histogram.items():
            target[value] = target.get(value, 0) + count
    total = environment.stats.total
    duration = max(0.0, (total.last_request_timestamp or total.start_time) - total.start_time)
    return Summary.from_histogram(
        "+".join(sorted(names)) or "none", latency, failures, _counters["texts"], duration, queue, inference
    )


def server_timing_rows() -> list[dict[str, object]]:
    """Per scenario and timing (queue, inference): count and percentiles of the header values."""
    rows = []
    for (name, timing), histogram in sorted(_server_timing.items()):
        count = sum(histogram.values())
        rows.append(
            {
                "name": name,
                "timing": timing,
                "count": count,
                "p50_ms": percentile(histogram, 0.50),
                "p95_ms": percentile(histogram, 0.95),
                "p99_ms": percentile(histogram, 0.99),
                "max_ms": max(histogram),
                "mean_ms": round(sum(v * c for v, c in histogram.items()) / count, 3),
            }
        )
    return rows


def _write_server_timing_csv(path: Path, rows: list[dict[str, object]]) -> None:
    fields = ["name", "timing", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _write_final_stats_csv(environment, prefix: str) -> None:
    """Rewrite locust's PREFIX_stats.csv / _failures.csv from the final stats.

    locust's CSV writer refreshes them once a second and does not write again at exit, so the
    files would miss the last second of requests (their "Aggregated" row short of the count).
    """
    writer = stats.StatsCSV(environment, stats.PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", writer.requests_csv), ("_failures.csv", writer.failures_csv)):
        with open(f"{prefix}{suffix}", "w", newline="", encoding="utf-8") as f:
            write(csv.writer(f))


@events.quitting.add_listener
def _gate(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:
        return
    summary = summarize(environment)
    violations = Thresholds(options.max_fail_ratio, options.max_p95_ms).violations(summary)
    print(f"berth summary | {summary.line()}")
    if _counters["late_starts"]:
        print(
            f"berth summary | fixed-rate users started {_counters['late_starts']} requests late "
            "(the offered rate slipped; add users)"
        )
    for violation in violations:
        print(f"berth threshold broken | {violation}")
    timing_rows = server_timing_rows()
    if getattr(options, "csv_prefix", None):
        _write_final_stats_csv(environment, options.csv_prefix)
        _write_server_timing_csv(Path(f"{options.csv_prefix}_server_timing.csv"), timing_rows)
    if options.summary_file:
        payload = {
            **summary.to_dict(),
            "violations": violations,
            "late_starts": _counters["late_starts"],
            "server_timing": timing_rows,
        }
        Path(options.summary_file).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    environment.process_exit_code = exit_code(violations)
