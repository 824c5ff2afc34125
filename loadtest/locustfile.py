"""Locust scenarios for berth: closed-loop and fixed-rate users, server timings, CI thresholds.

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 -u 16 -t 30s \
        --scenario embed_interactive ClosedLoopUser

Scenarios (`--scenario` or BERTH_LT_SCENARIO, comma-separated; empty = weighted mix of all):
embed_interactive, embed_bulk, classify, classify_bulk, ner_documents, qa (loadtest/scenarios.py).
User classes: `ClosedLoopUser` sends its next request as soon as the last one returns;
`FixedRateUser` paces requests so all users together offer `--target-rps` (an open model as
long as there are enough users to absorb the latency; late starts are counted and reported).
The server's `x-queue-time-ms` / `x-inference-time-ms` headers are recorded as locust requests
of type "server", so they appear in the CSV and HTML reports beside the client latencies.
At exit, the failure ratio and p95 are checked against `--max-fail-ratio` / `--max-p95-ms` and
the process exit code is set, so a run can gate CI. Single-process runs only (the text and
timing counters are per process).
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from pathlib import Path

from locust import FastHttpUser, constant, events, task

from loadtest.scenarios import SCENARIOS, Cursors, Scenario, get_scenario
from loadtest.summary import Summary, Thresholds, exit_code
from loadtest.texts import DATA_DIR, TextPools

SERVER_TIMING = "server"  # request_type of the header metrics; left out of the gated summary
_worker_ids = itertools.count()
_counters = {"texts": 0, "late_starts": 0}


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

    @task
    def request(self) -> None:
        scenario = next(self.scenarios)
        body = scenario.body(self.cursors)
        with self.client.post(scenario.path, json=body, name=scenario.name, catch_response=True) as resp:
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
            for header, label in (("x-queue-time-ms", "queue"), ("x-inference-time-ms", "inference")):
                value = resp.headers.get(header)
                if value is not None:
                    events.request.fire(
                        request_type=SERVER_TIMING,
                        name=f"{scenario.name} {label}",
                        response_time=float(value),
                        response_length=0,
                        exception=None,
                        context={},
                    )


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
    """The run's summary from locust's stats, client latencies of real requests only."""
    latency: dict[float, int] = {}
    queue: dict[float, int] = {}
    inference: dict[float, int] = {}
    failures = 0
    names = []
    for (name, method), entry in environment.stats.entries.items():
        if method == SERVER_TIMING:
            target = queue if name.endswith(" queue") else inference
        else:
            target = latency
            failures += entry.num_failures
            names.append(name)
        for value, count in entry.response_times.items():
            target[value] = target.get(value, 0) + count
    total = environment.stats.total
    duration = max(0.0, (total.last_request_timestamp or total.start_time) - total.start_time)
    return Summary.from_histogram(
        "+".join(sorted(names)) or "none", latency, failures, _counters["texts"], duration, queue, inference
    )


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
    if options.summary_file:
        payload = {**summary.to_dict(), "violations": violations, "late_starts": _counters["late_starts"]}
        Path(options.summary_file).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    environment.process_exit_code = exit_code(violations)
